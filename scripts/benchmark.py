"""Benchmarks: `python scripts/benchmark.py <name> [options]`; `--help` lists them.

Speed and memory targets live here, never in timed tests. Warm-up first, then medians over
repeats (timm's protocol).

- `preprocess`: frames/s and videos/s of the whole face pipeline on generated 720p and 1080p
  videos beside the detector's own frames/s on the same frames (the ratio is the pipeline's
  efficiency), for each number of worker processes.
  `--runtimes onnx torch` times the face detector on ONNX Runtime and on PyTorch (the GPU path),
  `--device cuda` on the GPU, `--decode cuda` with hardware video decoding.
- `scan-video`: decode + detect + classify of ten-second 1080p videos, 32 frames classified, one
  video after another as the scan does: seconds per video (median, by stage) and videos/s over
  the folder; `--device cuda --runtime torch --decode cuda` for the GPU path.
- `metrics`: the full metric set over N frame scores, without and with the bootstrap.
- `scan [hydra overrides]`: items/s and faces/s of the evidence scan over a copy of the given
  evidence, PyTorch checkpoint and (with --model-dir) ONNX Runtime export; with --people FOLDER
  also with a person of interest (reference photos in FOLDER), and the ratio.
- `train [hydra overrides]`: (a) model-only, (b) end-to-end with the real loader, (c)
  loader-only training throughput, and the ratios (b)/(a), (c)/(a); then a per-step breakdown
  of (b) (data wait, host-to-device copy, forward, backward, optimiser step, host syncs and
  logging: median ms and share of the step), in a separate pass that synchronises the device
  between phases.
- `infer`: latency at batch 1 and throughput at batch 32 of PyTorch eager and ONNX Runtime on
  CPU (on a GPU also PyTorch fp16 and bf16 autocast, bf16 on a batch already on the GPU, with
  --compile compiled, and ONNX Runtime CUDA where installed) for EfficientNet-B4 at 380 px,
  Xception at 299 px and ConvNeXt-T at 224 px, random weights; prints the speed-up ratios and
  the max |logit difference| of bf16 (and fp16 on a GPU) against fp32.
"""

from __future__ import annotations

import argparse
import json
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


def run_preprocess(args, extra: list[str]) -> dict:
    from faketrace.engine.benchmarks import bench_preprocess

    if extra:
        raise SystemExit(f"preprocess takes no overrides, got {extra}")
    return bench_preprocess(args)


def run_video_scan(args, extra: list[str]) -> dict:
    from faketrace.engine.benchmarks import bench_video_scan

    if extra:
        raise SystemExit(f"scan-video takes no overrides, got {extra}")
    return bench_video_scan(args)


