"""The model contract: what a detector looks at and how to read what it says, as one typed object.

A `ModelSpec` travels with the weights the way timm's `PretrainedCfg` does: it is written the same
way (`to_dict`) into a checkpoint (`ckpt["spec"]`), an export card (`model_card.json["spec"]`) and
a published detector's registry entry, and read back through `from_dict`, which validates every
field and refuses unknown keys, so a typo or a file from a newer faketrace fails loudly instead of
being scored with the wrong preprocessing. It describes models we trained and models we did not:
a published detector's face detector, crop rule, margin, input size, normalisation, resize
interpolation, output polarity, the media it was trained on, and where its file came from.

What is on disk from before the spec existed (a checkpoint's `preprocessing` dict and `model_spec`,
a model card's `face_preprocessing` / `face_detector` / `image_preprocessing` / `video_aggregation`
keys) is turned into a spec by `migrate_checkpoint` and `migrate_card`; `checkpoint_spec` and
`card_spec` take either layout.

Calibration is not part of the spec: it is fitted after training on validation scores and may be
refitted (scripts/calibrate.py) without touching what the model looks at, so it stays beside the
spec (`ckpt["calibration"]`, `card["calibration"]`).

Pure Python (no torch, numpy or OpenCV): the standalone predictor, the model card and the
published-detector registry import it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field

SPEC_VERSION = 1

LEVELS = ("face", "image", "clip")  # face crops, whole-image tiles, clips of consecutive face crops
INTERPOLATIONS = ("bilinear", "bicubic", "area", "nearest")  # datasets/face_pipeline.RESIZE_METHODS
CHANNELS = ("RGB", "BGR")
LAYOUTS = ("NCHW", "NHWC", "NTCHW", "NTF")  # NTF: clips of feature vectors (landmark sequences), no pixels
CROP_RULES = (
    "square_margin",  # a square of `margin` x the longer box side around the box centre
    "aligned_5pt",  # 5-point similarity alignment onto a template, `margin` around it
    "box_margin",  # the box grown by `margin` on each axis, resized without keeping its aspect
    "landmarks_only",  # no pixels: the model reads landmark coordinates (LRNet-style)
    # MesoNet's rule: a square centred on the nose, side `margin` x max(eye distance, eyes-to-mouth
    # distance), rotated upright (datasets/published_crops.py; 5 points stand in for the 68-point groups)
    "mesonet_5pt",
)
LANDMARKS = ("none", "5pt", "dlib68")
FACE_POLICIES = ("largest", "all")
IMAGE_FORMATS = ("png", "jpeg", "none")  # none: crops are kept in memory, never encoded
VIDEO_RULES = ("mean", "median", "max", "max_face_mean", "confident",
               "vote")  # vote: fraction of clips with P(fake) >= 0.5 (LRNet's published rule; forensics/panel.py)
SAMPLINGS = ("uniform", "every_k", "all")
TILE_AGGREGATIONS = ("max", "mean")
EVAL_CROPS = ("tiles", "centre")
CLIP_FEATURES = ("pixels", "landmarks")
ACTIVATIONS = (
    "logit",  # one value per input; probability = sigmoid(value)
    "sigmoid",  # one value per input, already a probability
    "softmax2",  # two values per input; probability = softmax(values)[class_index]
)
POSITIVE_CLASSES = ("fake", "real")
MEDIA = ("still", "video")
FACES = ("present", "absent", "any")


class SpecError(ValueError):
    """A model spec that does not validate: the message names the field (e.g. `spec.input.mean`)."""

    def __init__(self, field: str, msg: str):
        self.field, self.msg = field, msg
        super().__init__(f"{field}: {msg}")


def _fail(where: str, msg: str) -> typing.NoReturn:
    raise SpecError(where, msg)


class _Section:
    """Every part of the spec: lists become tuples, then the part checks itself on construction."""

    def __post_init__(self):
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list) and typing.get_origin(hints[f.name]) is tuple:
                object.__setattr__(self, f.name, tuple(value))
        self._check(type(self).__name__)

    def _check(self, where: str) -> None:
        pass


def _one_of(where: str, value, allowed: tuple) -> None:
    if value not in allowed:
        _fail(where, f"must be one of {', '.join(map(str, allowed))}; got {value!r}")


def _positive(where: str, value, minimum: float = 1) -> None:
    if value < minimum:
        _fail(where, f"must be at least {minimum}; got {value!r}")


# -- the sections -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class InputSpec(_Section):
    """The tensor the network takes: size, channel order, scaling and normalisation, resize method.

    A pixel value v (0..255) becomes (v * scale - mean[c]) / std[c]; crops or tiles of another size
    are resized to `size` with `interpolation` first.
    """

    size: tuple[int, int]  # (height, width) in pixels; NTF layout: (frames, features)
    mean: tuple[float, ...]  # one per channel (NTF: one per feature, or none)
    std: tuple[float, ...]
    interpolation: str = "bilinear"
    channels: str = "RGB"
    scale: float = 1 / 255
    layout: str = "NCHW"

    def _check(self, where: str) -> None:
        _one_of(f"{where}.layout", self.layout, LAYOUTS)
        pixels = self.layout != "NTF"
        if len(self.size) != 2:
            _fail(f"{where}.size", "must be (height, width)" + ("" if pixels else " or, for NTF, (frames, features)")
                  + f"; got {self.size!r}")
        for i, s in enumerate(self.size):
            _positive(f"{where}.size[{i}]", s, 8 if pixels else 1)
        for name in ("mean", "std"):
            n = len(getattr(self, name))
            if (pixels and n != 3) or (not pixels and n not in (0, self.size[1])):
                _fail(f"{where}.{name}", ("must hold 3 numbers (one per channel)" if pixels else
                                          "must be empty or hold one number per feature") + f"; got {getattr(self, name)!r}")
        for i, s in enumerate(self.std):
            if s <= 0:
                _fail(f"{where}.std[{i}]", f"must be positive; got {s!r}")
        if not 0 < self.scale <= 1:
            _fail(f"{where}.scale", f"must be in (0, 1] (1/255 maps 0..255 to 0..1); got {self.scale!r}")
        _one_of(f"{where}.interpolation", self.interpolation, INTERPOLATIONS)
        _one_of(f"{where}.channels", self.channels, CHANNELS)

    @property
    def side(self) -> int:
        """The side of a square input (face crops and tiles are square)."""
        if self.size[0] != self.size[1]:
            raise SpecError("input.size", f"{self.size} is not square")
        return int(self.size[0])


@dataclass(frozen=True)
class DetectorSpec(_Section):
    """The face detector whose boxes (and landmarks) the crops came from."""

    name: str  # e.g. retinaface_mnet025_onnx, dlib_hog, mtcnn, blazeface
    package: str | None = None
    version: str | None = None
    weights_sha256: str | None = None
    file: str | None = None  # an export folder's copy of the weights
    score_threshold: float | None = None
    nms_threshold: float | None = None
    max_side: int | None = None  # frames scaled so the longer side is at most this for detection

    def _check(self, where: str) -> None:
        if not self.name:
            _fail(f"{where}.name", "must name the detector")
        if self.weights_sha256 is not None and (len(self.weights_sha256) != 64
                                                or any(c not in "0123456789abcdef" for c in self.weights_sha256)):
            _fail(f"{where}.weights_sha256", f"must be 64 lowercase hex digits; got {self.weights_sha256!r}")
        for name in ("score_threshold", "nms_threshold"):
            v = getattr(self, name)
            if v is not None and not 0 <= v <= 1:
                _fail(f"{where}.{name}", f"must be in [0, 1]; got {v!r}")
        if self.max_side is not None:
            _positive(f"{where}.max_side", self.max_side, 16)


@dataclass(frozen=True)
class FaceSpec(_Section):
    """How a face becomes a crop: detector, which faces, the crop rule, margin, size and encoding."""

    detector: DetectorSpec
    crop_rule: str = "square_margin"
    margin: float = 1.3  # crop side / detector box side (1.3: 30 % larger than the box)
    crop_size: int = 128  # side of the crop in pixels, before the input resize
    landmarks: str = "none"
    face_policy: str = "largest"  # largest: the video's main face track; all: every face
    image_format: str = "png"  # how training crops were stored (the scan repeats the encoding)
    jpeg_quality: int = 95
    track_iou: float = 0.3

    def _check(self, where: str) -> None:
        _one_of(f"{where}.crop_rule", self.crop_rule, CROP_RULES)
        _one_of(f"{where}.landmarks", self.landmarks, LANDMARKS)
        _one_of(f"{where}.face_policy", self.face_policy, FACE_POLICIES)
        _one_of(f"{where}.image_format", self.image_format, IMAGE_FORMATS)
        if not 0.5 <= self.margin <= 4:
            _fail(f"{where}.margin", f"must be in [0.5, 4] (crop side / box side); got {self.margin!r}")
        _positive(f"{where}.crop_size", self.crop_size, 8)
        if not 1 <= self.jpeg_quality <= 100:
            _fail(f"{where}.jpeg_quality", f"must be in [1, 100]; got {self.jpeg_quality!r}")
        if not 0 <= self.track_iou <= 1:
            _fail(f"{where}.track_iou", f"must be in [0, 1]; got {self.track_iou!r}")
        if self.crop_rule == "aligned_5pt" and self.landmarks == "none":
            _fail(f"{where}.landmarks", "aligned_5pt crops need landmarks (5pt or dlib68)")


@dataclass(frozen=True)
class ImageSpec(_Section):
    """Whole-image models: native-resolution tiles (or one centre crop) and how their scores combine.

    tile_size: side of the square training crops and evaluation tiles, in pixels of the
        (optionally resized) image; the model's input size.
    stride: step between evaluation tiles; None = tile_size (no overlap). The last row and column
        of tiles are aligned to the image border, so every pixel is covered.
    aggregation: how tile scores become the image score (max | mean).
    resize: None = native resolution; an int resizes the image so its shorter side has that many
        pixels before cropping (INTER_AREA when shrinking, INTER_CUBIC when enlarging).
    crop: evaluation crops, "tiles" (cover the image) or "centre" (one centre crop).
    `level` is kept for the records written before the spec existed; it is always "image".
    """

    level: str = "image"
    tile_size: int = 128
    stride: int | None = None
    aggregation: str = "max"
    resize: int | None = None
    crop: str = "tiles"

    def _check(self, where: str) -> None:
        if self.level != "image":
            _fail(f"{where}.level", f"must be 'image'; got {self.level!r}")
        if int(self.tile_size) < 8:
            _fail(f"{where}.tile_size", f"must be at least 8 pixels; got {self.tile_size}")
        if self.stride is not None and int(self.stride) < 1:
            _fail(f"{where}.stride", f"must be positive or None; got {self.stride}")
        _one_of(f"{where}.aggregation", self.aggregation, TILE_AGGREGATIONS)
        if self.resize is not None and int(self.resize) < 8:
            _fail(f"{where}.resize", f"must be None or at least 8 pixels; got {self.resize}")
        _one_of(f"{where}.crop", self.crop, EVAL_CROPS)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ImageSpec:
        """Lenient (unknown keys ignored), as the image pipeline always read it; ModelSpec is strict."""
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass(frozen=True)
class ClipSpec(_Section):
    """Clip models: `length` consecutive sampled frames of one video make one input."""

    length: int
    stride: int = 1  # step between the clip's frames, in sampled frames
    features: str = "pixels"  # pixels: face crops; landmarks: landmark sequences (no pixels)

    def _check(self, where: str) -> None:
        _positive(f"{where}.length", self.length, 2)
        _positive(f"{where}.stride", self.stride)
        _one_of(f"{where}.features", self.features, CLIP_FEATURES)


@dataclass(frozen=True)
class VideoSpec(_Section):
    """How a video is sampled and how frame scores become its score."""

    frames_per_video: int | None = 32  # None: every frame
    rule: str = "mean"
    sampling: str = "uniform"
    every_k: int | None = None

    def _check(self, where: str) -> None:
        if self.frames_per_video is not None:
            _positive(f"{where}.frames_per_video", self.frames_per_video)
        _one_of(f"{where}.rule", self.rule, VIDEO_RULES)
        _one_of(f"{where}.sampling", self.sampling, SAMPLINGS)
        if self.sampling == "every_k":
            if self.every_k is None:
                _fail(f"{where}.every_k", "every_k sampling needs every_k")
            _positive(f"{where}.every_k", self.every_k)


@dataclass(frozen=True)
class OutputSpec(_Section):
    """How to read the network's output as P(manipulated)."""

    activation: str = "logit"
    positive_class: str = "fake"  # the class the (single) output or `class_index` stands for
    class_index: int = 0  # softmax2: which of the two outputs is `positive_class`

    def _check(self, where: str) -> None:
        _one_of(f"{where}.activation", self.activation, ACTIVATIONS)
        _one_of(f"{where}.positive_class", self.positive_class, POSITIVE_CLASSES)
        _one_of(f"{where}.class_index", self.class_index, (0, 1) if self.activation == "softmax2" else (0,))

    @property
    def n_outputs(self) -> int:
        return 2 if self.activation == "softmax2" else 1


