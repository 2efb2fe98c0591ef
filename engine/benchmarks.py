"""Throughput benchmarks (timm's protocol: warm-up steps, then timed steps, GPU synchronised).

Numbers are medians over repeats; the ratios compare the real pipeline with the model alone,
so a slow data path shows up as a ratio well below 1. `bench_infer` compares inference runtimes
(PyTorch eager, ONNX Runtime) on the same exported graph.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from itertools import islice
from pathlib import Path

import torch
from omegaconf import DictConfig

from faketrace.engine.step_timing import StepTimer
from faketrace.engine.train import Trainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, steps: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return time.perf_counter() - t0


def _timed_loop(trainer: Trainer, batches, steps: int, warmup: int) -> float:
    """Seconds of `steps` steps of the Trainer's own loop (logging included) after `warmup` untimed ones."""
    trainer.run_steps(batches, warmup)
    _sync(trainer.device)
    t0 = time.perf_counter()
    trainer.run_steps(batches, steps)
    _sync(trainer.device)
    return time.perf_counter() - t0


def train_throughput(cfg: DictConfig, steps: int = 20, warmup: int = 5, repeats: int = 3,
                     breakdown_steps: int | None = None) -> dict:
    """(a) model-only, (b) end-to-end with the real loader, (c) loader-only, in images/s; then the
    per-step breakdown of (b) (engine/step_timing.py) over `breakdown_steps` steps (default `steps`;
    0 skips it).

    (a) and (b) run the Trainer's own loop (Trainer.run_steps: steps, loss kept on the device,
    logging at its log points), (a) on one synthetic batch already on the device. The breakdown
    pass synchronises the device between phases, so it runs after the throughput passes, apart.
    """
    trainer = Trainer(cfg)
    bs = int(cfg.loader.batch_size)
    size = trainer.model.input_size
    device = trainer.device
    synthetic = {"image": torch.randn(bs, 3, size, size, device=device),
                 "label": torch.randint(0, 2, (bs,), device=device), "index": torch.arange(bs, device=device)}

    def repeat_synthetic():
        while True:
            yield synthetic

    def loader_iter(seed: int = 0):
        while True:  # epochs back to back, each with its own loader, as fit_loop makes them
            yield from trainer.train_loader(seed)
            seed += 1

    results: dict[str, list[float]] = {"model_only": [], "end_to_end": [], "loader_only": []}
    for _ in range(repeats):
        results["model_only"].append(bs * steps / _timed_loop(trainer, repeat_synthetic(), steps, warmup))
        results["end_to_end"].append(bs * steps / _timed_loop(trainer, loader_iter(), steps, warmup))
        it = loader_iter()
        # Count loader time including the first workers' start, as a training epoch pays it.
        t0 = time.perf_counter()
        n = sum(len(b["image"]) for b in islice(it, steps + warmup))
        results["loader_only"].append(n / (time.perf_counter() - t0))
    med = {k: statistics.median(v) for k, v in results.items()}
    out = {"unit": "images/s", "batch_size": bs, "input_size": size, "backbone": trainer.model.backbone_name,
           "device": str(device), "precision": trainer.precision, "num_workers": trainer.speed["num_workers"],
           "speed": trainer.speed, "channels_last": trainer.channels_last,
           "steps": steps, "warmup": warmup, "repeats": repeats, "median": med, "all": results,
           "ratio_end_to_end_over_model": med["end_to_end"] / med["model_only"],
           "ratio_loader_over_model": med["loader_only"] / med["model_only"]}
    n_breakdown = steps if breakdown_steps is None else int(breakdown_steps)
    if n_breakdown > 0:
        batches = loader_iter()
        trainer.run_steps(batches, warmup)
        trainer.step_timer = StepTimer(device)
        try:
            trainer.run_steps(batches, n_breakdown)
        finally:
            timer, trainer.step_timer = trainer.step_timer, None
        out["breakdown"] = timer.summary()
    return out


