"""Measure the face matcher of `people=` scans on faces you hold (nothing here is downloaded).

    python scripts/measure_face_matching.py rates ROOT [--frames 8] [--out rates.json]
        ROOT holds one folder per identity (images and/or videos of that person only). Every file
        gives its largest face (a video: up to --frames sampled frames). Genuine pairs: two faces of
        one identity from different files; impostor pairs: faces of two identities. Prints n, the
        false-match rate (FMR) and false-non-match rate (FNMR) at a ladder of distances, and the
        impostor quantiles that the threshold-from-target-FMR rule reads.
    python scripts/measure_face_matching.py alignment FILE_OR_FOLDER...
        How far our embeddings (RetinaFace box -> dlib box -> dlib 5-point -> chip) lie from dlib's
        own pipeline end to end (HOG detector -> 5-point -> chip), per face, and the RetinaFace-to-dlib
        box mapping measured on these faces.

Results go to stdout as JSON (and --out). docs/report.md quotes the project's measurement.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
VIDEO_EXT = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


def frames_of(path: Path, n: int) -> list[np.ndarray]:
    from faketrace.datasets.media import read_video_frames

    if path.suffix.lower() in IMAGE_EXT:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        return [] if bgr is None else [cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)]
    if path.suffix.lower() in VIDEO_EXT:
        return list(read_video_frames(path, n).frames.values())
    return []


def rates(root: Path, n_frames: int) -> dict:
    from faketrace.datasets.face_embedding import DlibFaceEmbedder
    from faketrace.datasets.faces import build_detector, pick_largest

    detector, embedder = build_detector("retinaface", threads=1), DlibFaceEmbedder()
    samples = []  # (identity, file, embedding)
    for ident in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(ident.rglob("*")):
            for frame in frames_of(f, n_frames):
                face = pick_largest(detector.detect([frame])[0])
                if face is not None and min(face.box[2] - face.box[0], face.box[3] - face.box[1]) >= 40:
                    samples.append((ident.name, f.name, embedder.embed(frame, [face.box])[0]))
    genuine, impostor, pairs = [], [], set()
    for (ia, fa, ea), (ib, fb, eb) in itertools.combinations(samples, 2):
        d = float(np.linalg.norm(ea - eb))
        if ia == ib and fa != fb:
            genuine.append(d)
        elif ia != ib:
            impostor.append(d)
            pairs.add(tuple(sorted((ia, ib))))
    g, im = np.array(genuine), np.array(impostor)
    ladder = [0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7]
    ids = sorted({s[0] for s in samples})
    return {"root": str(root), "identities": len(ids), "identity_names": ids, "faces": len(samples),
            "files": len({(s[0], s[1]) for s in samples}), "frames_per_video": n_frames,
            "genuine_pairs": len(g), "impostor_pairs": len(im), "impostor_identity_pairs": len(pairs),
            "at_distance": [{"distance": t, "fmr": float((im <= t).mean()) if len(im) else None,
                             "fnmr": float((g > t).mean()) if len(g) else None} for t in ladder],
            "impostor_min": float(im.min()) if len(im) else None,
            "impostor_quantiles": {str(q): float(np.quantile(im, q)) for q in (0.001, 0.01, 0.05, 0.1, 0.5)}
            if len(im) else {},
            "genuine_max": float(g.max()) if len(g) else None,
            "genuine_quantiles": {str(q): float(np.quantile(g, q)) for q in (0.5, 0.9, 0.99)} if len(g) else {},
            "impostor_distances_sorted": [round(float(x), 4) for x in np.sort(im)],
            "genuine_distances_sorted": [round(float(x), 4) for x in np.sort(g)]}


def alignment(paths: list[Path]) -> dict:
    import dlib

    from faketrace.datasets.dlib_models import find_model
    from faketrace.datasets.face_embedding import DlibFaceEmbedder
    from faketrace.datasets.faces import box_iou, build_detector

    detector, embedder, hog = build_detector("retinaface", threads=1), DlibFaceEmbedder(), dlib.get_frontal_face_detector()
    sp5 = dlib.shape_predictor(str(find_model("shape_predictor_5")))
    files = [f for p in paths for f in (sorted(p.rglob("*")) if p.is_dir() else [p]) if f.is_file()]
    moved, boxes = [], []
    for f in files:
        for frame in frames_of(f, 6):
            s = min(1.0, 1000 / max(frame.shape[:2]))
            small = cv2.resize(frame, None, fx=s, fy=s) if s < 1 else frame
            dboxes = [np.array([r.left(), r.top(), r.right(), r.bottom()], np.float64) / s for r in hog(small, 1)]
            for face in detector.detect([frame])[0]:
                best = max(dboxes, key=lambda b: box_iou(face.box, b), default=None)
                if best is None or box_iou(face.box, best) < 0.3:
                    continue
                rect = dlib.rectangle(*(int(round(v)) for v in best))
                native = np.asarray(embedder.net.compute_face_descriptor(np.ascontiguousarray(frame), sp5(frame, rect)))
                ours = embedder.embed(frame, [face.box])[0]
                moved.append(float(np.linalg.norm(native - ours)))
                x0, y0, x1, y1 = face.box
                w, h = x1 - x0, y1 - y0
                boxes.append(((best[0] - x0) / w, (best[1] - y0) / h, (best[2] - x0) / w, (best[3] - y0) / h))
    m = np.array(moved)
    return {"faces": len(m), "embedding_distance_to_dlib_pipeline": {
        "median": float(np.median(m)), "p90": float(np.quantile(m, 0.9)), "max": float(m.max())} if len(m) else None,
        "dlib_box_in_retinaface_units_median": np.median(np.array(boxes), 0).round(3).tolist() if boxes else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("rates")
    r.add_argument("root", type=Path)
    r.add_argument("--frames", type=int, default=8)
    r.add_argument("--out", type=Path)
    a = sub.add_parser("alignment")
    a.add_argument("paths", type=Path, nargs="+")
    a.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    result = rates(args.root, args.frames) if args.cmd == "rates" else alignment(args.paths)
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text)
    shown = {k: v for k, v in result.items() if not k.endswith("_distances_sorted")}
    print(json.dumps(shown, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
