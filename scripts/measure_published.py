"""Score the shipped published detectors on the publishers' development media (docs/zoo.md, docs/published.md).

    python scripts/measure_published.py --meso-images MesoNet/test_images --lrnet-demo LRNet/demo [--out FILE.json]

MesoNet: every shipped MesoNet model on the images under --meso-images (folders df/ and real/),
through the authors' input path (whole image, the spec's resize and scale). LRNet: both shipped
models on each clip of --lrnet-demo/input/ from the publisher's landmark file (--lrnet-demo/landmarks/)
and from faketrace's own landmark path (RetinaFace, dlib 68 points, datasets/landmarks.py), both
without and with the publisher's landmark calibration (datasets/landmark_calibration.py), with the
landmark difference, jitter and the dlib time per face. The media are the publishers' and are
never committed. Prints a JSON record (and writes it to --out).
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from faketrace.datasets.faces import build_detector
from faketrace.datasets.landmarks import load_landmark_predictor, lrnet_features
from faketrace.datasets.media import read_first_frames
from faketrace.datasets.published_crops import scaled_input
from faketrace.models.lrnet import video_vote, windows
from faketrace.models.published import build_published, shipped_names


def meso(folder: Path) -> dict:
    files = sorted(p for p in folder.glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    out = {"items": [{"file": p.name, "label": 0 if p.parent.name == "real" else 1} for p in files]}
    for name in (n for n in shipped_names() if n.startswith("meso")):
        model, entry = build_published(name)
        x = scaled_input([np.asarray(Image.open(p).convert("RGB")) for p in files], entry["spec"]["input"])
        with torch.no_grad():
            out[name] = [round(float(v), 4) for v in torch.sigmoid(model(torch.from_numpy(x))).numpy()]
    return out


def lrnet(demo: Path, max_frames: int) -> dict:
    models = {n: build_published(n)[0] for n in shipped_names() if n.startswith("lrnet")}
    detector = build_detector("retinaface", score_threshold=0.8, nms_threshold=0.4, max_side=640, device="cpu",
                              threads=2)
    predictor = load_landmark_predictor()
    out = {"landmarks": predictor.describe()}
    for clip in sorted((demo / "input").glob("*.mp4")):
        frames = [f for _, f in sorted(read_first_frames(clip, max_frames).frames.items())]
        boxes = []
        for i in range(0, len(frames), 16):
            boxes += [max(d, key=lambda f: f.area).box if d else None for d in detector.detect(frames[i:i + 16])]
        t0 = time.perf_counter()
        # as the scan does (forensics/panel.py): frames before the first face are skipped, a later
        # frame without a face keeps the previous frame's landmarks
        first = next((i for i, b in enumerate(boxes) if b is not None), None)
        if first is None:
            out[clip.stem] = {"frames": len(frames), "with_face": 0}
            continue
        points, detected = [], 0
        for f, b in zip(frames[first:], boxes[first:], strict=True):
            if b is not None:
                points.append(predictor(f, b))
                detected += 1
            else:
                points.append(points[-1])
        ms = (time.perf_counter() - t0) * 1000 / max(detected, 1)
        ours, _ = lrnet_features(frames[first:], np.stack(points), calibrate=False)
        t0 = time.perf_counter()
        calibrated, calibration = lrnet_features(frames[first:], np.stack(points), calibrate=True)
        calibration_ms = (time.perf_counter() - t0) * 1000 / len(points)
        theirs = np.loadtxt(demo / "landmarks" / f"{clip.stem}.txt")
        n = min(len(ours), len(theirs))
        rec = {"frames": len(frames), "with_face": detected, "dlib_ms_per_face": round(ms, 2),
               "calibration": calibration, "calibration_ms_per_frame": round(calibration_ms, 2),
               "mean_abs_diff_vs_publisher": round(float(np.abs(ours[-n:] - theirs[-n:]).mean()), 4),
               "mean_abs_diff_vs_publisher_calibrated": round(float(np.abs(calibrated[-n:] - theirs[-n:]).mean()), 4),
               "jitter_ours": round(float(np.abs(np.diff(ours, axis=0)).mean()), 4),
               "jitter_ours_calibrated": round(float(np.abs(np.diff(calibrated, axis=0)).mean()), 4),
               "jitter_publisher": round(float(np.abs(np.diff(theirs, axis=0)).mean()), 4)}
        for name, model in models.items():
            for source, feats in (("publisher_landmarks", theirs), ("our_landmarks", ours),
                                  ("our_landmarks_calibrated", calibrated)):
                with torch.no_grad():
                    p = model.window_probability(torch.from_numpy(windows(feats.astype(np.float32)))).numpy()
                rec[f"{name}/{source}"] = {"vote": round(video_vote(p), 3), "windows": len(p),
                                           "mean_window_p": round(float(p.mean()), 3)}
        out[clip.stem] = rec
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meso-images", type=Path)
    ap.add_argument("--lrnet-demo", type=Path)
    ap.add_argument("--max-frames", type=int, default=100000, help="frames read from the start of each clip")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    record = {}
    if args.meso_images:
        record["mesonet"] = meso(args.meso_images)
    if args.lrnet_demo:
        record["lrnet"] = lrnet(args.lrnet_demo, args.max_frames)
    text = json.dumps(record, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
