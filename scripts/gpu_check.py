"""The GPU check of issue 24, step by step, within a time budget; one table at the end.

Called by scripts/gpu_check.sh (which installs the carried wheels first); docs/gpu.md explains it.

    python scripts/gpu_check.py install --wheels gpu_wheels [--dry-run]   # only what is missing
    python scripts/gpu_check.py run --out DIR [--budget-s 450] [--dry-run]

`run` makes a small demo data set with crops at the recipes' sizes, then runs the figures (train
benchmark with its per-step breakdown for EfficientNet-B4@380 eager and compiled, Xception@299,
ConvNeXt-T@224; inference at batch 32 with bf16/fp16 against fp32), the tests marked `gpu`, and
the preprocessing and scan benchmarks where their GPU options exist. Every step is a subprocess
with its own time limit, so one that fails or overruns is reported and the rest still run.
--dry-run runs the same steps on CPU with tiny sizes (timm's test_efficientnet at 64 px), to check
the script itself on a machine without a GPU; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable

# The goals, for the table (batch 32, one H200).
TARGETS = {"train_model_only": 900.0, "train_ratio": 0.95, "infer_bf16": 3000.0}


# -- install ---------------------------------------------------------------------------------------

def _dist_name(wheel: Path) -> str:
    return re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()


def missing_wheels(folder: Path) -> list[Path]:
    """The wheels in `folder` whose distribution is not installed in this interpreter."""
    from importlib import metadata

    installed = {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower() for d in metadata.distributions()
                 if d.metadata["Name"]}
    return sorted(w for w in folder.glob("*.whl") if _dist_name(w) not in installed)


def install(args) -> int:
    folder = Path(args.wheels)
    if not folder.is_dir():
        print(f"no wheel folder {folder}: run scripts/gpu_wheels.sh where there is network, and carry it")
        return 1
    todo = missing_wheels(folder)
    print("missing here:", ", ".join(w.name for w in todo) or "nothing")
    if args.dry_run or not todo:
        return 0
    # --no-deps: the image's own packages (torch, OpenCV, numpy ...) are never replaced.
    cmd = [PY, "-m", "pip", "install", "--no-index", "--no-deps", *map(str, todo)]
    return subprocess.run(cmd, env={**os.environ, "PIP_BREAK_SYSTEM_PACKAGES": "1"}).returncode


# -- steps ----------------------------------------------------------------------------------------

class Budget:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def run_step(name: str, cmd: list[str], limit_s: float, budget: Budget, log_dir: Path, rows: list) -> dict:
    """Run one step as a subprocess (stdout and stderr to log_dir/name.log); its outcome goes to rows."""
    limit = min(limit_s, budget.left() - 5)
    row = {"step": name, "command": " ".join(cmd)}
    if limit < 10:
        row.update(status="skipped", note="out of time budget")
        rows.append(row)
        print(f"[{name}] skipped: out of time budget", flush=True)
        return row
    print(f"[{name}] {' '.join(cmd)}  (limit {limit:.0f} s)", flush=True)
    t0 = time.monotonic()
    log = log_dir / f"{name}.log"
    with open(log, "w") as fh:
        try:
            rc = subprocess.run(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, timeout=limit).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    row.update(seconds=round(time.monotonic() - t0, 1), status="ok" if rc == 0 else f"failed ({rc})")
    tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-15:]
    row["note"] = tail[-1].strip() if tail else ""  # pytest's summary line, or the error
    if rc != 0:
        print("\n".join(f"    {line}" for line in tail), flush=True)
    print(f"[{name}] {row['status']} in {row['seconds']} s", flush=True)
    rows.append(row)
    return row


def _subcommand_has(sub: str, flag: str) -> bool:
    """Whether `benchmark.py <sub>` exists and accepts `flag` (the GPU options other work may add)."""
    out = subprocess.run([PY, "scripts/benchmark.py", sub, "--help"], cwd=REPO, capture_output=True, text=True)
    return out.returncode == 0 and flag in out.stdout


def onnx_importable() -> bool:
    """The PyTorch RetinaFace reads its weights from the ONNX file with the `onnx` package, which the
    default wheels leave out (GPU_WHEELS_EXTRA="onnx ml_dtypes"); without it ONNX Runtime detects."""
    return subprocess.run([PY, "-c", "import onnx"], capture_output=True).returncode == 0


def plan(dry: bool, data_dir: Path, out: Path) -> dict:
    """Sizes and overrides of every step: the real figures, or tiny ones on CPU for --dry-run."""
    if dry:
        demo = ["data.generator.identities=10", "data.generator.video_length=6", "data.generator.frame_size=160",
                "data.generator.real_videos_per_identity=1"]
        crops = {"380": ["face.crop_size=64", "face.sampling=uniform", "face.frames_per_video=4"],
                 "299": ["face.crop_size=64", "face.sampling=uniform", "face.frames_per_video=4"]}
        tiny = ["model.backbone=test_efficientnet", "model.input_size=64", "trainer.precision=bf16",
                "loader.batch_size=8"]
        recipe_tiny = [*tiny, "face.crop_size=64"]  # the recipe's crop, at the tiny size
        train = {"b4_eager": ["experiment=dfdc_efficientnet_b4", *recipe_tiny],
                 "b4_compiled": ["experiment=dfdc_efficientnet_b4", *recipe_tiny, "trainer.compile=true",
                                 "trainer.compile_mode=reduce-overhead"],
                 "xception": ["experiment=ffpp_xception_c23", *recipe_tiny],
                 "convnext_t": ["model=convnext_tiny", *tiny]}
        steps = ["--steps", "2", "--warmup", "1", "--repeats", "1"]
        infer = ["--models", "test_efficientnet:64", "--device", "cpu", "--runtimes", "pytorch_eager_cpu",
                 "--batch1-warmup", "1", "--batch1-steps", "2", "--batch32-warmup", "0", "--batch32-steps", "1",
                 "--precision-batch", "2"]
        infer_compiled = ["--models", "test_efficientnet:64", "--device", "cpu", "--runtimes",
                          "pytorch_bf16_cuda_resident_compiled", "--compile", "--batch1-warmup", "1", "--batch1-steps",
                          "2", "--batch32-warmup", "0", "--batch32-steps", "1", "--precision-batch", "2"]
        preprocess = ["--device", "cpu", "--runtimes", "onnx", "--sizes", "480p", "--videos", "1", "--frames", "4",
                      "--frames-per-video", "2", "--workers", "1", "--repeats", "1"]
        scan_video = ["--device", "cpu", "--runtime", "onnx", "--size", "480p", "--seconds", "0.4", "--videos", "1",
                      "--frames-per-video", "4", "--model", "test_efficientnet:64"]
    else:
        # Enough crops that an epoch is tens of batches of 32, so epoch starts do not dominate.
        demo = ["data.generator.identities=60", "data.generator.video_length=16", "data.generator.frame_size=256",
                "data.generator.real_videos_per_identity=1"]
        every = ["face.sampling=uniform", "face.frames_per_video=16"]
        crops = {"380": every, "299": every}
        gpu = ["trainer=gpu", "loader.batch_size=32", "loader.crops_per_video=16"]
        train = {"b4_eager": ["experiment=dfdc_efficientnet_b4", *gpu],
                 "b4_compiled": ["experiment=dfdc_efficientnet_b4", *gpu, "trainer.compile=true",
                                 "trainer.compile_mode=reduce-overhead"],
                 "xception": ["experiment=ffpp_xception_c23", *gpu],
                 "convnext_t": ["model=convnext_tiny", "model.input_size=224", *gpu]}
        steps = ["--steps", "20", "--warmup", "5", "--repeats", "3"]
        timing = ["--batch1-warmup", "5", "--batch1-steps", "30", "--batch32-warmup", "3", "--batch32-steps", "10"]
        infer = ["--models", "efficientnet_b4:380", "legacy_xception:299", "convnext_tiny:224", "--runtimes",
                 "pytorch_fp16_cuda", "pytorch_bf16_cuda", "pytorch_bf16_cuda_resident", *timing]
        infer_compiled = ["--models", "efficientnet_b4:380", "--runtimes", "pytorch_bf16_cuda_resident_compiled",
                          "--compile", *timing]
        detector = ["torch", "onnx"] if onnx_importable() else ["onnx"]
        preprocess = ["--device", "cuda", "--decode", "cuda", "--runtimes", *detector, "--sizes", "720p", "1080p",
                      "--videos", "4", "--frames", "60", "--workers", "1", "4", "--repeats", "2"]
        scan_video = ["--device", "cuda", "--runtime", detector[0], "--decode", "cuda", "--precision", "bf16",
                      "--size", "1080p", "--seconds", "10", "--videos", "4"]
    base = [f"paths.data_dir={data_dir}"]
    faces = {k: f"data.faces_dir={data_dir}/demo/faces_{k}" for k in crops}
    recipe = {"380": "face=dfdc_efficientnet_b4", "299": "face=ffpp_xception_c23"}
    return {
        "demo": [PY, "scripts/make_demo_data.py", *base, *demo, f"hydra.run.dir={out}/runs/make_demo_data"],
        "preprocess": {k: [PY, "scripts/preprocess.py", *base, recipe[k], *crops[k], faces[k], "progress=false",
                           f"workers={max(1, min((os.cpu_count() or 2) - 1, 8))}", f"hydra.run.dir={out}/runs/pre_{k}"]
                       for k in crops},
        "train": {name: [PY, "scripts/benchmark.py", "train", *steps, "--json", str(out / f"train_{name}.json"),
                         *o, "data=demo", *base, faces["299" if name == "xception" else "380"]]
                  for name, o in train.items()},
        "infer": [PY, "scripts/benchmark.py", "infer", *infer, "--work-dir", str(out / "infer"),
                  "--json", str(out / "infer.json")],
        "infer_compiled": [PY, "scripts/benchmark.py", "infer", *infer_compiled, "--work-dir", str(out / "infer"),
                           "--json", str(out / "infer_compiled.json")],
        # The training side's tests (marked gpu) and, where `onnx` is there, the preprocessing side's.
        "tests": [PY, "-m", "pytest", "-q", "tests/test_gpu.py",
                  *(["tests/test_gpu_preprocessing.py"] if onnx_importable() else []), "-p", "no:cacheprovider"],
        "preprocess_bench": [PY, "scripts/benchmark.py", "preprocess", *preprocess, "--work-dir",
                             str(out / "preprocess"), "--json", str(out / "preprocess.json")],
        "scan_video_bench": [PY, "scripts/benchmark.py", "scan-video", *scan_video, "--work-dir", str(out / "scan_video"),
                             "--json", str(out / "scan_video.json")],
    }


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def table(rows: list, out: Path, dry: bool) -> str:
    """One table: each figure with its target, then each step's status."""
    lines = ["", "== GPU check" + (" (DRY RUN on CPU: tiny sizes, numbers mean nothing)" if dry else "") + " ==",
             f"{'figure':<58}{'value':>12}  {'target':<10}{'met':<5}"]

    def add(name, value, fmt="{:.1f}", target=None, higher=True):
        met = "" if target is None or value is None or dry else (
            "yes" if (value >= target if higher else value < target) else "no")
        shown = "n/a" if value is None else fmt.format(value)
        bound = "" if target is None else f"{'>=' if higher else '<'} {target:g}"
        lines.append(f"{name:<58}{shown:>12}  {bound:<10}{met:<5}")

    for name, label in (("b4_eager", "EfficientNet-B4@380 bf16 eager"),
                        ("b4_compiled", "EfficientNet-B4@380 bf16 compiled (CUDA graphs)"),
                        ("xception", "Xception@299 bf16"), ("convnext_t", "ConvNeXt-T@224 bf16")):
        r = _load(out / f"train_{name}.json")
        if r is None:
            add(f"train {label}: not measured", None)
            continue
        b4 = name.startswith("b4")
        add(f"train {label}, model-only img/s (batch {r['batch_size']})", r["median"]["model_only"],
            target=TARGETS["train_model_only"] if b4 else None)
        add(f"train {label}, end-to-end img/s ({r['num_workers']} workers)", r["median"]["end_to_end"])
        add(f"train {label}, end-to-end / model-only", r["ratio_end_to_end_over_model"], "{:.2f}",
            target=TARGETS["train_ratio"] if b4 else None)
        bd = r.get("breakdown")
        if bd:
            worst = sorted(bd["phases"].items(), key=lambda kv: -kv[1]["share"])[:3]
            lines.append(f"    step {bd['step_median_ms']:.1f} ms; largest: " + ", ".join(
                f"{k} {v['median_ms']:.1f} ms ({v['share']:.0%})" for k, v in worst) +
                (f"; host syncs/step {bd['host_syncs_per_step']:g}" if "host_syncs_per_step" in bd else ""))
    inferred = [(name, model, row) for name in ("infer.json", "infer_compiled.json")
                for model, row in ((_load(out / name) or {}).get("models", {})).items()]
    for name, model, row in inferred:
        for runtime, r in row["runtimes"].items():
            add(f"infer {model} {runtime} batch 32 img/s", r["32"]["images_s"],
                target=TARGETS["infer_bf16"] if model.startswith("efficientnet_b4") and "bf16" in runtime else None)
            add(f"infer {model} {runtime} batch 1 ms", r["1"]["median_ms"])
        for dtype in ("bf16", "fp16") if name == "infer.json" else ():
            if dtype in row["precision"]:
                add(f"infer {model} {dtype} vs fp32 max |logit diff| ({row['precision']['device']})",
                    row["precision"][dtype]["max_abs_diff"], "{:.3g}")
    pre = _load(out / "preprocess.json")
    for size, by_runtime in (pre or {}).get("sizes", {}).items():
        for runtime, row in by_runtime.items():
            add(f"preprocess {size} detector {runtime} on {row['device']} alone frames/s", row["detector_frames_s"])
            for workers, p in row["pipeline"].items():
                add(f"preprocess {size} {runtime}, {workers} workers: pipeline / detector", p["efficiency"], "{:.2f}",
                    target=0.8)
    sv = _load(out / "scan_video.json")
    if sv:
        med = sv["median_seconds"]
        add(f"scan-video {sv['size']} {sv['seconds_of_video']:g} s, {sv['frames_classified']} classified: s per video",
            med["total"], "{:.3f}", target=0.5, higher=False)
        lines.append("    " + ", ".join(f"{k} {med[k]:.3f} s" for k in ("decode", "detect", "crop", "classify")) +
                     f"; decoder {', '.join(sv['decoder_used'])}; folder {sv['folder_videos_s']:.2f} videos/s")
    lines.append("")
    lines.append(f"{'step':<22}{'status':<14}{'seconds':>8}  note")
    for r in _load(out / "steps.json") or []:
        lines.append(f"{r['step']:<22}{r['status']:<14}{r.get('seconds', ''):>8}  {r.get('note', '')[:90]}")
    return "\n".join(lines)


