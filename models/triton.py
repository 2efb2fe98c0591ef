"""A Triton Inference Server model repository for an exported ONNX model, checked statically.

Layout: `<name>/config.pbtxt` and `<name>/1/model.onnx`. The config is written from, and read
back into, a protobuf message whose field names and numbers are the subset of Triton's
`model_config.proto` (triton-inference-server/common, BSD-3) that we use, so a field Triton
would not know fails to parse here too. `check_repository` compares the parsed config with the
ONNX graph: tensor names, data types, dims without the batch dimension, max_batch_size.

No torch here: onnx and protobuf only (onnx depends on protobuf).
"""

from __future__ import annotations

import functools
import re
import shutil
from pathlib import Path

import onnx
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

# ONNX element type -> Triton DataType name (model_config.proto enum DataType).
ONNX_TO_TRITON = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16",
                  onnx.TensorProto.DOUBLE: "TYPE_FP64", onnx.TensorProto.INT64: "TYPE_INT64",
                  onnx.TensorProto.INT32: "TYPE_INT32", onnx.TensorProto.INT8: "TYPE_INT8",
                  onnx.TensorProto.UINT8: "TYPE_UINT8", onnx.TensorProto.BOOL: "TYPE_BOOL"}
_DATA_TYPES = ["TYPE_INVALID", "TYPE_BOOL", "TYPE_UINT8", "TYPE_UINT16", "TYPE_UINT32", "TYPE_UINT64", "TYPE_INT8",
               "TYPE_INT16", "TYPE_INT32", "TYPE_INT64", "TYPE_FP16", "TYPE_FP32", "TYPE_FP64", "TYPE_STRING",
               "TYPE_BF16"]

_F = descriptor_pb2.FieldDescriptorProto
# message -> [(field name, number, type, label, message or enum type name)], from model_config.proto.
_SCHEMA = {
    "ModelTensorReshape": [("shape", 1, _F.TYPE_INT64, _F.LABEL_REPEATED, None)],
    "ModelInput": [("name", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None),
                   ("data_type", 2, _F.TYPE_ENUM, _F.LABEL_OPTIONAL, ".inference.DataType"),
                   ("format", 3, _F.TYPE_ENUM, _F.LABEL_OPTIONAL, ".inference.ModelInput.Format"),
                   ("dims", 4, _F.TYPE_INT64, _F.LABEL_REPEATED, None),
                   ("reshape", 5, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".inference.ModelTensorReshape")],
    "ModelOutput": [("name", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None),
                    ("data_type", 2, _F.TYPE_ENUM, _F.LABEL_OPTIONAL, ".inference.DataType"),
                    ("dims", 3, _F.TYPE_INT64, _F.LABEL_REPEATED, None),
                    ("reshape", 5, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".inference.ModelTensorReshape")],
    "ModelDynamicBatching": [("preferred_batch_size", 1, _F.TYPE_INT32, _F.LABEL_REPEATED, None),
                             ("max_queue_delay_microseconds", 2, _F.TYPE_UINT64, _F.LABEL_OPTIONAL, None)],
    "ModelConfig": [("name", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None),
                    ("platform", 2, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None),
                    ("max_batch_size", 4, _F.TYPE_INT32, _F.LABEL_OPTIONAL, None),
                    ("input", 5, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, ".inference.ModelInput"),
                    ("output", 6, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, ".inference.ModelOutput"),
                    ("default_model_filename", 8, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None),
                    ("dynamic_batching", 11, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".inference.ModelDynamicBatching"),
                    ("backend", 17, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None)],
}


@functools.cache
def model_config_class():
    """The `inference.ModelConfig` message class (the subset above), built at run time."""
    fdp = descriptor_pb2.FileDescriptorProto(name="faketrace_triton_model_config.proto", package="inference",
                                             syntax="proto3")
    enum = fdp.enum_type.add(name="DataType")
    for number, name in enumerate(_DATA_TYPES):
        enum.value.add(name=name, number=number)
    for msg_name, fields in _SCHEMA.items():
        msg = fdp.message_type.add(name=msg_name)
        if msg_name == "ModelInput":
            fmt = msg.enum_type.add(name="Format")
            for number, name in enumerate(["FORMAT_NONE", "FORMAT_NHWC", "FORMAT_NCHW"]):
                fmt.value.add(name=name, number=number)
        for name, number, ftype, label, type_name in fields:
            field = msg.field.add(name=name, number=number, type=ftype, label=label)
            if type_name:
                field.type_name = type_name
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("inference.ModelConfig"))


def parse_config(text: str):
    """Parse config.pbtxt text; unknown fields or enum values raise `text_format.ParseError`."""
    return text_format.Parse(text, model_config_class()())


