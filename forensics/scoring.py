"""Scoring one media file: decode, find every face, run the model, calibrate, band the result.

The face pipeline is the checkpoint's own (datasets/face_pipeline.py, the code that made the
training crops), with every face kept: an item's score is the highest calibrated probability
among its faces (a video: each frame's highest, then the model's video rule, then the video map
of its Platt scaling). Scores are rounded to 6 decimals so that batch composition cannot change them.

Two model back-ends: an export folder (model.onnx + model_card.json) runs through ONNX Runtime
and needs no torch; a checkpoint runs through PyTorch, on the GPU when there is one.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faketrace.datasets import still_formats
from faketrace.datasets.face_pipeline import PreprocessSpec, choose_faces, model_crop, spec_input
from faketrace.datasets.image_pipeline import ImageSpec, aggregate_tiles, image_model_input, prepare
from faketrace.datasets.io import sha256_file
from faketrace.datasets.media import (
    DECODER_MAX_RSS_BYTES,
    MAX_IMAGE_PIXELS,
    MAX_ITEM_PIXELS,
    DecodeError,
    DecodeTimeout,
    ImageTooLarge,
    IsolatedDecoder,
    ResourceLimit,
    sniff_media_type,
    sniff_still_format,
)
from faketrace.forensics.archives import ArchiveLimits, container_status
from faketrace.forensics.combine import RULE as COMBINATION_RULE
from faketrace.forensics.combine import Domain, Opinion, combine
from faketrace.models.onnx_safety import check_external_data
from faketrace.models.signing import SignaturePolicy, check_signature
from faketrace.models.spec import DetectorSpec, InputSpec, ModelSpec, OutputSpec, card_spec, checkpoint_spec

DECIMALS = 6
VERDICTS = ("likely_manipulated", "inconclusive", "no_evidence_of_manipulation")
VERDICT_WORDS = {"likely_manipulated": "likely manipulated", "inconclusive": "inconclusive",
                 "no_evidence_of_manipulation": "no evidence of manipulation"}
# Statuses of an item. Only the first two are results; the rest say why there is none.
# archive: a container whose members follow as items; out_of_scope: a disk image (forensics/archives.py);
# archive_limit: members (or a nested archive) not scanned because a limit was reached.
STATUSES = ("scanned", "no_face", "empty", "unsupported", "decode_error", "oversized", "resource_limit", "timeout",
            "missing", "refused", "error", "archive", "archive_limit", "out_of_scope")
FAILED_STATUSES = ("empty", "unsupported", "decode_error", "oversized", "resource_limit", "timeout", "refused",
                   "error", "archive_limit")
# Frames narrower than this, or longer than this many times their width (either way), hold no face
# or image region any model here can judge: such an item is `unsupported`, said with its size.
MIN_FRAME_SIDE = 8
MAX_ASPECT_RATIO = 100
# Fallback bands when a model carries no fitted thresholds (said in every output).
DEFAULT_BANDS = (0.3, 0.7)
VIDEO_RULES = ("mean", "median", "max", "max_face_mean", "confident")


def r6(x: float | None) -> float | None:
    return None if x is None else round(float(x), DECIMALS)


def sigmoid(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def logit(p, eps: float = 1e-7) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), eps, 1 - eps)
    return np.log(p) - np.log1p(-p)


def video_rule(frame_probs: np.ndarray, rule: str) -> float:
    """One video probability from per-frame probabilities (each the frame's highest face score)."""
    p = np.asarray(frame_probs, np.float64)
    if rule in ("mean", "max_face_mean"):  # frames already carry their highest face
        return float(p.mean())
    if rule == "median":
        return float(np.median(p))
    if rule == "max":
        return float(p.max())
    if rule == "confident":
        from faketrace.engine.metrics import confident_strategy

        return confident_strategy(p)
    raise ValueError(f"unknown video rule {rule!r}; known: {VIDEO_RULES}")


def frame_probabilities(logits, calibration: dict) -> np.ndarray:
    """Calibrated frame (crop or tile) probabilities: sigmoid(logit / T + b), as engine/calibration.py."""
    return sigmoid(np.asarray(logits, np.float64) / float(calibration.get("temperature", 1.0))
                   + float(calibration.get("bias", 0.0)))


def item_probability(aggregated: float, n_frames: int, calibration: dict) -> float:
    """An item's probability from its aggregated frame probabilities, as evaluation computes it.

    Items with at least `video_min_frames` scored frames go through the video map
    sigmoid(logit(v) / T_video + b_video); a single frame keeps its probability (calibration
    records of version 1 carry no video_min_frames and rescaled every item).
    """
    if n_frames >= int(calibration.get("video_min_frames", 1)):
        return float(sigmoid(logit(aggregated) / float(calibration.get("video_temperature", 1.0))
                             + float(calibration.get("video_bias", 0.0))))
    return float(aggregated)


def calibration_summary(calibration: dict) -> dict:
    keys = ("method", "temperature", "bias", "video_temperature", "video_bias", "video_min_frames")
    return {k: (r6(calibration[k]) if isinstance(calibration[k], float) else calibration[k])
            for k in keys if k in calibration}


# -- models ---------------------------------------------------------------------------------------
def fake_logits(raw: np.ndarray, output: OutputSpec, n: int) -> np.ndarray:
    """The network's raw outputs for `n` inputs as logits of P(manipulated), as the spec's output section says.

    logit: as is; sigmoid: the logit of the probability; softmax2: the log-odds of the class
    `class_index` against the other. A model whose positive class is "real" has its logit negated.
    """
    raw = np.asarray(raw, np.float64)
    if output.activation == "softmax2":
        pairs = raw.reshape(n, 2)
        z = pairs[:, output.class_index] - pairs[:, 1 - output.class_index]
    elif output.activation == "sigmoid":
        z = logit(raw.reshape(n))
    else:
        z = raw.reshape(n)
    return -z if output.positive_class == "real" else z


@dataclass
class ScanModel:
    """A model with everything a scan needs to use it as it was trained and calibrated.

    `spec` (models/spec.py) is what the model looks at; the properties below are views of it in the
    vocabulary of the pipelines that consume it.
    """

    kind: str  # pytorch | onnx
    path: str
    sha256: str
    spec: ModelSpec
    calibration: dict
    fit_for_casework: bool
    casework_note: str
    card: dict  # what the custody record and the report say about the model
    logits: Callable[[np.ndarray], np.ndarray]  # logits of P(manipulated), whatever the network's own output
    device: str = "cpu"
    module: object | None = None  # the torch module behind `logits` (PyTorch checkpoints): Grad-CAM needs it
    # A published model's own crop rule, (frame, Face) -> RGB crop at the input size (forensics/panel.py);
    # None: the face spec's crop, as in training.
    crop: Callable | None = None

    @property
    def warning(self) -> str | None:
        return None if self.fit_for_casework else f"NOT VALIDATED FOR CASEWORK: {self.casework_note}"

    @property
    def level(self) -> str:
        return self.spec.level

    @property
    def face_spec(self) -> PreprocessSpec | None:
        """The face pipeline's settings for this model's crops (face and clip levels)."""
        if self.spec.face is None:
            return None
        spec, face = self.spec, self.spec.face
        if self.crop is not None:  # the model makes its own crops: the pipeline only detects and chooses faces
            face = dataclasses.replace(face, crop_rule="square_margin")
        if self.stand_in_detector:
            face = dataclasses.replace(face, detector=dataclasses.replace(face.detector, name="retinaface"))
        return PreprocessSpec.from_dict(spec.replace(face=face).face_pipeline_dict())

    @property
    def stand_in_detector(self) -> str | None:
        """Why RetinaFace finds the faces for a published model whose publisher used another detector
        (dlib, MTCNN: not part of faketrace), or None. Its crops then differ from the publisher's; the
        scan says so in its warnings."""
        face = self.spec.face
        if face is None or not self.spec.published or face.detector.name.startswith("retinaface"):
            return None
        return (f"the publisher of {self.spec.source.name} found faces with {face.detector.name}, which faketrace does "
                "not have: RetinaFace stands in, at the published crop rule, margin and size, so crops and scores "
                "can differ from the publisher's")

    @property
    def image_spec(self) -> ImageSpec | None:
        return self.spec.image

    @property
    def input_spec(self) -> InputSpec:
        return self.spec.input

    @property
    def aggregation(self) -> str:
        """The video rule the model was evaluated with."""
        return self.spec.video.rule

    @property
    def frames_per_video(self) -> int | None:
        return self.spec.video.frames_per_video

    @property
    def detector(self) -> DetectorSpec | None:
        """The face detector the model's crops were made with."""
        return self.spec.face.detector if self.spec.face is not None else None


def refuse_clip_models(spec: ModelSpec, source: str | Path) -> None:
    """The scan scores face crops one at a time; a video-family model scores clips of consecutive
    crops, so scoring it frame by frame would not be the model that was evaluated."""
    if spec.clip_length > 1:
        raise ValueError(f"{source}: this model scores clips of {spec.clip_length} consecutive face crops (the video "
                         "family); the scan scores single crops, so it cannot use it. Evaluate it with evaluate.py "
                         "on a preprocessed data set, or scan with a frame-level model")


def scan_model(kind: str, path: Path, spec: ModelSpec, record: dict, card: dict, raw_outputs: Callable,
               device: str = "cpu", module: object | None = None, crop: Callable | None = None) -> ScanModel:
    """The one way a ScanModel is made, whatever the back-end: `record` is the checkpoint or the model
    card (calibration, casework fitness), `raw_outputs` the network's own outputs for a batch, `crop`
    a published model's own crop rule (None: the face pipeline's)."""
    refuse_clip_models(spec, path)

    def logits(x: np.ndarray) -> np.ndarray:
        return fake_logits(raw_outputs(x), spec.output, len(x))

    return ScanModel(kind=kind, path=str(Path(path).resolve()), sha256=sha256_file(path), spec=spec,
                     calibration=record.get("calibration") or {},
                     fit_for_casework=bool(record["fit_for_casework"]), casework_note=record.get("casework_note", ""),
                     card=card, logits=logits, device=device, module=module, crop=crop)


def published_crop(spec: ModelSpec, record: dict) -> Callable | None:
    """An imported published model's own crop where the face pipeline has no such rule, else None.

    `box_margin` (SBI, the DFDC winner): the detector box grown on each axis, cut at the frame's
    resolution, then brought to the input size by the publisher's resize rule, which the import
    recorded (`published.publisher_preprocessing.resize`: a stretch, or the DFDC winner's isotropic
    resize onto a black square)."""
    if spec.face is None or spec.face.crop_rule != "box_margin":
        return None
    from faketrace.datasets.published_crops import box_margin_crop
    from faketrace.datasets.published_input import resize_published

    resize = ((record.get("published") or {}).get("publisher_preprocessing") or {}).get("resize")
    size = {"size": list(spec.input.size), "interpolation": spec.input.interpolation}
    margin = spec.face.margin

    def crop(frame: np.ndarray, face) -> np.ndarray:
        return resize_published(box_margin_crop(frame, face.box, margin), size, resize)

    return crop


def load_onnx_model(export_dir: str | Path, threads: int | None = None,
                    signatures: SignaturePolicy | None = None) -> ScanModel:
    """An export folder (scripts/export.py): model.onnx and model_card.json; needs no torch.

    The folder's signature (models/signing.py) is checked under `signatures` before anything in it
    is parsed; what was found (signer, key, or `unsigned`) goes into the card the custody record keeps.
    """
    import onnxruntime as ort

    folder = Path(export_dir)
    card_path, onnx_path = folder / "model_card.json", folder / "model.onnx"
    for p in (card_path, onnx_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found: model_dir must be a folder written by scripts/export.py")
    signature = check_signature(folder, signatures or SignaturePolicy())
    card = json.loads(card_path.read_text())
    # Integrity before interpretation: the model file's hash and its external-data paths are checked
    # before the card's spec is parsed or the model is loaded (tests/test_untrusted_models.py).
    onnx_sha = sha256_file(onnx_path)
    listed = card.get("files", {}).get("model.onnx", {}).get("sha256")
    if listed and listed != onnx_sha:
        raise ValueError(f"{onnx_path} has SHA-256 {onnx_sha}, but its model card lists {listed}: the folder was "
                         "altered after export")
    check_external_data(onnx_path)  # no external-data path may leave the export folder
    spec = card_spec(card)  # validated; cards written before the spec are migrated
    refuse_clip_models(spec, folder)
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
    session = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
    in_name, out_name = session.get_inputs()[0].name, session.get_outputs()[0].name

    def raw_outputs(x: np.ndarray) -> np.ndarray:
        return session.run([out_name], {in_name: x})[0]

    summary = {k: card.get(k) for k in ("name", "family", "backbone", "task", "training", "warning")}
    return scan_model("onnx", onnx_path, spec, card, {**summary, "model_card_sha256": sha256_file(card_path),
                                                      "signature": signature.to_dict()}, raw_outputs)


def load_torch_model(ckpt_path: str | Path, device: str = "auto") -> ScanModel:
    """A faketrace checkpoint, loaded without unpickling code, run through PyTorch."""
    import torch

    from faketrace.engine.checkpoint import load_checkpoint
    from faketrace.engine.inference import model_from_checkpoint

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    ckpt = load_checkpoint(ckpt_path)  # validated; checkpoints written before the spec are migrated
    spec = checkpoint_spec(ckpt)
    refuse_clip_models(spec, ckpt_path)
    model = model_from_checkpoint(ckpt).to(device)

    def raw_outputs(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x).to(device)).float().cpu().numpy()

    arch = ckpt["architecture"]
    card = {"name": f"faketrace-{arch['family']}-{arch['backbone']}",
            "family": arch["family"], "backbone": arch["backbone"],
            "training": {"data": ckpt.get("data"), "epoch": ckpt.get("epoch"), "monitor": ckpt.get("monitor"),
                         "validation_metrics": (ckpt.get("metrics") or {}).get("best_val")},
            "git_sha": ckpt.get("git_sha"), "versions": ckpt.get("versions")}
    return scan_model("pytorch", Path(ckpt_path), spec, ckpt, card, raw_outputs, device=device, module=model,
                      crop=published_crop(spec, ckpt))


def _odd_geometry(decode: dict) -> str | None:
    """Why frames of this shape cannot be judged (a 65535 x 1 image), or None."""
    w, h = decode.get("width"), decode.get("height")
    if not w or not h:
        return None
    short, long = min(w, h), max(w, h)
    if short < MIN_FRAME_SIDE:
        return (f"{w}x{h} pixels: a side under {MIN_FRAME_SIDE} pixels holds no face or image region the models "
                "can judge; not assessed")
    if long / short > MAX_ASPECT_RATIO:
        return (f"{w}x{h} pixels: an aspect ratio of {long / short:.0f}:1, above {MAX_ASPECT_RATIO}:1, is no "
                "photograph or video frame the models can judge; not assessed")
    return None


# -- bands ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bands:
    """p >= upper: likely manipulated; p < lower: no evidence; between: inconclusive."""

    lower: float
    upper: float
    source: str

    def verdict(self, p: float) -> str:
        if p >= self.upper:
            return "likely_manipulated"
        return "no_evidence_of_manipulation" if p < self.lower else "inconclusive"


def bands_for(calibration: dict, level: str, override: dict | None = None) -> Bands:
    """Bands from the model's thresholds at `level` ("video": evaluation's item level, stills included).

    Upper: the threshold that kept the false-positive rate at or below the target on validation
    videos; lower: the equal-error-rate threshold. Both were fitted on validation data, never test.
    """
    if override and override.get("lower") is not None and override.get("upper") is not None:
        lower, upper = float(override["lower"]), float(override["upper"])
        if not 0 <= lower <= upper <= 1:
            raise ValueError(f"bands need 0 <= lower <= upper <= 1, got {lower}, {upper}")
        return Bands(lower, upper, "set by the operator in the scan config (scan.bands)")
    t = (calibration.get("thresholds") or {}).get(level) or {}
    upper, lower = t.get("at_target_fpr"), t.get("eer")
    if upper is None or lower is None:
        return Bands(*DEFAULT_BANDS, "defaults: this model has no thresholds fitted on validation data "
                                     "(run scripts/calibrate.py), so the bands are not backed by measured error rates")
    fpr = t.get("target_fpr")
    upper_how = (f"upper = one-sided 95 % tolerance bound on the real validation scores' {1 - fpr:g} quantile "
                 f"(too few reals to measure FPR {fpr} directly)" if t.get("upper_rule") == "tolerance bound"
                 else f"upper = threshold keeping FPR <= {fpr}")
    return Bands(min(float(lower), float(upper)), float(upper),
                 f"fitted on validation data at {level} level: {upper_how}, lower = equal-error-rate threshold")


# -- items ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScanOptions:
    frames_per_video: int = 32
    # Of a video's decoded frames, the image-level model scores this many, spread evenly (None: all):
    # its own evaluation count, so a clip costs it what it cost in evaluation, not tiles x 32 frames.
    image_frames_per_video: int | None = None
    video_rule: str = "mean"
    batch_size: int = 32
    detector_batch: int = 16
    min_face_px: int = 48  # faces smaller than this (shorter box side) are outside what the model judges
    min_jpeg_quality: int = 50  # harder-compressed JPEGs are outside it too
    min_video_bits_per_pixel: float = 0.02  # bits per pixel per frame below this: heavy compression
    max_file_bytes: int = 8 << 30
    max_image_pixels: int = MAX_IMAGE_PIXELS
    max_item_pixels: int = MAX_ITEM_PIXELS  # frames x area one item may decode (fewer frames beyond it)
    decoder_max_rss_bytes: int | None = DECODER_MAX_RSS_BYTES  # the decoder process is killed above it
    video_time_limit_s: float | None = 300.0
    image_time_limit_s: float | None = 60.0
    isolate_decoding: bool = True  # decode in a child process: a crash or hang costs one item
    decode_grace_s: float = 30.0  # the child is killed this long after the item's time limit
    bands_override: dict | None = None
    decode: str = "cpu"  # where videos are decoded: cpu | cuda | auto (datasets/media.py DECODE_MODES)


class MediaScorer:
    """Scores files with a face-level model, an image-level model, or both.

    With both, each item reports both scores and verdicts; forensics/combine.py decides (only a
    model inside its training domain can; face-based models decide items with a face), and every
    item carries `decided_by`, `why` and each model's opinion. An item without a face still gets
    its image-level score.
    """

    COMBINATION = COMBINATION_RULE

    def __init__(self, model: ScanModel | None, detector, options: ScanOptions, image_model: ScanModel | None = None,
                 people=None):
        """`people`: a forensics.people.PeopleMatcher: every face found is also compared with the people of
        interest (with an image-level model only, faces are detected for that purpose alone)."""
        self.people = people
        if model is not None and model.level == "image":
            if image_model is not None:
                raise ValueError("two image-level models given; the second model must be face-level")
            model, image_model = None, model
        if model is None and image_model is None:
            raise ValueError("a scan needs a face-level model, an image-level model, or both")
        self.model, self.image_model, self.detector, self.options = model, image_model, detector, options
        if model is not None:
            # Every face is scored, with the crop geometry the model was trained on.
            self.spec = dataclasses.replace(model.face_spec, face_policy="all")
            # Item-level thresholds (evaluation's video-level table holds videos and stills alike).
            self.bands = {"item": bands_for(model.calibration, "video", options.bands_override)}
        else:
            self.spec = PreprocessSpec()  # frame sampling of videos only
            self.bands = {}
        if image_model is not None:
            self.image_bands = {"item": bands_for(image_model.calibration, "video", options.bands_override)}
        self.domains = {"face": Domain.of(model) if model is not None else Domain(),
                        "image": Domain.of(image_model) if image_model is not None else Domain()}
        self.decoder = IsolatedDecoder(isolate=options.isolate_decoding, grace_s=options.decode_grace_s,
                                       max_rss_bytes=options.decoder_max_rss_bytes)
        self.archive_limits = ArchiveLimits()  # the scan sets its configured limits

    def close(self) -> None:
        self.decoder.close()

    def score_file(self, path: Path) -> dict:
        """Result fields of one file (status, decode facts, faces, score, verdict); never raises DecodeError."""
        size = path.stat().st_size
        kind = sniff_media_type(path)
        out: dict = {"media_type": kind}
        if kind == "empty":
            return {**out, "status": "empty", "reason": "the file is empty (0 bytes)"}
        if kind == "unknown":
            container = container_status(path, self.archive_limits)  # an archive or a disk image
            if container is not None:
                return {**out, **container}
            return {**out, "status": "unsupported", "reason": "not an image or video format recognised from its bytes"}
        if size > self.options.max_file_bytes:
            return {**out, "status": "oversized",
                    "reason": f"{size} bytes, above the limit of {self.options.max_file_bytes} (scan.max_file_bytes)"}
        if kind == "image":
            still = sniff_still_format(path)
            missing = still_formats.missing_decoder(still) if still else None
            if missing:  # an optional decoder (HEIF, JPEG XL) this installation does not have
                return {**out, "status": "unsupported", "reason": missing}
        try:
            if kind == "image":
                frames, decode = self._image(path)
            else:
                frames, decode = self._video(path, size)
        except DecodeTimeout as exc:
            return {**out, "status": "timeout", "reason": str(exc)}
        except ImageTooLarge as exc:
            return {**out, "status": "oversized", "reason": str(exc)}
        except ResourceLimit as exc:
            return {**out, "status": "resource_limit", "reason": str(exc)}
        except DecodeError as exc:  # DecoderCrashed included
            return {**out, "status": "decode_error", "reason": str(exc)}
        if isinstance(frames, str):  # a video that gave no frame at all
            return {**out, "status": decode.pop("status"), "reason": frames, "decode": decode}
        out["decode"] = decode
        odd = _odd_geometry(decode)
        if odd:
            return {**out, "status": "unsupported", "reason": odd}
        # Pages of a TIFF or HEIF are separate pictures: every one is scored, none is a video frame.
        animated = kind == "video" or (decode.get("n_frames", 1) > 1 and not decode.get("pages"))
        if self.model is not None:
            out.update(self._score_frames(frames, animated))
            out = self._scope(out)
        elif self.people is not None:
            out["people"] = self._people_only(frames)
        if self.image_model is None:
            return self._combine(out, None, animated)
        image_level = self._scope({**self._score_image_level(frames, animated), "decode": decode})
        image_level.pop("decode")
        return self._combine(out, image_level, animated)

    # -- decoding --
    def _image(self, path: Path) -> tuple[dict, dict]:
        img = self.decoder("read_image_frames", path, max_frames=self.options.frames_per_video,
                           max_item_pixels=self.options.max_item_pixels, hard_limit_s=self.options.image_time_limit_s)
        decode = {"format": img.format, "width": img.width, "height": img.height, "n_frames": img.n_frames,
                  "frames_scored": len(img.frames), "jpeg_quality_estimate": img.jpeg_quality, "partial": False}
        if img.pages:
            decode["pages"] = True
            decode["partial"] = bool(img.pages_not_decoded)  # the note says how many and why
        if img.note:
            decode["frames_note"] = img.note
        return img.frames, decode

    def _video(self, path: Path, size: int) -> tuple[dict | str, dict]:
        o, spec = self.options, self.spec
        v = self.decoder("read_video_frames", path, o.frames_per_video, sampling=spec.sampling, every_k=spec.every_k,
                         time_limit_s=o.video_time_limit_s, hard_limit_s=o.video_time_limit_s,
                         max_item_pixels=o.max_item_pixels, decode=o.decode)
        error = v.error.replace(str(path), path.name) if v.error else None
        decode = {"frames_claimed": v.expected_frames, "frames_decoded": v.decoded_frames,
                  "frames_sampled": len(v.sampled), "frames_read": len(v.frames), "fps": r6(v.fps),
                  "partial": bool(error), "decode_note": error}
        if o.decode != "cpu":  # asked for the GPU's decoder: say where the frames were decoded, and why not there
            decode["decoder"] = v.decoder
            if v.decoder_note:
                decode["decoder_note"] = v.decoder_note
        if v.note:
            decode["frames_note"] = v.note
        if not v.frames:
            decode["status"] = "timeout" if v.timed_out else "decode_error"
            return error or "no frame could be decoded", decode
        first = next(iter(v.frames.values()))
        h, w = first.shape[:2]
        duration = v.decoded_frames / v.fps if v.fps else None
        decode.update(width=int(w), height=int(h), duration_s=r6(duration))
        if duration:
            decode["bits_per_pixel"] = r6(size * 8 / duration / (w * h * v.fps))
        if v.timed_out:
            decode["decode_note"] = f"time limit reached; scored the frames read before it: {error}"
        return v.frames, decode

    # -- model --
    def _score_frames(self, frames: dict[int, np.ndarray], animated: bool) -> dict:
        order = sorted(frames)
        detections = []
        for i in range(0, len(order), self.options.detector_batch):
            detections.extend(self.detector.detect([frames[k] for k in order[i:i + self.options.detector_batch]]))
        chosen = [c for per_frame in choose_faces(order, detections, self.spec) for c in per_frame]
        result = {"n_faces_detected": int(sum(len(d) for d in detections)),
                  "frames_with_face": int(sum(bool(d) for d in detections))}
        if not chosen:
            return {**result, "status": "no_face", "reason": "no face above the detector threshold in the frames "
                                                            "scored; not assessed (no score is given)"}
        people_item, people_faces = self.people.match(frames, chosen) if self.people is not None else (None, {})
        crop = self.model.crop or (lambda frame, face: model_crop(frame, face, self.spec))
        crops = [crop(frames[c.frame_index], c.face) for c in chosen]
        x = spec_input(crops, self.model.input_spec)
        logits = np.concatenate([self.model.logits(x[i:i + self.options.batch_size])
                                 for i in range(0, len(x), self.options.batch_size)])
        cal = self.model.calibration
        probs = frame_probabilities(logits, cal)
        faces = []
        for c, lg, p in zip(chosen, logits, probs, strict=True):
            b = c.face.box
            faces.append({"frame_index": int(c.frame_index), "face_rank": int(c.rank), "track_id": int(c.track_id),
                          "box": [round(float(v), 2) for v in b], "detector_score": r6(c.face.score),
                          "size_px": round(float(min(b[2] - b[0], b[3] - b[1])), 2),
                          "logit": r6(lg), "probability": r6(p)})
            if people_faces.get(len(faces) - 1):
                faces[-1]["people"] = people_faces[len(faces) - 1]
        per_frame: dict[int, float] = {}
        for f, p in zip(faces, probs, strict=True):
            per_frame[f["frame_index"]] = max(per_frame.get(f["frame_index"], 0.0), float(p))
        if animated:
            level, rule = "video", self.options.video_rule
            aggregated = video_rule(np.array([per_frame[k] for k in sorted(per_frame)]), rule)
            how = f"{rule} over frames of each frame's highest face probability, then the video map"
        else:
            level, rule = "frame", None
            aggregated = float(probs.max())
            how = "highest calibrated probability among the faces" + (
                f" of all {len(frames)} pages" if len(frames) > 1 else "")
        probability = item_probability(aggregated, len(per_frame), cal)
        top = int(np.argmax(probs))
        result.update(status="scanned", reason=None, faces=faces,
                      frame_scores=[{"frame_index": k, "probability": r6(per_frame[k])} for k in sorted(per_frame)],
                      most_suspicious_face=faces[top],
                      score={"probability": r6(probability), "level": level, "rule": rule, "how": how,
                             "calibration": calibration_summary(cal)})
        result.update(self._verdict(probability, faces))
        if people_item is not None:
            result["people"] = people_item
        return result

    def _people_only(self, frames: dict[int, np.ndarray]) -> dict:
        """Faces found only to look for the people of interest (no face-level model in this scan)."""
        order = sorted(frames)
        detections = []
        for i in range(0, len(order), self.options.detector_batch):
            detections.extend(self.detector.detect([frames[k] for k in order[i:i + self.options.detector_batch]]))
        chosen = [c for per_frame in choose_faces(order, detections, PreprocessSpec(face_policy="all"))
                  for c in per_frame]
        return self.people.match(frames, chosen)[0]

    def _score_image_level(self, frames: dict[int, np.ndarray], animated: bool) -> dict:
        """Whole-image score: tiles at native resolution, tile rule per frame, then the video rule."""
        m, spec = self.image_model, self.image_model.image_spec
        cal = m.calibration
        per_frame, tiles_of = {}, {}
        keys, n = sorted(frames), self.options.image_frames_per_video
        if animated and n and len(keys) > n:
            keys = sorted({keys[int(round(x))] for x in np.linspace(0, len(keys) - 1, int(n))})
        for k in keys:
            x, boxes = image_model_input(frames[k], spec, m.input_spec)
            logits = np.concatenate([m.logits(x[i:i + self.options.batch_size])
                                     for i in range(0, len(x), self.options.batch_size)])
            probs = frame_probabilities(logits, cal)
            per_frame[k] = aggregate_tiles(probs, spec.aggregation)
            # Boxes are in the coordinates of the image the model worked at (resized only when the
            # spec says so); its size lets the report draw the tile map over the frame.
            h, w = prepare(frames[k], spec).shape[:2] if spec.resize else frames[k].shape[:2]
            tiles_of[k] = {"frame_index": int(k), "boxes": [list(map(int, b)) for b in boxes],
                           "probabilities": [r6(p) for p in probs], "image_size": [int(h), int(w)]}
        if animated:
            level, rule = "video", self.options.video_rule
            aggregated = video_rule(np.array([per_frame[k] for k in sorted(per_frame)]), rule)
            how = f"{spec.aggregation} over tiles per frame, {rule} over frames, then the video map"
        elif len(per_frame) > 1:  # pages of a multi-page still: the most suspicious page decides
            level, rule = "frame", None
            aggregated = max(per_frame.values())
            how = f"{spec.aggregation} of the calibrated tile probabilities, highest of {len(per_frame)} pages"
        else:
            level, rule = "frame", None
            aggregated = per_frame[min(per_frame)]
            how = f"{spec.aggregation} of the calibrated tile probabilities"
        probability = item_probability(aggregated, len(per_frame), cal)
        top = max(per_frame, key=lambda k: (per_frame[k], -k))
        bands = self.image_bands["item"]
        verdict = bands.verdict(round(probability, DECIMALS))
        return {"status": "scanned", "score": {"probability": r6(probability), "level": level, "rule": rule,
                                               "tile_rule": spec.aggregation, "how": how,
                                               "calibration": calibration_summary(cal)},
                "score_band": verdict, "verdict": verdict, "out_of_scope": [],
                "bands": {"lower": r6(bands.lower), "upper": r6(bands.upper), "source": bands.source},
                "frame_scores": [{"frame_index": k, "probability": r6(per_frame[k])} for k in sorted(per_frame)],
                "tiles": tiles_of[top], "tile_size": spec.tile_size,
                "model": {"path": m.path, "sha256": m.sha256, "kind": m.kind}}

    def _combine(self, face: dict, image: dict | None, animated: bool) -> dict:
        """One item result from every model's opinion (forensics/combine.py); each level kept in full."""
        out = dict(face)
        has_face = None if self.model is None else bool(face.get("n_faces_detected"))
        media = "video" if animated else "still"
        opinions = []
        if self.model is not None:
            level = {k: face[k] for k in ("status", "reason", "score", "score_band", "verdict", "verdict_reason",
                                          "bands", "out_of_scope") if k in face}
            opinions.append(Opinion("face", "face", level, self.domains["face"],
                                    self.domains["face"].outside(media, has_face)))
            if image is not None:
                out["face_level"] = ({k: v for k, v in level.items() if k != "status"} if face.get("status") ==
                                     "scanned" else {"status": face.get("status"), "reason": face.get("reason")})
        if image is not None:
            out["image_level"] = image
            opinions.append(Opinion("image", "image", image, self.domains["image"],
                                    self.domains["image"].outside(media, has_face)))
        self.last_opinions = (opinions, media, has_face)  # a panel (forensics/panel.py) adds its members' to these
        combined = combine(opinions)
        if combined.get("status") != "scanned":  # nobody scored it (no face and no image-level model)
            out.update(decided_by=None, why=combined["why"], combination=combined["combination"],
                       opinions=combined["opinions"])
            return out
        out.update(combined)
        if self.model is not None and face.get("status") != "scanned":
            out.pop("out_of_scope", None)
        return out

    def _verdict(self, p: float, faces: list[dict]) -> dict:
        bands = self.bands["item"]
        by_score = bands.verdict(round(p, DECIMALS))
        out_of_scope = []
        if all(f["size_px"] < self.options.min_face_px for f in faces):
            out_of_scope.append(f"every face is smaller than {self.options.min_face_px} px")
        return {"score_band": by_score, "bands": {"lower": r6(bands.lower), "upper": r6(bands.upper),
                                                  "source": bands.source},
                "verdict": by_score, "out_of_scope": out_of_scope}

    def _scope(self, result: dict) -> dict:
        """Mark a scanned item inconclusive when its input lies outside what the model can judge."""
        if result.get("status") != "scanned":
            return result
        o, decode = self.options, result.get("decode", {})
        reasons = list(result.get("out_of_scope", []))
        q, bpp = decode.get("jpeg_quality_estimate"), decode.get("bits_per_pixel")
        if q is not None and q < o.min_jpeg_quality:
            reasons.append(f"JPEG quality about {q}, below {o.min_jpeg_quality}")
        if bpp is not None and bpp < o.min_video_bits_per_pixel:
            reasons.append(f"video at {bpp:.4f} bits per pixel per frame, below {o.min_video_bits_per_pixel}")
        result["out_of_scope"] = reasons
        if reasons:
            result["verdict"] = "inconclusive"
            result["verdict_reason"] = "outside what the model can judge: " + "; ".join(reasons)
        else:
            b = result["bands"]
            result["verdict_reason"] = (f"calibrated probability {result['score']['probability']:.6f} with bands "
                                        f"lower {b['lower']:.6f}, upper {b['upper']:.6f}")
        return result


