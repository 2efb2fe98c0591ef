"""Models from strangers: pickles that would run code are refused, ONNX may not read outside its
folder, and an export folder whose model.onnx was altered is refused before anything parses it."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from faketrace.engine.checkpoint import load_checkpoint
from faketrace.forensics.scoring import load_onnx_model, load_torch_model
from faketrace.models.backbones import create_backbone
from faketrace.models.onnx_safety import check_external_data
from faketrace.models.serialization import UnsafeModelFileError

from .conftest import REPO


class RunsShell:
    """Unpickling this calls os.system, which would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class RunsPython:
    """Unpickling this calls exec, which would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


def _craft(path, payload_cls, marker, how):
    """A file that looks like a checkpoint or a state dict and carries a payload."""
    obj = {"format": "faketrace.checkpoint/1", "model": {"fc.weight": torch.zeros(1, 2)}, "x": payload_cls(marker)}
    if how == "torch.save":
        torch.save(obj, path)
    elif how == "torch.save legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        with open(path, "wb") as fh:
            pickle.dump(obj, fh)
    return path


CRAFTS = [(cls, how) for cls in (RunsShell, RunsPython) for how in ("torch.save", "torch.save legacy", "pickle")]
CRAFT_IDS = [f"{cls.__name__}-{how.replace(' ', '_')}" for cls, how in CRAFTS]


def test_the_crafted_pickle_does_run_code_when_loaded_unsafely(tmp_path):
    """The control: without weights_only, loading the file runs the payload (in a child process)."""
    marker = tmp_path / "marker"
    path = _craft(tmp_path / "evil.ckpt", RunsShell, marker, "torch.save")
    code = f"import torch; torch.load({str(path)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300, check=False)
    assert marker.exists()


@pytest.mark.parametrize("cls,how", CRAFTS, ids=CRAFT_IDS)
def test_crafted_checkpoint_is_refused_by_every_loader_and_runs_nothing(tmp_path, cls, how):
    marker = tmp_path / "marker"
    path = _craft(tmp_path / "evil.ckpt", cls, marker, how)
    for load in (load_checkpoint, load_torch_model):  # training resume, evaluation, export; the scan
        with pytest.raises(UnsafeModelFileError) as refused:
            load(path)
        message = str(refused.value)
        assert message.startswith(f"refused checkpoint {path}") and "nothing in the file was executed" in message
        if how != "pickle":  # a plain pickle stops at its first unsupported instruction instead
            assert re.search(r"`(posix\.system|builtins\.exec|exec)`", message), message
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".bin"])
@pytest.mark.parametrize("cls,how", CRAFTS[:2], ids=CRAFT_IDS[:2])
def test_crafted_weight_file_is_refused_and_runs_nothing(tmp_path, cls, how, suffix):
    marker = tmp_path / "marker"
    path = _craft(tmp_path / f"weights{suffix}", cls, marker, how)
    with pytest.raises(UnsafeModelFileError, match=f"refused weight file {re.escape(str(path))}"):
        create_backbone("test_resnet", num_classes=1, weights_file=str(path))
    assert not marker.exists()


def test_torchscript_archive_is_refused_as_a_program(tmp_path):
    from faketrace.models.backbones import timm

    path = tmp_path / "model.pt"
    torch.jit.script(timm.create_model("test_resnet", num_classes=1)).save(str(path))
    with pytest.raises(UnsafeModelFileError, match="TorchScript archive"):
        create_backbone("test_resnet", num_classes=1, weights_file=str(path))


def test_every_model_load_in_the_code_base_is_weights_only():
    """Static guard over the code (not its prose): torch.load only with weights_only=True, in one place;
    no pickle, marshal, unsafe YAML, numpy pickles or TorchScript loading anywhere."""
    import ast

    sources = [p for d in ("datasets", "models", "engine", "forensics", "scripts") for p in (REPO / d).rglob("*.py")]
    sources += [REPO / "train.py", REPO / "evaluate.py"]
    torch_loads, unsafe = [], []
    for src in sources:
        for node in ast.walk(ast.parse(src.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            keywords = {k.arg: k.value for k in node.keywords}
            if name == "torch.load" and src.name == "restricted_pickle.py":
                # The one exception (issue 20): FaceForensics++ releases are pickled models, read through an
                # allow-list unpickler passed as pickle_module (tests/test_published_import.py refuses the rest).
                assert ast.unparse(keywords.get("pickle_module")) == "restricted", ast.unparse(node)
                continue
            if name == "torch.load":
                torch_loads.append(src.name)
                assert isinstance(keywords.get("weights_only"), ast.Constant) and \
                    keywords["weights_only"].value is True, (src, ast.unparse(node))
            if name in ("pickle.load", "pickle.loads", "marshal.loads", "yaml.load", "yaml.unsafe_load",
                        "pd.read_pickle", "torch.jit.load", "dill.load", "cloudpickle.load") or \
                    (name in ("np.load", "numpy.load") and "allow_pickle" in keywords):
                unsafe.append(f"{src.name}: {ast.unparse(node)}")
    assert torch_loads == ["serialization.py"]  # the one place, which the tests above exercise
    assert unsafe == []


# -- ONNX ------------------------------------------------------------------------------------------
def _onnx_model(location: str | None = None):
    """`logit = image + W` with W (4 floats) inside the file, or external at `location`."""
    from onnx import TensorProto, helper

    w = helper.make_tensor("W", TensorProto.FLOAT, [4], np.arange(4, dtype=np.float32).tolist())
    if location is not None:
        w = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
        for key, value in (("location", location), ("offset", "0"), ("length", "16")):
            entry = w.external_data.add()
            entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("Add", ["image", "W"], ["logit"])], "g",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("logit", TensorProto.FLOAT, [4])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _export_folder(folder, model):
    import onnx

    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model.onnx"))
    sha = hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    (folder / "model_card.json").write_text(json.dumps({"files": {"model.onnx": {"sha256": sha}}}))
    return folder


@pytest.fixture
def no_session(monkeypatch):
    """ONNX Runtime must never be reached: creating a session fails the test."""
    import onnxruntime

    def refuse(*args, **kwargs):
        raise AssertionError("an InferenceSession was created")

    monkeypatch.setattr(onnxruntime, "InferenceSession", refuse)


@pytest.mark.parametrize("location,why", [("../../etc/passwd", "climbs out of the folder"),
                                          ("/etc/passwd", "absolute path"),
                                          ("C:\\Windows\\win.ini", "absolute path"),
                                          ("outside/passwd", "symbolic link"),
                                          ("", "has no location")])
def test_onnx_external_data_outside_the_export_folder_is_refused(tmp_path, no_session, location, why):
    folder = _export_folder(tmp_path / "case" / "export", _onnx_model(location))
    (folder / "outside").symlink_to("/etc")
    with pytest.raises(UnsafeModelFileError, match=why):
        check_external_data(folder / "model.onnx")
    with pytest.raises(UnsafeModelFileError, match=f"tensor 'W' .*{why}"):
        load_onnx_model(folder)


def test_onnx_external_data_inside_the_folder_is_allowed(tmp_path):
    import onnxruntime as ort

    folder = _export_folder(tmp_path / "export", _onnx_model("weights/w.bin"))
    (folder / "weights").mkdir()
    (folder / "weights" / "w.bin").write_bytes(np.full(4, 2.0, np.float32).tobytes())
    assert check_external_data(folder / "model.onnx") == ["weights/w.bin"]
    assert check_external_data(_export_folder(tmp_path / "plain", _onnx_model()) / "model.onnx") == []
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(None, {"image": np.zeros(4, np.float32)})[0].tolist() == [2.0] * 4


def test_tampered_model_onnx_is_refused_before_it_is_parsed(tmp_path, no_session, monkeypatch):
    import onnx

    folder = _export_folder(tmp_path / "export", _onnx_model())
    # Same size, one weight changed: the kind of edit that shifts every score a little.
    data = bytearray((folder / "model.onnx").read_bytes())
    at = data.find(np.float32(3.0).tobytes())
    data[at:at + 4] = np.float32(30.0).tobytes()
    (folder / "model.onnx").write_bytes(bytes(data))
    assert onnx.load(str(folder / "model.onnx")).graph.initializer[0].float_data[3] == 30.0

    def no_parse(*args, **kwargs):
        raise AssertionError("model.onnx was parsed before its hash was checked")

    monkeypatch.setattr(onnx, "load", no_parse)
    with pytest.raises(ValueError, match="its model card lists .*altered after export"):
        load_onnx_model(folder)