@dataclass(frozen=True)
class DomainSpec(_Section):
    """The media the model was made for: a score outside this domain is said to be outside it."""

    media: tuple[str, ...] = ("still", "video")
    # Whether its training media showed faces: "present", "absent" (scenes without faces), "any";
    # None: not recorded. With `media` it is the scan's in-domain test (forensics/combine.py).
    faces: str | None = None
    min_face_px: int | None = None  # smallest face side (detector box, pixels) it was trained on
    compression: tuple[str, ...] = ()  # e.g. raw, c23, c40 (FaceForensics++), jpeg; () = not recorded
    notes: str = ""

    def _check(self, where: str) -> None:
        if not self.media:
            _fail(f"{where}.media", "must name at least one of still, video")
        for i, m in enumerate(self.media):
            _one_of(f"{where}.media[{i}]", m, MEDIA)
        if self.faces is not None:
            _one_of(f"{where}.faces", self.faces, FACES)
        if self.min_face_px is not None:
            _positive(f"{where}.min_face_px", self.min_face_px)


@dataclass(frozen=True)
class TrainingSpec(_Section):
    """What the model was trained on (the data set names as its own record gives them)."""

    datasets: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()  # manipulation methods of the training split ("real" excluded)
    synthetic: bool = False  # trained on synthetic media only (e.g. the demo data)
    notes: str = ""


