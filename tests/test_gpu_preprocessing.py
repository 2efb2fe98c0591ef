"""The GPU side of preprocessing, tested where it can be without a GPU (issue 24).

RetinaFace converted from the shipped ONNX graph to PyTorch gives ONNX Runtime's outputs and the
same faces through the package's postprocessing; hardware video decoding falls back to the CPU
with the reason recorded and the CPU's frames. The tests marked `cuda` run only on a GPU machine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faketrace.datasets.faces import (
    build_detector,
    describe_detector,
    detector_weights,
    resolve_detector_runtime,
)

from .conftest import compose_config

CUDA = torch.cuda.is_available()
cuda_only = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")


def demo_frames(width: int, height: int, n: int, seed: int = 0, faces: int = 1) -> list[np.ndarray]:
    """Frames of the demo's pseudo-identities (the astronaut head, re-skinned and warped) on busy backgrounds."""
    from faketrace.datasets.demo import DemoRenderer, make_identities

    renderer = DemoRenderer(width, (0.2, 0.3))
    rng = np.random.default_rng(seed)
    idents = make_identities(n * faces, seed, {"skin_tone_range": [0.7, 1.15], "warp_amplitude": [2.0, 5.0]})
    out = []
    for i in range(n):
        frame = renderer.background(rng)
        for k in range(faces):
            scale = rng.uniform(0.2, 0.3) * height / (renderer.box[3] - renderer.box[1])
            x = (k + 0.5) / faces * width + rng.uniform(-0.05, 0.05) * width
            centre = (x, width / 2 + rng.uniform(-0.1, 0.1) * height)
            frame, _ = renderer.place(renderer.identity_patch(idents[i * faces + k]), frame, scale,
                                      rng.uniform(-15, 15), centre, (0.0, 0.0, 1.0))
        top = (width - height) // 2
        out.append(np.clip(frame[top:top + height], 0, 255).astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def frames_720p():
    return demo_frames(1280, 720, 3, seed=1, faces=2)


@pytest.fixture(scope="module")
def onnx_detector():
    return build_detector("retinaface", runtime="onnx", device="cpu")


# -- the converter ----------------------------------------------------------------------------------
def _network_outputs(detector, frames: list[np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(o) for o in detector.network_outputs(np.stack(frames))]


@pytest.mark.parametrize("size", [(640, 360), (333, 481)])  # the detector's input size, and an odd one
def test_torch_retinaface_gives_onnx_runtimes_outputs(onnx_detector, size):
    """All three outputs (boxes, class scores, landmarks) agree with ONNX Runtime to float rounding."""
    import cv2

    frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in demo_frames(1280, 720, 2, seed=2)]
    torch_detector = build_detector("retinaface", runtime="torch", device="cpu")
    ref, got = _network_outputs(onnx_detector, frames), _network_outputs(torch_detector, frames)
    assert [o.shape for o in got] == [o.shape for o in ref]
    for name, r, g in zip(("loc", "conf", "landmarks"), ref, got, strict=True):
        assert np.abs(r - g).max() < 1e-4, name
    # not trivially equal: the scores span background and faces
    assert ref[1][..., 1].max() > 0.5 and ref[1][..., 1].min() < 0.01


def test_torch_detector_finds_the_same_faces(onnx_detector, frames_720p):
    """Through the package's anchor decoding and NMS: same faces, boxes and landmarks, same scores."""
    torch_detector = build_detector("retinaface", runtime="torch", device="cpu")
    ref, got = onnx_detector.detect(frames_720p), torch_detector.detect(frames_720p)
    assert sum(len(f) for f in ref) >= len(frames_720p) * 2 - 1  # the demo faces are found
    for r_faces, g_faces in zip(ref, got, strict=True):
        assert len(r_faces) == len(g_faces)
        for r, g in zip(r_faces, g_faces, strict=True):
            assert np.abs(r.box - g.box).max() < 0.01  # pixels of the 720p frame
            assert np.abs(r.landmarks - g.landmarks).max() < 0.01
            assert abs(r.score - g.score) < 1e-5


def test_the_converter_refuses_a_graph_it_does_not_reproduce():
    """A changed activation or a missing convolution is an error, not a silently different detector."""
    import onnx

    from faketrace.datasets.retinaface_torch import OnnxGraphMismatch, read_onnx_retinaface

    graph = read_onnx_retinaface(detector_weights())
    assert graph.leaky_slope == pytest.approx(0.1)
    assert len(graph.convs) == 59 and graph.convs["fx/stage1/stage1.0/stage1.0.0"].source == "input"

    model = onnx.load_from_string(detector_weights())
    leaky = next(n for n in model.graph.node if n.op_type == "LeakyRelu")
    next(a for a in leaky.attribute if a.name == "alpha").f = 0.2
    with pytest.raises(OnnxGraphMismatch, match="one LeakyReLU slope"):
        read_onnx_retinaface(model.SerializeToString())

    model = onnx.load_from_string(detector_weights())
    head = next(n for n in model.graph.node if n.name == "/landmark_head/landmark_head.2/Conv")
    head.name = "/landmark_head/renamed/Conv"
    with pytest.raises(OnnxGraphMismatch, match="landmark_head.2"):
        read_onnx_retinaface(model.SerializeToString())


# -- the runtime choice -----------------------------------------------------------------------------
def test_runtime_choice_keeps_onnx_runtime_on_the_cpu_and_is_recorded():
    assert resolve_detector_runtime("auto", "cpu") == ("onnx", "cpu")
    assert resolve_detector_runtime("torch", "cpu") == ("torch", "cpu")
    with pytest.raises(ValueError, match="runtime"):
        resolve_detector_runtime("tensorrt", "cpu")
    described = describe_detector("retinaface", 0.8, 0.4, 640)
    assert (described["runtime"], described["device"]) == ("onnxruntime", "cpu")
    torch_detector = build_detector("retinaface", runtime="torch", device="cpu")
    assert torch_detector.describe()["runtime"] == "torch"
    assert build_detector("retinaface", runtime="auto", device="cpu").describe()["runtime"] == "onnxruntime"
    if not CUDA:
        assert resolve_detector_runtime("auto", "cuda")[0] == "onnx"  # as before: ONNX Runtime, on the CPU
        with pytest.raises(ValueError, match="no CUDA device"):
            build_detector("retinaface", runtime="torch", device="cuda")


def test_preprocessing_with_the_torch_runtime_records_it_and_makes_the_same_crops(tmp_path):
    """The whole pipeline: same manifest rows (boxes to float rounding), the runtime in the manifest."""
    import pandas as pd

    from faketrace.datasets.face_pipeline import PreprocessSpec
    from faketrace.datasets.preprocess import RunOptions, preprocess_index
    from faketrace.datasets.schema import read_manifest, read_videos
    from faketrace.engine.benchmarks import render_videos

    index = pd.DataFrame(render_videos(tmp_path / "raw", "480p", 2, 6))
    spec = PreprocessSpec(frames_per_video=3, crop_size=64)
    manifests = {}
    for runtime in ("onnx", "torch"):
        out = tmp_path / runtime
        manifests[runtime] = preprocess_index(index, tmp_path / "raw", out, spec, out / "manifest.parquet",
                                              options=RunOptions(progress=False, detector_runtime=runtime))
        _, meta = read_manifest(out / "manifest.parquet")
        assert meta["detector"]["runtime"] == {"onnx": "onnxruntime", "torch": "torch"}[runtime]
    a, b = manifests["onnx"], manifests["torch"]
    assert (a.status == "face").sum() == 6 and a.status.tolist() == b.status.tolist()
    assert np.abs(a[["x0", "y0", "x1", "y1"]].to_numpy() - b[["x0", "y0", "x1", "y1"]].to_numpy()).max() < 0.01
    videos, _ = read_videos(tmp_path / "torch" / "videos.parquet")
    assert videos.decoder.tolist() == ["cpu", "cpu"] and videos.decoder_note.isna().all()


# -- hardware decoding --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_video(tmp_path_factory):
    from faketrace.engine.benchmarks import render_videos

    root = tmp_path_factory.mktemp("hwdecode")
    return root / render_videos(root, "480p", 1, 12)[0]["path"]


@pytest.mark.skipif(CUDA, reason="tests the fallback of a machine without a GPU")
@pytest.mark.parametrize("mode", ["auto", "cuda"])
def test_hardware_decoding_falls_back_to_the_cpu_with_the_reason(small_video, mode):
    from faketrace.datasets.media import read_video_frames

    cpu = read_video_frames(small_video, 5)
    asked = read_video_frames(small_video, 5, decode=mode)
    assert (cpu.decoder, cpu.decoder_note) == ("cpu", None)
    assert asked.decoder == "cpu" and asked.error is None
    assert mode in asked.decoder_note and "decoded on the CPU" in asked.decoder_note
    assert asked.sampled == cpu.sampled and asked.decoded_frames == cpu.decoded_frames == 12
    assert all(np.array_equal(asked.frames[i], cpu.frames[i]) for i in cpu.sampled)


def test_hardware_decoding_keeps_the_evidence_read_only(small_video, monkeypatch):
    """The hardware attempt opens the file as the CPU path does (open_readonly), never by name."""
    import faketrace.datasets.media as media

    opened = []
    real = media.open_readonly
    monkeypatch.setattr(media, "open_readonly", lambda p: opened.append(p) or real(p))
    small_video.chmod(0o444)
    v = media.read_video_frames(small_video, 3, decode="cuda")
    assert v.frames
    assert len(opened) >= (1 if CUDA else 2)  # without a GPU: the hardware attempt, then the CPU pass


def test_unknown_decode_mode_is_refused(small_video):
    from faketrace.datasets.media import read_video_frames

    with pytest.raises(ValueError, match="decode mode"):
        read_video_frames(small_video, 3, decode="nvdec")


def test_decode_and_runtime_reach_the_pipeline_from_the_config():
    from faketrace.datasets.preprocess import options_from_config

    cfg = compose_config("preprocess", ["face.decode=cuda", "face.detector_runtime=torch"])
    options = options_from_config(cfg)
    assert (options.decode, options.detector_runtime) == ("cuda", "torch")
    assert (options_from_config(compose_config("preprocess", [])).decode,
            options_from_config(compose_config("preprocess", [])).detector_runtime) == ("cpu", "auto")


# -- on a GPU ---------------------------------------------------------------------------------------
@cuda_only
def test_torch_detector_on_the_gpu_matches_onnx_runtime_on_the_cpu(onnx_detector, frames_720p):
    gpu = build_detector("retinaface", runtime="auto", device="cuda")
    assert gpu.describe()["runtime"] == "torch" and gpu.describe()["device"] == "cuda"
    import cv2

    small = [cv2.resize(f, (640, 360), interpolation=cv2.INTER_AREA) for f in frames_720p]
    for name, r, g in zip(("loc", "conf", "landmarks"), _network_outputs(onnx_detector, small),
                          _network_outputs(gpu, small), strict=True):
        # cuDNN may use TF32 for convolutions: agreement to about 1e-3 of values up to ~10
        assert np.abs(r - g).max() < 2e-2, name
    for r_faces, g_faces in zip(onnx_detector.detect(frames_720p), gpu.detect(frames_720p), strict=True):
        assert len(r_faces) == len(g_faces)
        for r, g in zip(r_faces, g_faces, strict=True):
            assert np.abs(r.box - g.box).max() < 1.0


@cuda_only
def test_nvdec_decodes_the_cpus_frames(small_video):
    from faketrace.datasets.media import read_video_frames

    cpu = read_video_frames(small_video, 5)
    gpu = read_video_frames(small_video, 5, decode="cuda")
    assert gpu.decoder == "cuda", gpu.decoder_note
    assert gpu.sampled == cpu.sampled and gpu.decoded_frames == cpu.decoded_frames
    diff = max(int(np.abs(gpu.frames[i].astype(int) - cpu.frames[i]).max()) for i in cpu.sampled)
    print(f"largest pixel difference NVDEC vs CPU: {diff}")
    assert diff <= 2  # H.264 decoding is exact; the RGB conversion of NV12 vs YUV420P may round differently


# -- the benchmarks -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_scan_video_and_preprocess_benchmarks_run_on_the_cpu(tmp_path):
    """Both subcommands run end to end on small videos and report what the issue asks for."""
    import json
    import subprocess
    import sys

    from .conftest import REPO

    out = subprocess.run([sys.executable, "scripts/benchmark.py", "scan-video", "--size", "480p", "--seconds", "1",
                          "--videos", "1", "--frames-per-video", "4", "--model", "resnet18:64", "--decode", "cuda",
                          "--work-dir", str(tmp_path / "scan"), "--json", str(tmp_path / "scan.json")],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    scan = json.loads((tmp_path / "scan.json").read_text())
    assert scan["frames_per_file"] == 25 and scan["per_video"][0]["frames"] == 4
    assert scan["per_video"][0]["faces"] == 4  # the demo face is found and classified in every frame
    assert set(scan["median_seconds"]) == {"decode", "detect", "crop", "classify", "total"}
    assert "seconds per video" in out.stdout and "videos/s" in out.stdout
    if not CUDA:
        assert scan["decoder_used"] == ["cpu"] and "decoded on the CPU" in scan["decoder_notes"][0]

    out = subprocess.run([sys.executable, "scripts/benchmark.py", "preprocess", "--sizes", "480p", "--videos", "1",
                          "--frames", "8", "--frames-per-video", "2", "--workers", "1", "--repeats", "1",
                          "--work-dir", str(tmp_path / "pre"), "--json", str(tmp_path / "pre.json")],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    pre = json.loads((tmp_path / "pre.json").read_text())["sizes"]["480p"]
    assert {r: pre[r]["runtime"] for r in pre} == {"onnx": "onnx", "torch": "torch"}
    assert all(pre[r]["pipeline"]["1"]["efficiency"] > 0 for r in pre)
    assert out.stdout.count("pipeline/detector") == 2


@pytest.mark.slow
def test_a_scan_with_the_gpu_options_on_a_cpu_machine(scan_ckpt, evidence, tmp_path):
    """scan.detector_runtime and scan.decode reach the scan: custody.json names the runtime, a video
    item says where it was decoded and why not on the GPU, and the verdict is the CPU scan's."""
    import json

    from faketrace.forensics.scan import scan_from_config

    from .conftest import results, scan_cfg

    video = [evidence["loose"] / "sub" / "clip_fake.mp4"]
    model = [f"ckpt_path={scan_ckpt}", "allow_unvalidated=true", "device=cpu"]
    scan_from_config(scan_cfg(video, tmp_path / "plain", model))
    scan_from_config(scan_cfg(video, tmp_path / "gpu", model, ["scan.detector_runtime=torch", "scan.decode=cuda"]))
    _, plain = results(tmp_path / "plain")
    _, items = results(tmp_path / "gpu")
    used = {case: json.loads((tmp_path / case / "custody.json").read_text())["model"]["face_detector_used"]
            for case in ("plain", "gpu")}
    assert (used["plain"]["runtime"], used["gpu"]["runtime"]) == ("onnxruntime", "torch")
    assert used["gpu"]["weights_sha256"] == used["plain"]["weights_sha256"]
    (item,), (ref,) = items.values(), plain.values()
    assert item["status"] == ref["status"] == "scanned"
    assert "decoder" not in ref["decode"]  # not asked: the record is as before
    if not CUDA:
        assert item["decode"]["decoder"] == "cpu" and "decoded on the CPU" in item["decode"]["decoder_note"]
    assert item["score"]["probability"] == pytest.approx(ref["score"]["probability"], abs=1e-4)
    assert item["n_faces_detected"] == ref["n_faces_detected"]
