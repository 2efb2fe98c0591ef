"""ONNX files from an export folder: external-data paths may not leave the folder.

An ONNX tensor can keep its bytes in another file named by a relative `location`. A crafted
model could name `/etc/passwd` or `../../secret` there, and whatever reads the model would read
that file into a weight (and could leak it through the outputs). Before ONNX Runtime sees a model,
`check_external_data` parses the graph without loading any external data and refuses a location
that is absolute, climbs out with `..`, or resolves outside the folder through a symbolic link.
Torch-free: the ONNX Runtime scan path uses it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath

from faketrace.models.serialization import UnsafeModelFileError


def _graph_tensors(graph) -> Iterator:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node) -> Iterator:
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("sparse_tensor"):
            yield attr.sparse_tensor.values
            yield attr.sparse_tensor.indices
        for sparse in attr.sparse_tensors:
            yield sparse.values
            yield sparse.indices
        if attr.HasField("g"):
            yield from _graph_tensors(attr.g)
        for sub in attr.graphs:
            yield from _graph_tensors(sub)


def model_tensors(model) -> Iterator:
    """Every tensor of a ModelProto: initializers, constants and attributes, subgraphs and functions."""
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from _node_tensors(node)


def external_locations(model) -> list[tuple[str, str]]:
    """(tensor name, location) of every tensor whose data lives outside the .onnx file."""
    from onnx import TensorProto

    out = []
    for tensor in model_tensors(model):
        if tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data):
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            out.append((tensor.name, location))
    return out


def location_problem(location: str, folder: Path) -> str | None:
    """Why `location` may not be read from `folder`, or None when it names a file inside it."""
    if not location:
        return "has no location"
    if "\x00" in location:
        return "has a NUL byte in its location"
    posix = PurePosixPath(location.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(location).is_absolute() or PureWindowsPath(location).drive \
            or location.startswith(("/", "\\")):
        return f"names an absolute path {location!r}"
    if ".." in posix.parts:
        return f"climbs out of the folder with '..' ({location!r})"
    real_folder = folder.resolve()
    real = (folder / Path(*posix.parts)).resolve()
    if real != real_folder and real_folder not in real.parents:
        return f"resolves outside the folder ({location!r} -> {real}, through a symbolic link)"
    return None


def check_external_data(onnx_path: str | Path, folder: str | Path | None = None) -> list[str]:
    """Refuse an ONNX model whose external data lies outside `folder` (default: the model's own).

    Parses the graph with `onnx.load(load_external_data=False)`: no external file is opened.
    Returns the external-data locations (relative, inside the folder); raises UnsafeModelFileError.
    """
    import onnx

    onnx_path = Path(onnx_path)
    folder = Path(folder) if folder is not None else onnx_path.parent
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own types; the message is what matters
        raise UnsafeModelFileError(f"refused {onnx_path}: it cannot be parsed as an ONNX model ({exc})") from None
    locations = []
    for name, location in external_locations(model):
        problem = location_problem(location, folder)
        if problem:
            raise UnsafeModelFileError(f"refused {onnx_path}: the external data of tensor {name!r} {problem}; "
                                       f"an exported model may only read files inside {folder}")
        locations.append(location)
    return locations
