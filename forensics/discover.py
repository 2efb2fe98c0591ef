"""Evidence discovery: turn the analyst's inputs into a stream of items, in a fixed order.

Inputs are files, folders (walked recursively, links not followed) and Telegram Desktop exports
(recognised by their layout, see forensics/telegram.py). Nothing here decides a media type: the
scan sniffs the bytes of every item. Items come out as a generator in sorted order, so a case
of any size streams, and a re-run meets the same items under the same ids.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from faketrace.datasets.io import walk_noatime
from faketrace.forensics import telegram
from faketrace.forensics.names import raw_hex, visible


@dataclass
class EvidenceItem:
    item_id: str  # "<input number>/<path inside the input>": stable across runs of a case
    input_index: int
    input_root: str
    rel_path: str
    path: Path | None  # None for a Telegram media reference with no file behind it
    source: str  # file | folder | telegram_json | telegram_html
    status: str | None = None  # preset when the item cannot be opened at all: missing | refused
    reason: str | None = None
    telegram: list[dict] = field(default_factory=list)  # the messages that carried this file
    container: dict | None = None  # an archive member: where in which archive (forensics/archives.py)
    # input_root and rel_path are the visible forms (forensics/names.py); the raw bytes, in hex,
    # where they differ, so that a name that is not UTF-8 is kept exactly.
    input_raw_hex: str | None = None
    rel_path_raw_hex: str | None = None

    def record(self) -> dict:
        """The fields of a result record that say which item this is."""
        out = {"item_id": self.item_id, "input_index": self.input_index, "input": self.input_root,
               "rel_path": self.rel_path, "source": self.source}
        if self.input_raw_hex:
            out["input_raw_hex"] = self.input_raw_hex
        if self.rel_path_raw_hex:
            out["rel_path_raw_hex"] = self.rel_path_raw_hex
        if self.container is not None:  # an archive member: which archive, and its path inside it
            out["container"] = self.container
        return out


def make_item(info: InputInfo, rel: str, path: Path | None, source: str, **kw) -> EvidenceItem:
    """An item whose id and shown names are the visible forms of its (possibly undecodable) names."""
    shown = visible(rel)
    return EvidenceItem(f"{info.index}/{shown}", info.index, visible(info.path), shown, path, source,
                        input_raw_hex=raw_hex(info.path), rel_path_raw_hex=raw_hex(rel), **kw)


@dataclass
class InputInfo:
    index: int
    path: str
    kind: str  # file | folder | telegram_json | telegram_html
    notes: list[str] = field(default_factory=list)
    telegram: dict | None = None


class CaseDirError(ValueError):
    """The case directory would put scan output among the evidence."""


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_case_dir(case_dir: str | Path, inputs: list[str | Path]) -> Path:
    """Refuse a case directory inside an input (or beside an input file), or holding an input."""
    case = Path(case_dir).expanduser().resolve()
    for raw in inputs:
        src = Path(raw).expanduser().resolve()
        evidence_folder = src if src.is_dir() else src.parent
        if _inside(case, evidence_folder):
            where = "inside the input folder" if src.is_dir() else "in the folder of the input file"
            raise CaseDirError(f"case directory {case} is {where} {evidence_folder}: nothing may be written "
                               "beside the evidence; choose case.dir outside every input")
        if _inside(src, case):
            raise CaseDirError(f"input {src} lies inside the case directory {case}; keep evidence and case apart")
    return case


def describe_inputs(inputs: list[str | Path]) -> list[InputInfo]:
    """Check every input exists and say what it is; raise before anything is scanned."""
    if not inputs:
        raise ValueError("no inputs: give inputs=[PATH,...] (files, folders or Telegram exports)")
    out, problems = [], []
    for i, raw in enumerate(inputs):
        p = Path(raw).expanduser()
        if p.is_symlink() and not p.exists():
            problems.append(f"{raw}: a broken symbolic link")
        elif p.is_dir():
            form = telegram.detect_export(p)
            info = InputInfo(i, str(p.resolve()), {"json": "telegram_json", "html": "telegram_html"}.get(form, "folder"))
            if form == "html":
                info.notes.append(telegram.HTML_EXPORT_ADVICE)
            out.append(info)
        elif p.is_file():
            out.append(InputInfo(i, str(p.resolve()), "file"))
        elif p.exists():
            problems.append(f"{raw}: not a regular file or folder ({_file_kind(p)})")
        else:
            problems.append(f"{raw}: no such file or folder")
    if problems:
        raise ValueError("inputs not found: " + "; ".join(problems))
    return out


def _file_item(info: InputInfo, path: Path, root: Path, source: str) -> EvidenceItem:
    rel = path.relative_to(root).as_posix()
    item = make_item(info, rel, path, source)
    if path.is_symlink():
        # A link can point anywhere, including out of the evidence: record it, do not follow it.
        item.path, item.status = None, "refused"
        item.reason = f"symbolic link not followed (points to {visible(os.readlink(path))})"
    elif not path.is_file():
        # Opening a FIFO blocks until someone writes to it; devices and sockets are not media.
        item.path, item.status = None, "refused"
        item.reason = f"not a regular file ({_file_kind(path)}); not opened"
    return item


def _file_kind(path: Path) -> str:
    import stat

    mode = path.lstat().st_mode
    for test, name in ((stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def iter_items(inputs: list[InputInfo], max_export_json_bytes: int | None = None) -> Iterator[EvidenceItem]:
    """Items of every input; `max_export_json_bytes`: the largest result.json parsed for context."""
    global _MAX_JSON
    _MAX_JSON = int(max_export_json_bytes or telegram.MAX_RESULT_JSON_BYTES)
    for info in inputs:
        root = Path(info.path)
        if info.kind == "file":
            yield make_item(info, root.name, root, "file")
        elif info.kind == "folder":
            yield from _folder_items(info, root)
        else:
            yield from _telegram_items(info, root, info.kind.removeprefix("telegram_"), root)


_MAX_JSON = None


def _folder_items(info: InputInfo, root: Path) -> Iterator[EvidenceItem]:
    """Every entry below `root`, sorted, links not followed; a Telegram export found inside the
    folder (a seized disk's Downloads/Telegram Desktop/ChatExport_...) is read as an export, so its
    media carry their message context and its own page files are not items."""
    for dirpath, dirnames, filenames in walk_noatime(root):
        base = Path(dirpath)
        form = telegram.detect_export(base) if base != root else None
        if form:
            dirnames[:] = []  # the export's own walk covers its tree
            info.notes.append(f"{visible(base.relative_to(root).as_posix())}: a Telegram {form.upper()} export inside the "
                              "folder; its media carry their message context")
            if form == "html":
                info.notes.append(telegram.HTML_EXPORT_ADVICE)
            yield from _telegram_items(info, base, form, root)
            continue
        dirnames.sort()
        # os.walk lists links to directories among dirnames; they are not followed, but reported.
        for name in sorted(filenames + [d for d in dirnames if (base / d).is_symlink()]):
            yield _file_item(info, base / name, root, "folder")


def _telegram_items(info: InputInfo, root: Path, form: str, rel_root: Path) -> Iterator[EvidenceItem]:
    """Every file of an export (its own structure files aside) with the messages that carried it,
    then one item per media reference that names no file in the export (missing or refused).
    Item paths are relative to `rel_root`: the export itself, or the folder input holding it."""
    from faketrace.forensics.telegram_html import iter_html_references

    source = f"telegram_{form}"
    prefix = "" if root == rel_root else f"{root.relative_to(rel_root).as_posix()}/"
    if source == "telegram_html":
        export = telegram.ExportInfo(root=root, form="html", kind="html", chats=1)
        references = iter_html_references(root, export)
    else:
        export = telegram.ExportInfo(root=root, form="json", kind="chat")
        references = telegram.iter_references(root, export, max_bytes=_MAX_JSON or telegram.MAX_RESULT_JSON_BYTES)
    contexts: dict[Path, list[dict]] = {}
    unresolved: list[telegram.MediaReference] = []
    unreadable, at_fault = None, None
    try:
        for ref in references:
            if ref.status == "ok":
                contexts.setdefault(ref.path.resolve(), []).append(ref.context)
            else:
                unresolved.append(ref)
    except telegram.ExportError as exc:
        # A broken result.json or page costs the message context, never the media: every file of
        # the export is still scanned, and the file at fault carries the error.
        unreadable, at_fault = f"{exc}; the export's media were scanned without (complete) message context", exc.path
        info.notes.append(unreadable)
    info.telegram = {"kind": export.kind, "chats": export.chats, "messages": export.messages,
                     "media_references": sum(len(v) for v in contexts.values()) + len(unresolved),
                     "missing": sum(r.status == "missing" for r in unresolved),
                     "refused": sum(r.status == "refused" for r in unresolved), "unreadable": unreadable}
    for path in telegram.walk_files(root):
        if telegram.is_structure_file(root, path):
            if path.is_symlink():  # never read; said, like any other link
                yield _file_item(info, path, rel_root, source)
                continue
            if at_fault is not None and path == at_fault:
                rel = path.relative_to(rel_root).as_posix()
                yield make_item(info, rel, None, source, status="error", reason=unreadable)
            continue
        item = _file_item(info, path, rel_root, source)
        item.telegram = contexts.get(path.resolve(), [])
        yield item
    for n, ref in enumerate(unresolved):
        ctx = ref.context
        rel = f"{prefix}#message/{ctx.get('chat_id')}/{ctx.get('message_id')}/{ref.field}/{n}"
        yield make_item(info, rel, None, source, status=ref.status, reason=ref.reason,
                        telegram=[{**ctx, "value": visible(ref.value)}])


def register_case_resolver() -> None:
    """`${case_dir:DIR,INPUTS}`: the case directory, refused before Hydra creates it among the evidence."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("case_dir"):
        OmegaConf.register_new_resolver("case_dir", lambda d, inputs: (check_case_dir(d, list(inputs)), d)[1])
