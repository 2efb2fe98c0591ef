"""The face preprocessing pipeline on demo media with known faces, with the real RetinaFace detector.

One small set (three demo videos, a demo still, a video whose face leaves the frame, a video with
two people, and broken inputs) is processed once without interruption; resumed, sharded and
killed runs must give the same manifest.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import threading

import av
import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from faketrace.datasets.demo import DemoRenderer, make_identities
from faketrace.datasets.faces import similarity_transform
from faketrace.datasets.faults import FAULT_ENV
from faketrace.datasets.media import read_video_frames
from faketrace.datasets.offline import OFFLINE_ENV
from faketrace.datasets.preprocess import (
    FaultPlan,
    InjectedFault,
    PreprocessSpec,
    RunOptions,
    VideoProcessor,
    merge_shards,
    part_path,
    preprocess_index,
    select_shard,
    shard_manifest_path,
    videos_path_for,
)
from faketrace.datasets.schema import read_manifest, read_videos, write_index

from .conftest import REPO, compose_config, resolved

FACE_OVERRIDES = ["face.frames_per_video=6", "face.crop_size=64"]
QUIET = RunOptions(progress=False)


def _encode(path, frames, fps=25, gop=None, faststart=False):
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", format="mp4", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12", "preset": "veryfast", "x264-params": "threads=1"}
        if gop:
            stream.codec_context.gop_size = gop
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode(None))


def _all_frames(path):
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _render(renderer, people, size, n_frames):
    """Frames with the given people: (identity patch, face height fraction per frame, centre per frame)."""
    rng = np.random.default_rng(0)
    bg = renderer.background(rng)
    frames = []
    for t in range(n_frames):
        frame = bg
        for patch, fraction, centre in people:
            scale = fraction(t) * size / (renderer.box[3] - renderer.box[1])
            frame, _ = renderer.place(patch, frame, scale, 0.0, centre(t), (0.0, 0.0, 1.0))
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


def _crafted_inputs(root):
    """Rows of index for made-up inputs whose expected statuses are known."""
    size = 192
    renderer = DemoRenderer(size, (0.4, 0.5))
    gen = {"skin_tone_range": [0.9, 1.0], "warp_amplitude": [2.0, 3.0]}
    a, b = (renderer.identity_patch(i) for i in make_identities(2, 7, gen))
    # Frames 0-2: a face near the centre; 3: gone past the right edge; 4-5: blank.
    leaving = _render(renderer, [(a, lambda t: 0.42, lambda t: (size * (0.5 if t < 3 else 2.5), size * 0.5))], size, 4)
    leaving += [np.full((size, size, 3), 128, np.uint8)] * 2
    _encode(root / "crafted/leaving.mp4", leaving)
    # Two people whose sizes alternate: the largest face changes sides every frame.
    two = _render(renderer, [(a, lambda t: 0.30 * (1.15 if t % 2 == 0 else 1.0), lambda t: (size * 0.27, size * 0.5)),
                             (b, lambda t: 0.30 * (1.0 if t % 2 == 0 else 1.15), lambda t: (size * 0.74, size * 0.5))],
                  size, 6)
    _encode(root / "crafted/two_people.mp4", two)
    # A file whose container claims 12 frames and holds about half of them.
    _encode(root / "crafted/full.mp4", _render(renderer, [(a, lambda t: 0.42, lambda t: (size * 0.5, size * 0.5))],
                                               size, 12), faststart=True)
    with av.open(str(root / "crafted/full.mp4")) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    cut = max(pos + size // 2 for pos, size in packets[:7])  # the file ends half-way into the 7th packet
    (root / "crafted/truncated.mp4").write_bytes((root / "crafted/full.mp4").read_bytes()[:cut])
    (root / "crafted/full.mp4").unlink()
    (root / "crafted/empty.mp4").write_bytes(b"")
    (root / "crafted/text.mp4").write_text("this is not a video\n" * 20)
    ok, jpg = cv2.imencode(".jpg", two[0])
    (root / "crafted/still.mp4").write_bytes(jpg.tobytes())
    names = ["leaving", "two_people", "truncated", "empty", "text", "still", "missing"]
    return [dict(id=f"crafted_{n}", dataset="demo", split="test", label=0, method="real", media_type="video",
                 path=f"crafted/{n}.mp4", adapter_version="test/1") for n in names]


@pytest.fixture(scope="module")
def small(demo_data, tmp_path_factory):
    """A small index over copies of demo items and crafted inputs, and an uninterrupted run of it."""
    work = tmp_path_factory.mktemp("preprocess")
    root = work / "raw"
    (root / "crafted").mkdir(parents=True)
    index = demo_data["index"]
    videos = index[index.media_type == "video"]
    chosen = pd.concat([videos[videos.method == "real"].head(1), videos[videos.method != "real"].head(2),
                        index[index.media_type == "image"].head(1)])
    for rel in chosen.path:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(demo_data["root"] / "demo" / "raw" / rel, root / rel)
    rows = chosen.to_dict("records") + _crafted_inputs(root)
    small_index = pd.DataFrame(rows)
    write_index(small_index, work / "index.parquet")
    cfg = resolved(compose_config("preprocess", demo_data["overrides"] + FACE_OVERRIDES))
    spec = PreprocessSpec.from_dict(OmegaConf.to_container(cfg.face))
    faces = work / "reference"
    manifest = preprocess_index(small_index, root, faces, spec, faces / "manifest.parquet", options=QUIET)
    return dict(work=work, root=root, index=small_index, spec=spec, faces=faces, manifest=manifest,
                videos=read_videos(faces / "videos.parquet")[0], demo_ids=list(chosen.id),
                truth=pd.read_parquet(demo_data["root"] / "demo" / "truth.parquet"))


def _assert_same_run(faces_dir, manifest, small, manifest_name="manifest.parquet"):
    pd.testing.assert_frame_equal(manifest, small["manifest"])
    on_disk, _ = read_manifest(faces_dir / manifest_name)
    pd.testing.assert_frame_equal(on_disk, small["manifest"])
    videos, _ = read_videos(videos_path_for(faces_dir / manifest_name))
    pd.testing.assert_frame_equal(videos.drop(columns="seconds"), small["videos"].drop(columns="seconds"))
    for rel in manifest.crop_path.dropna():
        assert (faces_dir / rel).read_bytes() == (small["faces"] / rel).read_bytes(), rel
    leftovers = [p for p in faces_dir.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, leftovers


# -- what the manifest says about demo faces -------------------------------------------------------
def test_demo_faces_crops_boxes_and_landmarks_match_the_truth(small):
    m = small["manifest"]
    demo = m[m.video_id.isin(small["demo_ids"])]
    assert (demo.status == "face").all()
    per_item = demo.groupby("video_id").size()
    assert sorted(per_item.tolist()) == [1, 6, 6, 6]  # 6-frame demo videos sampled whole, one still
    crops = sorted(p.relative_to(small["faces"]).as_posix() for p in (small["faces"] / "crops").rglob("*.png"))
    assert crops == sorted(m.crop_path.dropna())
    assert cv2.imread(str(small["faces"] / demo.crop_path.iloc[0])).shape == (64, 64, 3)
    joined = demo.merge(small["truth"], on=["video_id", "frame_index"], suffixes=("", "_true"))
    assert len(joined) == len(demo)
    height = joined.y1_true - joined.y0_true
    for c in ("x0", "y0", "x1", "y1"):
        assert ((joined[c] - joined[f"{c}_true"]).abs() / height).max() < 0.2, c
    lm, lm_true = np.stack(joined.landmarks.to_numpy()), np.stack(joined.landmarks_true.to_numpy())
    assert (np.abs(lm - lm_true).max(axis=1) / height).max() < 0.12
    assert (demo.face_index == 0).all() and demo.groupby("video_id").track_id.nunique().eq(1).all()


def test_frames_without_a_face_are_recorded_as_no_face(small):
    m = small["manifest"].set_index("video_id").loc["crafted_leaving"]
    assert m.frame_index.tolist() == list(range(6))
    assert m.status.tolist() == ["face"] * 3 + ["no_face"] * 3
    assert m[m.status == "no_face"].crop_path.isna().all() and (m[m.status == "no_face"].n_faces == 0).all()
    video = small["videos"].set_index("video_id").loc["crafted_leaving"]
    assert video.outcome == "ok" and video.rows_face == 3 and video.rows_no_face == 3


def test_broken_inputs_get_clear_statuses_and_the_run_goes_on(small):
    m, videos = small["manifest"], small["videos"].set_index("video_id")
    for name, words in [("empty", "empty file"), ("text", "not a video"), ("still", "not a video"),
                        ("missing", "not found")]:
        rows = m[m.video_id == f"crafted_{name}"]
        assert len(rows) == 1 and rows.status.iloc[0] == "decode_error" and rows.frame_index.iloc[0] == -1, name
        assert words in rows.reason.iloc[0], (name, rows.reason.iloc[0])
        assert videos.loc[f"crafted_{name}", "outcome"] == "decode_error"
    truncated = videos.loc["crafted_truncated"]
    # The container claims all 12 frames; fewer decode, and the frames that did are sampled.
    assert truncated.frames_claimed == 12 and 0 < truncated.frames_decoded < 12
    assert truncated.outcome == "partial" and "stopped after" in truncated.reason
    rows = m[m.video_id == "crafted_truncated"]
    assert len(rows) == truncated.frames_sampled == min(6, truncated.frames_decoded)
    assert rows.frame_index.max() < truncated.frames_decoded
    assert rows[rows.status == "face"].reason.str.contains("partial video").all()


def test_every_item_and_sampled_frame_has_rows(small):
    m, videos, index = small["manifest"], small["videos"], small["index"]
    assert sorted(videos.video_id) == sorted(index.id)
    counts = m.groupby("video_id").size()
    per_video = videos.set_index("video_id")
    # Exactly one row per sampled frame (face_policy=largest), one row for an item with none.
    assert (counts == per_video.frames_sampled.clip(lower=1)).all()
    assert (per_video.rows_face + per_video.rows_no_face + per_video.rows_decode_error == counts).all()
    assert not m.duplicated(["video_id", "frame_index"]).any()


def test_largest_face_stays_on_one_person_and_all_keeps_both(small, tmp_path):
    m = small["manifest"]
    two = m[m.video_id == "crafted_two_people"]
    assert (two.n_faces == 2).all() and len(two) == 6
    centre = (two.x0 + two.x1) / 2
    # The largest face alternates sides; the tracker keeps the video's main person.
    assert two.track_id.nunique() == 1 and ((centre < 96).all() or (centre > 96).all())
    item = small["index"].set_index("id").loc["crafted_two_people"].to_dict() | {"id": "crafted_two_people"}
    spec = PreprocessSpec.from_dict(small["spec"].to_dict() | {"face_policy": "all"})
    rows, _ = VideoProcessor(small["root"], tmp_path, spec, options=QUIET).rows(item)
    every = pd.DataFrame(rows)
    assert len(every) == 12 and sorted(every.face_index.unique()) == [0, 1]
    rank0_left = every[every.face_index == 0].pipe(lambda d: (d.x0 + d.x1) / 2 < 96)
    assert rank0_left.nunique() == 2  # the largest face really does change sides
    for _, track in every.groupby("track_id"):
        side = (track.x0 + track.x1) / 2 < 96
        assert len(track) == 6 and side.nunique() == 1
    assert every.crop_path.str.match(r"crops/crafted_two_people/\d{6}_[01]\.png").all()


def test_every_k_sampling_alignment_and_jpeg(small, tmp_path):
    item = small["index"].set_index("id").loc["crafted_leaving"].to_dict() | {"id": "crafted_leaving"}
    spec = PreprocessSpec.from_dict(small["spec"].to_dict() | {"sampling": "every_k", "every_k": 3, "align": True,
                                                               "image_format": "jpeg"})
    rows, video = VideoProcessor(small["root"], tmp_path, spec, options=QUIET).rows(item)
    assert [r["frame_index"] for r in rows] == [0, 3] and video["frames_sampled"] == 2
    face = next(r for r in rows if r["status"] == "face")
    assert face["crop_path"].endswith(".jpg") and cv2.imread(str(tmp_path / face["crop_path"])).shape == (64, 64, 3)
    # The similarity fit recovers a known rotation, scale and shift.
    src = np.array([[30, 40], [60, 41], [45, 55], [33, 70], [58, 71]], np.float64)
    angle, scale = np.deg2rad(12), 1.7
    true = np.array([[scale * np.cos(angle), -scale * np.sin(angle), 5], [scale * np.sin(angle), scale * np.cos(angle), -3]])
    assert np.allclose(similarity_transform(src, src @ true[:, :2].T + true[:, 2]), true, atol=1e-4)


def test_seeking_delivers_exactly_the_sampled_frames(tmp_path):
    frames = []
    for t in range(40):
        f = np.zeros((64, 96, 3), np.uint8)
        f[..., 0] = (np.arange(96) * 2 + t * 5) % 256
        cv2.putText(f, str(t), (20, 45), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
        frames.append(f)
    _encode(tmp_path / "gop.mp4", frames, gop=4)
    reference = _all_frames(tmp_path / "gop.mp4")
    out = read_video_frames(tmp_path / "gop.mp4", 5, single_pass=False)
    assert out.decoded_frames == 40 and out.sampled == [0, 10, 20, 29, 39] and not out.failed
    assert out.seeks > 0  # key frames every 4 frames: the second pass skipped ahead
    once = read_video_frames(tmp_path / "gop.mp4", 5)  # the container's count is right: one pass
    assert once.sampled == out.sampled and once.seeks == 0
    for i in out.sampled:
        assert np.array_equal(out.frames[i], reference[i]) and np.array_equal(once.frames[i], reference[i]), i
    timed = read_video_frames(tmp_path / "gop.mp4", 5, time_limit_s=1e-9)
    assert timed.timed_out and "time limit" in timed.error and not timed.frames


# -- resume, shards, kills --------------------------------------------------------------------------
@pytest.mark.parametrize("point,at", [("after_crop_before_row", 9), ("mid_manifest_flush", 2), ("before_merge", 1)])
def test_resume_after_an_injected_failure_equals_an_uninterrupted_run(small, tmp_path, point, at):
    faces = tmp_path / "faces"
    with pytest.raises(InjectedFault):
        preprocess_index(small["index"], small["root"], faces, small["spec"], faces / "manifest.parquet",
                         options=RunOptions(progress=False, fault=FaultPlan(point, at)))
    assert not (faces / "manifest.parquet").exists()
    finished = {p: p.stat().st_mtime_ns for p in (faces / "parts").glob("*.parquet")}
    assert len(finished) < len(small["index"]) or point == "before_merge"
    manifest = preprocess_index(small["index"], small["root"], faces, small["spec"], faces / "manifest.parquet",
                                options=QUIET)
    _assert_same_run(faces, manifest, small)
    # Finished items were not redone.
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())


@pytest.mark.parametrize("where", ["third item's part", "final manifest"])
def test_a_full_disk_stops_the_run_keeps_finished_items_and_says_what_failed(small, tmp_path, monkeypatch, where):
    faces = tmp_path / "faces"
    ids = list(small["index"].id)
    target = part_path(faces, ids[2]) if where == "third item's part" else faces / "manifest.parquet"
    monkeypatch.setenv(FAULT_ENV, f"atomic_after_tmp_written/{target.name}:enospc")
    with pytest.raises(OSError) as full:
        preprocess_index(small["index"], small["root"], faces, small["spec"], faces / "manifest.parquet",
                         options=QUIET)
    assert full.value.errno == errno.ENOSPC
    message = str(full.value)
    assert f"while writing {target}" in message, message
    finished = ids[:2] if where == "third item's part" else ids
    if where == "third item's part":
        assert f"{len(finished)} of the {len(ids)} items this run had to do were finished and are kept" in message
    assert sorted(p.name for p in (faces / "parts").glob("*.parquet")) == sorted(part_path(faces, i).name
                                                                                for i in finished)
    assert not (faces / "manifest.parquet").exists()
    monkeypatch.delenv(FAULT_ENV)
    manifest = preprocess_index(small["index"], small["root"], faces, small["spec"], faces / "manifest.parquet",
                                options=QUIET)
    _assert_same_run(faces, manifest, small)


def test_half_written_part_is_not_trusted(small, tmp_path):
    faces = tmp_path / "faces"
    first = small["index"].iloc[0]["id"]
    part = part_path(faces, first)
    part.parent.mkdir(parents=True)
    part.write_bytes((small["faces"] / "parts" / part.name).read_bytes()[:100])  # a torn write under the real name
    manifest = preprocess_index(small["index"], small["root"], faces, small["spec"], faces / "manifest.parquet",
                                options=QUIET)
    _assert_same_run(faces, manifest, small)


def test_union_of_shards_equals_the_unsharded_run(small, tmp_path):
    faces = tmp_path / "faces"
    halves = [select_shard(small["index"], f"{i}/2") for i in range(2)]
    assert all(len(h) for h in halves) and sorted(pd.concat(halves).id) == sorted(small["index"].id)
    for i, workers in ((0, 2), (1, 1)):
        preprocess_index(small["index"], small["root"], faces, small["spec"], faces / "manifest.parquet",
                         options=RunOptions(progress=False, shard=f"{i}/2", workers=workers))
        assert shard_manifest_path(faces / "manifest.parquet", f"{i}/2").is_file()
    manifest = merge_shards(faces / "manifest.parquet")
    _assert_same_run(faces, manifest, small)


def _script(args, tmp_path, **popen):
    env = {**os.environ, "FAKETRACE_DATA": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "scripts/preprocess.py", *args], cwd=REPO, env=env, text=True, **popen)


def test_killed_process_group_leaves_nothing_trusted_and_a_rerun_completes(small, tmp_path):
    faces = tmp_path / "faces"
    args = [f"data.index_path={small['work'] / 'index.parquet'}", f"data.root={small['root']}",
            f"data.faces_dir={faces}", *FACE_OVERRIDES, "progress=false", "workers=2"]
    # Pause (not a timer) at a named point: a worker stops after writing a crop, before its row.
    proc = _script(args + [f"hydra.run.dir={tmp_path}/run1", "debug.fault=after_crop_before_row", "debug.fault_at=3",
                           "debug.fault_action=pause"], tmp_path, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                   start_new_session=True)
    guard = threading.Timer(180, lambda: os.killpg(proc.pid, signal.SIGKILL))
    guard.start()
    try:
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("FAULT after_crop_before_row"):
                break
        assert lines and lines[-1].startswith("FAULT"), "".join(lines[-30:])
        os.killpg(proc.pid, signal.SIGKILL)  # the whole group: the script and its worker processes
        proc.wait(timeout=60)
    finally:
        guard.cancel()
    assert proc.returncode == -signal.SIGKILL
    assert not (faces / "manifest.parquet").exists()
    assert any((faces / "crops").rglob("*.png"))  # crops exist without their rows: not trusted
    rerun = _script(args + [f"hydra.run.dir={tmp_path}/run2"], tmp_path,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    assert "by status" in out
    manifest, _ = read_manifest(faces / "manifest.parquet")
    _assert_same_run(faces, manifest, small)


def test_merge_from_the_command_line(small, tmp_path):
    faces = tmp_path / "faces"
    for i in range(2):
        preprocess_index(small["index"], small["root"], faces, small["spec"], faces / "manifest.parquet",
                         options=RunOptions(progress=False, shard=f"{i}/2"))
    merge = _script(["merge", f"data.faces_dir={faces}", f"hydra.run.dir={tmp_path}/merge"], tmp_path,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = merge.communicate(timeout=300)
    assert merge.returncode == 0, err[-3000:]
    manifest, meta = read_manifest(faces / "manifest.parquet")
    assert meta["merged_from"] == ["manifest.shard-0-of-2.parquet", "manifest.shard-1-of-2.parquet"]
    _assert_same_run(faces, manifest, small)


def test_version_1_manifests_still_read(tmp_path):
    table = pa.table({"video_id": ["a"], "frame_index": pa.array([0], pa.int32()), "status": ["no_face"],
                      "n_faces": pa.array([0], pa.int16())})
    table = table.replace_schema_metadata({"faketrace.kind": "manifest", "faketrace.schema_version": "1",
                                           "faketrace.meta": "{}"})
    pq.write_table(table, tmp_path / "v1.parquet")
    manifest, _ = read_manifest(tmp_path / "v1.parquet")
    assert manifest.track_id.isna().all() and manifest.face_index.isna().all()


def _inet_connects(trace):
    """connect() calls of the AF_INET and AF_INET6 families in an strace -f log."""
    return [line for line in trace.read_text().splitlines() if "connect(" in line and "AF_INET" in line]


@pytest.mark.slow
def test_preprocessing_makes_no_network_connection(small, tmp_path):
    strace = shutil.which("strace")
    assert strace, "strace is needed (.ci/run installs it with apt-get)"
    # Without what faketrace sets itself (ORT_DISABLE_TELEMETRY, ...): the script must set it on its own.
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_ENV and k != FAULT_ENV}
    # The control: the same tracing does see a connection attempt when a process makes one.
    control = tmp_path / "control.txt"
    probe = ("import socket; s = socket.socket(); s.settimeout(1)\n"
             "try: s.connect(('127.0.0.1', 9))\nexcept OSError: pass")
    subprocess.run([strace, "-f", "-e", "trace=connect", "-o", str(control), sys.executable, "-c", probe],
                   env=env, capture_output=True, timeout=120)
    assert len(_inet_connects(control)) == 1

    trace, faces = tmp_path / "trace.txt", tmp_path / "faces"
    args = [f"data.index_path={small['work'] / 'index.parquet'}", f"data.root={small['root']}",
            f"data.faces_dir={faces}", *FACE_OVERRIDES, "progress=false", "workers=2", f"hydra.run.dir={tmp_path}/run"]
    proc = subprocess.run([strace, "-f", "-e", "trace=connect", "-o", str(trace), sys.executable,
                           "scripts/preprocess.py", *args], cwd=REPO, env={**env, "FAKETRACE_DATA": str(tmp_path)},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest, _ = read_manifest(faces / "manifest.parquet")
    _assert_same_run(faces, manifest, small)  # the traced run did the whole job, in worker processes too
    assert _inet_connects(trace) == []
