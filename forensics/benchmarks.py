"""`scripts/benchmark.py scan`: items/s and faces/s of the evidence scan, PyTorch and ONNX Runtime.

Each repeat scans a fresh case directory (so nothing is skipped as already done) over the same
copied evidence; the first run is a warm-up. Reported: medians over the timed repeats, and peak
memory of the process.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def _copy_evidence(source: Path, limit: int, dest: Path) -> int:
    files = sorted(p for p in source.rglob("*") if p.is_file() and not p.is_symlink())
    # Evenly spread over the sorted list, so a mixed folder gives a mix of images and videos.
    files = [files[round(i * len(files) / limit)] for i in range(limit)] if len(files) > limit else files
    for p in files:
        target = dest / p.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, target)
    return len(files)


def _scan_once(cfg_overrides: list[str], case_dir: Path, evidence: Path) -> tuple[float, dict]:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    from faketrace.engine.distributed import register_resolvers
    from faketrace.forensics.discover import register_case_resolver
    from faketrace.forensics.scan import scan_from_config

    register_resolvers()
    register_case_resolver()
    configs = Path(__file__).resolve().parents[1] / "configs"
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=["mode=scan", f"inputs=[{evidence}]", "case.id=BENCH",
                                                         "case.operator=benchmark", f"case.dir={case_dir}",
                                                         "scan.progress=false", "allow_unvalidated=true",
                                                         *cfg_overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(case_dir)
    OmegaConf.resolve(cfg)
    start = time.perf_counter()
    summary = scan_from_config(cfg)
    seconds = time.perf_counter() - start
    faces = compared = 0
    with open(case_dir / "scan_results.jsonl") as fh:
        next(fh)
        for line in fh:
            r = json.loads(line)
            faces += len(r.get("faces") or [])
            compared += (r.get("people") or {}).get("faces_compared", 0)
    return seconds, {"items": summary["items"], "faces": faces, "faces_compared_with_people": compared}


def bench_scan(args: argparse.Namespace) -> dict:
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="faketrace-bench-scan-"))
    evidence = work / "evidence"
    n_files = _copy_evidence(Path(args.inputs), args.limit, evidence)
    backends = {"pytorch": [f"ckpt_path={Path(args.ckpt).resolve()}"]}
    if args.model_dir:
        backends["onnxruntime"] = [f"model_dir={Path(args.model_dir).resolve()}"]
    if getattr(args, "people", None):  # the same scans again with a person of interest
        people = [f"people={{benchmark:{Path(args.people).resolve()}}}", "people_consent=benchmark"]
        backends.update({f"{name}+people": [*o, *people] for name, o in list(backends.items())})
    results = {"evidence": str(args.inputs), "files": n_files, "repeats": args.repeats, "backends": {}}
    for name, overrides in backends.items():
        times, counts = [], {}
        for r in range(args.repeats + 1):
            seconds, counts = _scan_once(overrides + list(args.overrides), work / f"case-{name}-{r}", evidence)
            if r:  # run 0 warms caches and loads libraries
                times.append(seconds)
        med = statistics.median(times)
        results["backends"][name] = {"median_seconds": med, "items_per_s": counts["items"] / med,
                                     "faces_per_s": counts["faces"] / med, **counts,
                                     "seconds": [round(t, 3) for t in times]}
        print(f"{name:12s} {counts['items']} items, {counts['faces']} faces: median {med:.2f} s, "
              f"{counts['items'] / med:.1f} items/s, {counts['faces'] / med:.1f} faces/s")
    for name in [n for n in results["backends"] if n.endswith("+people")]:
        with_p, without = results["backends"][name], results["backends"][name.removesuffix("+people")]
        ratio = with_p["items_per_s"] / without["items_per_s"]
        extra = with_p["median_seconds"] - without["median_seconds"]
        per_face = extra / with_p["faces_compared_with_people"] if with_p["faces_compared_with_people"] else None
        results[f"{name}_vs_without_items_per_s"] = ratio
        results[f"{name}_extra_ms_per_face_compared"] = None if per_face is None else per_face * 1000
        print(f"{name}: items/s x{ratio:.2f} of the scan without people; "
              + (f"{per_face * 1000:.1f} ms more per face compared" if per_face is not None else "no face compared"))
    if "onnxruntime" in results["backends"]:
        ratio = results["backends"]["onnxruntime"]["items_per_s"] / results["backends"]["pytorch"]["items_per_s"]
        results["onnx_vs_pytorch_items_per_s"] = ratio
        print(f"ONNX Runtime / PyTorch items/s: {ratio:.2f}")
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return results