def safe_model_name(name: str) -> str:
    """A model name that is a valid folder name and Triton model name."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")
    if not cleaned:
        raise ValueError(f"no usable Triton model name in {name!r}")
    return cleaned


def _graph_io(model: onnx.ModelProto) -> tuple[list, list]:
    init = {t.name for t in model.graph.initializer}

    def describe(values):
        out = []
        for v in values:
            if v.name in init:
                continue
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
            out.append({"name": v.name, "elem_type": t.elem_type, "dims": dims})
        return out

    return describe(model.graph.input), describe(model.graph.output)


def config_from_onnx(model: onnx.ModelProto, name: str, max_batch_size: int, dynamic_batching: bool = True):
    """The ModelConfig for an ONNX graph whose first dimension is a dynamic batch."""
    if max_batch_size < 1:
        raise ValueError("max_batch_size must be >= 1 for a model with a batch dimension")
    cfg = model_config_class()(name=name, platform="onnxruntime_onnx", backend="onnxruntime",
                               max_batch_size=int(max_batch_size), default_model_filename="model.onnx")
    inputs, outputs = _graph_io(model)
    for kind, tensors in (("input", inputs), ("output", outputs)):
        for t in tensors:
            if not t["dims"] or isinstance(t["dims"][0], int):
                raise ValueError(f"{kind} {t['name']!r} has no dynamic batch dimension: {t['dims']}")
            rest = t["dims"][1:]
            if any(not isinstance(d, int) or d < 1 for d in rest):
                raise ValueError(f"{kind} {t['name']!r} has dynamic non-batch dims {t['dims']}")
            entry = getattr(cfg, kind).add(name=t["name"], data_type=ONNX_TO_TRITON[t["elem_type"]])
            if rest:
                entry.dims.extend(rest)
            else:
                # A tensor of shape [batch] only: Triton wants non-empty dims, so [1] reshaped to [].
                entry.dims.append(1)
                entry.reshape.SetInParent()
    if dynamic_batching:
        cfg.dynamic_batching.SetInParent()
    return cfg


def write_repository(onnx_path: str | Path, repo_dir: str | Path, name: str, max_batch_size: int,
                     dynamic_batching: bool = True) -> dict:
    """Write `<repo_dir>/<name>/config.pbtxt` and `<repo_dir>/<name>/1/model.onnx` (a copy)."""
    name = safe_model_name(name)
    model_dir = Path(repo_dir) / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_path, model_dir / "1" / "model.onnx")
    cfg = config_from_onnx(onnx.load(str(onnx_path), load_external_data=False), name, max_batch_size,
                           dynamic_batching)
    (model_dir / "config.pbtxt").write_text(text_format.MessageToString(cfg))
    return {"model_name": name, "config": f"{name}/config.pbtxt", "model": f"{name}/1/model.onnx",
            "max_batch_size": int(max_batch_size), "dynamic_batching": bool(dynamic_batching)}


def check_repository(model_dir: str | Path) -> dict:
    """Parse `config.pbtxt` and `1/model.onnx`; raise ValueError where they disagree.

    Returns what was compared. Checked: the config names the folder's model, the ONNX platform,
    a max_batch_size >= 1; every graph input and output appears in the config under its name with
    its data type and its dims without the batch dimension (a [batch] tensor as dims [1] with an
    empty reshape), and the config lists no tensor the graph lacks.
    """
    model_dir = Path(model_dir)
    cfg = parse_config((model_dir / "config.pbtxt").read_text())
    model = onnx.load(str(model_dir / "1" / "model.onnx"), load_external_data=False)
    problems = []
    if cfg.name != model_dir.name:
        problems.append(f"config name {cfg.name!r} is not the folder name {model_dir.name!r}")
    if cfg.platform != "onnxruntime_onnx" and cfg.backend != "onnxruntime":
        problems.append(f"platform {cfg.platform!r} / backend {cfg.backend!r} is not ONNX Runtime")
    if cfg.max_batch_size < 1:
        problems.append(f"max_batch_size {cfg.max_batch_size} but the graph has a batch dimension")
    inputs, outputs = _graph_io(model)
    compared = []
    for kind, tensors, declared in (("input", inputs, cfg.input), ("output", outputs, cfg.output)):
        by_name = {d.name: d for d in declared}
        extra = set(by_name) - {t["name"] for t in tensors}
        if extra:
            problems.append(f"config {kind}s {sorted(extra)} are not in the ONNX graph")
        for t in tensors:
            d = by_name.get(t["name"])
            if d is None:
                problems.append(f"ONNX {kind} {t['name']!r} missing from config.pbtxt")
                continue
            dtype = model_config_class().DESCRIPTOR.file.enum_types_by_name["DataType"].values_by_number[
                d.data_type].name
            if dtype != ONNX_TO_TRITON.get(t["elem_type"]):
                problems.append(f"{kind} {t['name']!r}: config {dtype} vs ONNX {ONNX_TO_TRITON.get(t['elem_type'])}")
            if t["dims"] and isinstance(t["dims"][0], int):
                problems.append(f"{kind} {t['name']!r}: ONNX batch dimension is fixed at {t['dims'][0]}")
            served = list(d.reshape.shape) if d.HasField("reshape") else list(d.dims)
            if served != list(t["dims"][1:]):
                problems.append(f"{kind} {t['name']!r}: config dims {list(d.dims)} (reshape "
                                f"{list(d.reshape.shape) if d.HasField('reshape') else None}) vs ONNX {t['dims']}")
            compared.append({"kind": kind, "name": t["name"], "data_type": dtype, "dims": list(d.dims),
                             "onnx_dims": t["dims"]})
    if problems:
        raise ValueError(f"Triton repository {model_dir} does not match its model: " + "; ".join(problems))
    return {"model_name": cfg.name, "max_batch_size": cfg.max_batch_size, "tensors": compared}
