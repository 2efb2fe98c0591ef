"""Benchmarks, one subcommand each: `python scripts/benchmark.py metrics [--frames N]`.

Subcommands are small functions registered in `SUBCOMMANDS`, so others (preprocess, model)
can be added beside `metrics` without touching it.
"""

from __future__ import annotations

import argparse
import json
import platform
import time


def _timed(fn, repeats: int, warmup: int):
    for _ in range(warmup):  # untimed runs first (imports, allocation), as timm's benchmark does
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def bench_metrics(args: argparse.Namespace) -> dict:
    """Cost of the full metric set over N frame scores, without and with the bootstrap."""
    import numpy as np
    import pandas as pd

    from faketrace.engine import metrics as M

    rng = np.random.default_rng(args.seed)
    n_videos = args.frames // args.frames_per_video
    video_label = rng.integers(0, 2, n_videos)
    video_effect = rng.normal(0, 1, n_videos) + 1.2 * video_label
    vid = np.repeat(np.arange(n_videos), args.frames_per_video)
    frames = pd.DataFrame({"video_id": vid, "frame_index": np.tile(np.arange(args.frames_per_video), n_videos),
                           "label": video_label[vid], "method": np.where(video_label[vid] == 1, "fake", "real")})
    frames["score"] = M.sigmoid(video_effect[vid] + rng.normal(0, 1, len(vid)) - 0.6)
    boot = {"n_resamples": args.resamples, "seed": args.seed, "level": 0.95}
    results = {"frames": int(len(frames)), "videos": int(n_videos), "resamples": args.resamples,
               "python": platform.python_version(), "machine": platform.machine(), "seconds": {}}
    plan = {
        "report_levels (frame + video, no bootstrap)": lambda: M.report_levels(frames, "mean"),
        "report_levels with bootstrap": lambda: M.report_levels(frames, "mean", bootstrap=boot),
        "bootstrap frame AUC only (resampling videos)": lambda: M.bootstrap_auc(
            frames["label"], frames["score"], frames["video_id"], args.resamples, args.seed),
    }
    for name, fn in plan.items():
        seconds, _ = _timed(fn, args.repeats, args.warmup)
        results["seconds"][name] = round(seconds, 3)
        print(f"{name:<48} {seconds:8.3f} s")
    return results


SUBCOMMANDS = {"metrics": (bench_metrics, "metric set over N frame scores, with and without the bootstrap")}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    metrics = sub.add_parser("metrics", help=SUBCOMMANDS["metrics"][1])
    metrics.add_argument("--frames", type=int, default=1_000_000)
    metrics.add_argument("--frames-per-video", type=int, default=32)
    metrics.add_argument("--resamples", type=int, default=1000)
    metrics.add_argument("--warmup", type=int, default=0, help="untimed runs before timing")
    metrics.add_argument("--repeats", type=int, default=1, help="timed runs; the fastest is reported")
    metrics.add_argument("--seed", type=int, default=0)
    metrics.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    results = SUBCOMMANDS[args.command][0](args)
    if getattr(args, "json", None):
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return results


if __name__ == "__main__":
    main()
