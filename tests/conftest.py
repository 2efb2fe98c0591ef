"""Shared fixtures: a small demo data set made by the real generator and face pipeline, once.

Tests compose the real Hydra configs (compose API) and override only sizes and paths.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

from faketrace.engine.distributed import register_resolvers

register_resolvers()
REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

# Small enough for seconds, big enough for every split to hold real and fake videos of each operator.
SMALL_DEMO = [
    "data.generator.identities=10",
    "data.generator.video_length=6",
    "data.generator.frame_size=160",
    "data.generator.real_videos_per_identity=1",
]
# The image-level demo, as small: 15 scenes (3 val, 3 test), images of 64 to 100 px.
SMALL_DEMO_IMAGES = [
    "data=demo_images",
    "data.generator.scenes=15",
    "data.generator.height=[64,100]",
    "data.generator.width=[64,100]",
]


def compose_config(config_name: str, overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    """Compose a real config as Hydra would, with the run directory set to `output_dir`."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    if output_dir is None:
        output_dir = Path(tempfile.mkdtemp(prefix=f"faketrace-{config_name}-"))
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.hydra.runtime.output_dir = str(output_dir)
    return cfg


def resolved(cfg: DictConfig) -> DictConfig:
    """Resolve everything except the hydra node (whose runtime values only exist in a real run)."""
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.pop("hydra", None)
    OmegaConf.resolve(cfg)
    return cfg


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> dict:
    """Generate and preprocess a small demo data set, and a small image-level demo beside it."""
    from faketrace.datasets.demo import generate_demo
    from faketrace.datasets.demo_images import generate_demo_images
    from faketrace.datasets.preprocess import PreprocessSpec, preprocess_index

    root = tmp_path_factory.mktemp("data")
    overrides = [f"paths.data_dir={root}"]
    cfg = resolved(compose_config("demo_data", overrides + SMALL_DEMO))
    index = generate_demo(cfg.data.root, cfg.data.index_path, int(cfg.data.seed),
                          OmegaConf.to_container(cfg.data.generator))
    pcfg = resolved(compose_config("preprocess", overrides + ["face.frames_per_video=4", "face.crop_size=64"]))
    manifest = preprocess_index(index, pcfg.data.root, pcfg.data.faces_dir,
                                PreprocessSpec.from_dict(OmegaConf.to_container(pcfg.face)), pcfg.data.manifest_path)
    icfg = resolved(compose_config("demo_data", overrides + SMALL_DEMO_IMAGES))
    image_index = generate_demo_images(icfg.data.root, icfg.data.index_path, int(icfg.data.seed),
                                       OmegaConf.to_container(icfg.data.generator))
    return {"root": root, "overrides": overrides, "index": index, "manifest": manifest, "cfg": cfg,
            "data_overrides": overrides + SMALL_DEMO, "image_index": image_index, "image_cfg": icfg}


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` are skipped without CUDA, so the suite runs the same on a CPU machine."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (scripts/gpu_check.sh runs these on one)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _quiet_env():
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    yield


# -- evidence for the forensic scan -----------------------------------------------------------------

@pytest.fixture(scope="session")
def scan_ckpt(demo_data, tmp_path_factory):
    """A tiny model trained on the small demo, calibrated on its validation split (thresholds included)."""
    from faketrace.engine.evaluate import calibrate_checkpoint
    from faketrace.engine.train import train

    out = tmp_path_factory.mktemp("scan_train")
    cfg = compose_config("train", demo_data["overrides"] + ["model=tiny", "debug=fast"], output_dir=out)
    last = train(resolved(cfg))["last_ckpt"]
    cal = out / "calibrated.ckpt"
    calibrate_checkpoint(resolved(compose_config("calibrate", demo_data["overrides"] + [
        f"ckpt_path={last}", f"out_path={cal}", "fit_on=all", "num_workers=0"], output_dir=out / "cal")))
    return cal


@pytest.fixture(scope="session")
def evidence(demo_data, tmp_path_factory):
    return make_evidence(tmp_path_factory.mktemp("evidence"), Path(demo_data["cfg"].data.root), demo_data["index"])


def scan_cfg(inputs, case_dir: Path, model: list[str], extra: list[str] = ()):
    """The resolved config of `evaluate.py mode=scan` over `inputs` into `case_dir`."""
    listed = ",".join(str(p) for p in inputs)
    cfg = compose_config("evaluate", ["mode=scan", f"inputs=[{listed}]", "case.id=TEST-1", "case.operator=pytest",
                                      f"case.dir={case_dir}", "scan.progress=false", *model, *extra],
                         output_dir=case_dir)
    return resolved(cfg)


def results(case_dir: Path) -> tuple[dict, dict]:
    """(header, {item_id: result}) of a case's scan_results.jsonl."""
    import json

    lines = (case_dir / "scan_results.jsonl").read_text().splitlines()
    return json.loads(lines[0]), {r["item_id"]: r for r in map(json.loads, lines[1:])}


def remux_faststart(src: Path, dst: Path) -> None:
    """Copy an MP4 with its index (moov) at the front, as streaming uploads are written."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        stream = inp.streams.video[0]
        ostream = out.add_stream_from_template(stream)
        for packet in inp.demux(stream):
            if packet.dts is None:
                continue
            packet.stream = ostream
            out.mux(packet)


def write_gif(frames: list, dst: Path) -> None:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    images[0].save(dst, save_all=True, append_images=images[1:], duration=80, loop=0)


def make_evidence(root: Path, demo_raw: Path, index) -> dict:
    """A mixed evidence tree: loose files, a Telegram JSON export and an HTML export, with hostile items."""
    import json

    from faketrace.datasets.media import read_video_frames

    def pick(media_type, label, method=None):
        rows = index[(index.media_type == media_type) & (index.label == label)]
        if method:
            rows = rows[rows.method == method]
        return demo_raw / rows.sort_values("id").iloc[0]["path"]

    fake_video, real_video = pick("video", 1, "face_swap"), pick("video", 0)
    fake_image, real_image = pick("image", 1, "face_swap"), pick("image", 0)
    loose = root / "loose"
    (loose / "sub").mkdir(parents=True)
    (loose / "sub" / "clip_fake.mp4").write_bytes(fake_video.read_bytes())
    (loose / "photo_real.jpg").write_bytes(real_image.read_bytes())
    # The same picture re-compressed and resized: a near-duplicate the report groups by PDQ.
    from PIL import Image

    with Image.open(real_image) as im:
        im.convert("RGB").resize((im.width * 9 // 10, im.height * 9 // 10)).save(loose / "photo_real_copy.jpg",
                                                                                 quality=60)
    (loose / "empty.jpg").write_bytes(b"")
    (loose / "notes.jpg").write_text("this is a text file with an image extension\n")
    (loose / "truncated_index_at_end.mp4").write_bytes(fake_video.read_bytes()[: fake_video.stat().st_size // 2])
    remux_faststart(real_video, root / "faststart.mp4")
    data = (root / "faststart.mp4").read_bytes()
    (root / "faststart.mp4").unlink()
    (loose / "truncated_index_at_start.mp4").write_bytes(data[: int(len(data) * 0.85)])
    write_gif(list(read_video_frames(fake_video, 4).frames.values()), loose / "animation.gif")

    tg = root / "ChatExport_2026-11-20"
    for d in ("photos", "video_files", "files"):
        (tg / d).mkdir(parents=True)
    photo = "photos/photo_1@20-11-2026_10-00-00.jpg"
    video = "video_files/video_2@20-11-2026_10-05-00.mp4"
    (tg / photo).write_bytes(fake_image.read_bytes())
    (tg / video).write_bytes(real_video.read_bytes())
    (tg / "files" / "unreferenced.jpg").write_bytes(real_image.read_bytes())
    messages = [
        {"id": 101, "type": "message", "date": "2026-11-20T11:00:00", "date_unixtime": "1795168800",
         "from": "Sender A", "from_id": "user111", "photo": photo, "width": 224, "height": 224,
         "text": ["look ", {"type": "bold", "text": "here"}], "text_entities": []},
        {"id": 102, "type": "message", "date": "2026-11-20T10:05:00", "date_unixtime": "1795169100",
         "from": "Sender B", "from_id": "user222", "forwarded_from": "Channel X", "file": video,
         "media_type": "video_file", "mime_type": "video/mp4", "duration_seconds": 1, "text": "", "text_entities": []},
        {"id": 103, "type": "message", "date": "2026-11-20T10:06:00", "date_unixtime": "1795169160",
         "from": "Sender A", "from_id": "user111",
         "file": "(File not included. Change data exporting settings to download.)", "media_type": "video_file",
         "text": "", "text_entities": []},
        {"id": 104, "type": "message", "date": "2026-11-20T10:07:00", "date_unixtime": "1795169220",
         "from": "Sender A", "from_id": "user111", "photo": "../loose/photo_real.jpg", "text": "",
         "text_entities": []},
        {"id": 105, "type": "service", "date": "2026-11-20T10:08:00", "date_unixtime": "1795169280",
         "actor": "Sender A", "action": "pin_message", "text": "", "text_entities": []},
        {"id": 106, "type": "message", "date": "2021-03-01T09:00:00", "from": "Sender C", "from_id": "user333",
         "photo": "/etc/passwd", "text": "older export without date_unixtime"},
    ]
    (tg / "result.json").write_text(json.dumps({"name": "Group", "type": "private_supergroup", "id": 555,
                                                "messages": messages}, indent=1))
    html = root / "ChatExport_2026-11-21"
    for d in ("photos", "css", "js", "images"):
        (html / d).mkdir(parents=True)
    (html / "messages.html").write_text(telegram_html_page("Class 9b", [
        telegram_html_message(7, "21.11.2026 10:00:00 UTC+01:00", "Sender D via @some_bot",
                              '<a class="photo_wrap clearfix pull_left" href="photos/photo_7@21-11-2026_09-00-00.jpg">'
                              '<img class="photo" src="photos/photo_7@21-11-2026_09-00-00_thumb.jpg"/></a>',
                              "who is <b>this</b>"),
        telegram_html_message(8, "21.11.2026 10:01:00 UTC+01:00", None,
                              '<div class="media clearfix pull_left media_photo"><div class="body">'
                              '<div class="title bold">Photo</div><div class="description">Not included, change data '
                              'exporting settings to download.</div><div class="status details">960x1280, 83.1 KB'
                              '</div></div></div>', reply_to=7),
    ]), encoding="utf-8")
    (html / "css" / "style.css").write_text("body{}")
    (html / "js" / "script.js").write_text("//")
    (html / "images" / "back.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (html / "photos" / "photo_7@21-11-2026_09-00-00.jpg").write_bytes(fake_image.read_bytes())
    return {"root": root, "inputs": [loose, tg, html], "loose": loose, "telegram": tg, "html": html}


def telegram_html_page(chat_name: str, messages: list[str]) -> str:
    """A page of Telegram Desktop's HTML export (messages.html), in the client's markup."""
    return ('<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8"/>\n<title>Exported Data</title>\n'
            '<link href="css/style.css" rel="stylesheet"/>\n<script src="js/script.js" type="text/javascript">'
            '</script>\n</head>\n<body onload="CheckLocation();">\n<div class="page_wrap">\n'
            f'<div class="page_header"><div class="content"><div class="text bold">{chat_name}</div></div></div>\n'
            '<div class="page_body chat_page">\n<div class="history">\n'
            '<div class="message service" id="message-1"><div class="body details">21 November 2026</div></div>\n'
            + "\n".join(messages) + "\n</div>\n</div>\n</div>\n</body>\n</html>\n")


def telegram_html_message(message_id: int, title: str, sender: str | None, media: str, text: str = "",
                          reply_to: int | None = None, forwarded_from: str | None = None) -> str:
    """One message of an HTML export; no sender makes it a `joined` message (same sender as above)."""
    name = ""
    if sender:
        who, _, bot = sender.partition(" via ")
        name = f'<div class="from_name">{who}' + (f' <span class="details">via {bot}</span>' if bot else "") + "</div>"
    reply = (f'<div class="reply_to details">In reply to <a href="#go_to_message{reply_to}" '
             f'onclick="return GoToMessage({reply_to})">this message</a></div>') if reply_to else ""
    body = f'<div class="media_wrap clearfix">{media}</div>' + (f'<div class="text">{text}</div>' if text else "")
    if forwarded_from:
        body = ('<div class="pull_left forwarded userpic_wrap"></div><div class="forwarded body">'
                f'<div class="from_name">{forwarded_from}<span class="date details" title="19.11.2026 08:00:00 '
                f'UTC+00:00"> 19.11.2026 08:00</span></div>{body}</div>')
    joined = "" if sender else " joined"
    return (f'<div class="message default clearfix{joined}" id="message{message_id}">'
            '<div class="pull_left userpic_wrap"><div class="userpic"></div></div><div class="body">'
            f'<div class="pull_right date details" title="{title}">{title[11:16]}</div>{name}{reply}{body}</div></div>')


def tree_snapshot(root: Path) -> dict:
    """Every path under root with its bytes' SHA-256, size and modification time."""
    import hashlib

    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir",
                                          st.st_size if p.is_file() else 0, st.st_mtime_ns)
    return out


# -- hostile media ----------------------------------------------------------------------------------

def _encode_video(path: Path, frames: list, fps: int = 5, pts: list[int] | None = None, rotation: int = 0) -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            if pts is not None:
                frame.pts = pts[i]
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def make_hostile_corpus(root: Path, face_image: Path, face_video: Path, long_video: bool = True) -> Path:
    """Broken, odd and hostile media in one folder, built from a demo face (so decodable ones hold a face)."""
    import io
    import os
    import struct
    import zlib

    import numpy as np
    from PIL import Image

    from faketrace.datasets.media import read_video_frames

    d = root / "hostile"
    d.mkdir(parents=True)
    face = Image.open(face_image).convert("RGB")
    jpeg = face_image.read_bytes()

    def saved(im: Image.Image, fmt: str, **kw) -> bytes:
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        return buf.getvalue()

    (d / "zero_bytes.jpg").write_bytes(b"")
    (d / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    png = saved(face, "PNG")
    (d / "truncated.png").write_bytes(png[: len(png) // 2])
    webp = saved(face, "WEBP", quality=90)
    (d / "truncated.webp").write_bytes(webp[: len(webp) // 2])
    video = face_video.read_bytes()
    (d / "truncated_index_at_end.mp4").write_bytes(video[: len(video) // 2])
    remux_faststart(face_video, root / "fs.mp4")
    fs = (root / "fs.mp4").read_bytes()
    (root / "fs.mp4").unlink()
    (d / "truncated_index_at_start.mp4").write_bytes(fs[: int(len(fs) * 0.85)])
    (d / "text_as_image.jpg").write_text("not an image at all\n" * 20)
    (d / "image_as_video.mp4").write_bytes(jpeg)

    # A PNG that declares 20000 x 20000 pixels in a few kilobytes (one compressed all-zero stream).
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\x00" * (20000 + 1) * 200, 9)  # only the first rows; the header is what matters
    (d / "bomb_20000x20000.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000,
                                                                                              8, 0, 0, 0, 0))
                                             + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    gray16 = (np.asarray(face.convert("L"), np.uint16) * 257)
    Image.fromarray(gray16).save(d / "gray16.png")
    face.convert("CMYK").save(d / "cmyk.jpg", quality=95)
    face.convert("P", palette=Image.Palette.ADAPTIVE).save(d / "palette.png")
    face.convert("L").save(d / "grayscale.png")
    rgba = face.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(d / "alpha.png")
    # Stored on its side; EXIF orientation 6 says "rotate 90 degrees clockwise to view".
    exif = Image.Exif()
    exif[0x0112] = 6
    wide = face.crop((0, 0, face.width, face.height * 4 // 5))  # not square, so a missed turn shows
    wide.transpose(Image.Transpose.ROTATE_90).save(d / "exif_rotated.jpg", quality=95, exif=exif.tobytes())
    frames = list(read_video_frames(face_video, 6).frames.values())
    wide_frames = [np.ascontiguousarray(f[: f.shape[0] * 4 // 5 // 2 * 2]) for f in frames]
    pil_frames = [Image.fromarray(f) for f in frames]
    pil_frames[0].save(d / "animated.gif", save_all=True, append_images=pil_frames[1:], duration=100, loop=0)
    pil_frames[0].save(d / "animated.webp", save_all=True, append_images=pil_frames[1:], duration=100, loop=0)
    import av

    with av.open(str(d / "zero_frames.mp4"), "w") as out:  # a video stream and not one frame
        s = out.add_stream("libx264", rate=5)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        out.start_encoding()  # header written, no frame follows
    _encode_video(d / "variable_frame_rate.mp4", frames, fps=1000, pts=[0, 40, 90, 300, 320, 700][: len(frames)])
    # Frames stored landscape-on-its-side with a display matrix that turns them upright.
    _encode_video(d / "rotated_display_matrix.mp4", [np.ascontiguousarray(np.rot90(f, -1)) for f in wide_frames],
                  rotation=90)
    if long_video:
        rng = np.random.default_rng(0)
        noise = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(8)]
        _encode_video(d / "two_hours_1fps.mp4", [noise[i % 8] for i in range(7200)], fps=1)
    (d / "visage_é_日本語.jpg").write_bytes(jpeg)
    (d / ("n" * 246 + ".jpg")).write_bytes(jpeg)  # a 250-byte name
    # Issue 21: names that are not UTF-8 or that lie on screen, frames of extreme shape, and an
    # animation of huge frames (a few hundred KB on disk, 64 M pixels a frame).
    (d / os.fsdecode(b"not_utf8_\xff\xfe.jpg")).write_bytes(jpeg)
    (d / "rtl_\u202egpj.exe").write_bytes(jpeg)
    (d / "new\nline.jpg").write_bytes(jpeg)
    Image.new("RGB", (65535, 1), (90, 90, 90)).save(d / "wide_65535x1.png")
    Image.new("RGB", (1, 65535), (90, 90, 90)).save(d / "tall_1x65535.png")
    flat = [Image.new("P", (7999, 7999), i % 2) for i in range(2)]
    for im in flat:
        im.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    flat[0].save(d / "animated_7999x7999x8.gif", save_all=True, append_images=[flat[1], flat[0]] * 3 + [flat[1]],
                 duration=100, loop=0, optimize=False)
    os.symlink("loop_b", d / "loop_a")
    os.symlink("loop_a", d / "loop_b")
    os.mkfifo(d / "named_pipe.jpg")
    unreadable = d / "unreadable.jpg"
    unreadable.write_bytes(jpeg)
    unreadable.chmod(0)
    from .formats_corpus import write_hostile_stills

    write_hostile_stills(d, face_image)  # TIFF pages, AVIF, HEIF, JPEG XL (tests/formats_corpus.py)
    return d