def run(args) -> int:
    dry = args.dry_run
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    budget = Budget(args.budget_s)
    rows: list[dict] = []

    import torch

    env = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
           "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
           "cpus": len(os.sched_getaffinity(0)), "dry_run": dry}
    print("environment:", json.dumps(env), flush=True)
    (out / "environment.json").write_text(json.dumps(env, indent=2))
    if not dry and not torch.cuda.is_available():
        print("no CUDA device here: use --dry-run to check the script on CPU")
        return 2

    p = plan(dry, out / "data", out)

    def step(name, cmd, limit):
        row = run_step(name, cmd, limit, budget, logs, rows)
        (out / "steps.json").write_text(json.dumps(rows, indent=2))
        return row["status"] == "ok"

    data_ok = step("demo_data", p["demo"], 90)
    crops_ok = {k: data_ok and step(f"preprocess_{k}", cmd, 90) for k, cmd in p["preprocess"].items()}
    # Most telling first, compilation (minutes) after the eager figures, so an overrun costs the least.
    if crops_ok["380"]:
        step("train_b4_eager", p["train"]["b4_eager"], 120)
    step("infer", p["infer"], 150)
    if crops_ok["380"]:
        step("train_b4_compiled", p["train"]["b4_compiled"], 240)
    step("gpu_tests", p["tests"], 150)
    if crops_ok["299"]:
        step("train_xception", p["train"]["xception"], 90)
    if crops_ok["380"]:
        step("train_convnext_t", p["train"]["convnext_t"], 90)
    step("infer_b4_compiled", p["infer_compiled"], 150)
    # The preprocessing side of issue 24 (docs/gpu_preprocessing.md): run where its benchmarks exist.
    for name, sub, flag in (("preprocess_bench", "preprocess", "--decode"), ("scan_video_bench", "scan-video", "--device")):
        if _subcommand_has(sub, flag):
            step(name, p[name], 150)
        else:
            rows.append({"step": name, "status": "absent", "note": f"benchmark.py {sub} has no {flag} option"})
    (out / "steps.json").write_text(json.dumps(rows, indent=2))
    text = table(rows, out, dry)
    print(text)
    (out / "table.txt").write_text(text + "\n")
    required = {"demo_data", "preprocess_380", "preprocess_299", "train_b4_eager", "train_xception", "train_convnext_t",
                "infer", "infer_b4_compiled", "gpu_tests", "train_b4_compiled"}
    failed = [r["step"] for r in rows if r["step"] in required and r["status"] != "ok"]
    if failed:
        print("not ok:", ", ".join(failed))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    ins = sub.add_parser("install", help="pip install the carried wheels that are not installed here")
    ins.add_argument("--wheels", default="gpu_wheels")
    ins.add_argument("--dry-run", action="store_true", help="only list them")
    ins.set_defaults(fn=install)
    rn = sub.add_parser("run", help="the figures and GPU tests, one table")
    rn.add_argument("--out", default="outputs/gpu_check")
    rn.add_argument("--budget-s", type=float, default=450.0, help="all steps together (the check has 8 minutes)")
    rn.add_argument("--dry-run", action="store_true", help="the same steps on CPU with tiny sizes")
    rn.set_defaults(fn=run)
    args = parser.parse_args(argv)
    if os.environ.get("GPU_CHECK_DRY_RUN") == "1":
        args.dry_run = True
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