# -- face preprocessing ---------------------------------------------------------------------

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
    """The face pipeline's frames/s beside the detector alone on the same frames, per video size,
    detector runtime (ONNX Runtime, PyTorch) and worker count; the ratio is the pipeline's efficiency."""
    import pandas as pd

    from faketrace.datasets.faces import resolve_detector_runtime
    from faketrace.datasets.media import read_video_frames
    from faketrace.datasets.preprocess import PreprocessSpec, RunOptions, make_detector, preprocess_index

    spec = PreprocessSpec(frames_per_video=args.frames_per_video, crop_size=args.crop_size)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="faketrace-bench-"))
    runtimes = list(getattr(args, "runtimes", None) or ["onnx"])
    decode = getattr(args, "decode", "cpu")
    results: dict = {"spec": spec.to_dict(), "videos": args.videos, "frames_per_video_file": args.frames,
                     "repeats": args.repeats, "device": args.device, "decode": decode, "sizes": {}}
    for size in args.sizes:
        index = pd.DataFrame(render_videos(work / "raw", size, args.videos, args.frames))
        # The detector alone, on the very frames the pipeline samples, decoded beforehand.
        frames = [read_video_frames(work / "raw" / p, spec.frames_per_video) for p in index.path]
        per_video = [[v.frames[i] for i in sorted(v.frames)] for v in frames]
        n_frames = sum(len(f) for f in per_video)
        results["sizes"][size] = {}
        for runtime in runtimes:
            resolved, device = resolve_detector_runtime(runtime, args.device)
            detector = make_detector(spec, args.device, runtime=runtime)
            detector.detect(per_video[0])  # warm-up at the timed batch size (cuDNN picks its algorithms per shape)
            detector_s = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                for batch in per_video:
                    detector.detect(batch)
                detector_s.append(time.perf_counter() - start)
            del detector
            row = {"runtime": resolved, "device": device, "frames": n_frames,
                   "detector_frames_s": n_frames / _median(detector_s), "pipeline": {}}
            for workers in args.workers:
                wall = []
                for r in range(args.repeats + 1):  # the first run is a warm-up (page cache, imports)
                    faces = work / f"faces_{size}_{runtime}_{workers}_{r}"
                    start = time.perf_counter()
                    preprocess_index(index, work / "raw", faces, spec, faces / "manifest.parquet", args.device,
                                     RunOptions(workers=workers, progress=False, detector_runtime=runtime,
                                                decode=decode))
                    if r:
                        wall.append(time.perf_counter() - start)
                median = _median(wall)
                row["pipeline"][workers] = {"seconds": median, "frames_s": n_frames / median,
                                            "videos_s": len(index) / median,
                                            "efficiency": n_frames / median / row["detector_frames_s"],
                                            "all_seconds": wall}
            results["sizes"][size][runtime] = row
            print(f"{size}, detector {resolved} on {device}: {len(index)} videos x {args.frames} frames, "
                  f"{n_frames} sampled; detector alone {row['detector_frames_s']:.1f} frames/s")
            for workers, p in row["pipeline"].items():
                print(f"  workers={workers}, decode={decode}: pipeline {p['frames_s']:.1f} frames/s, "
                      f"{p['videos_s']:.2f} videos/s, pipeline/detector {p['efficiency']:.2f} "
                      f"(median of {args.repeats})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


def bench_video_scan(args: argparse.Namespace) -> dict:
    """Decode + detect + classify of whole videos, as the scan does per item, one video after another.

    Each video: its sampled frames decoded (`--decode`), faces detected (`--runtime` on
    `--device`), the largest face of each frame cropped at the classifier's input size (the face
    pipeline's choose_faces + model_crop), and the crops classified in one batch (random weights:
    speed only). Seconds per video are the median over the folder after one warm-up video; the
    folder's throughput is its videos over the wall time of the whole loop. `--isolate` decodes in
    a child process as the scan does (the frames come back pickled). Custody (hashing) and report
    writing are not included (`scan` times the whole scan).
    """
    import numpy as np

    from faketrace.datasets.face_pipeline import PreprocessSpec, choose_faces, model_crop
    from faketrace.datasets.faces import resolve_detector_runtime
    from faketrace.datasets.media import IsolatedDecoder
    from faketrace.datasets.preprocess import make_detector
    from faketrace.models.detector import Detector

    name, input_size = args.model.split(":")
    input_size = int(input_size)
    device = torch.device("cuda" if args.device == "cuda" else "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: PyTorch sees no CUDA device")
    runtime, detector_device = resolve_detector_runtime(args.runtime, str(device))
    spec = PreprocessSpec(frames_per_video=args.frames_per_video, crop_size=input_size)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="faketrace-scanbench-"))
    n_frames = int(round(args.seconds * 25))  # render_videos writes 25 frames/s
    rows = render_videos(work / "raw", args.size, args.videos + 1, n_frames)  # +1: the warm-up video
    detector = make_detector(spec, str(device), runtime=args.runtime)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = Detector(name, pretrained=False, input_size=input_size).eval().to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    mean = torch.tensor(model.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(model.std, device=device).view(1, 3, 1, 1)

    def classify(crops: list[np.ndarray]) -> np.ndarray:
        if not crops:
            return np.zeros(0, np.float32)
        x = torch.from_numpy(np.stack(crops)).to(device, non_blocking=True).permute(0, 3, 1, 2).float()
        x = ((x / 255.0 - mean) / std).contiguous(
            memory_format=torch.channels_last if device.type == "cuda" else torch.contiguous_format)
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                    enabled=device.type == "cuda" and args.precision == "bf16"):
            return torch.sigmoid(model(x).float().reshape(-1)).cpu().numpy()

    decoder = IsolatedDecoder(isolate=bool(args.isolate))

    def one(row: dict) -> dict:
        t0 = time.perf_counter()
        video = decoder("read_video_frames", work / "raw" / row["path"], spec.frames_per_video, decode=args.decode)
        order = sorted(video.frames)
        frames = [video.frames[i] for i in order]
        t1 = time.perf_counter()
        detections = []
        for i in range(0, len(frames), args.detector_batch):
            detections.extend(detector.detect(frames[i:i + args.detector_batch]))
        t2 = time.perf_counter()
        chosen = [c for per in choose_faces(order, detections, spec) for c in per]
        crops = [model_crop(video.frames[c.frame_index], c.face, spec) for c in chosen]
        t3 = time.perf_counter()
        probs = classify(crops)
        t4 = time.perf_counter()  # .cpu() above waited for the GPU
        return {"decode": t1 - t0, "detect": t2 - t1, "crop": t3 - t2, "classify": t4 - t3, "total": t4 - t0,
                "frames": len(frames), "faces": len(crops), "decoder": video.decoder,
                "decoder_note": video.decoder_note, "mean_probability": float(probs.mean()) if len(probs) else None}

    try:
        one(rows[0])  # warm-up: imports, cuDNN autotuning, the page cache, the decoder process
        start = time.perf_counter()
        per_video = [one(r) for r in rows[1:]]
        wall = time.perf_counter() - start
    finally:
        decoder.close()
    stages = ("decode", "detect", "crop", "classify", "total")
    med = {k: _median([v[k] for v in per_video]) for k in stages}
    results = {"size": args.size, "seconds_of_video": args.seconds, "frames_per_file": n_frames,
               "frames_classified": args.frames_per_video, "videos": args.videos, "model": args.model,
               "device": str(device), "precision": args.precision if device.type == "cuda" else "fp32",
               "detector_runtime": runtime, "detector_device": detector_device, "decode": args.decode,
               "isolated_decoding": bool(args.isolate),
               "decoder_used": sorted({v["decoder"] for v in per_video}),
               "decoder_notes": sorted({v["decoder_note"] for v in per_video if v["decoder_note"]}),
               "torch_threads": torch.get_num_threads(), "median_seconds": med,
               "faces_per_video": _median([v["faces"] for v in per_video]),
               "folder_seconds": wall, "folder_videos_s": len(per_video) / wall, "per_video": per_video}
    print(f"{len(per_video)} videos of {args.seconds:g} s at {args.size} ({n_frames} frames), "
          f"{args.frames_per_video} sampled, {args.model} on {device} ({results['precision']}), detector "
          f"{runtime} on {detector_device}, decode={args.decode} (used: {', '.join(results['decoder_used'])})"
          f"{', in a decoder process' if args.isolate else ''}")
    print("  seconds per video (median): " + ", ".join(f"{k} {med[k]:.3f}" for k in stages))
    print(f"  folder: {len(per_video)} videos in {wall:.2f} s = {results['folder_videos_s']:.2f} videos/s")
    for note in results["decoder_notes"]:
        print(f"  decoder note: {note}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


# -- metrics --------------------------------------------------------------------------------

def _timed_fastest(fn, repeats: int, warmup: int):
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
        seconds, _ = _timed_fastest(fn, args.repeats, args.warmup)
        results["seconds"][name] = round(seconds, 3)
        print(f"{name:<48} {seconds:8.3f} s")
    return results


# -- inference ------------------------------------------------------------------------------

# The backbones the issue names, at the sizes deepfake work runs them (random weights: speed only).
INFER_MODELS = ("efficientnet_b4:380", "legacy_xception:299", "convnext_tiny:224")


def _step_seconds(fn, steps: int, warmup: int, sync=None) -> list[float]:
    """Seconds per timed step after `warmup` untimed ones (synchronised per step on a GPU)."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return times


def _runtimes(model: torch.nn.Module, onnx_path: Path | None, threads: int, cuda: bool,
              compile_gpu: bool = False) -> dict:
    """name -> (run(batch array) callable, sync): PyTorch eager and ONNX Runtime on CPU, and on a
    GPU PyTorch autocast in fp16 and bf16 (channels_last, host array in and host logits out, as
    ONNX Runtime's run() does), bf16 on a batch already on the GPU (the model's own rate), the
    same compiled when `compile_gpu`, and ONNX Runtime's CUDA provider where it is installed. Without
    `onnx_path` (no ONNX runtime asked for) the ONNX Runtime entries are left out."""
    import onnxruntime as ort

    def torch_cpu(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x))

    out = {"pytorch_eager_cpu": (torch_cpu, None)}
    if onnx_path is not None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        cpu = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        out["onnxruntime_cpu"] = (lambda x: cpu.run(["logit"], {"image": x}), None)
    if cuda:
        device = torch.device("cuda")
        gpu_model = copy.deepcopy(model).to(device, memory_format=torch.channels_last).eval()
        sync = lambda: torch.cuda.synchronize(device)  # noqa: E731

        def host_to_host(dtype):
            def run(x):
                pinned = torch.from_numpy(x).pin_memory()
                with torch.inference_mode(), torch.autocast("cuda", dtype=dtype):
                    images = pinned.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                    return gpu_model(images).float().cpu()
            return run

        def resident(net):
            cache: dict = {}

            def run(x):
                key = x.shape
                if key not in cache:  # the batch is copied once; the timed call is the model alone
                    cache.clear()
                    cache[key] = torch.from_numpy(x).to(device).contiguous(memory_format=torch.channels_last)
                with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                    return net(cache[key])
            return run

        out["pytorch_fp16_cuda"] = (host_to_host(torch.float16), sync)
        out["pytorch_bf16_cuda"] = (host_to_host(torch.bfloat16), sync)
        out["pytorch_bf16_cuda_resident"] = (resident(gpu_model), sync)
        if compile_gpu:
            # reduce-overhead: inductor kernels replayed as one CUDA graph (max-autotune would add
            # minutes of kernel tuning to the check).
            out["pytorch_bf16_cuda_resident_compiled"] = (
                resident(torch.compile(gpu_model, mode="reduce-overhead")), sync)
        if onnx_path is not None and "CUDAExecutionProvider" in ort.get_available_providers():
            gpu = ort.InferenceSession(str(onnx_path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
            out["onnxruntime_cuda"] = (lambda x: gpu.run(["logit"], {"image": x}), None)
    return out


def precision_gaps(model: torch.nn.Module, size: int, device: torch.device, batch: int = 8, seed: int = 0) -> dict:
    """Max and mean |logit - fp32 logit| of autocast bf16 (and fp16 on a GPU) over one seeded batch.

    The fp32 reference on a GPU runs with TF32 off, so it is full fp32, not TF32 convolutions.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=gen).to(device)
    net = copy.deepcopy(model).to(device).eval()
    dtypes = {"bf16": torch.bfloat16, **({"fp16": torch.float16} if device.type == "cuda" else {})}
    with torch.inference_mode():
        tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            ref = net(x).float()
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
        out = {"device": str(device), "batch": batch, "fp32_logit_range": [float(ref.min()), float(ref.max())]}
        for name, dtype in dtypes.items():
            with torch.autocast(device.type, dtype=dtype):
                diff = (net(x).float() - ref).abs()
            out[name] = {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean())}
    return out


