"""Containers inside evidence: archives are opened read-only and their members scanned as items;
raw disk images are recognised and reported out of scope.

Archives (zip, tar and gzip/bzip2/xz-compressed tar; 7z where the optional py7zr is installed)
are read from the evidence file itself, never extracted to disk: each member is read into memory
(a `MemoryFile`) up to `max_member_bytes`, hashed, and scored like any file; a member that is
itself an archive is expanded in turn, down to `max_depth`. Limits keep a decompression bomb to a
status instead of the machine's memory:

- a member declaring more than `max_member_bytes`, or compressed more than `max_ratio`:1 (and
  larger than 16 MiB), is not inflated: `oversized`, with its declared sizes; a member whose
  declared size lies is cut off at `max_member_bytes` + 1 bytes while reading: `oversized`;
- an archive with more than `max_members` members, or whose members (nested archives included)
  inflate to more than `max_total_bytes`, stops there: one `archive_limit` item says how many
  members were not scanned and why;
- an archive nested deeper than `max_depth` is hashed but not opened: `archive_limit`.

Members keep their path inside the archive in the item id and record
(`0/seized.zip!/photos/a.jpg`, `container.chain`). Links and devices inside a tar are `refused`
(never followed), encrypted members `unsupported` (no password is tried).

Raw disk images (EnCase E01/Ex01, a raw dd image with an MBR or GPT partition table or a bare
file system, VMDK/VHD(X)/QCOW2 virtual disks, ISO 9660) are `out_of_scope`: examining a file
system is a job for a forensic disk tool, whose extracted files can then be scanned.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from faketrace.datasets.io import open_readonly
from faketrace.datasets.media import sniff_media_type
from faketrace.datasets.memory_file import MemoryFile
from faketrace.forensics.discover import EvidenceItem
from faketrace.forensics.names import visible

MiB = 1 << 20
SEPARATOR = "!/"  # between an archive's path and a member's path inside it
HEAD_BYTES = 34 * 1024  # enough for every signature below (ISO 9660's lies at 32769)


@dataclass(frozen=True)
class ArchiveLimits:
    enabled: bool = True
    max_members: int = 10_000
    max_member_bytes: int = 256 * MiB
    max_total_bytes: int = 4 * 1024 * MiB
    max_depth: int = 3
    max_ratio: int = 1000

    @classmethod
    def from_config(cls, cfg) -> ArchiveLimits:
        cfg = dict(cfg or {})
        return cls(**{k: type(getattr(cls, k))(v) for k, v in cfg.items() if k in cls.__dataclass_fields__})

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# -- recognising containers ------------------------------------------------------------------------
def _mbr(head: bytes) -> bool:
    """A DOS partition table: the boot signature and four entries with valid status bytes, one in use."""
    if len(head) < 512 or head[510:512] != b"\x55\xaa":
        return False
    entries = [head[446 + 16 * i: 462 + 16 * i] for i in range(4)]
    return all(e[0] in (0x00, 0x80) for e in entries) and any(e[4] != 0 for e in entries)


def _ext(head: bytes) -> bool:
    return len(head) > 1082 and head[1080:1082] == b"\x53\xef"


DISK_IMAGES: tuple[tuple[str, Callable[[bytes], bool]], ...] = (
    ("EnCase evidence file (E01)", lambda h: h.startswith(b"EVF\x09\x0d\x0a\xff\x00")),
    ("EnCase evidence file (Ex01)", lambda h: h.startswith(b"EVF2\x0d\x0a\x81\x00")),
    ("AFF4 / AFF image", lambda h: h.startswith(b"AFF10\r\n\x00")),
    ("VMware virtual disk (VMDK)", lambda h: h.startswith(b"KDMV") or h.startswith(b"# Disk DescriptorFile")),
    ("Hyper-V virtual disk (VHDX)", lambda h: h.startswith(b"vhdxfile")),
    ("virtual disk (VHD)", lambda h: h.startswith(b"conectix")),
    ("QEMU virtual disk (QCOW)", lambda h: h.startswith(b"QFI\xfb")),
    ("raw disk image with a GPT partition table", lambda h: h[512:520] == b"EFI PART"),
    ("raw NTFS volume image", lambda h: h[3:11] == b"NTFS    "),
    ("raw exFAT volume image", lambda h: h[3:11] == b"EXFAT   "),
    ("raw FAT volume image", lambda h: h[510:512] == b"\x55\xaa" and (h[54:59] in (b"FAT12", b"FAT16")
                                                                   or h[82:87] == b"FAT32")),
    ("raw disk image with an MBR partition table", _mbr),
    ("raw ext2/3/4 volume image", _ext),
    ("raw HFS+ volume image", lambda h: h[1024:1026] in (b"H+", b"HX")),
    ("raw APFS container image", lambda h: h[32:36] == b"NXSB"),
    ("ISO 9660 optical disc image", lambda h: h[32769:32774] == b"CD001"),
)


def _is_tar(head: bytes) -> bool:
    return head[257:262] == b"ustar"


ARCHIVES: tuple[tuple[str, str, Callable[[bytes], bool]], ...] = (
    ("zip", "zip archive", lambda h: h[:4] in (b"PK\x03\x04", b"PK\x05\x06")),
    ("7z", "7z archive", lambda h: h.startswith(b"7z\xbc\xaf\x27\x1c")),
    ("tar", "tar archive", _is_tar),
    ("tar.gz", "gzip-compressed file (a tar archive if it holds one)", lambda h: h[:2] == b"\x1f\x8b"),
    ("tar.bz2", "bzip2-compressed file (a tar archive if it holds one)", lambda h: h[:3] == b"BZh"),
    ("tar.xz", "xz-compressed file (a tar archive if it holds one)", lambda h: h[:6] == b"\xfd7zXZ\x00"),
)


@dataclass(frozen=True)
class Container:
    kind: str  # zip | 7z | tar | tar.gz | tar.bz2 | tar.xz | disk_image
    description: str


def identify(head: bytes) -> Container | None:
    for kind, description, test in ARCHIVES:
        if test(head):
            return Container(kind, description)
    for description, test in DISK_IMAGES:
        if test(head):
            return Container("disk_image", description)
    return None


def _head(path) -> bytes:
    with open_readonly(path) as fh:
        return fh.read(HEAD_BYTES)


def container_of(path) -> Container | None:
    """The container a file is, if it is no image or video (those are never expanded)."""
    if sniff_media_type(path) != "unknown":
        return None
    return identify(_head(path))


def container_status(path, limits: ArchiveLimits | None = None) -> dict | None:
    """The item status of a container file (for the scorer), or None when it is not one."""
    found = container_of(path)
    if found is None:
        return None
    limits = limits or ArchiveLimits()
    out = {"container": {**(getattr(path, "container", None) or {}), "kind": found.kind,
                         "description": found.description}}
    if found.kind == "disk_image":
        return {**out, "status": "out_of_scope",
                "reason": f"a {found.description}: disk images are out of scope for this scan (no file system is "
                          "read); examine it with a forensic disk tool and scan the files it holds"}
    stop = (getattr(path, "container", None) or {}).get("not_opened")
    if stop:
        return {**out, "status": "archive_limit", "reason": stop}
    if not limits.enabled:
        return {**out, "status": "unsupported",
                "reason": f"a {found.description}; archives are not opened in this scan (scan.archives.enabled=false)"}
    if found.kind not in _READERS:
        return {**out, "status": "unsupported",
                "reason": f"a {found.description}: not opened (no reader for it is integrated; extract it with its "
                          "own tool and scan the folder)"}
    return {**out, "status": "archive",
            "reason": f"a {found.description}: opened read-only, its members are the items "
                      f"'<this item>{SEPARATOR}<member>' that follow"}


# -- reading members -------------------------------------------------------------------------------
@dataclass
class _Member:
    name: str
    declared_size: int | None
    compressed_size: int | None
    kind: str = "file"  # file | dir | link | special | encrypted
    link_target: str | None = None
    read: Callable[[int], bytes] | None = None  # read(n): at most n bytes of the member, inflated


class _Budget:
    """What one top-level archive (its nested archives included) may still inflate."""

    def __init__(self, total: int):
        self.left = total


def _bounded_read(fh, limit: int) -> bytes:
    out, left = [], limit
    while left > 0:
        block = fh.read(min(left, MiB))
        if not block:
            break
        out.append(block)
        left -= len(block)
    return b"".join(out)


# A zip's central directory is read whole before any member: past this size (about a million
# entries) the listing itself would be the bomb, so the archive is not opened.
MAX_ZIP_DIRECTORY_BYTES = 64 * MiB


def _zip_members(source) -> Iterator[_Member]:
    end = zipfile._EndRecData(source)  # the end-of-central-directory record (zip64 aware)
    if end is not None and end[zipfile._ECD_SIZE] > MAX_ZIP_DIRECTORY_BYTES:
        raise ValueError(f"its central directory is {end[zipfile._ECD_SIZE]} bytes ({end[zipfile._ECD_ENTRIES_TOTAL]} "
                         f"entries), above {MAX_ZIP_DIRECTORY_BYTES}: not listed")
    with zipfile.ZipFile(source) as zf:
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            if info.is_dir():
                continue
            if info.flag_bits & 0x1:
                yield _Member(info.filename, info.file_size, info.compress_size, kind="encrypted")
                continue

            def read(n, info=info):
                with zf.open(info) as fh:
                    return _bounded_read(fh, n)

            yield _Member(info.filename, info.file_size, info.compress_size, read=read)


def _tar_members(source) -> Iterator[_Member]:
    # Streaming mode: members are read in archive order, a compressed tar is inflated once.
    with tarfile.open(fileobj=source, mode="r|*") as tf:
        for info in tf:
            if info.isdir():
                continue
            if info.issym() or info.islnk():
                yield _Member(info.name, None, None, kind="link", link_target=info.linkname)
                continue
            if not info.isreg():
                yield _Member(info.name, None, None, kind="special")
                continue

            def read(n, info=info):
                fh = tf.extractfile(info)
                return _bounded_read(fh, n) if fh is not None else b""

            yield _Member(info.name, info.size, info.size, read=read)


_READERS = {"zip": _zip_members, "tar": _tar_members, "tar.gz": _tar_members, "tar.bz2": _tar_members,
            "tar.xz": _tar_members}


def _display(name: str) -> str:
    """A member name as shown and stored: escaped where it is not plain printable UTF-8, as the
    names on disk are (forensics/names.py; tar keeps undecodable bytes as surrogates)."""
    return visible(name)


def expand(items: Iterator[EvidenceItem], limits: ArchiveLimits) -> Iterator[EvidenceItem]:
    """Every item of `items`, each archive followed by its members (nested ones expanded in turn)."""
    for item in items:
        yield item
        if not limits.enabled or item.status is not None or item.path is None:
            continue
        try:
            found = container_of(item.path)
        except OSError:
            continue  # the scan reports the unreadable file itself
        if found is None or found.kind not in _READERS:
            continue
        budget = _Budget(limits.max_total_bytes)
        with open_readonly(item.path) as fh:
            yield from _expand_archive(item, fh, found, limits, budget, depth=1, chain=[item.rel_path])


def _member_item(parent: EvidenceItem, name: str, **kw) -> EvidenceItem:
    rel = f"{parent.rel_path}{SEPARATOR}{name}"
    return EvidenceItem(f"{parent.item_id}{SEPARATOR}{name}", parent.input_index, parent.input_root, rel,
                        kw.pop("path", None), parent.source, input_raw_hex=parent.input_raw_hex, **kw)


def _expand_archive(parent: EvidenceItem, source, found: Container, limits: ArchiveLimits, budget: _Budget,
                    depth: int, chain: list[str]) -> Iterator[EvidenceItem]:
    seen: dict[str, int] = {}
    members = _READERS[found.kind](source)
    n = 0
    stopped = None
    try:
        for member in members:
            n += 1
            if n > limits.max_members:
                stopped = (f"the archive holds more than {limits.max_members} members (scan.archives.max_members); "
                           f"members after the first {limits.max_members} were not scanned")
                break
            name = _display(member.name)
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:  # the same name twice in one archive (zip allows it): both are kept
                name = f"{name}#{seen[name]}"
            above = (parent.path.container.get("member_indices") or []) if isinstance(parent.path, MemoryFile) else []
            top_raw = (parent.path.container.get("archive_file_raw_hex") if isinstance(parent.path, MemoryFile)
                       else parent.rel_path_raw_hex)  # the archive file's name on disk, where it is not plain
            where = {"archive_item_id": parent.item_id, "member_path": name, "member_indices": [*above, n - 1],
                     **({"archive_file_raw_hex": top_raw} if top_raw else {}),
                     "chain": [*chain, name], "depth": depth, "declared_size": member.declared_size,
                     "compressed_size": member.compressed_size}
            refusal = _refuse_before_reading(member, limits, budget)
            if refusal:
                status, reason = refusal
                yield _member_item(parent, name, status=status, reason=reason, container=where)
                continue
            try:
                data = member.read(min(limits.max_member_bytes, budget.left) + 1)
            except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError, RuntimeError) as exc:
                # zipfile stops at the declared size and then checks the CRC: a corrupt or lying member
                # fails here, alone (a tar stream that breaks ends the archive, below).
                yield _member_item(parent, name, status="decode_error", container=where,
                                   reason=f"the member cannot be read from the archive ({type(exc).__name__}: {exc})")
                continue
            budget.left -= len(data)
            if len(data) > limits.max_member_bytes:
                yield _member_item(parent, name, status="oversized", container=where, reason=(
                    f"inflates past {limits.max_member_bytes} bytes (scan.archives.max_member_bytes) although it "
                    f"declares {member.declared_size}: a decompression bomb or a lying header; reading stopped"))
                continue
            if budget.left < 0:
                stopped = (f"the archive's members inflate to more than {limits.max_total_bytes} bytes in all "
                           "(scan.archives.max_total_bytes); reading stopped at this member")
                break
            inner = identify(data[:HEAD_BYTES]) if sniff_media_type(MemoryFile(data[:HEAD_BYTES], name)) == "unknown" \
                else None
            opens = inner is not None and inner.kind in _READERS
            if opens and depth >= limits.max_depth:
                where["not_opened"] = (f"an archive nested {depth + 1} deep, deeper than scan.archives.max_depth = "
                                       f"{limits.max_depth}: hashed, not opened")
            file = MemoryFile(data, f"{parent.rel_path}{SEPARATOR}{name}", where)
            member_item = _member_item(parent, name, path=file, container=where)
            yield member_item
            if opens and depth < limits.max_depth:
                yield from _expand_archive(member_item, io.BytesIO(data), inner, limits, budget, depth + 1,
                                           [*chain, name])
            del data, file
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError, KeyError, RuntimeError) as exc:
        stopped = f"the archive could not be read further after {n} members ({type(exc).__name__}: {exc})"
    except Exception as exc:  # noqa: BLE001 - e.g. py7zr's own errors: a broken archive is this item's problem
        stopped = f"the archive could not be read further after {n} members ({type(exc).__name__}: {exc})"
    if stopped:
        yield _member_item(parent, "#not-scanned", status="archive_limit", reason=stopped,
                           container={"archive_item_id": parent.item_id, "chain": [*chain, "#not-scanned"],
                                      "depth": depth, "members_listed": n})


def _refuse_before_reading(member: _Member, limits: ArchiveLimits, budget: _Budget) -> tuple[str, str] | None:
    if member.kind == "link":
        return "refused", f"a link inside the archive (to {_display(member.link_target or '')!r}); not followed"
    if member.kind == "special":
        return "refused", "a device, pipe or other special entry inside the archive; not a file"
    if member.kind == "encrypted":
        return "unsupported", "an encrypted member; no password is tried"
    declared, packed = member.declared_size, member.compressed_size
    if declared is not None and declared > limits.max_member_bytes:
        return "oversized", (f"declares {declared} bytes, above scan.archives.max_member_bytes = "
                             f"{limits.max_member_bytes}; not inflated (extract it with a forensic tool and scan "
                             "the file)")
    if declared is not None and packed and declared > 16 * MiB and declared / packed > limits.max_ratio:
        return "oversized", (f"compressed {declared / packed:.0f}:1 ({packed} -> {declared} bytes), above "
                             f"scan.archives.max_ratio = {limits.max_ratio}: a decompression bomb; not inflated")
    if declared is not None and declared > budget.left:
        return "archive_limit", (f"the archive's members would inflate past scan.archives.max_total_bytes = "
                                 f"{limits.max_total_bytes}; not inflated")
    return None


def read_member(result: dict) -> MemoryFile:
    """An archive member again, from its top-level archive on disk (for the report); OSError if it cannot be."""
    try:
        return _read_member(result)
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken archive: the report notes it for this item
        raise OSError(f"{result.get('rel_path')}: cannot be read again from its archive ({type(exc).__name__}: {exc})") \
            from exc


def _read_member(result: dict) -> MemoryFile:
    from faketrace.forensics.report import evidence_path

    container = result.get("container") or {}
    chain = container.get("chain") or []
    top = evidence_path({**result, "rel_path": chain[0], "rel_path_raw_hex": container.get("archive_file_raw_hex")})
    indices = [int(i) for i in container.get("member_indices") or []]
    data = None
    with open_readonly(top) as fh:
        source = fh
        for index in indices:
            head = source.read(HEAD_BYTES)
            source.seek(0)
            found = identify(head)
            if found is None or found.kind not in _READERS:
                raise OSError(f"{result['rel_path']}: a container on its path is no longer an archive")
            members = _READERS[found.kind](source)  # held open while the member is read
            member = next((m for k, m in enumerate(members) if k == index), None)
            if member is None or member.read is None:
                raise OSError(f"{result['rel_path']} is no longer in its archive")
            data = member.read(ArchiveLimits().max_member_bytes + 1)
            members.close()
            source = io.BytesIO(data)
    return MemoryFile(data, result["rel_path"], container)


def describe(limits: ArchiveLimits) -> dict:
    return {"limits": limits.to_dict(), "read": "members read into memory, never written to disk",
            "readers": sorted(_READERS), "recognised_not_opened": ["7z"],
            "disk_images": "recognised and reported out_of_scope, not opened"}
