"""Benchmarks: `python scripts/benchmark.py train [hydra overrides ...]`.

Speed and memory targets live here, never in timed tests. Each subcommand prints JSON with
medians over repeats.
"""

import argparse
import json
import sys
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _compose(name: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    from faketrace.engine.distributed import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name=name, overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = "outputs/benchmark"
    OmegaConf.resolve(cfg)
    return cfg


def bench_train(args, overrides: list[str]) -> dict:
    from faketrace.engine.benchmarks import train_throughput

    cfg = _compose("train", ["trainer.progress_bar=false", *overrides])
    return train_throughput(cfg, steps=args.steps, warmup=args.warmup, repeats=args.repeats)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="model-only, end-to-end and loader-only training throughput")
    train.add_argument("--steps", type=int, default=20)
    train.add_argument("--warmup", type=int, default=5)
    train.add_argument("--repeats", type=int, default=3)
    train.set_defaults(run=bench_train)
    args, overrides = parser.parse_known_args(argv)
    print(json.dumps(args.run(args, overrides), indent=2))


if __name__ == "__main__":
    sys.exit(main())
