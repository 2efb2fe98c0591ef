"""Export: a verified folder (ONNX, detector, safetensors, Triton, card) that checks itself on load."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file, save_file

from faketrace.datasets.faces import detector_weights
from faketrace.datasets.io import sha256_bytes, sha256_file
from faketrace.engine.checkpoint import load_checkpoint
from faketrace.engine.evaluate import evaluate_checkpoint
from faketrace.engine.export import (
    ExportVerificationError,
    crop_dataset,
    evaluation_summary,
    export_checkpoint,
    quantize_int8,
    spread_images,
    verify_onnx,
    verify_timm_round_trip,
)
from faketrace.engine.inference import model_from_checkpoint
from faketrace.engine.train import train
from faketrace.models.backbones import timm
from faketrace.models.card import ExportIntegrityError, load_export, render_markdown
from faketrace.models.spec import card_spec, checkpoint_spec
from faketrace.models.triton import ONNX_TO_TRITON, check_repository, parse_config

from .conftest import compose_config, resolved


@pytest.fixture(scope="module")
def tiny_checkpoint(demo_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    cfg = compose_config("train", demo_data["overrides"] + ["model=tiny", "debug=fast"], output_dir=out)
    return train(resolved(cfg))["last_ckpt"]


@pytest.fixture(scope="module")
def evaluation(demo_data, tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate")
    cfg = compose_config("evaluate", demo_data["overrides"] + [
        f"ckpt_path={tiny_checkpoint}", "bootstrap.n_resamples=50", "plots=false", "baseline=false",
        "num_workers=0"], output_dir=out)
    evaluate_checkpoint(resolved(cfg))
    return out / "metrics.json"


@pytest.fixture(scope="module")
def exported(demo_data, tiny_checkpoint, evaluation, tmp_path_factory):
    """One export of the tiny checkpoint with every option on except int8 (tested on its own)."""
    out = tmp_path_factory.mktemp("export")
    cfg = compose_config("export", demo_data["overrides"] + [
        f"ckpt_path={tiny_checkpoint}", f"evaluation={evaluation}", "verify.n_images=16", "fp16.enabled=true"],
        output_dir=out)
    card = export_checkpoint(resolved(cfg))
    return {"card": card, "dir": out / "export", "cfg": resolved(cfg)}


def _real_crops(demo_data, ckpt, split="val", n=16):
    cfg = resolved(compose_config("export", demo_data["overrides"] + ["ckpt_path=x"]))
    return spread_images(crop_dataset(cfg, checkpoint_spec(ckpt).input, split), n, "test")


def test_export_folder_is_verified_complete_and_checks_itself(exported, tiny_checkpoint):
    card, out = exported["card"], exported["dir"]
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    model_name = card["triton"]["model_name"]
    assert names == {"model.onnx", "model.fp16.onnx", "face_detector.onnx", "weights.safetensors", "model_card.json",
                     "MODEL_CARD.md", f"triton/{model_name}/config.pbtxt", f"triton/{model_name}/1/model.onnx"}
    assert not list(out.parent.glob(".export.*"))  # no staging left behind

    # Verification ran at batch sizes 1 and 8 on real crops, within 1e-4 at each.
    v = card["onnx"]["verification"]
    assert set(v["batch_sizes"]) == {"1", "8"} and v["n_images"] == 16 and v["split"] == "test"  # the evaluated split
    assert all(r["max_abs_logit_diff"] <= 1e-4 for r in v["batch_sizes"].values())
    assert v["batch_sizes"]["1"]["runs"] == 16 and v["batch_sizes"]["8"]["runs"] == 2

    # The crops depend on the detector: the folder ships the very file the training crops came from.
    ckpt = load_checkpoint(tiny_checkpoint)
    det = card_spec(card).face.detector
    assert det.file == "face_detector.onnx"
    assert det.weights_sha256 == sha256_file(out / "face_detector.onnx") == sha256_bytes(detector_weights())
    assert det.weights_sha256 == checkpoint_spec(ckpt).face.detector.weights_sha256

    # fp16: written, and honestly not checked on a machine without a CUDA provider.
    fp16 = card["fp16"]["verification"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert fp16["checked"] and fp16["max_abs_logit_diff"] <= fp16["tolerance"]
    else:
        assert fp16["checked"] is False and "GPU" in fp16["reason"]
    m16 = onnx.load(str(out / "model.fp16.onnx"))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in m16.graph.initializer)
    assert m16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT

    # The card hashes every other file; loading checks them, and refuses tampering or strays.
    saved = load_export(out)
    assert set(saved["files"]) == names - {"model_card.json"} and saved == json.loads(json.dumps(card, default=str))
    (out / "stray.txt").write_text("x")
    with pytest.raises(ExportIntegrityError, match="not listed"):
        load_export(out)
    (out / "stray.txt").unlink()
    original = (out / "face_detector.onnx").read_bytes()
    (out / "face_detector.onnx").write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(ExportIntegrityError, match="face_detector.onnx: SHA-256 differs"):
        load_export(out)
    (out / "face_detector.onnx").write_bytes(original)
    load_export(out)

    # ONNX: dynamic batch, weights inside the one file.
    m = onnx.load(str(out / "model.onnx"), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer)
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        assert sess.run(None, {"image": np.zeros((batch, 3, 64, 64), np.float32)})[0].shape == (batch,)


def test_safetensors_round_trip_through_timm_and_a_dropped_head_fails(demo_data, exported, tiny_checkpoint,
                                                                      tmp_path):
    path = exported["dir"] / "weights.safetensors"
    ckpt = load_checkpoint(tiny_checkpoint)
    model = model_from_checkpoint(ckpt)
    x = _real_crops(demo_data, ckpt)
    state = load_file(str(path))
    assert {"classifier.weight", "classifier.bias"} <= set(state) and state["classifier.weight"].shape[0] == 1

    # The README's call, exactly: logits equal the checkpoint's within 1e-6, head included.
    reloaded = timm.create_model("test_efficientnet", pretrained=True,
                                 pretrained_cfg_overlay=dict(file=str(path), num_classes=1), num_classes=1).eval()
    with torch.no_grad():
        diff = (reloaded(x).squeeze(-1) - model(x)).abs().max().item()
    assert diff <= 1e-6
    assert exported["card"]["weights"]["round_trip"]["max_abs_logit_diff"] <= 1e-6

    # Without num_classes in the overlay timm believes the file's head is ImageNet's and drops it
    # without a word: the same comparison must catch that.
    dropped = timm.create_model("test_efficientnet", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                                num_classes=1).eval()
    with torch.no_grad():
        assert (dropped(x).squeeze(-1) - model(x)).abs().max().item() > 1e-6

    # The export's own round-trip check refuses a file whose head is altered or missing.
    altered = dict(state, **{"classifier.weight": torch.zeros_like(state["classifier.weight"])})
    save_file(altered, str(tmp_path / "altered.safetensors"))
    with pytest.raises(ExportVerificationError, match="dropped or altered head"):
        verify_timm_round_trip(model, tmp_path / "altered.safetensors", "test_efficientnet", x)
    save_file({k: v for k, v in state.items() if not k.startswith("classifier.")}, str(tmp_path / "nohead.safetensors"))
    with pytest.raises(ExportVerificationError):
        verify_timm_round_trip(model, tmp_path / "nohead.safetensors", "test_efficientnet", x)


def test_triton_config_agrees_with_the_onnx_graph(exported):
    triton = exported["card"]["triton"]
    model_dir = exported["dir"] / "triton" / triton["model_name"]
    cfg = parse_config((model_dir / "config.pbtxt").read_text())
    graph = onnx.load(str(model_dir / "1" / "model.onnx"), load_external_data=False).graph
    assert (model_dir / "1" / "model.onnx").read_bytes() == (exported["dir"] / "model.onnx").read_bytes()

    assert cfg.name == model_dir.name and cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 32
    assert [i.name for i in cfg.input] == [i.name for i in graph.input] == ["image"]
    assert [o.name for o in cfg.output] == [o.name for o in graph.output] == ["logit"]
    dtype_name = type(cfg).DESCRIPTOR.file.enum_types_by_name["DataType"].values_by_number
    for declared, actual in ((cfg.input[0], graph.input[0]), (cfg.output[0], graph.output[0])):
        t = actual.type.tensor_type
        assert dtype_name[declared.data_type].name == ONNX_TO_TRITON[t.elem_type] == "TYPE_FP32"
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]
        assert isinstance(dims[0], str)  # the dynamic batch dimension Triton batches along
        served = list(declared.reshape.shape) if declared.HasField("reshape") else list(declared.dims)
        assert served == dims[1:]
    assert list(cfg.input[0].dims) == [3, 64, 64]
    assert list(cfg.output[0].dims) == [1] and list(cfg.output[0].reshape.shape) == []  # a [batch] output
    assert check_repository(model_dir)["max_batch_size"] == 32

    # A config that no longer matches its graph is caught, and Triton's schema is enforced.
    text = (model_dir / "config.pbtxt").read_text()
    (model_dir / "config.pbtxt").write_text(text.replace("dims: 64", "dims: 65", 1))
    with pytest.raises(ValueError, match="dims"):
        check_repository(model_dir)
    (model_dir / "config.pbtxt").write_text(text.replace("TYPE_FP32", "TYPE_FP16", 1))
    with pytest.raises(ValueError, match="TYPE_FP16"):
        check_repository(model_dir)
    (model_dir / "config.pbtxt").write_text(text + "\nmax_batch_sizes: 4\n")
    with pytest.raises(Exception, match="max_batch_sizes"):
        check_repository(model_dir)
    (model_dir / "config.pbtxt").write_text(text)


def test_model_card_markdown_is_rendered_from_the_json(exported, evaluation):
    card, out = exported["card"], exported["dir"]
    md = (out / "MODEL_CARD.md").read_text()
    assert md == render_markdown(json.loads((out / "model_card.json").read_text()) | {"files": {
        k: v for k, v in card["files"].items() if k != "MODEL_CARD.md"}})
    # The casework warning comes first and last, impossible to miss.
    head = md.split("\n## ")[0]
    assert "WARNING: NOT FIT FOR CASEWORK" in head and "WARNING: NOT FIT FOR CASEWORK" in md.rsplit("## ", 1)[1]
    metrics = json.loads(evaluation.read_text())
    auc, ci = metrics["detector"]["video"]["auc"], metrics["detector"]["video"]["intervals"]["auc"]
    for text in ("timm `test_efficientnet`", "64 x 64 px", "mean [0.485, 0.456, 0.406]", "retinaface_mnet025_onnx",
                 card["spec"]["face"]["detector"]["weights_sha256"], "margin 1.3", "frames per video: 4", "`mean` of the frame probabilities",
                 "## Calibration", "## Training data", "identity-disjoint", "| train |",
                 f"{auc:.4f} [{ci['low']:.4f}, {ci['high']:.4f}]", "## Intended use", "## Out-of-scope use",
                 "any data set other than `demo`", "batch 1:", "batch 8:", "NOT CHECKED", "create_model(",
                 "config checked against the ONNX graph",
                 # issue 17: the resize the model is fed (not timm's bicubic), what selection rested on
                 "is resized bilinear", "95% interval [", "fewer than 50 in a class"):
        assert text in md, text
    assert "bicubic" not in md.split("## Face detection")[0]
    assert card["evaluation"]["results"]["detector"]["video"]["intervals"]["auc"]["low"] == ci["low"]
    with pytest.raises(ValueError, match="another checkpoint"):
        evaluation_summary(evaluation, "0" * 64)


def test_verification_needs_eight_crops_and_fails_when_onnx_and_torch_disagree(demo_data, exported, tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint)
    model = model_from_checkpoint(ckpt)
    x = _real_crops(demo_data, ckpt)
    onnx_path = exported["dir"] / "model.onnx"
    assert verify_onnx(model, onnx_path, x, atol=1e-4)["passed"]
    with pytest.raises(ExportVerificationError, match="at least 8"):
        verify_onnx(model, onnx_path, x[:7], atol=1e-4)
    with torch.no_grad():  # a model that is not the one exported
        for p in model.parameters():
            p.add_(0.05)
    with pytest.raises(ExportVerificationError, match="batch 1"):
        verify_onnx(model, onnx_path, x, atol=1e-4)


def test_export_fails_and_leaves_nothing_when_verification_fails(demo_data, tiny_checkpoint, tmp_path):
    cfg = compose_config("export", demo_data["overrides"] + [f"ckpt_path={tiny_checkpoint}", "verify.n_images=8",
                                                              "verify.atol=-1"], output_dir=tmp_path)
    with pytest.raises(ExportVerificationError):
        export_checkpoint(resolved(cfg))
    assert not (tmp_path / "export").exists()
    assert not list(tmp_path.glob(".export*"))


def test_int8_is_calibrated_on_train_reported_on_val_and_refused_past_the_bound(exported, tiny_checkpoint, tmp_path):
    ckpt = load_checkpoint(tiny_checkpoint)
    cfg = exported["cfg"].copy()
    spec, rule = checkpoint_spec(ckpt).input, checkpoint_spec(ckpt).video.rule
    src = exported["dir"] / "model.onnx"
    cfg.quantize.n_calibration = 16
    cfg.quantize.max_auc_drop = 1.0  # any int8 model passes this bound
    from faketrace.datasets.frames import load_face_table

    faces, _, _ = load_face_table(cfg.data.index_path, cfg.data.manifest_path)
    ok = quantize_int8(cfg, spec, rule, src, tmp_path / "model.int8.onnx", faces)
    assert ok["written"] and ok["file"] == "model.int8.onnx" and (tmp_path / "model.int8.onnx").is_file()
    assert ok["calibration"] == {"split": "train", "n_images": 16, "method": "MinMax"}
    assert ok["validation"]["split"] == "val" and ok["format"] == "QDQ"
    for level in ("frame", "video"):
        a = ok["validation"]["auc"][level]
        assert a["change"] == pytest.approx(a["int8"] - a["fp32"])
    q = onnx.load(str(tmp_path / "model.int8.onnx"))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in q.graph.node}
    ort.InferenceSession(str(tmp_path / "model.int8.onnx"), providers=["CPUExecutionProvider"])

    cfg.quantize.max_auc_drop = -1.0  # demands AUC rise by more than 1: must refuse
    (tmp_path / "refused").mkdir()
    refused = quantize_int8(cfg, spec, rule, src, tmp_path / "refused" / "model.int8.onnx", faces)
    assert refused["written"] is False and refused["file"] is None and "drops" in refused["refused_reason"]
    assert not (tmp_path / "refused" / "model.int8.onnx").exists()
    assert [p.name for p in (tmp_path / "refused").iterdir()] == []


def test_benchmark_infer_subcommand_times_both_runtimes(tmp_path):
    import subprocess
    import sys

    from .conftest import REPO

    out = subprocess.run([sys.executable, "scripts/benchmark.py", "infer", "--models", "test_efficientnet:64",
                          "--batch1-warmup", "1", "--batch1-steps", "2", "--batch32-warmup", "0", "--batch32-steps",
                          "1", "--work-dir", str(tmp_path), "--json", str(tmp_path / "infer.json")],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "infer.json").read_text())["models"]["test_efficientnet@64"]
    assert {"pytorch_eager_cpu", "onnxruntime_cpu"} <= set(result["runtimes"])
    assert result["runtimes"]["onnxruntime_cpu"]["32"]["images_s"] > 0 and len(
        result["runtimes"]["pytorch_eager_cpu"]["1"]["all_ms"]) == 2
    assert set(result["ratios"]["onnxruntime_cpu/pytorch_eager_cpu"]) == {"1", "32"}
    assert "speed-up onnxruntime_cpu/pytorch_eager_cpu" in out.stdout
    # Without a GPU, bf16 autocast is compared with fp32 on the CPU: a small gap, but not none.
    prec = result["precision"]
    assert prec["device"] == "cpu" and "fp16" not in prec
    assert 0 < prec["bf16"]["max_abs_diff"] < 1 and prec["bf16"]["mean_abs_diff"] <= prec["bf16"]["max_abs_diff"]
    assert "bf16 vs fp32 logits on cpu" in out.stdout


def _train_family(demo_data, out, overrides):
    cfg = compose_config("train", demo_data["overrides"] + ["model.backbone=test_efficientnet", "model.input_size=64",
                                                           "debug=fast", "trainer.limit_train_batches=1",
                                                           "trainer.limit_val_batches=1", *overrides], output_dir=out)
    return train(resolved(cfg))["last_ckpt"]


def test_a_family_exports_backbone_and_family_weights_that_rebuild_its_logits(demo_data, tmp_path):
    ckpt_path = _train_family(demo_data, tmp_path / "train", ["model=frequency", "model.stream=srm"])
    cfg = compose_config("export", demo_data["overrides"] + [f"ckpt_path={ckpt_path}", "verify.n_images=8",
                                                            "triton.enabled=false"], output_dir=tmp_path / "x")
    card = export_checkpoint(resolved(cfg))
    out = tmp_path / "x" / "export"
    assert card["family"] == "frequency_two_stream"
    assert card["weights"]["file"] == "weights.safetensors" and card["weights"]["family_file"] == "family.safetensors"
    assert card["weights"]["round_trip"]["max_abs_logit_diff"] <= 1e-6
    assert {"weights.safetensors", "family.safetensors"} <= set(card["files"])
    # The backbone file holds plain timm keys only; the family's parts are in the other file.
    backbone, family = load_file(str(out / "weights.safetensors")), load_file(str(out / "family.safetensors"))
    assert not any(k.startswith("backbone.") for k in backbone) and family
    assert all(k.split(".")[0] in ("stream", "stream_filter", "head") for k in family)
    assert "timm.create_model" not in card["timm_load"]  # the backbone alone is not the detector


def test_clip_models_are_refused_by_export_and_scan(demo_data, tmp_path):
    from faketrace.forensics.scoring import load_torch_model

    ckpt_path = _train_family(demo_data, tmp_path / "train", ["model=video_temporal", "model.clip_length=2",
                                                             "model.temporal_dim=16"])
    cfg = compose_config("export", demo_data["overrides"] + [f"ckpt_path={ckpt_path}", "verify.n_images=8"],
                         output_dir=tmp_path / "x")
    with pytest.raises(ExportVerificationError, match="clips of 2 crops"):
        export_checkpoint(resolved(cfg))
    assert not (tmp_path / "x" / "export").exists()
    with pytest.raises(ValueError, match="scores clips of 2 consecutive face crops"):
        load_torch_model(ckpt_path, device="cpu")
