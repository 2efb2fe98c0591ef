"""Train a detector: `python train.py experiment=demo` (see configs/train.yaml)."""

import hydra
from omegaconf import DictConfig

from faketrace.engine.distributed import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from faketrace.engine.train import train

    result = train(cfg)
    print(f"best checkpoint: {result['best_ckpt']} ({result['monitor']} = {result['best_score']:.4f})")
    return result["best_score"]


if __name__ == "__main__":
    main()
