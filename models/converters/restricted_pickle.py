"""Reading a whole pickled PyTorch model without running it: only what is needed to reach its tensors.

Some releases (the FaceForensics++ Xception models) are `torch.save(model)`: a pickle of the model
object, whose loading normally imports the publisher's classes and calls whatever the pickle names.
`load_pickled_module` instead gives the unpickler an allow-list:

- torch's own tensor and parameter rebuilders and storage types (the data);
- `collections.OrderedDict` (module dicts and hooks) and `set` (names of non-persistent buffers);
- the module class names a converter expects (e.g. `network.xception.Block`), each mapped to an
  inert `ModuleRecord` that only stores the attribute dict the pickle gives it. No publisher code
  is imported and no `__init__`, `__setstate__` or `forward` of theirs runs.

Any other global (`os.system`, `builtins.eval`, a class not on the list, ...) stops loading with
`UnsafeModelFileError` naming it. The records are then walked into a plain state dict.
"""

from __future__ import annotations

import collections
import pickle
import types
from pathlib import Path

import torch

from faketrace.models.serialization import UnsafeModelFileError

# torch.save's tensor plumbing, by (module, name). Storage classes (`torch.FloatStorage`, ...) are
# resolved by torch.load itself before they reach find_class.
_TENSOR_GLOBALS = {
    ("torch._utils", "_rebuild_tensor"), ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"),
}


class ModuleRecord:
    """Stands in for a pickled nn.Module: keeps the class name and the attribute dict, runs nothing."""

    qualified_name = "?"

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"{self.qualified_name}: expected an attribute dict, got {type(state)}")
        self.__dict__["state"] = state


def _record_class(qualified: str) -> type:
    return type(qualified.rsplit(".", 1)[-1], (ModuleRecord,), {"qualified_name": qualified})


def _restricted_pickle_module(allowed_modules: set[str]) -> types.ModuleType:
    records: dict[str, type] = {}

    def reconstructor(cls, base, state):
        # copyreg._reconstructor for protocol 0/1 pickles; only ever our inert records on `object`.
        if not (isinstance(cls, type) and issubclass(cls, ModuleRecord)) or base is not object or state is not None:
            raise pickle.UnpicklingError("copyreg._reconstructor outside a module record")
        return cls.__new__(cls)

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            qualified = f"{module}.{name}"
            if (module, name) in _TENSOR_GLOBALS:
                return super().find_class(module, name)
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            if module in ("builtins", "__builtin__") and name == "set":  # nn.Module's non-persistent buffer names
                return set
            if (module, name) == ("copyreg", "_reconstructor"):
                return reconstructor
            if qualified in allowed_modules:
                return records.setdefault(qualified, _record_class(qualified))
            raise pickle.UnpicklingError(f"GLOBAL {qualified} is not allowed")

    def load(fh, **kwargs):
        return Unpickler(fh, **kwargs).load()

    module = types.ModuleType("faketrace_restricted_pickle")
    module.Unpickler = Unpickler
    module.load = load
    module.__dict__["records"] = records
    return module


def load_pickled_module(path: str | Path, allowed_modules: set[str]) -> ModuleRecord:
    """The root record of a `torch.save(model)` file whose module classes are all in `allowed_modules`."""
    path = Path(path)
    restricted = _restricted_pickle_module(set(allowed_modules))
    try:
        root = torch.load(path, map_location="cpu", weights_only=False, pickle_module=restricted)
    except pickle.UnpicklingError as exc:
        raise UnsafeModelFileError(
            f"refused {path}: {exc} while loading. This file is read as a pickled model with an allow-list "
            f"(torch tensors, OrderedDict and the module classes {sorted(allowed_modules)}); anything else "
            "could run code, and nothing in the file was executed") from None
    if not isinstance(root, ModuleRecord):
        raise UnsafeModelFileError(f"refused {path}: it holds a {type(root).__name__}, not a pickled model")
    return root


def record_state_dict(root: ModuleRecord) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state dict, {module path: class name}) of a record tree, keyed as nn.Module.state_dict would be.

    BatchNorm's `num_batches_tracked` is kept where present (older pickles lack it; converters
    compare only parameters and running statistics where that matters).
    """
    state: dict[str, torch.Tensor] = {}
    classes: dict[str, str] = {}

    def walk(record: ModuleRecord, prefix: str) -> None:
        classes[prefix.rstrip(".")] = record.qualified_name
        attrs = record.__dict__.get("state", {})
        for group in ("_parameters", "_buffers"):
            for name, value in (attrs.get(group) or {}).items():
                if value is None:
                    continue
                if not isinstance(value, torch.Tensor):
                    raise UnsafeModelFileError(f"{prefix}{name} is a {type(value).__name__}, not a tensor")
                state[prefix + name] = value.detach().clone()
        for name, child in (attrs.get("_modules") or {}).items():
            if child is None:
                continue
            if not isinstance(child, ModuleRecord):
                raise UnsafeModelFileError(f"{prefix}{name} is a {type(child).__name__}, not a module")
            walk(child, prefix + name + ".")

    walk(root, "")
    return state, classes