@dataclass(frozen=True)
class FileRef(_Section):
    """One released file of a published model."""

    filename: str
    sha256: str | None = None
    role: str = "weights"
    url: str | None = None

    def _check(self, where: str) -> None:
        if not self.filename:
            _fail(f"{where}.filename", "must not be empty")
        if self.sha256 is not None and (len(self.sha256) != 64
                                        or any(c not in "0123456789abcdef" for c in self.sha256)):
            _fail(f"{where}.sha256", f"must be 64 lowercase hex digits; got {self.sha256!r}")


@dataclass(frozen=True)
class SourceSpec(_Section):
    """Where a model we did not train comes from: paper, release, files and licence."""

    name: str
    paper: str = ""
    url: str | None = None
    licence: str = ""
    notice: str = ""
    files: tuple[FileRef, ...] = ()

    def _check(self, where: str) -> None:
        if not self.name:
            _fail(f"{where}.name", "must not be empty")
        if not self.licence:
            _fail(f"{where}.licence", "a published model must name its licence")


@dataclass(frozen=True)
class ModelSpec(_Section):
    """What a model looks at and how to read its output; see the module docstring."""

    level: str
    input: InputSpec
    video: VideoSpec = field(default_factory=VideoSpec)
    output: OutputSpec = field(default_factory=OutputSpec)
    face: FaceSpec | None = None  # face and clip levels
    image: ImageSpec | None = None  # image level
    clip: ClipSpec | None = None  # clip level
    domain: DomainSpec = field(default_factory=DomainSpec)
    trained_on: TrainingSpec = field(default_factory=TrainingSpec)
    source: SourceSpec | None = None  # published models only
    spec_version: int = SPEC_VERSION

    # -- validation (each section has checked itself; here what ties them together) -------------
    def _check(self, where: str) -> None:
        if self.spec_version != SPEC_VERSION:
            _fail(f"{where}.spec_version", f"this faketrace reads version {SPEC_VERSION}; got {self.spec_version!r}"
                  + (" (written by a newer faketrace: upgrade)" if isinstance(self.spec_version, int)
                     and self.spec_version > SPEC_VERSION else ""))
        _one_of(f"{where}.level", self.level, LEVELS)
        for name, kind in (("input", InputSpec), ("video", VideoSpec), ("output", OutputSpec), ("face", FaceSpec),
                           ("image", ImageSpec), ("clip", ClipSpec), ("domain", DomainSpec),
                           ("trained_on", TrainingSpec), ("source", SourceSpec)):
            section = getattr(self, name)
            if section is not None and not isinstance(section, kind):
                _fail(f"{where}.{name}", f"must be a {kind.__name__}; got {type(section).__name__}")
        needs = {"face": ("face",), "image": ("image",), "clip": ("face", "clip")}[self.level]
        for name in ("face", "image", "clip"):
            present = getattr(self, name) is not None
            if name in needs and not present:
                _fail(f"{where}.{name}", f"a model of level {self.level!r} needs this section")
            if name not in needs and present:
                _fail(f"{where}.{name}", f"a model of level {self.level!r} has no {name} section")
        if self.level == "clip":
            wanted = "NTCHW" if self.clip.features == "pixels" else "NTF"
            if self.input.layout != wanted:
                _fail(f"{where}.input.layout", f"a clip model of {self.clip.features} takes {wanted}; "
                      f"got {self.input.layout!r}")
        elif self.input.layout in ("NTCHW", "NTF"):
            _fail(f"{where}.input.layout", f"a {self.level}-level model takes single images; got {self.input.layout!r}")

    # -- what the rest of the code asks ----------------------------------------------------------
    @property
    def clip_length(self) -> int:
        """Frames per model input: 1 unless the model scores clips."""
        return self.clip.length if self.clip is not None else 1

    @property
    def published(self) -> bool:
        return self.source is not None

    def replace(self, **changes) -> ModelSpec:
        """A copy with some sections or fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def face_pipeline_dict(self) -> dict:
        """The face section in the face pipeline's own vocabulary (`datasets.face_pipeline.PreprocessSpec`)."""
        if self.face is None:
            raise SpecError("face", f"a {self.level}-level model has no face pipeline")
        f, d = self.face, self.face.detector
        if f.crop_rule not in ("square_margin", "aligned_5pt"):
            raise SpecError("face.crop_rule", f"{f.crop_rule!r} has no implementation in the face pipeline yet "
                            "(square_margin and aligned_5pt do)")
        out = {"detector": "retinaface" if d.name.startswith("retinaface") else d.name,
               "margin": f.margin, "crop_size": f.crop_size, "face_policy": f.face_policy,
               "image_format": "png" if f.image_format == "none" else f.image_format,
               "align": f.crop_rule == "aligned_5pt", "jpeg_quality": f.jpeg_quality, "track_iou": f.track_iou,
               "sampling": "uniform" if self.video.sampling == "all" else self.video.sampling}
        if self.video.frames_per_video is not None:
            out["frames_per_video"] = self.video.frames_per_video
        if self.video.every_k is not None:
            out["every_k"] = self.video.every_k
        for ours, theirs in (("score_threshold", "score_threshold"), ("nms_threshold", "nms_threshold"),
                             ("max_side", "detector_max_side")):
            if getattr(d, ours) is not None:
                out[theirs] = getattr(d, ours)
        return out

    def input_dict(self) -> dict:
        """The input section in the vocabulary of the tensor helpers (`input_size`, `mean`, `std`, ...)."""
        i = self.input
        # `resize` is the key the tensor helpers read (datasets/face_pipeline.resize_method); the same method.
        return {"input_size": i.side, "mean": list(i.mean), "std": list(i.std), "interpolation": i.interpolation,
                "resize": i.interpolation, "channels": i.channels, "layout": i.layout, "scale": i.scale,
                "clip_length": self.clip_length}

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain JSON/YAML types only (tuples become lists); spec_version first, then field order."""
        d = _to_plain(self)
        return {"spec_version": d.pop("spec_version"), **d}

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        """Validate and build; unknown keys, wrong types and bad values raise SpecError naming the field."""
        if not isinstance(d, dict):
            _fail("spec", f"must be a mapping; got {type(d).__name__}")
        version = d.get("spec_version")
        if version is None:
            _fail("spec.spec_version", "missing: records without a version predate the spec; use migrate_checkpoint "
                  "or migrate_card")
        if version != SPEC_VERSION:
            _fail("spec.spec_version", f"this faketrace reads version {SPEC_VERSION}; got {version!r}"
                  + (" (written by a newer faketrace: upgrade)" if isinstance(version, int)
                     and version > SPEC_VERSION else ""))
        return _from_plain(cls, d, "spec")


# -- generic (de)serialisation of the frozen dataclasses ---------------------------------------------

def _to_plain(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_to_plain(v) for v in value]
    return value


_HINTS: dict[type, dict] = {}


def _hints(cls) -> dict:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _from_plain(cls, d, where: str):
    if not isinstance(d, dict):
        _fail(where, f"must be a mapping; got {type(d).__name__} {d!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        _fail(where, f"unknown key(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(names))}")
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in d:
            kwargs[f.name] = _convert(hints[f.name], d[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            _fail(f"{where}.{f.name}", "missing")
    try:
        return cls(**kwargs)
    except SpecError as e:
        # A section names itself by its class when it fails; name the path in the record instead.
        field_path = where + e.field[len(cls.__name__):] if e.field.startswith(cls.__name__) else e.field
        raise SpecError(field_path, e.msg) from None


def _convert(tp, value, where: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            _fail(where, "must not be null")
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    if value is None:
        _fail(where, "must not be null")
    if dataclasses.is_dataclass(tp):
        return _from_plain(tp, value, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            _fail(where, f"must be a list; got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            _fail(where, f"must hold {len(args)} values; got {len(value)}: {list(value)!r}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if tp is bool:
        if not isinstance(value, bool):
            _fail(where, f"must be true or false; got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            _fail(where, f"must be an integer; got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail(where, f"must be a number; got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            _fail(where, f"must be a string; got {value!r}")
        return value
    raise TypeError(f"{where}: no conversion for {tp!r}")  # a field type this module does not handle


# -- migration from the records written before the spec --------------------------------------------

def _legacy_input(inp: dict, where: str) -> InputSpec:
    if not isinstance(inp, dict) or "input_size" not in inp:
        _fail(where, f"legacy input record needs input_size, mean and std; got {inp!r}")
    side = int(inp["input_size"])
    clip = int(inp.get("clip_length") or 1)
    # Before the spec, the record named the backbone's pretrained interpolation (often bicubic) but
    # every crop was resized bilinearly (OpenCV INTER_LINEAR): the spec says what was done.
    return InputSpec(size=(side, side), mean=tuple(float(v) for v in inp["mean"]),
                     # Records before `resize` copied timm's interpolation (often bicubic) while every
                     # resize was bilinear: the spec says what the model was fed (issue 17).
                     std=tuple(float(v) for v in inp["std"]), interpolation=inp.get("resize") or "bilinear",
                     channels=inp.get("channels", "RGB"), layout="NTCHW" if clip > 1 else "NCHW")


def _legacy_detector(det: dict | None, face: dict) -> DetectorSpec:
    det = dict(det or {})
    return DetectorSpec(
        name=det.get("name") or face.get("detector") or "retinaface",
        package=det.get("package"), version=det.get("version"),
        # a checkpoint records the weights it was trained with; an export card the file it ships
        weights_sha256=det.get("weights_sha256") or det.get("sha256"), file=det.get("file"),
        score_threshold=det.get("score_threshold", face.get("score_threshold")),
        nms_threshold=det.get("nms_threshold", face.get("nms_threshold")),
        max_side=det.get("max_side", face.get("detector_max_side")))


def face_spec_from_pipeline(face: dict, det: dict | None) -> FaceSpec:
    """A FaceSpec from the face pipeline's settings (a manifest's PreprocessSpec dict) and its detector record."""
    return FaceSpec(detector=_legacy_detector(det, face),
                    crop_rule="aligned_5pt" if face.get("align") else "square_margin",
                    margin=float(face.get("margin", 1.3)), crop_size=int(face.get("crop_size", 128)),
                    landmarks="5pt" if face.get("align") else "none",
                    face_policy=face.get("face_policy", "largest"), image_format=face.get("image_format", "png"),
                    jpeg_quality=int(face.get("jpeg_quality", 95)), track_iou=float(face.get("track_iou", 0.3)))


def _legacy_trained_on(data: dict | None, methods=()) -> TrainingSpec:
    data = data or {}
    name = data.get("name")
    return TrainingSpec(datasets=(str(name),) if name else (), methods=tuple(str(m) for m in methods if m != "real"),
                        synthetic=bool((data.get("index_meta") or {}).get("synthetic")))


def _legacy_domain(data: dict | None) -> DomainSpec:
    """The training domain older checkpoints and cards kept in their data record (`data.domain`)."""
    d = (data or {}).get("domain") or {}
    return DomainSpec(media=tuple(d.get("media") or ("still", "video")), faces=d.get("faces"),
                      notes=str(d.get("description") or ""))


def _legacy_spec(level: str, inp: dict, face: dict | None, det: dict | None, image: dict | None,
                 frames_per_video, rule: str, data: dict | None, methods=()) -> ModelSpec:
    level = level or "face"
    clip = int(inp.get("clip_length") or 1)
    input_spec = _legacy_input(inp, "legacy input")
    face = face or {}
    if level == "image":
        image_spec = ImageSpec.from_dict(image or {})
        return ModelSpec(level="image", input=input_spec, image=image_spec,
                         video=VideoSpec(frames_per_video=None if frames_per_video is None else int(frames_per_video),
                                         rule=rule or "mean"),
                         trained_on=_legacy_trained_on(data, methods), domain=_legacy_domain(data))
    video = VideoSpec(frames_per_video=int(frames_per_video or face.get("frames_per_video", 32)), rule=rule or "mean",
                      sampling=face.get("sampling", "uniform"),
                      every_k=int(face["every_k"]) if face.get("sampling") == "every_k" else None)
    return ModelSpec(level="clip" if clip > 1 else "face", input=input_spec, face=face_spec_from_pipeline(face, det),
                     clip=ClipSpec(length=clip) if clip > 1 else None, video=video,
                     trained_on=_legacy_trained_on(data, methods), domain=_legacy_domain(data))


def migrate_checkpoint(ckpt: dict) -> ModelSpec:
    """The spec of a checkpoint written before the spec existed (`preprocessing` + `model_spec` keys)."""
    pre = ckpt.get("preprocessing")
    if not isinstance(pre, dict):
        _fail("checkpoint", "has neither a spec nor a legacy preprocessing record")
    inp = pre.get("input") or (ckpt.get("model_spec") or {}).get("input")
    level = pre.get("level", "face")
    frames = pre.get("frames_per_video_eval")
    if frames is None and level != "image":
        frames = (pre.get("face") or {}).get("frames_per_video")
    return _legacy_spec(level, inp or {}, pre.get("face"), pre.get("detector"), pre.get("image"), frames,
                        pre.get("aggregation", "mean"), ckpt.get("data"))


def migrate_card(card: dict) -> ModelSpec:
    """The spec of an export card written before the spec existed (`model_card_version` 1 keys)."""
    if "input" not in card:
        _fail("model card", "has neither a spec nor a legacy input record")
    training = card.get("training") or {}
    train_counts = ((training.get("splits") or {}).get("counts") or {}).get("train") or {}
    return _legacy_spec(card.get("level", "face"), card["input"], card.get("face_preprocessing"),
                        card.get("face_detector"), card.get("image_preprocessing"), card.get("frames_per_video"),
                        card.get("video_aggregation", "mean"), training.get("data"), train_counts.get("methods", ()))


def checkpoint_spec(ckpt: dict) -> ModelSpec:
    """A checkpoint's spec, whichever layout it was written in."""
    if ckpt.get("spec") is not None:
        return ModelSpec.from_dict(ckpt["spec"])
    return migrate_checkpoint(ckpt)


def card_spec(card: dict) -> ModelSpec:
    """An export card's spec, whichever layout it was written in."""
    if card.get("spec") is not None:
        return ModelSpec.from_dict(card["spec"])
    return migrate_card(card)
