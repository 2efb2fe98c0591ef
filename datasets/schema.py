"""The two tables every stage of faketrace passes along: the index and the manifest.

The index has one row per video or still image of a data set (whatever adapter produced it); the
manifest has one row per sampled frame after face preprocessing. Both are Parquet files whose
schema version is written into the file's metadata, so a reader can refuse a table it does not
understand instead of misreading it.

Conventions: label 0 is real and 1 is fake; paths are relative to the data set root, POSIX style;
`split` is one of train / val / test; identity columns hold whatever "identity" means for the
data set (documented per adapter), and splits are disjoint by it where the adapter promises so.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

INDEX_SCHEMA_VERSION = 1
# 2 added track_id and face_index (several faces per frame with face_policy=all); version 1
# manifests are still read, with those columns empty.
MANIFEST_SCHEMA_VERSION = 2
VIDEOS_SCHEMA_VERSION = 1

SPLITS = ("train", "val", "test")
REAL, FAKE = 0, 1

# column -> (pyarrow type, nullable, meaning)
INDEX_COLUMNS: dict[str, tuple[pa.DataType, bool, str]] = {
    "id": (pa.string(), False, "unique id of the video or image within the data set"),
    "dataset": (pa.string(), False, "data set name, e.g. demo, ffpp, celebdf_v2"),
    "split": (pa.string(), False, "train, val or test"),
    "label": (pa.int8(), False, "0 real, 1 fake"),
    "method": (pa.string(), False, "manipulation method or operator; 'real' for real items"),
    "compression": (pa.string(), True, "compression level as the data set names it (raw, c23, c40)"),
    "media_type": (pa.string(), False, "video or image"),
    "path": (pa.string(), False, "path relative to the data set root, POSIX style"),
    "source_identity": (pa.string(), True, "identity whose face is shown (the target of a swap)"),
    "target_identity": (pa.string(), True, "identity whose face was pasted in, for fakes that have one"),
    "original_id": (pa.string(), True, "id of the real video a fake was made from (DFDC style)"),
    "mask_path": (pa.string(), True, "relative path of a manipulation mask, when published"),
    "adapter_version": (pa.string(), False, "adapter name and version that wrote the row"),
}

# One row per sampled frame and kept face: every sampled frame has at least one row and a status;
# exactly one with face_policy=largest, one per face with face_policy=all.
MANIFEST_COLUMNS: dict[str, tuple[pa.DataType, bool, str]] = {
    "video_id": (pa.string(), False, "index id of the video or image"),
    "frame_index": (pa.int32(), False, "0-based index of the decoded frame"),
    "status": (pa.string(), False, "face, no_face, decode_error"),
    "face_index": (pa.int16(), True, "rank of the face in its frame by box area (0 largest); empty without a face"),
    "track_id": (pa.int32(), True, "per-video face track (IoU tracker); same person, same id"),
    "reason": (pa.string(), True, "why a frame has no crop"),
    "crop_path": (pa.string(), True, "crop path relative to the faces root"),
    "x0": (pa.float32(), True, "face box in frame pixels"),
    "y0": (pa.float32(), True, ""),
    "x1": (pa.float32(), True, ""),
    "y1": (pa.float32(), True, ""),
    "landmarks": (pa.list_(pa.float32()), True, "5 points x,y (eyes, nose, mouth corners) in frame pixels"),
    "score": (pa.float32(), True, "detector confidence"),
    "n_faces": (pa.int16(), False, "faces detected in the frame above the threshold"),
    "frame_width": (pa.int32(), True, ""),
    "frame_height": (pa.int32(), True, ""),
}

FRAME_STATUSES = ("face", "no_face", "decode_error")

# One row per index item: what decoding and detection made of it (beside the manifest).
VIDEO_COLUMNS: dict[str, tuple[pa.DataType, bool, str]] = {
    "video_id": (pa.string(), False, "index id of the video or image"),
    "media_type": (pa.string(), False, "video or image, as the index says"),
    "outcome": (pa.string(), False, "ok, partial (decoding stopped early), timeout, decode_error"),
    "reason": (pa.string(), True, "why the outcome is not ok"),
    "frames_claimed": (pa.int32(), True, "frame count the container claims (not trusted)"),
    "frames_decoded": (pa.int32(), False, "frames that actually decoded on the counting pass"),
    "frames_sampled": (pa.int32(), False, "frames chosen by the sampling rule"),
    "frames_read": (pa.int32(), False, "sampled frames delivered by the second pass"),
    "rows_face": (pa.int32(), False, "manifest rows with status face"),
    "rows_no_face": (pa.int32(), False, "manifest rows with status no_face"),
    "rows_decode_error": (pa.int32(), False, "manifest rows with status decode_error"),
    "seconds": (pa.float32(), False, "wall time spent on the item"),
    "decoder": (pa.string(), True, "where the video's frames were decoded: cpu or cuda (face.decode)"),
    "decoder_note": (pa.string(), True, "why a hardware decoder asked for did not decode them"),
}

_TABLES = {"index": (INDEX_COLUMNS, INDEX_SCHEMA_VERSION),
           "manifest": (MANIFEST_COLUMNS, MANIFEST_SCHEMA_VERSION),
           "videos": (VIDEO_COLUMNS, VIDEOS_SCHEMA_VERSION)}


def _arrow_schema(columns: dict[str, tuple[pa.DataType, bool, str]], kind: str, version: int,
                  extra: dict | None = None) -> pa.Schema:
    fields = [pa.field(name, typ, nullable=nullable) for name, (typ, nullable, _) in columns.items()]
    meta = {"faketrace.kind": kind, "faketrace.schema_version": str(version)}
    if extra:
        meta["faketrace.meta"] = json.dumps(extra, sort_keys=True, default=str)
    return pa.schema(fields, metadata=meta)


def _conform(df: pd.DataFrame, columns: dict[str, tuple[pa.DataType, bool, str]], kind: str) -> pd.DataFrame:
    missing = [c for c, (_, nullable, _) in columns.items() if c not in df.columns and not nullable]
    if missing:
        raise ValueError(f"{kind} is missing required columns {missing}")
    df = df.copy()
    for c in columns:
        if c not in df.columns:
            df[c] = None
    for c, (typ, nullable, _) in columns.items():
        if pa.types.is_list(typ):
            # A column of only missing lists comes out of pandas as float NaN; arrow wants None.
            df[c] = pd.Series([v if isinstance(v, (list, tuple, np.ndarray)) else None for v in df[c]],
                              index=df.index, dtype=object)
        if not nullable and df[c].isna().any():
            raise ValueError(f"{kind} column {c!r} has empty values")
    return df[list(columns)]


def validate_index(df: pd.DataFrame) -> pd.DataFrame:
    """Check the invariants every adapter must keep; return the frame in schema column order."""
    df = _conform(df, INDEX_COLUMNS, "index")
    bad_split = sorted(set(df["split"]) - set(SPLITS))
    if bad_split:
        raise ValueError(f"index has unknown splits {bad_split}; expected {SPLITS}")
    bad_label = sorted(set(df["label"].astype(int)) - {REAL, FAKE})
    if bad_label:
        raise ValueError(f"index has labels {bad_label}; expected 0 (real) or 1 (fake)")
    if df["id"].duplicated().any():
        dup = df.loc[df["id"].duplicated(), "id"].head(5).tolist()
        raise ValueError(f"index ids are not unique, e.g. {dup}")
    for p in df["path"]:
        pp = PurePosixPath(p)
        if pp.is_absolute() or ".." in pp.parts or "\\" in p:
            raise ValueError(f"index path {p!r} must be relative, POSIX style, inside the root")
    return df


def to_arrow(df: pd.DataFrame, kind: str, meta: dict | None = None) -> pa.Table:
    """The table checked against its schema, with kind, version and `meta` in its metadata."""
    columns, version = _TABLES[kind]
    df = validate_index(df) if kind == "index" else _conform(df, columns, kind)
    return pa.Table.from_pandas(df, schema=_arrow_schema(columns, kind, version, meta), preserve_index=False)


def write_table(df: pd.DataFrame, path: str | Path, kind: str, meta: dict | None = None) -> Path:
    """Write an index or manifest atomically (temporary name, fsync, rename)."""
    from faketrace.datasets.io import atomic_path

    table = to_arrow(df, kind, meta)
    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def write_index(df: pd.DataFrame, path: str | Path, meta: dict | None = None) -> Path:
    return write_table(df, path, "index", meta)


def write_manifest(df: pd.DataFrame, path: str | Path, meta: dict | None = None) -> Path:
    return write_table(df, path, "manifest", meta)


def read_table(path: str | Path, kind: str) -> tuple[pd.DataFrame, dict]:
    """Read an index or manifest and its metadata; refuse other kinds or newer schema versions."""
    table = pq.read_table(path)
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    found = meta.get("faketrace.kind")
    if found != kind:
        raise ValueError(f"{path} is not a faketrace {kind} (its metadata says {found!r})")
    version = int(meta.get("faketrace.schema_version", "0"))
    columns, supported = _TABLES[kind]
    if version > supported:
        raise ValueError(f"{path} has {kind} schema version {version}; this faketrace reads up to {supported}")
    extra = json.loads(meta.get("faketrace.meta", "{}"))
    df = table.to_pandas()
    # Columns added by later versions are present, empty, in tables written before them.
    for c in columns:
        if c not in df.columns:
            df[c] = None
    return df, extra


def read_index(path: str | Path) -> tuple[pd.DataFrame, dict]:
    return read_table(path, "index")


def read_manifest(path: str | Path) -> tuple[pd.DataFrame, dict]:
    return read_table(path, "manifest")


def write_videos(df: pd.DataFrame, path: str | Path, meta: dict | None = None) -> Path:
    return write_table(df, path, "videos", meta)


def read_videos(path: str | Path) -> tuple[pd.DataFrame, dict]:
    return read_table(path, "videos")
