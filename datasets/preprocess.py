"""The face preprocessing pipeline: index rows in, face crops and a manifest out.

Every sampled frame of every input gets a manifest row with a status (`face`, `no_face`,
`decode_error`), so frames without a detected face are accounted for, never silently dropped;
every input also gets a row in the videos table beside the manifest (frames claimed, decoded,
sampled and read, rows per status, outcome). The same code serves training data and evidence.

Crash safety: each video is finished by writing its manifest part (`parts/<video>.parquet`)
after its crops, both under temporary names renamed after fsync. A rerun trusts a video only
when its part exists and was made with the same spec and detector weights, so a killed run
leaves nothing a rerun would trust; the final manifest is the merge of the parts.

Layout under `faces_dir`: `crops/<video id>/<frame>.png` (or `<frame>_<face>.png` with
`face_policy=all`), `parts/`, and the manifest with its `videos.parquet`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from faketrace.datasets.face_pipeline import ChosenFace, PreprocessSpec, choose_faces, crop_pixels
from faketrace.datasets.faces import Face, build_detector, describe_detector, encode_crop
from faketrace.datasets.faults import FAULT_ENV, FaultInjector, FaultPlan, InjectedFault
from faketrace.datasets.io import atomic_path, atomic_write_bytes, is_disk_full
from faketrace.datasets.media import DecodeError, read_image, read_video_frames, sniff_media_type
from faketrace.datasets.schema import (
    MANIFEST_COLUMNS,
    VIDEO_COLUMNS,
    read_manifest,
    read_videos,
    to_arrow,
    write_manifest,
    write_videos,
)

log = logging.getLogger(__name__)

MANIFEST_SORT = ["video_id", "frame_index", "face_index"]


# -- options, names, shards -----------------------------------------------------------------------
@dataclass(frozen=True)
class RunOptions:
    """How a run goes about it (not what the crops look like)."""

    workers: int = 1
    shard: str | None = None  # "i/N": this run takes the ids whose stable hash is i modulo N
    video_time_limit_s: float | None = 300.0
    detector_batch: int = 32
    progress: bool = True
    fault: FaultPlan | None = None
    # How, not what: the same network and the same pictures either way (face.detector_runtime, face.decode).
    detector_runtime: str = "auto"  # auto | onnx | torch (datasets/faces.py DETECTOR_RUNTIMES)
    decode: str = "cpu"  # cpu | auto | cuda (datasets/media.py DECODE_MODES)


def make_detector(spec: PreprocessSpec, device: str = "cpu", threads: int = 1, runtime: str = "auto"):
    return build_detector(spec.detector, runtime=runtime, score_threshold=spec.score_threshold,
                          nms_threshold=spec.nms_threshold, max_side=spec.detector_max_side, device=device,
                          threads=threads)


def spec_fingerprint(spec: PreprocessSpec) -> str:
    """Identifies what a part was made with: the spec and the detector's weights."""
    detector = describe_detector(spec.detector, spec.score_threshold, spec.nms_threshold, spec.detector_max_side)
    text = json.dumps({"spec": spec.to_dict(), "weights": detector["weights_sha256"]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _id_hash(video_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(video_id.encode(), digest_size=8).digest(), "little")


def parse_shard(shard: str) -> tuple[int, int]:
    i, sep, n = str(shard).partition("/")
    if not sep or not i.isdigit() or not n.isdigit() or not 0 <= int(i) < int(n):
        raise ValueError(f"shard must look like i/N with 0 <= i < N, got {shard!r}")
    return int(i), int(n)


def select_shard(index: pd.DataFrame, shard: str | None) -> pd.DataFrame:
    """The deterministic 1/N of the index for shard i/N (by a stable hash of the id, not its row)."""
    if not shard:
        return index
    i, n = parse_shard(shard)
    keep = [(_id_hash(v) % n) == i for v in index["id"]]
    return index[keep]


def shard_manifest_path(manifest_path: str | Path, shard: str | None) -> Path:
    manifest_path = Path(manifest_path)
    if not shard:
        return manifest_path
    i, n = parse_shard(shard)
    return manifest_path.with_name(f"{manifest_path.stem}.shard-{i}-of-{n}{manifest_path.suffix}")


def videos_path_for(manifest_path: str | Path) -> Path:
    """The videos table beside a manifest: manifest.parquet -> videos.parquet (shards alike)."""
    manifest_path = Path(manifest_path)
    name = manifest_path.name
    return manifest_path.with_name(name.replace("manifest", "videos", 1) if "manifest" in name
                                   else f"{manifest_path.stem}.videos{manifest_path.suffix}")


def part_path(faces_dir: Path, video_id: str) -> Path:
    """A flat, file-system-safe, collision-free name for a video's manifest part."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", video_id)[-80:]
    digest = hashlib.blake2b(video_id.encode(), digest_size=6).hexdigest()
    return faces_dir / "parts" / f"{readable}-{digest}.parquet"


_CROP_NAME = re.compile(r"^(\d{6}(_\d+)?\.(png|jpg)|\..*\.tmp)$")


def _clear_video_leftovers(faces_dir: Path, video_id: str) -> None:
    """Remove what an earlier, unfinished attempt at this video may have left (crops, temporaries).

    Only this video's own files are touched, so shards sharing `faces_dir` do not disturb each other.
    """
    crop_dir = faces_dir / "crops" / video_id
    if crop_dir.is_dir():
        for f in crop_dir.iterdir():
            if f.is_file() and _CROP_NAME.match(f.name):
                f.unlink()
    part = part_path(faces_dir, video_id)
    if part.parent.is_dir():
        for f in part.parent.glob(f".{part.name}.*.tmp"):
            f.unlink()


def finished_part(faces_dir: Path, video_id: str, fingerprint: str) -> Path | None:
    """The video's part if a previous run finished it with the same spec and weights."""
    path = part_path(faces_dir, video_id)
    if not path.is_file():
        return None
    try:
        meta = json.loads((pq.read_schema(path).metadata or {}).get(b"faketrace.meta", b"{}"))
    except (OSError, pa.ArrowException, ValueError):
        return None
    part = meta.get("part", {})
    if part.get("fingerprint") != fingerprint or part.get("video_id") != video_id:
        return None
    return path


# -- one video -----------------------------------------------------------------------------------
def _error_row(video_id: str, frame_index: int, reason: str) -> dict:
    return dict(video_id=video_id, frame_index=frame_index, status="decode_error", reason=reason, n_faces=0)


def _input_problem(path: Path, media_type: str) -> str | None:
    """Why a file cannot be what the index says it is, judged from its bytes; None if it may be."""
    if not path.is_file():
        return "file not found"
    found = sniff_media_type(path)
    if found == "empty":
        return "empty file (0 bytes)"
    if media_type == "video" and found == "image":
        return "not a video: the file's bytes are an image"
    if media_type == "image" and found == "video":
        return "not an image: the file's bytes are a video"
    return None


class VideoProcessor:
    """Turns one index row into crops, manifest rows and a videos-table row; writes its part."""

    def __init__(self, root: str | Path, faces_dir: str | Path, spec: PreprocessSpec, device: str = "cpu",
                 options: RunOptions | None = None, detector=None):
        self.root, self.faces_dir, self.spec = Path(root), Path(faces_dir), spec
        self.options = options or RunOptions()
        self.detector = detector if detector is not None else make_detector(spec, device,
                                                                             runtime=self.options.detector_runtime)
        self.fault = FaultInjector(self.options.fault)
        self.fingerprint = spec_fingerprint(spec)

    def process(self, item: dict) -> dict:
        """Process one item and write its part; return its videos-table row."""
        start = time.perf_counter()
        id_parts = PurePosixPath(item["id"]).parts
        if not id_parts or PurePosixPath(item["id"]).is_absolute() or ".." in id_parts or "\\" in item["id"]:
            # Crops go to crops/<id>/: an id must not lead out of faces_dir.
            raise ValueError(f"index id {item['id']!r} cannot name a folder inside faces_dir")
        _clear_video_leftovers(self.faces_dir, item["id"])
        rows, video = self.rows(item)
        for status in ("face", "no_face", "decode_error"):
            video[f"rows_{status}"] = sum(r["status"] == status for r in rows)
        video["seconds"] = time.perf_counter() - start
        self._write_part(item["id"], rows, video)
        return video

    def rows(self, item: dict) -> tuple[list[dict], dict]:
        video_id, media_type = item["id"], item["media_type"]
        path = self.root / item["path"]
        video = dict(video_id=video_id, media_type=media_type, outcome="ok", reason=None, frames_claimed=None,
                     frames_decoded=0, frames_sampled=0, frames_read=0)
        problem = _input_problem(path, media_type)
        if problem is None and media_type == "image":
            try:
                frames = {0: read_image(path)}
            except (DecodeError, OSError) as exc:
                problem = str(exc)
            else:
                video.update(frames_claimed=1, frames_decoded=1, frames_sampled=1, frames_read=1)
                return self._face_rows(video_id, frames), video
        if problem is not None:
            video.update(outcome="decode_error", reason=problem)
            # Nothing was sampled: one row stands for the whole item (frame -1 for a video).
            return [_error_row(video_id, 0 if media_type == "image" else -1, problem)], video
        decoded = read_video_frames(path, self.spec.frames_per_video, sampling=self.spec.sampling,
                                    every_k=self.spec.every_k, time_limit_s=self.options.video_time_limit_s,
                                    decode=self.options.decode)
        video.update(decoder=decoded.decoder, decoder_note=decoded.decoder_note)
        if decoded.error:
            # Decoder messages name the file; the manifest names it relative to the root, as the index does.
            decoded.error = decoded.error.replace(str(path), item["path"])
        video.update(frames_claimed=decoded.expected_frames, frames_decoded=decoded.decoded_frames,
                     frames_sampled=len(decoded.sampled), frames_read=len(decoded.frames))
        if decoded.timed_out:
            video.update(outcome="timeout", reason=decoded.error)
        elif decoded.error:
            video.update(outcome="partial" if decoded.frames else "decode_error", reason=decoded.error)
        if not decoded.sampled:
            reason = decoded.error or "no frame could be decoded"
            if sniff_media_type(path) == "unknown":
                reason = f"not a video the decoder recognises: {reason}"
            video.update(outcome="timeout" if decoded.timed_out else "decode_error", reason=reason)
            return [_error_row(video_id, -1, reason)], video
        rows = self._face_rows(video_id, decoded.frames)
        rows += [_error_row(video_id, fi, why) for fi, why in decoded.failed.items()]
        if decoded.error:
            for r in rows:
                r["reason"] = r.get("reason") or f"partial video: {decoded.error}"
        return rows, video

    def _detect(self, frames: list[np.ndarray]) -> list[list[Face]]:
        batch = max(1, int(self.options.detector_batch))
        out: list[list[Face]] = []
        for i in range(0, len(frames), batch):
            out.extend(self.detector.detect(frames[i:i + batch]))
        return out

    def _face_rows(self, video_id: str, frames: dict[int, np.ndarray]) -> list[dict]:
        order = sorted(frames)
        detections = self._detect([frames[i] for i in order])
        rows = []
        for fi, faces, chosen in zip(order, detections, choose_faces(order, detections, self.spec), strict=True):
            h, w = frames[fi].shape[:2]
            base = dict(video_id=video_id, frame_index=fi, n_faces=len(faces), frame_width=w, frame_height=h)
            if not chosen:
                rows.append(dict(base, status="no_face", reason="no face above the detector threshold"))
                continue
            for c in chosen:
                rows.append(dict(base, **self._write_crop(video_id, frames[fi], c), face_index=c.rank,
                                 track_id=c.track_id))
                self.fault("after_crop_before_row")
        return rows

    def _write_crop(self, video_id: str, frame: np.ndarray, chosen: ChosenFace) -> dict:
        spec, face = self.spec, chosen.face
        ext, data = encode_crop(crop_pixels(frame, face, spec), spec.image_format, spec.jpeg_quality)
        name = f"{chosen.frame_index:06d}" if spec.face_policy == "largest" else \
            f"{chosen.frame_index:06d}_{chosen.rank}"
        rel = f"crops/{video_id}/{name}.{ext}"
        atomic_write_bytes(self.faces_dir / rel, data)
        return dict(status="face", crop_path=rel, x0=face.box[0], y0=face.box[1], x1=face.box[2], y1=face.box[3],
                    landmarks=face.landmarks.reshape(-1).astype(np.float32).tolist(), score=face.score)

    def _write_part(self, video_id: str, rows: list[dict], video: dict) -> None:
        df = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
        table = to_arrow(df, "manifest", {"part": {"video_id": video_id, "fingerprint": self.fingerprint,
                                                   "video": video}})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        data = sink.getvalue().to_pybytes()
        with atomic_path(part_path(self.faces_dir, video_id)) as tmp, open(tmp, "wb") as fh:
            # Written in two halves so a fault point can stop the flush half-way.
            fh.write(data[: len(data) // 2])
            fh.flush()
            self.fault("mid_manifest_flush")
            fh.write(data[len(data) // 2:])


# -- worker processes ------------------------------------------------------------------------------
_WORKER: VideoProcessor | None = None


def _init_worker(root, faces_dir, spec_dict, device, options: RunOptions) -> None:
    import cv2

    global _WORKER
    # One thread per worker process: the parallelism is across videos.
    cv2.setNumThreads(1)
    if options.detector_runtime == "torch" and not str(device).startswith("cuda"):
        import torch

        torch.set_num_threads(1)  # PyTorch's detector on the CPU: its threads are per process
    _WORKER = VideoProcessor(root, faces_dir, PreprocessSpec.from_dict(spec_dict), device, options)


def _work(item: dict) -> dict:
    assert _WORKER is not None
    return _WORKER.process(item)


def _run_pending(pending: list[dict], root: Path, faces_dir: Path, spec: PreprocessSpec, device: str,
                 options: RunOptions) -> tuple[list[dict], dict[str, str]]:
    """Process the pending items; return their videos rows and the ids that failed (with why)."""
    done: list[dict] = []
    failed: dict[str, str] = {}
    start = time.perf_counter()
    frames = 0
    bar = tqdm(total=len(pending), desc="preprocess", unit="video", disable=not options.progress, file=sys.stderr,
               mininterval=1.0)  # a redirected log gets a line a second, not one per video

    def finished(video: dict) -> None:
        nonlocal frames
        done.append(video)
        frames += video["rows_face"] + video["rows_no_face"] + video["rows_decode_error"]
        elapsed = max(time.perf_counter() - start, 1e-9)
        bar.update(1)
        bar.set_postfix(videos_s=f"{len(done) / elapsed:.2f}", frames_s=f"{frames / elapsed:.1f}",
                        failed=len(failed), refresh=False)

    try:
        if options.workers <= 1 or len(pending) <= 1:
            processor = VideoProcessor(root, faces_dir, spec, device, options)
            for item in pending:
                try:
                    finished(processor.process(item))
                except InjectedFault:
                    raise
                except Exception as exc:  # one broken item must not stop the run; it is named at the end
                    if is_disk_full(exc):  # ... but a full disk stops it: every later item would fail too
                        raise _stopped_by_full_disk(exc, done, pending) from exc
                    log.exception("preprocess: %s failed", item["id"])
                    failed[item["id"]] = f"{type(exc).__name__}: {exc}"
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            # spawn: each worker builds its own ONNX Runtime session in a clean process.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=options.workers, mp_context=context, initializer=_init_worker,
                                     initargs=(root, faces_dir, spec.to_dict(), device, options)) as pool:
                futures = {pool.submit(_work, item): item["id"] for item in pending}
                for future in as_completed(futures):
                    try:
                        finished(future.result())
                    except InjectedFault:
                        pool.shutdown(cancel_futures=True)
                        raise
                    except Exception as exc:
                        if is_disk_full(exc):
                            pool.shutdown(cancel_futures=True)
                            raise _stopped_by_full_disk(exc, done, pending) from exc
                        log.error("preprocess: %s failed: %s", futures[future], exc)
                        failed[futures[future]] = f"{type(exc).__name__}: {exc}"
    finally:
        bar.close()
    return done, failed


def _stopped_by_full_disk(exc: OSError, done: list[dict], pending: list[dict]) -> OSError:
    return OSError(exc.errno, f"{exc.strerror}. Preprocessing stopped: {len(done)} of the {len(pending)} items "
                              "this run had to do were finished and are kept (their crops and manifest parts); "
                              "free space and rerun the same command to go on with the rest")


# -- the run -------------------------------------------------------------------------------------
def _sorted_manifest(frames: list[pd.DataFrame]) -> pd.DataFrame:
    columns = list(MANIFEST_COLUMNS)
    manifest = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    order = manifest.assign(_face=manifest["face_index"].fillna(-1)).sort_values(
        ["video_id", "frame_index", "_face"], kind="stable").index
    return manifest.loc[order, columns].reset_index(drop=True)


def _sorted_videos(rows: list[dict] | pd.DataFrame) -> pd.DataFrame:
    videos = pd.DataFrame(rows, columns=list(VIDEO_COLUMNS))
    return videos.sort_values("video_id", kind="stable").reset_index(drop=True)


def collect_parts(faces_dir: Path, ids: list[str], fingerprint: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Manifest and videos table of finished items, from their parts."""
    frames, videos = [], []
    for video_id in ids:
        path = finished_part(faces_dir, video_id, fingerprint)
        if path is None:
            continue
        part, meta = read_manifest(path)
        frames.append(part)
        videos.append(meta["part"]["video"])
    return _sorted_manifest(frames), _sorted_videos(videos)


def summarize(manifest: pd.DataFrame, videos: pd.DataFrame, limit: int = 10) -> str:
    """Rows per status, items per outcome, and the items that are not ok (first `limit`)."""
    statuses = manifest.groupby("status").size().to_dict() if len(manifest) else {}
    outcomes = videos.groupby("outcome").size().to_dict() if len(videos) else {}
    lines = [f"{len(manifest)} frame rows by status {statuses}; {len(videos)} items by outcome {outcomes}"]
    problems = videos[(videos["outcome"] != "ok") | (videos["rows_face"] < videos["frames_sampled"])]
    for row in problems.head(limit).itertuples():
        lines.append(f"  {row.video_id}: {row.outcome}, decoded {row.frames_decoded}/{row.frames_claimed} claimed, "
                     f"face {row.rows_face} no_face {row.rows_no_face} decode_error {row.rows_decode_error}"
                     + (f" ({row.reason})" if row.reason else ""))
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more in the videos table")
    return "\n".join(lines)


def _manifest_meta(spec: PreprocessSpec, n_items: int, shard: str | None, extra: dict | None = None,
                   runtime: str = "auto", device: str = "cpu") -> dict:
    detector = describe_detector(spec.detector, spec.score_threshold, spec.nms_threshold, spec.detector_max_side,
                                 runtime, device)
    return {"spec": spec.to_dict(), "detector": detector, "fingerprint": spec_fingerprint(spec),
            "n_items": int(n_items), "shard": shard, **(extra or {})}


def preprocess_index(index: pd.DataFrame, root: str | Path, faces_dir: str | Path, spec: PreprocessSpec,
                     manifest_path: str | Path, device: str = "cpu", options: RunOptions | None = None
                     ) -> pd.DataFrame:
    """Run the face pipeline over an index (or its shard), resuming finished items; write the manifest.

    With a shard the manifest goes to `<manifest stem>.shard-i-of-N.parquet` (see `merge_shards`).
    Returns the manifest; the videos table is written beside it.
    """
    options = options or RunOptions()
    root, faces_dir = Path(root), Path(faces_dir)
    index = select_shard(index, options.shard)
    fingerprint = spec_fingerprint(spec)
    items = index.to_dict("records")
    pending = [it for it in items if finished_part(faces_dir, it["id"], fingerprint) is None]
    if len(pending) < len(items):
        log.info("preprocess: %d of %d items already finished; resuming with %d", len(items) - len(pending),
                 len(items), len(pending))
    start = time.perf_counter()
    _, failed = _run_pending(pending, root, faces_dir, spec, device, options)
    FaultInjector(options.fault)("before_merge")
    manifest, videos = collect_parts(faces_dir, [it["id"] for it in items], fingerprint)
    if failed:
        named = "; ".join(f"{k}: {v}" for k, v in list(failed.items())[:5])
        raise RuntimeError(f"{len(failed)} items failed and were not written (rerun to retry them): {named}")
    out = shard_manifest_path(manifest_path, options.shard)
    meta = _manifest_meta(spec, len(items), options.shard,
                          {"videos_table": videos_path_for(out).name, "frames_by_status":
                           manifest.groupby("status").size().to_dict() if len(manifest) else {},
                           "decode": options.decode}, runtime=options.detector_runtime, device=device)
    write_videos(videos, videos_path_for(out), meta)
    write_manifest(manifest, out, meta)
    # The counts are printed once, by the caller's summary (preprocess_from_config); the log keeps the time.
    log.info("preprocess: %s (%.1fs)", out, time.perf_counter() - start)
    return manifest


def merge_shards(manifest_path: str | Path, n_shards: int | None = None) -> pd.DataFrame:
    """Join the shard manifests (and videos tables) of `manifest_path` into it; all shards must be there."""
    manifest_path = Path(manifest_path)
    pattern = re.compile(rf"^{re.escape(manifest_path.stem)}\.shard-(\d+)-of-(\d+){re.escape(manifest_path.suffix)}$")
    found: dict[int, dict[int, Path]] = {}
    for p in manifest_path.parent.glob(f"{manifest_path.stem}.shard-*"):
        m = pattern.match(p.name)
        if m:
            found.setdefault(int(m.group(2)), {})[int(m.group(1))] = p
    if n_shards is None:
        if len(found) != 1:
            raise ValueError(f"expected shard manifests of one shard count beside {manifest_path}, found counts "
                             f"{sorted(found)}; name it with n_shards")
        n_shards = next(iter(found))
    shards = found.get(n_shards, {})
    missing = sorted(set(range(n_shards)) - set(shards))
    if missing:
        raise ValueError(f"shards {missing} of {n_shards} have no manifest beside {manifest_path}; run them first")
    frames, videos, metas = [], [], []
    for i in range(n_shards):
        part, meta = read_manifest(shards[i])
        frames.append(part)
        metas.append(meta)
        videos.append(read_videos(videos_path_for(shards[i]))[0])
    prints = {m.get("fingerprint") for m in metas}
    if len(prints) != 1:
        raise ValueError(f"shard manifests were made with different specs (fingerprints {sorted(map(str, prints))})")
    manifest, video_table = _sorted_manifest(frames), _sorted_videos(pd.concat(videos, ignore_index=True))
    if video_table["video_id"].duplicated().any():
        raise ValueError("an item appears in more than one shard; were the shards made from different indexes?")
    meta = {**metas[0], "n_items": int(sum(m["n_items"] for m in metas)), "shard": None,
            "merged_from": [shards[i].name for i in range(n_shards)],
            "videos_table": videos_path_for(manifest_path).name,
            "frames_by_status": manifest.groupby("status").size().to_dict() if len(manifest) else {}}
    write_videos(video_table, videos_path_for(manifest_path), meta)
    write_manifest(manifest, manifest_path, meta)
    log.info("merged %d shards into %s", n_shards, manifest_path)
    return manifest


def options_from_config(cfg) -> RunOptions:
    debug = cfg.get("debug") or {}
    face = cfg.get("face") or {}
    fault = (FaultPlan(debug["fault"], int(debug.get("fault_at", 1)), debug.get("fault_action", "raise"))
             if debug.get("fault") else FaultPlan.parse(os.environ.get(FAULT_ENV)))
    return RunOptions(workers=int(cfg.get("workers", 1)), shard=cfg.get("shard"),
                      video_time_limit_s=cfg.get("video_time_limit_s"), detector_batch=int(cfg.get("detector_batch", 32)),
                      progress=bool(cfg.get("progress", True)), fault=fault,
                      detector_runtime=str(face.get("detector_runtime") or "auto"),
                      decode=str(face.get("decode") or "cpu"))


def preprocess_from_config(cfg) -> dict:
    """`scripts/preprocess.py`: run (or merge) as configs/preprocess.yaml says; return paths and summary."""
    from omegaconf import OmegaConf

    from faketrace.datasets.schema import read_index

    if cfg.get("step", "run") == "merge":
        manifest = merge_shards(cfg.data.manifest_path, cfg.get("n_shards"))
        path = Path(cfg.data.manifest_path)
    elif cfg.get("step", "run") == "run":
        index, _ = read_index(cfg.data.index_path)
        if cfg.split:
            index = index[index["split"] == cfg.split]
        spec = PreprocessSpec.from_dict(OmegaConf.to_container(cfg.face, resolve=True))
        options = options_from_config(cfg)
        manifest = preprocess_index(index, cfg.data.root, cfg.data.faces_dir, spec, cfg.data.manifest_path,
                                    cfg.device, options)
        path = shard_manifest_path(cfg.data.manifest_path, options.shard)
    else:
        raise ValueError(f"step must be run or merge, got {cfg.step!r}")
    videos, _ = read_videos(videos_path_for(path))
    summary = f"manifest: {path}\nvideos: {videos_path_for(path)}\n{summarize(manifest, videos)}"
    return {"manifest_path": path, "videos_path": videos_path_for(path), "manifest": manifest, "videos": videos,
            "summary": summary}
