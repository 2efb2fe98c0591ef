"""Where dlib's model files are on this machine (one place for every dlib user: landmarks, face embeddings).

Search order for a file name: an explicit path; $FAKETRACE_DLIB_MODELS (a folder); the
`face_recognition_models` package's models/ folder (pip, ~100 MB sdist); Debian's libdlib-data
(/usr/share/dlib). Nothing is downloaded. Licences: dlib's code is Boost; the 68-point predictor
was trained on iBUG 300-W, whose images are for non-commercial research only.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

DEBIAN_DIR = Path("/usr/share/dlib")
ENV = "FAKETRACE_DLIB_MODELS"


def candidate_dirs() -> list[Path]:
    dirs = []
    if os.environ.get(ENV):
        dirs.append(Path(os.environ[ENV]))
    try:
        import face_recognition_models

        dirs.append(Path(face_recognition_models.__file__).parent / "models")
    except ImportError:
        pass
    dirs.append(DEBIAN_DIR)
    return dirs


def find_dlib_model(filename: str, explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found")
        return p
    tried = []
    for d in candidate_dirs():
        p = d / filename
        tried.append(str(p))
        if p.is_file():
            return p
    raise FileNotFoundError(f"dlib model {filename} not found (tried {', '.join(tried)}); install Debian's "
                            f"libdlib-data or pip install face-recognition-models, or set ${ENV} to its folder")


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
