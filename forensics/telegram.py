"""Telegram Desktop chat exports: find the media and the message each one came with.

Two forms exist (../shared/telegram-export-format.md has the facts):
- machine-readable JSON: `result.json` links every media file to its message (id, time, sender,
  chat, forwarded-from). One chat has `messages` at the top; a whole-account export has
  `chats.list[*].messages`, each chat's media under `chats/chat_<N>/`.
- HTML (the client's default): photos only, up to 8 MB, the context only in HTML pages. We scan
  the media files it holds and tell the analyst how to export JSON with videos.

Paths in an export are relative. A path that is absolute or climbs out of the export folder is
refused, never opened; a sentence in place of a path (a file that was not downloaded) is
recorded as missing media.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

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
    "This is Telegram's default HTML export: it holds photos only (up to 8 MB) and keeps the message "
    "context only in HTML pages, so videos, files and the sender/date of each photo are not in this scan. "
    "For a complete scan, export again from Telegram Desktop: open the chat, menu > Export chat history, "
    "tick Photos, Videos, Video messages, GIFs, Stickers and Files, raise the size limit, and choose "
    "Format: 'Machine-readable JSON'.")


class ExportError(ValueError):
    """A folder that looks like an export but cannot be read as one."""


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
    """'json' or 'html' when `folder` is the top of a Telegram Desktop export, else None."""
    if (folder / "result.json").is_file():
        try:
            with open(folder / "result.json", "rb") as fh:
                head = fh.read(4096).decode("utf-8", "replace")
        except OSError:
            return None
        if any(k in head for k in ('"messages"', '"chats"', '"personal_information"')):
            return "json"
    if (folder / "messages.html").is_file() and any((folder / d).is_dir() for d in (*MEDIA_FOLDERS, "css", "js")):
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


def message_context(msg: dict, chat: dict) -> dict:
    """The facts an analyst needs about the message a file came with."""
    ctx = {"chat_name": chat.get("name"), "chat_type": chat.get("type"), "chat_id": chat.get("id"),
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
            ctx[key] = msg[key]
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
    return sorted(p for p in chats.iterdir() if p.is_dir() and p.name.startswith("chat_")) if chats.is_dir() else []


def iter_references(root: Path, info: ExportInfo | None = None) -> Iterator[MediaReference]:
    """Every media field of every message of a JSON export, in file order."""
    try:
        with open(root / "result.json", encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON, bad UTF-8, huge integers
        raise ExportError(f"cannot read {root / 'result.json'}: {exc}") from exc
    if not isinstance(data, dict):
        raise ExportError(f"{root / 'result.json'} does not hold a JSON object")
    if isinstance(data.get("messages"), list):
        chats, kind = [(data, [root])], "chat"
    elif isinstance(data.get("chats"), dict) and isinstance(data["chats"].get("list"), list):
        folders = _chat_folders(root)
        chats = [(chat, [root, *([folders[i]] if i < len(folders) else []), *folders])
                 for i, chat in enumerate(data["chats"]["list"]) if isinstance(chat, dict)]
        kind = "account"
    else:
        raise ExportError(f"{root / 'result.json'} has neither `messages` nor `chats.list`")
    if info is not None:
        info.kind, info.chats = kind, len(chats)
    for chat, bases in chats:
        chat_messages = chat.get("messages")
        if not isinstance(chat_messages, list):
            if chat_messages is not None and info is not None:
                info.notes.append(f"a chat's `messages` is not a list ({type(chat_messages).__name__}); skipped")
            continue
        for msg in chat_messages:
            if not isinstance(msg, dict):
                continue
            if info is not None:
                info.messages += 1
            fields = [f for f in MEDIA_FIELDS if isinstance(msg.get(f), str) and msg[f]]
            if not fields:
                continue
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
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames.sort()
        base = Path(dirpath)
        # os.walk lists links to directories among dirnames; they are not followed, but reported.
        for name in sorted(filenames + [d for d in dirnames if (base / d).is_symlink()]):
            yield base / name