def bench_infer(args: argparse.Namespace) -> dict:
    """Latency at batch 1 and throughput at batch 32, PyTorch eager vs ONNX Runtime (and GPU paths)."""
    import numpy as np
    import onnxruntime as ort

    from faketrace.models.detector import Detector
    from faketrace.models.export import export_onnx

    wanted = set(args.runtimes) if args.runtimes else None  # None: every runtime this machine has
    threads = int(args.threads or torch.get_num_threads())
    torch.set_num_threads(threads)
    cuda = args.device != "cpu" and torch.cuda.is_available()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="faketrace-infer-"))
    plan = {1: (args.batch1_warmup, args.batch1_steps), 32: (args.batch32_warmup, args.batch32_steps)}
    results = {"threads": threads, "cuda": cuda, "onnxruntime": ort.__version__, "torch": torch.__version__,
               "machine": platform.machine(), "cpu_count": os.cpu_count(),
               "plan": {str(b): {"warmup": w, "steps": s} for b, (w, s) in plan.items()}, "models": {}}
    if not cuda:
        results["gpu_note"] = ("no CUDA device: PyTorch fp16/bf16 on the GPU and ONNX Runtime CUDA not measured; "
                               "bf16 vs fp32 logits compared on the CPU")
    for spec in args.models:
        name, size = spec.split(":")
        size = int(size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = Detector(name, pretrained=False, input_size=size).eval()
        onnx_path = None
        if wanted is None or any(r.startswith("onnxruntime") for r in wanted):
            onnx_path = work / f"{name}_{size}.onnx"
            export_onnx(model, onnx_path, size)
        rng = np.random.default_rng(0)
        row = {"input_size": size, "params_m": sum(p.numel() for p in model.parameters()) / 1e6, "runtimes": {}}
        row["precision"] = precision_gaps(model, size, torch.device("cuda" if cuda else "cpu"),
                                          batch=args.precision_batch)
        for runtime, (run, sync) in _runtimes(model, onnx_path, threads, cuda, args.compile).items():
            if wanted is not None and runtime not in wanted:
                continue
            r = {}
            for batch, (warmup, steps) in plan.items():
                x = rng.standard_normal((batch, 3, size, size), dtype=np.float32)
                times = _step_seconds(lambda run=run, x=x: run(x), steps, warmup, sync)
                med = statistics.median(times)
                r[str(batch)] = {"median_ms": med * 1e3, "images_s": batch / med, "all_ms": [t * 1e3 for t in times]}
            row["runtimes"][runtime] = r
        rt = row["runtimes"]
        row["ratios"] = {}
        for ref, other in (("pytorch_eager_cpu", "onnxruntime_cpu"), ("pytorch_fp16_cuda", "onnxruntime_cuda")):
            if ref in rt and other in rt:
                row["ratios"][f"{other}/{ref}"] = {b: rt[ref][b]["median_ms"] / rt[other][b]["median_ms"]
                                                   for b in ("1", "32")}
        results["models"][f"{name}@{size}"] = row
        print(f"{name} @ {size} px ({row['params_m']:.1f} M parameters, {threads} threads)")
        for runtime, r in rt.items():
            print(f"  {runtime:<36} batch 1: {r['1']['median_ms']:8.1f} ms   batch 32: {r['32']['images_s']:7.1f} img/s")
        prec = row["precision"]
        for name in ("bf16", "fp16"):
            if name in prec:
                print(f"  {name} vs fp32 logits on {prec['device']} (batch {prec['batch']}): max |diff| "
                      f"{prec[name]['max_abs_diff']:.4g}, mean {prec[name]['mean_abs_diff']:.4g}")
        for pair, ratio in row["ratios"].items():
            print(f"  speed-up {pair}: batch 1 {ratio['1']:.2f}x, batch 32 {ratio['32']:.2f}x")
        del model
    if not cuda:
        print(results["gpu_note"])
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results
