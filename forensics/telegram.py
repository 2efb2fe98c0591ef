"""Telegram Desktop chat exports: find the media and the message each one came with.

Two forms exist (../shared/telegram-export-format.md has the facts):
- machine-readable JSON: `result.json` links every media file to its message (id, time, sender,
  chat, forwarded-from). One chat has `messages` at the top; a whole-account export has
  `chats.list[*].messages`, each chat's media under `chats/chat_<N>/`.
- HTML (the client's default): photos only, up to 8 MB, the context only in HTML pages. We scan
  the media files it holds, read each one's message from the pages (forensics/telegram_html.py)
  and tell the analyst how to export JSON with videos.

Paths in an export are relative. A path that is absolute or climbs out of the export folder is
refused, never opened; a sentence in place of a path (a file that was not downloaded) is
recorded as missing media.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path, PurePosixPath

from faketrace.datasets.io import listdir_noatime, open_readonly, walk_noatime

# Top-level folders of an export that hold media (and `files/`, which can hold anything).
MEDIA_FOLDERS = ("photos", "video_files", "animations", "stickers", "voice_messages", "round_video_messages",
                 "files", "contacts", "profile_pictures")
# Files and folders that are the export's own structure, not evidence media.
STRUCTURE_FOLDERS = ("css", "js", "images")
# Message fields that name a media file.
MEDIA_FIELDS = ("photo", "file", "thumbnail")
# What Telegram writes instead of a path when a file was not downloaded.
PLACEHOLDER_MARKERS = ("File not included", "File exceeds maximum size", "File unavailable",
                       "Change data exporting settings")
# Context kept per message; text is kept as well, flattened.
CONTEXT_FIELDS = ("from", "from_id", "author", "forwarded_from", "saved_from", "reply_to_message_id",
                  "reply_to_peer_id", "via_bot", "media_type", "mime_type", "file_name", "duration_seconds",
                  "width", "height", "sticker_emoji", "self_destruct_period_seconds")

HTML_EXPORT_ADVICE = (
    "This is Telegram's default HTML export: it holds photos only (up to 8 MB), so videos and files are "
    "not in this scan; each photo's message (sender, time, forwarded-from, reply, caption) was read from "
    "the HTML pages, which carry no user ids and, from older clients, no UTC offset. "
    "For a complete scan, export again from Telegram Desktop: open the chat, menu > Export chat history, "
    "tick Photos, Videos, Video messages, GIFs, Stickers and Files, raise the size limit, and choose "
    "Format: 'Machine-readable JSON'.")


class ExportError(ValueError):
    """A folder that looks like an export but cannot be read as one; `path` is the file at fault."""

    def __init__(self, message: str, path: Path | None = None):
        super().__init__(message)
        self.path = path


@dataclass
class MediaReference:
    """One media field of one message."""

    field: str  # photo | file | thumbnail
    value: str  # the path or the placeholder sentence, as written
    status: str  # ok | missing | refused
    reason: str | None = None
    path: Path | None = None  # resolved file inside the export (status ok)
    context: dict = field(default_factory=dict)


@dataclass
class ExportInfo:
    root: Path
    form: str  # json | html
    kind: str  # chat | account | html
    chats: int = 0
    messages: int = 0
    notes: list[str] = field(default_factory=list)


def detect_export(folder: Path) -> str | None:
    """'json' or 'html' when `folder` is the top of a Telegram Desktop export, else None.

    A result.json or messages.html that is a symbolic link does not make an export: it is never
    read (it could point out of the evidence), and the folder's walk gives it a `refused` item.
    """
    result = folder / "result.json"
    if not result.is_symlink() and result.is_file():
        try:
            with open_readonly(result) as fh:
                head = fh.read(4096).decode("utf-8", "replace")
        except OSError:
            return None
        if any(k in head for k in ('"messages"', '"chats"', '"personal_information"')):
            return "json"
    page = folder / "messages.html"
    if not page.is_symlink() and page.is_file() and any((folder / d).is_dir() for d in (*MEDIA_FOLDERS, "css", "js")):
        return "html"
    return None


def is_placeholder(value: str) -> bool:
    text = value.strip()
    return text.startswith("(") and text.endswith(")") and any(m in text for m in PLACEHOLDER_MARKERS) or \
        any(text.startswith(f"({m}") for m in PLACEHOLDER_MARKERS)


def unix_to_utc(value) -> str | None:
    try:
        return datetime.fromtimestamp(int(value), UTC).isoformat().replace("+00:00", "Z")
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def flatten_text(text) -> str:
    """`text` is a string or a list of strings and {type, text} objects."""
    if isinstance(text, str):
        return text
    if isinstance(text, list):
        return "".join(p if isinstance(p, str) else str(p.get("text", "")) for p in text if isinstance(p, str | dict))
    return ""


# Fields that hold a name (a file's, a person's, a chat's): shown with control and bidi characters
# escaped (forensics/names.py), so that "rtl_<U+202E>gpj.exe" cannot pass for "rtl_exe.jpg".
NAME_FIELDS = ("from", "author", "forwarded_from", "saved_from", "via_bot", "file_name", "mime_type")


def _shown(value):
    from faketrace.forensics.names import visible

    return visible(value) if isinstance(value, str) else value


def message_context(msg: dict, chat: dict) -> dict:
    """The facts an analyst needs about the message a file came with."""
    ctx = {"chat_name": _shown(chat.get("name")), "chat_type": chat.get("type"), "chat_id": chat.get("id"),
           "message_id": msg.get("id"), "message_type": msg.get("type")}
    if "date_unixtime" in msg:
        ctx["date_utc"] = unix_to_utc(msg["date_unixtime"])
    else:
        # Older exports: only the sender's local time, without a zone.
        ctx["date_local_no_zone"] = msg.get("date")
    if "edited_unixtime" in msg:
        ctx["edited_utc"] = unix_to_utc(msg["edited_unixtime"])
    for key in CONTEXT_FIELDS:
        if msg.get(key) is not None:
            ctx[key] = _shown(msg[key]) if key in NAME_FIELDS else msg[key]
    text = flatten_text(msg.get("text"))
    if text:
        ctx["text"] = text
    return ctx


def resolve_media_path(value: str, bases: list[Path], root: Path) -> tuple[str, str | None, Path | None]:
    """(status, reason, path) of a media field's value, refusing anything outside `root`."""
    if is_placeholder(value):
        return "missing", f"not in the export: {value.strip()}", None
    pure = PurePosixPath(value.replace("\\", "/"))
    if pure.is_absolute() or value.startswith(("/", "\\")) or (len(value) > 1 and value[1] == ":") or \
            ".." in pure.parts:
        return "refused", f"path leaves the export folder: {value!r}", None
    real_root = root.resolve()
    for base in bases:
        candidate = base.joinpath(*pure.parts)
        try:
            present = candidate.is_file() or candidate.is_symlink()
        except OSError as exc:  # a name too long, a folder that cannot be read
            return "missing", f"the export names {value!r} but it cannot be looked up: {exc.strerror}", None
        if present:
            try:
                real = candidate.resolve(strict=True)
            except RuntimeError:  # pathlib's word for a link loop
                return "refused", f"path is a symbolic link loop: {value!r}", None
            except OSError as exc:  # a link to nothing
                return "missing", f"the export names {value!r}, a symbolic link to nothing ({exc.strerror})", None
            if real != real_root and real_root not in real.parents:
                return "refused", f"path resolves outside the export folder (symbolic link): {value!r}", None
            return "ok", None, candidate
    return "missing", f"the export names {value!r} but the file is not in the folder", None


