"""Reading tensor files that may come from strangers, without running anything they contain.

A `torch.save` file is a pickle, and unpickling can call any importable function (`os.system`,
`exec`, ...). Every faketrace load of such a file goes through `load_torch_file`, which uses
`torch.load(weights_only=True)`: tensors, containers and plain types only. A file that asks for
anything else is refused with a message that says why; nothing in it is executed. Released weights
are safetensors, which hold no code at all.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path


class UnsafeModelFileError(ValueError):
    """A model file that could only be loaded by running code it contains."""


def load_torch_file(path: str | Path, what: str = "model file"):
    """`torch.load(path, map_location="cpu", weights_only=True)`, with a clear refusal of code."""
    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        asks = (f"it asks to import and call `{found.group(1)}`" if found else
                "it uses pickle instructions that tensors and plain types never need")
        raise UnsafeModelFileError(
            f"refused {what} {path}: {asks} while loading. faketrace loads only tensors and plain types "
            "(torch.load with weights_only=True), because unpickling anything else can run code; nothing in "
            "the file was executed. Use a faketrace checkpoint or a safetensors file from a source you trust."
        ) from None
    except RuntimeError as exc:
        if "TorchScript" in str(exc):
            raise UnsafeModelFileError(f"refused {what} {path}: it is a TorchScript archive (a program, not "
                                       "weights); use a safetensors file or a plain state dict") from None
        raise