def run_metrics(args, extra: list[str]) -> dict:
    from faketrace.engine.benchmarks import bench_metrics

    if extra:
        raise SystemExit(f"metrics takes no overrides, got {extra}")
    results = bench_metrics(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


def run_train(args, overrides: list[str]) -> dict:
    from faketrace.engine.benchmarks import train_throughput
    from faketrace.engine.step_timing import format_breakdown

    cfg = _compose("train", ["trainer.progress_bar=false", *overrides])
    result = train_throughput(cfg, steps=args.steps, warmup=args.warmup, repeats=args.repeats,
                              breakdown_steps=args.breakdown_steps)
    print(json.dumps(result, indent=2))
    med = result["median"]
    print(f"{result['backbone']} @ {result['input_size']} px, batch {result['batch_size']}, {result['device']}, "
          f"precision {result['precision']}, {result['num_workers']} workers: model-only {med['model_only']:.1f}, "
          f"end-to-end {med['end_to_end']:.1f}, loader-only {med['loader_only']:.1f} img/s; end-to-end / model-only "
          f"{result['ratio_end_to_end_over_model']:.2f}")
    if "breakdown" in result:
        print(format_breakdown(result["breakdown"]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


def run_infer(args, extra: list[str]) -> dict:
    from faketrace.engine.benchmarks import bench_infer

    if extra:
        raise SystemExit(f"infer takes no overrides, got {extra}")
    return bench_infer(args)


def run_scan(args, overrides: list[str]) -> dict:
    from faketrace.forensics.benchmarks import bench_scan

    args.overrides = overrides
    results = bench_scan(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


def build_parser() -> argparse.ArgumentParser:
    from faketrace.datasets.faces import DETECTOR_RUNTIMES
    from faketrace.datasets.media import DECODE_MODES
    from faketrace.engine.benchmarks import INFER_MODELS, SIZES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    pre = commands.add_parser("preprocess", help="face pipeline vs detector alone, by video size and workers")
    pre.add_argument("--sizes", nargs="+", default=["720p", "1080p"], choices=sorted(SIZES))
    pre.add_argument("--videos", type=int, default=16, help="videos per size")
    pre.add_argument("--frames", type=int, default=60, help="frames per generated video")
    pre.add_argument("--frames-per-video", type=int, default=16, help="frames the pipeline samples per video")
    pre.add_argument("--crop-size", type=int, default=128)
    pre.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    pre.add_argument("--repeats", type=int, default=3)
    pre.add_argument("--device", default="cpu", help="cpu | cuda: where the face detector runs")
    pre.add_argument("--runtimes", nargs="+", default=["onnx", "torch"], choices=list(DETECTOR_RUNTIMES),
                     help="face detector runtimes to time (ONNX Runtime, PyTorch)")
    pre.add_argument("--decode", default="cpu", choices=list(DECODE_MODES), help="video decoding of the pipeline")
    pre.add_argument("--work-dir", default=None, help="where videos and crops go (default: a new temp folder)")
    pre.add_argument("--json", default=None, help="also write the results here")
    pre.set_defaults(run=run_preprocess)
    vscan = commands.add_parser("scan-video", help="decode + detect + classify seconds per video, videos/s")
    vscan.add_argument("--size", default="1080p", choices=sorted(SIZES))
    vscan.add_argument("--seconds", type=float, default=10.0, help="length of each generated video (25 frames/s)")
    vscan.add_argument("--videos", type=int, default=8, help="videos in the folder (plus one warm-up video)")
    vscan.add_argument("--frames-per-video", type=int, default=32, help="frames sampled and classified per video")
    vscan.add_argument("--model", default="efficientnet_b4:380", metavar="TIMM_NAME:SIZE",
                       help="the classifier (random weights) and its input size = the crop size")
    vscan.add_argument("--precision", default="bf16", choices=["bf16", "fp32"], help="classifier autocast on a GPU")
    vscan.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    vscan.add_argument("--runtime", default="auto", choices=list(DETECTOR_RUNTIMES), help="face detector runtime")
    vscan.add_argument("--decode", default="cpu", choices=list(DECODE_MODES))
    vscan.add_argument("--detector-batch", type=int, default=32)
    vscan.add_argument("--isolate", action="store_true",
                       help="decode in a child process, as the scan does (scan.isolate_decoding)")
    vscan.add_argument("--work-dir", default=None, help="where the videos go (default: a new temp folder)")
    vscan.add_argument("--json", default=None, help="also write the results here")
    vscan.set_defaults(run=run_video_scan)
    metrics = commands.add_parser("metrics", help="metric set over N frame scores, with and without the bootstrap")
    metrics.add_argument("--frames", type=int, default=1_000_000)
    metrics.add_argument("--frames-per-video", type=int, default=32)
    metrics.add_argument("--resamples", type=int, default=1000)
    metrics.add_argument("--warmup", type=int, default=0, help="untimed runs before timing")
    metrics.add_argument("--repeats", type=int, default=1, help="timed runs; the fastest is reported")
    metrics.add_argument("--seed", type=int, default=0)
    metrics.add_argument("--json", help="also write the results here")
    metrics.set_defaults(run=run_metrics)
    scan = commands.add_parser("scan", help="evidence scan items/s and faces/s, PyTorch vs ONNX Runtime")
    scan.add_argument("--inputs", default="data/demo/raw", help="evidence folder to copy from (make demo writes it)")
    scan.add_argument("--limit", type=int, default=200, help="files copied from it")
    scan.add_argument("--ckpt", default="outputs/demo/train/checkpoints/best.ckpt")
    scan.add_argument("--model-dir", default=None, help="an export folder: also time ONNX Runtime")
    scan.add_argument("--repeats", type=int, default=3)
    scan.add_argument("--people", default=None,
                      help="a folder of reference photos: also time the scan with this person of interest")
    scan.add_argument("--work-dir", default=None)
    scan.add_argument("--json", default=None)
    scan.set_defaults(run=run_scan)
    train = commands.add_parser("train", help="model-only, end-to-end and loader-only training throughput")
    train.add_argument("--steps", type=int, default=20)
    train.add_argument("--warmup", type=int, default=5)
    train.add_argument("--repeats", type=int, default=3)
    train.add_argument("--breakdown-steps", type=int, default=None,
                       help="steps of the per-step breakdown pass (default: --steps; 0 skips it)")
    train.add_argument("--json", default=None, help="also write the results here")
    train.set_defaults(run=run_train)
    infer = commands.add_parser("infer", help="PyTorch eager vs ONNX Runtime: batch-1 latency, batch-32 throughput")
    infer.add_argument("--models", nargs="+", default=list(INFER_MODELS), metavar="TIMM_NAME:SIZE")
    infer.add_argument("--threads", type=int, default=None, help="CPU threads for both runtimes (default: torch's)")
    infer.add_argument("--batch1-warmup", type=int, default=5)
    infer.add_argument("--batch1-steps", type=int, default=30)
    infer.add_argument("--batch32-warmup", type=int, default=2)
    infer.add_argument("--batch32-steps", type=int, default=5)
    infer.add_argument("--device", default="auto", choices=["auto", "cpu"], help="auto: GPU paths too when one exists")
    infer.add_argument("--compile", action="store_true",
                       help="on a GPU, also time the bf16 model compiled (torch.compile reduce-overhead: CUDA graphs)")
    infer.add_argument("--runtimes", nargs="+", default=None, metavar="NAME",
                       help="only these runtimes (pytorch_eager_cpu, onnxruntime_cpu, pytorch_fp16_cuda, pytorch_bf16_cuda, "
                            "pytorch_bf16_cuda_resident, pytorch_bf16_cuda_resident_compiled, onnxruntime_cuda)")
    infer.add_argument("--precision-batch", type=int, default=8,
                       help="images in the fp16/bf16 vs fp32 logit comparison")
    infer.add_argument("--work-dir", default=None, help="where the ONNX files go (default: a new temp folder)")
    infer.add_argument("--json", default=None, help="also write the results here")
    infer.set_defaults(run=run_infer)
    return parser


def main(argv: list[str] | None = None) -> dict:
    args, extra = build_parser().parse_known_args(argv)
    return args.run(args, extra)


if __name__ == "__main__":
    main()