def _chat_folders(root: Path) -> list[Path]:
    chats = root / "chats"
    if not chats.is_dir() or chats.is_symlink():
        return []
    return sorted(p for p in (chats / n for n in listdir_noatime(chats)) if p.is_dir() and not p.is_symlink()
                  and p.name.startswith("chat_"))


# result.json above this size is not parsed (its media are still scanned, without message context):
# parsing streams one message at a time, but a single string value is held whole, so the file's
# size bounds the memory a hostile export can take.
MAX_RESULT_JSON_BYTES = 512 << 20
_CHAT_KEYS = ("name", "type", "id")


def iter_references(root: Path, info: ExportInfo | None = None,
                    max_bytes: int = MAX_RESULT_JSON_BYTES) -> Iterator[MediaReference]:
    """Every media field of every message of a JSON export, in file order.

    The file is parsed as a stream (ijson): memory holds one message, not the export. References
    found before a syntax error are kept; the error raises ExportError naming the file.
    """
    # The pure-Python backend: ijson's C backend (yajl2_c) crashed the process on hostile input
    # (a 5,000-digit number segfaulted it in tests/test_fuzz.py); a crash there would end the whole scan.
    import ijson.backends.python as ijson
    from ijson.common import JSONError, ObjectBuilder

    path = root / "result.json"
    if path.is_symlink():
        raise ExportError(f"{path} is a symbolic link; not followed", path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ExportError(f"cannot read {path}: {exc}", path) from exc
    if size > max_bytes:
        raise ExportError(f"{path} is {size} bytes, above the limit of {max_bytes} for an export's result.json "
                          "(scan.max_export_json_bytes); not parsed", path)
    folders = _chat_folders(root)
    kind, chats, chat, bases = None, 0, {}, [root]
    builder, depth = None, 0
    try:
        with open_readonly(path) as fh:
            events = ijson.parse(fh)  # non-integers come as Decimal (1e309 too): see _plain
            first = next(events, None)
            if first is None or first[1] != "start_map":
                raise ExportError(f"{path} does not hold a JSON object", path)
            for prefix, event, value in events:
                if builder is not None:  # inside a message
                    builder.event(event, value)
                    depth += {"start_map": 1, "start_array": 1, "end_map": -1, "end_array": -1}.get(event, 0)
                    if depth == 0:
                        msg, builder = _plain(builder.value), None
                        if info is not None:
                            info.messages += 1
                        yield from _message_references(msg, chat, bases, root)
                    continue
                if prefix in ("messages.item", "chats.list.item.messages.item"):
                    if event == "start_map":
                        builder, depth = ObjectBuilder(), 1
                        builder.event(event, value)
                    continue
                if prefix == "messages" and event == "start_array":
                    kind = kind or "chat"
                    chats = max(chats, 1)
                elif prefix == "chats.list" and event == "start_array" and kind is None:
                    kind = "account"
                elif prefix == "chats.list.item" and event == "start_map" and kind == "account":
                    chat = {}
                    i = chats
                    chats += 1
                    bases = [root, *([folders[i]] if i < len(folders) else []), *folders]
                elif kind != "account" and prefix in _CHAT_KEYS and event in ("string", "number"):
                    chat[prefix] = _plain(value)
                elif kind == "account" and prefix.startswith("chats.list.item.") and \
                        prefix.removeprefix("chats.list.item.") in _CHAT_KEYS and event in ("string", "number"):
                    chat[prefix.removeprefix("chats.list.item.")] = _plain(value)
                elif prefix in ("messages", "chats.list.item.messages") and event not in ("start_array", "end_array"):
                    if info is not None:
                        info.notes.append(f"a chat's `messages` is not a list ({event}); skipped")
    except JSONError as exc:
        raise ExportError(f"cannot read {path}: not valid JSON ({exc})", path) from exc
    except (OSError, ValueError, RecursionError) as exc:
        raise ExportError(f"cannot read {path}: {exc}", path) from exc
    finally:
        if info is not None:
            info.kind, info.chats = kind or info.kind, chats
    if kind is None:
        raise ExportError(f"{path} has neither `messages` nor `chats.list`", path)


def _plain(value):
    """JSON values as json.load gives them, except that a number no float can hold (1e309) is kept
    as its text ("1E+309"), so that nothing we write holds Infinity or NaN."""
    if isinstance(value, Decimal):
        number = float(value)
        return number if math.isfinite(number) else str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _message_references(msg, chat: dict, bases: list[Path], root: Path) -> Iterator[MediaReference]:
    if not isinstance(msg, dict):
        return
    fields = [f for f in MEDIA_FIELDS if isinstance(msg.get(f), str) and msg[f]]
    if not fields:
        return
    ctx = message_context(msg, chat)
    for f in fields:
        status, reason, path = resolve_media_path(msg[f], bases, root)
        yield MediaReference(field=f, value=msg[f], status=status, reason=reason, path=path,
                             context={**ctx, "media_field": f})


def is_structure_file(root: Path, path: Path) -> bool:
    """Export files that are not evidence media: result.json, messages*.html, css/, js/, images/."""
    rel = path.relative_to(root)
    if len(rel.parts) == 1:
        name = rel.name
        return name == "result.json" or (name.startswith("messages") and name.endswith(".html"))
    return rel.parts[0] in STRUCTURE_FOLDERS


def walk_files(folder: Path) -> Iterator[Path]:
    """Every entry below `folder` that is not a directory, sorted, without following links."""
    for dirpath, dirnames, filenames in walk_noatime(folder):
        dirnames.sort()
        base = Path(dirpath)
        # os.walk lists links to directories among dirnames; they are not followed, but reported.
        for name in sorted(filenames + [d for d in dirnames if (base / d).is_symlink()]):
            yield base / name
