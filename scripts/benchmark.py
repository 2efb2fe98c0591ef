"""Benchmarks: ``python scripts/benchmark.py <name> [options]``; ``--help`` lists them.

``preprocess``: frames/s and videos/s of the whole face pipeline (decode, sample, detect, crop,
write, manifest) on generated 720p and 1080p videos made from the demo renderer, beside the
detector's own frames/s on the same frames (the ratio is the pipeline's efficiency), for each
number of worker processes. Warm-up first, then medians over repeats (timm's protocol).

New benchmarks are one more sub-command: a function taking the parsed arguments and a parser
entry in ``build_parser``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

SIZES = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}


def render_videos(root: Path, size: str, n_videos: int, n_frames: int, seed: int = 0) -> list[dict]:
    """Demo-face videos of the given size: one composite per video, moved a little every frame."""
    import av
    import cv2
    import numpy as np

    from faketrace.datasets.demo import DemoRenderer, make_identities

    width, height = SIZES[size]
    renderer = DemoRenderer(width, (0.25, 0.35))
    gen = {"skin_tone_range": [0.7, 1.15], "warp_amplitude": [2.0, 5.0]}
    rng = np.random.default_rng(seed)
    rows = []
    for v, ident in enumerate(make_identities(n_videos, seed, gen)):
        face_h = rng.uniform(0.25, 0.35) * height
        scale = face_h / (renderer.box[3] - renderer.box[1])
        centre = (rng.uniform(0.35, 0.65) * width, width / 2 + rng.uniform(-0.1, 0.1) * height)
        frame, _ = renderer.place(renderer.identity_patch(ident), renderer.background(rng), scale, 0.0, centre,
                                  (0.0, 0.0, 1.0))
        top = (width - height) // 2
        still = np.clip(frame[top:top + height], 0, 255).astype(np.uint8)
        rel = f"{size}/video_{v:03d}.mp4"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(root / rel), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": "23", "preset": "veryfast"}
            for t in range(n_frames):
                shift = np.float32([[1, 0, 2.0 * np.sin(t / 5)], [0, 1, 1.5 * np.cos(t / 7)]])
                moved = cv2.warpAffine(still, shift, (width, height), borderMode=cv2.BORDER_REPLICATE)
                container.mux(stream.encode(av.VideoFrame.from_ndarray(moved, format="rgb24")))
            container.mux(stream.encode(None))
        rows.append(dict(id=f"{size}_{v:03d}", dataset="benchmark", split="test", label=0, method="real",
                         media_type="video", path=rel, adapter_version="benchmark/1"))
    return rows


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def bench_preprocess(args: argparse.Namespace) -> dict:
    import pandas as pd

    from faketrace.datasets.media import read_video_frames
    from faketrace.datasets.preprocess import PreprocessSpec, RunOptions, make_detector, preprocess_index

    spec = PreprocessSpec(frames_per_video=args.frames_per_video, crop_size=args.crop_size)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="faketrace-bench-"))
    results: dict = {"spec": spec.to_dict(), "videos": args.videos, "frames_per_video_file": args.frames,
                     "repeats": args.repeats, "device": args.device, "sizes": {}}
    for size in args.sizes:
        index = pd.DataFrame(render_videos(work / "raw", size, args.videos, args.frames))
        # The detector alone, on the very frames the pipeline samples, decoded beforehand.
        frames = [read_video_frames(work / "raw" / p, spec.frames_per_video) for p in index.path]
        per_video = [[v.frames[i] for i in sorted(v.frames)] for v in frames]
        n_frames = sum(len(f) for f in per_video)
        detector = make_detector(spec, args.device)
        detector.detect(per_video[0][:2])  # warm-up
        detector_s = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for batch in per_video:
                detector.detect(batch)
            detector_s.append(time.perf_counter() - start)
        row = {"frames": n_frames, "detector_frames_s": n_frames / _median(detector_s), "pipeline": {}}
        for workers in args.workers:
            wall = []
            for r in range(args.repeats + 1):  # the first run is a warm-up (page cache, imports)
                faces = work / f"faces_{size}_{workers}_{r}"
                start = time.perf_counter()
                preprocess_index(index, work / "raw", faces, spec, faces / "manifest.parquet", args.device,
                                 RunOptions(workers=workers, progress=False))
                if r:
                    wall.append(time.perf_counter() - start)
            median = _median(wall)
            row["pipeline"][workers] = {"seconds": median, "frames_s": n_frames / median,
                                        "videos_s": len(index) / median,
                                        "efficiency": n_frames / median / row["detector_frames_s"],
                                        "all_seconds": wall}
        results["sizes"][size] = row
        print(f"{size}: {len(index)} videos x {args.frames} frames, {n_frames} sampled; detector alone "
              f"{row['detector_frames_s']:.1f} frames/s")
        for workers, p in row["pipeline"].items():
            print(f"  workers={workers}: pipeline {p['frames_s']:.1f} frames/s, {p['videos_s']:.2f} videos/s, "
                  f"efficiency {p['efficiency']:.2f} (median of {args.repeats})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pre = commands.add_parser("preprocess", help="face pipeline vs detector alone, by video size and workers")
    pre.add_argument("--sizes", nargs="+", default=["720p", "1080p"], choices=sorted(SIZES))
    pre.add_argument("--videos", type=int, default=16, help="videos per size")
    pre.add_argument("--frames", type=int, default=60, help="frames per generated video")
    pre.add_argument("--frames-per-video", type=int, default=16, help="frames the pipeline samples per video")
    pre.add_argument("--crop-size", type=int, default=128)
    pre.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    pre.add_argument("--repeats", type=int, default=3)
    pre.add_argument("--device", default="cpu")
    pre.add_argument("--work-dir", default=None, help="where videos and crops go (default: a new temp folder)")
    pre.add_argument("--json", default=None, help="also write the results here")
    pre.set_defaults(run=bench_preprocess)
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    main()
