"""Containers inside evidence (forensics/archives.py): archives are scanned member by member from
memory, with limits that give a bomb a status; disk images are recognised and out of scope."""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from faketrace.forensics.archives import MiB, container_status, identify
from faketrace.forensics.discover import register_case_resolver
from faketrace.forensics.scan import EXIT_ITEMS_FAILED, scan_from_config

from .conftest import REPO, results, scan_cfg, tree_snapshot

register_case_resolver()


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tar_gz(members: dict[str, bytes], link: tuple[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link[0])
            info.type, info.linkname = tarfile.SYMTYPE, link[1]
            tf.addfile(info)
    return buf.getvalue()


def _zeros_member_zip(name: str, size: int) -> bytes:
    """A zip whose one deflated member inflates to `size` zero bytes, written without making them:
    one full-flushed deflate block of 1 MiB of zeros repeated (each is byte-aligned and can follow
    itself), then the final empty block. CRC and sizes are computed; nothing is held in memory."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(b"\0" * MiB) + comp.flush(zlib.Z_FULL_FLUSH)
    n = size // MiB
    data = block * n + b"\x03\x00"  # an empty final fixed-Huffman block ends the stream
    crc = 0  # never checked: the reader refuses these members, or stops reading, long before their end
    encoded = name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(data), n * MiB, len(encoded), 0)
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(data), n * MiB,
                          len(encoded), 0, 0, 0, 0, 0, 0)
    body = local + encoded + data
    directory = central + encoded
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(directory), len(body), 0)
    return body + directory + end


def _disk_images() -> dict[str, bytes]:
    mbr = bytearray(1024)
    mbr[446:462] = bytes([0x80, 1, 1, 0, 0x07, 0xFE, 0xFF, 0xFF]) + struct.pack("<II", 2048, 204800)
    mbr[510:512] = b"\x55\xaa"
    gpt = bytearray(mbr)
    gpt[446:462] = bytes([0, 0, 2, 0, 0xEE, 0xFF, 0xFF, 0xFF]) + struct.pack("<II", 1, 0xFFFFFFFF)
    gpt[512:520] = b"EFI PART"
    ntfs = bytearray(512)
    ntfs[3:11], ntfs[510:512] = b"NTFS    ", b"\x55\xaa"
    ext4 = bytearray(2048)
    ext4[1080:1082] = b"\x53\xef"
    iso = bytearray(34 * 1024)
    iso[32769:32774] = b"CD001"
    return {"seized.E01": b"EVF\x09\x0d\x0a\xff\x00" + bytes(100), "phone.dd": bytes(mbr), "laptop.img": bytes(gpt),
            "volume.ntfs": bytes(ntfs), "partition.ext4": bytes(ext4), "disc.iso": bytes(iso)}


def test_disk_images_and_archives_are_recognised_from_their_bytes(tmp_path):
    for name, data in _disk_images().items():
        (tmp_path / name).write_bytes(data)
        status = container_status(tmp_path / name)
        assert status["status"] == "out_of_scope" and "disk images are out of scope" in status["reason"], name
        assert status["container"]["kind"] == "disk_image"
    assert identify(_zip({"a": b"x"})).kind == "zip" and identify(_tar_gz({"a": b"x"})).kind == "tar.gz"
    assert identify(b"7z\xbc\xaf\x27\x1c" + bytes(40)).kind == "7z"
    # Ordinary noise is no container (a chance MBR signature needs valid partition entries as well).
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, 4096, dtype=np.uint8).tobytes() for _ in range(200)]
    assert [identify(n) for n in noise] == [None] * 200
    boot_sector_noise = bytearray(noise[0])
    boot_sector_noise[510:512] = b"\x55\xaa"
    assert identify(bytes(boot_sector_noise)) is None


@pytest.fixture(scope="module")
def archive_evidence(evidence, tmp_path_factory):
    root = tmp_path_factory.mktemp("archives") / "seized"
    root.mkdir()
    photo = (evidence["loose"] / "photo_real.jpg").read_bytes()
    nested = _zip({"level4.jpg": photo})
    for level in (3, 2):  # level1.zip holds level2.zip, which holds level3.zip, which holds the photo
        nested = _zip({f"level{level}.zip": nested})
    inner = _tar_gz({"deep/photo.jpg": photo}, link=("deep/passwd", "/etc/passwd"))
    (root / "phone_backup.zip").write_bytes(_zip({"DCIM/photo.jpg": photo, "chat/inner.tar.gz": inner,
                                                  "notes.txt": b"meet at 6", "nested/level1.zip": nested}))
    rng = np.random.default_rng(1)
    # 2 MiB members that do not compress: past a 1 MiB member limit; four of 0.75 MiB: past a 2 MiB total.
    (root / "big.zip").write_bytes(_zip({"big.bin": rng.integers(0, 256, 2 * MiB, dtype=np.uint8).tobytes()},
                                        zipfile.ZIP_STORED))
    (root / "many.tar.gz").write_bytes(_tar_gz({f"part{i}.bin": rng.integers(0, 256, 3 * MiB // 4, dtype=np.uint8)
                                               .tobytes() for i in range(4)}))
    (root / "bomb.zip").write_bytes(_zeros_member_zip("zeros.bin", 64 * MiB))  # 64 MiB of zeros in ~64 KiB
    for name, data in _disk_images().items():
        if name in ("seized.E01", "phone.dd"):
            (root / name).write_bytes(data)
    return root


def test_the_scan_opens_archives_in_memory_and_gives_every_member_a_status(archive_evidence, scan_ckpt, tmp_path):
    before = tree_snapshot(archive_evidence)
    case = tmp_path / "case"
    summary = scan_from_config(scan_cfg(
        [archive_evidence], case, [f"ckpt_path={scan_ckpt}", "allow_unvalidated=true"],
        ["scan.archives.max_member_bytes=1048576", "scan.archives.max_total_bytes=2097152", "scan.archives.max_depth=3"]))
    assert tree_snapshot(archive_evidence) == before  # nothing extracted beside the evidence
    _, items = results(case)
    status = {k: (r["status"], r.get("reason")) for k, r in items.items()}
    top = "0/phone_backup.zip"
    expected = {
        top: "archive",
        f"{top}!/DCIM/photo.jpg": "scanned",
        f"{top}!/chat/inner.tar.gz": "archive",
        f"{top}!/chat/inner.tar.gz!/deep/photo.jpg": "scanned",
        f"{top}!/chat/inner.tar.gz!/deep/passwd": "refused",
        f"{top}!/nested/level1.zip": "archive",
        f"{top}!/nested/level1.zip!/level2.zip": "archive",
        f"{top}!/nested/level1.zip!/level2.zip!/level3.zip": "archive_limit",  # 4 deep, max_depth 3
        f"{top}!/notes.txt": "unsupported",
        "0/big.zip": "archive", "0/big.zip!/big.bin": "oversized",
        "0/many.tar.gz": "archive", "0/many.tar.gz!/part0.bin": "unsupported", "0/many.tar.gz!/part1.bin": "unsupported",
        # The third and fourth would pass the 2 MiB total: not inflated.
        "0/many.tar.gz!/part2.bin": "archive_limit", "0/many.tar.gz!/part3.bin": "archive_limit",
        "0/bomb.zip": "archive", "0/bomb.zip!/zeros.bin": "oversized",
        "0/seized.E01": "out_of_scope", "0/phone.dd": "out_of_scope",
    }
    assert {k: s for k, (s, _) in status.items()} == expected, status
    assert "not followed" in status[f"{top}!/chat/inner.tar.gz!/deep/passwd"][1]
    assert "deeper than scan.archives.max_depth" in status[f"{top}!/nested/level1.zip!/level2.zip!/level3.zip"][1]
    assert "max_member_bytes" in status["0/big.zip!/big.bin"][1]
    assert "max_total_bytes" in status["0/many.tar.gz!/part2.bin"][1]
    assert "EnCase" in status["0/seized.E01"][1] and "MBR" in status["0/phone.dd"][1]
    # Each member's place: archive, path inside it, the chain from the evidence file; hashed from memory.
    deep = items[f"{top}!/chat/inner.tar.gz!/deep/photo.jpg"]
    assert deep["container"]["chain"] == ["phone_backup.zip", "chat/inner.tar.gz", "deep/photo.jpg"]
    assert deep["container"]["archive_item_id"] == f"{top}!/chat/inner.tar.gz"
    photo = (Path(items[top]["input"]) / "phone_backup.zip")
    with zipfile.ZipFile(photo) as zf:
        import hashlib

        assert items[f"{top}!/DCIM/photo.jpg"]["sha256"] == hashlib.sha256(zf.read("DCIM/photo.jpg")).hexdigest()
    assert deep["sha256"] == items[f"{top}!/DCIM/photo.jpg"]["sha256"] and deep["faces"]
    # Custody: the limits, and every member in the hash list, verified through its archive.
    custody = json.loads((case / "custody.json").read_text())
    assert custody["archives"]["limits"]["max_member_bytes"] == MiB
    rows = {r["item_id"]: r for r in csv.DictReader(open(case / "input_hashes.csv"))}
    member_row = rows[f"{top}!/DCIM/photo.jpg"]
    assert (member_row["unchanged"], member_row["checked_by"], member_row["sha256_after"]) == \
        ("True", "its archive file", f"inside {top}")
    assert rows[top]["unchanged"] == "True" and rows[top]["checked_by"] in ("sha256", "size+mtime+inode")
    assert summary["evidence_unchanged"] is True and summary["exit_status"] == EXIT_ITEMS_FAILED
    # The report reads members again from their archive, in memory.
    report = json.loads((case / "report.json").read_text())
    member = next(r for r in report["items"] if r["item_id"] == f"{top}!/DCIM/photo.jpg")
    assert member["provenance"] is not None and member["pdq"] and not member["notes"]


MEMORY_PROBE = """
import resource, subprocess, sys
run = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
sys.stderr.write(run.stderr[-3000:])
sys.exit(run.returncode)
"""


@pytest.mark.slow
def test_bombs_and_nested_archives_stay_within_the_memory_bound(scan_ckpt, tmp_path):
    """Default limits: the scan process and its decoder child stay below 2 GB resident while a zip
    bomb, a nested bomb and a member that really inflates to 200 MiB go through."""
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    bomb = _zeros_member_zip("zeros.bin", 3 * 1024 * MiB)  # 3 GiB declared, ~3 MiB on disk
    (evidence / "bomb.zip").write_bytes(bomb)
    (evidence / "nested_bomb.zip").write_bytes(_zip({f"layer{i}.zip": bomb for i in range(4)}, zipfile.ZIP_STORED))
    # A member that really inflates to 200 MiB (a repeated 4 KiB block: compressed about 200:1),
    # starting like a JPEG, so it goes to the decoder process too.
    block = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    (evidence / "large.zip").write_bytes(_zip({"large.jpg": b"\xff\xd8\xff\xe0" + block * (50 * 1024)}))
    case = tmp_path / "case"
    cmd = [sys.executable, "evaluate.py", "mode=scan", f"inputs=[{evidence}]", "case.id=BOMB", "case.operator=pytest",
           f"case.dir={case}", f"ckpt_path={scan_ckpt}", "allow_unvalidated=true", "scan.progress=false",
           "report.enabled=false", "device=cpu"]
    probe = subprocess.run([sys.executable, "-c", MEMORY_PROBE, *cmd], cwd=REPO, capture_output=True, text=True,
                           timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert probe.returncode == EXIT_ITEMS_FAILED, probe.stderr
    peak = int(probe.stdout.strip().splitlines()[-1])
    _, items = results(case)
    status = {k: r["status"] for k, r in items.items()}
    assert status["0/bomb.zip!/zeros.bin"] == "oversized"
    assert all(status[f"0/nested_bomb.zip!/layer{i}.zip!/zeros.bin"] == "oversized" for i in range(4))
    assert status["0/large.zip!/large.jpg"] == "decode_error"  # read whole (200 MiB), decoded, refused
    assert items["0/large.zip!/large.jpg"]["size_bytes"] == 4 + 4096 * 50 * 1024
    assert peak < 2 * 1024 ** 3, f"peak resident memory {peak / 1024 ** 3:.2f} GiB"
    print(f"peak RSS of the scan and its decoder child: {peak / 1024 ** 2:.0f} MiB")
