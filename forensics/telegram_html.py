"""Message context from Telegram Desktop's HTML export (`messages.html`, `messages2.html`, ...).

The HTML form is the client's default, so analysts often receive it. It holds photos only, but
each photo still sits inside its message's markup: the message id (`id="message<N>"`), the time
(the `title` of the `date details` element, with a UTC offset in current clients), the sender
(`from_name`; a `joined` message continues the previous sender), a forwarded-from block
(`forwarded body`), a reply link (`#go_to_message<N>`), a `via @bot` note and the caption. Media
are links (`<a href="photos/...">`); a file that was not downloaded is a `media` block whose
description says so. Thumbnails (`<img src=...>`) are not references.

The markup is read with the standard library's tolerant parser; nothing in the page is executed
or fetched. Paths go through the same refusal rules as the JSON form (telegram.resolve_media_path).
What the HTML lacks compared with result.json: user ids, the chat type, and exact UTC times when
an older client wrote the time without its offset (kept then as local time without a zone).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

from faketrace.datasets.io import listdir_noatime, open_readonly
from faketrace.forensics.names import visible
from faketrace.forensics.telegram import ExportError, ExportInfo, MediaReference, resolve_media_path

VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
# What Telegram writes in place of media it did not download (HTML wording).
NOT_DOWNLOADED = ("Not included", "exceeds maximum size", "File unavailable")
_PAGE = re.compile(r"^messages(\d*)\.html$")
_REPLY = re.compile(r"go_to_message(\d+)")
_DATE = re.compile(r"^(\d{2})\.(\d{2})\.(\d{4}) (\d{2}):(\d{2}):(\d{2})(?: UTC([+-])(\d{2}):(\d{2}))?$")


def export_pages(root: Path) -> list[Path]:
    """messages.html, messages2.html, ... in reading order."""
    # A page that is a symbolic link is never read (it could point out of the evidence); the walk
    # of the export gives it a `refused` item.
    pages = [(int(m.group(1) or 1), p) for p in (root / n for n in listdir_noatime(root))
             if (m := _PAGE.match(p.name)) and not p.is_symlink() and p.is_file()]
    return [p for _, p in sorted(pages)]


def parse_date(title: str) -> dict:
    """`20.11.2026 10:00:00 UTC+01:00` -> date_utc; without an offset -> date_local_no_zone."""
    m = _DATE.match(title.strip())
    if not m:
        return {"date_as_written": title.strip()} if title.strip() else {}
    d, mo, y, hh, mi, ss = (int(g) for g in m.groups()[:6])
    try:
        local = datetime(y, mo, d, hh, mi, ss)
    except ValueError:
        return {"date_as_written": title.strip()}
    if m.group(7) is None:
        return {"date_local_no_zone": local.isoformat()}
    sign = 1 if m.group(7) == "+" else -1
    offset = timedelta(hours=int(m.group(8)), minutes=int(m.group(9))) * sign
    try:
        utc = local.replace(tzinfo=timezone(offset)).astimezone(UTC)
    except ValueError:  # an offset beyond +-24 h
        return {"date_as_written": title.strip()}
    return {"date_utc": utc.isoformat().replace("+00:00", "Z"), "date_local": local.isoformat(),
            "utc_offset": f"{m.group(7)}{m.group(8)}:{m.group(9)}"}


@dataclass
class _Element:
    tag: str
    classes: frozenset[str]


@dataclass
class _Message:
    message_id: int | None
    service: bool
    joined: bool
    context: dict = field(default_factory=dict)
    media: list[tuple[str, str]] = field(default_factory=list)  # (field, href)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (field, sentence)


class _PageParser(HTMLParser):
    """Collects the messages of one export page; tolerant of unclosed and stray tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[_Element] = []
        self.messages: list[_Message] = []
        self.chat_name: str | None = None
        self._msg: _Message | None = None
        self._msg_depth = 0
        self._captures: list[tuple[int, str, list[str]]] = []  # (depth, key, text parts)
        self._parents: list[_Element] = []

    # -- helpers --
    def _inside(self, *names: str) -> bool:
        """Whether an enclosing element inside the current message carries all these classes."""
        return any(set(names) <= e.classes for e in self._parents)

    def _capture(self, key: str) -> None:
        self._captures.append((len(self.stack), key, []))

    def _media_field(self, classes: frozenset[str]) -> str:
        return "photo" if "photo_wrap" in classes or "media_photo" in classes else "file"

    # -- parser callbacks --
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":  # a line break separates words in the captured text
            self.handle_data(" ")
        a = {k: v or "" for k, v in attrs}
        classes = frozenset(a.get("class", "").split())
        self._parents = self.stack[self._msg_depth:]  # the open elements around this one
        if tag not in VOID_TAGS:
            self.stack.append(_Element(tag, classes))
        if "message" in classes and a.get("id", "").startswith("message"):
            self._finish()
            digits = a["id"][len("message"):]
            self._msg = _Message(int(digits) if digits.isdigit() else None, "service" in classes, "joined" in classes)
            self._msg_depth = len(self.stack)
            return
        if self._msg is None:
            if {"text", "bold"} <= classes and self.chat_name is None and any(
                    "page_header" in e.classes for e in self.stack):
                self._capture("chat_name")
            return
        ctx = self._msg.context
        forwarded = self._inside("forwarded", "body") or {"forwarded", "body"} <= classes
        if {"date", "details"} <= classes and a.get("title"):
            key = "forwarded_date" if forwarded else "date"
            ctx.setdefault(key, a["title"])
        if "from_name" in classes:
            self._capture("forwarded_from" if forwarded else "from")
        elif "details" in classes and self._inside("from_name"):
            self._capture("from_details")  # `via @bot`, or the forwarded message's date
        elif "text" in classes and not self._inside("text"):
            self._capture("text")
        elif ("description" in classes or "status" in classes) and self._inside("media"):
            self._capture("media_description")
        if tag == "a":
            href = a.get("href", "")
            if m := _REPLY.search(href):
                ctx.setdefault("reply_to_message_id", int(m.group(1)))
            elif href and not href.startswith("#") and ":" not in href.split("/")[0] and \
                    not self._inside("text") and not self._inside("reply_to"):
                self._msg.media.append((self._media_field(classes), href))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID_TAGS:
            self.handle_endtag(tag)

    def handle_data(self, data: str) -> None:
        for _, _, parts in self._captures:
            parts.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID_TAGS:
            return
        # Close up to the nearest open element of this tag; a stray end tag closes nothing.
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i].tag == tag:
                break
        else:
            return
        media_classes = next((e.classes for e in reversed(self.stack) if "media" in e.classes), frozenset())
        del self.stack[i:]
        while self._captures and self._captures[-1][0] > len(self.stack):
            _, key, parts = self._captures.pop()
            self._store(key, " ".join("".join(parts).split()), media_classes)
        if self._msg is not None and len(self.stack) < self._msg_depth:
            self._finish()

    def _store(self, key: str, text: str, media_classes: frozenset[str]) -> None:
        if key == "chat_name":
            self.chat_name = self.chat_name or text or None
            return
        if self._msg is None or not text:
            return
        ctx = self._msg.context
        if key == "from_details":
            if text.startswith("via "):
                ctx["via_bot"] = text[4:].strip()
            return
        if key in ("from", "forwarded_from"):
            # The name without its nested details (via @bot, the forwarded message's date).
            if ctx.get("via_bot"):
                text = text.replace(f"via {ctx['via_bot']}", "").strip()
            ctx.setdefault(key, text)
            return
        if key == "media_description":
            if any(s in text for s in NOT_DOWNLOADED):
                self._msg.missing.append((self._media_field(media_classes), text))
            return
        if key == "text":
            ctx["text"] = f"{ctx['text']}\n{text}" if "text" in ctx else text

    def _finish(self) -> None:
        if self._msg is not None:
            self.messages.append(self._msg)
        self._msg, self._captures = None, []

    def close(self) -> None:
        super().close()
        self._finish()


def _clean_forwarded(ctx: dict) -> None:
    """A forwarded from_name holds the origin's date as text too: keep the name only."""
    name = ctx.get("forwarded_from")
    if name:
        name = re.sub(r"\s*\d{2}\.\d{2}\.\d{4}( \d{2}:\d{2}(:\d{2})?)?\s*$", "", name).strip()
        ctx["forwarded_from"] = name or None


def iter_html_references(root: Path, info: ExportInfo | None = None) -> Iterator[MediaReference]:
    """Every media link (and every not-downloaded media block) of every page, with its message."""
    sender = None
    for page in export_pages(root):
        parser = _PageParser()
        try:
            with open_readonly(page) as raw, io.TextIOWrapper(raw, encoding="utf-8", errors="replace") as fh:
                while chunk := fh.read(1 << 20):
                    parser.feed(chunk)
            parser.close()
        except OSError as exc:
            raise ExportError(f"cannot read {page}: {exc}", page) from exc
        for msg in parser.messages:
            if msg.service:
                continue
            if info is not None:
                info.messages += 1
            raw = msg.context
            if raw.get("from"):
                sender = raw["from"]
            ctx = {"chat_name": parser.chat_name, "message_id": msg.message_id, "export_form": "html",
                   "page": page.name, **parse_date(raw.get("date", ""))}
            if "from" in raw or msg.joined:
                ctx["from"] = raw.get("from") or sender
                if msg.joined and not raw.get("from"):
                    ctx["from_inferred"] = "a joined message: the sender of the message above it"
            for key in ("forwarded_from", "via_bot", "reply_to_message_id", "text"):
                if raw.get(key) is not None:
                    ctx[key] = raw[key]
            if raw.get("forwarded_date"):
                ctx["forwarded_date"] = parse_date(raw["forwarded_date"])
            _clean_forwarded(ctx)
            for key in ("chat_name", "from", "forwarded_from", "via_bot"):  # names, shown escaped
                if isinstance(ctx.get(key), str):
                    ctx[key] = visible(ctx[key])
            for media_field, href in msg.media:
                value = href
                status, reason, path = resolve_media_path(value, [root], root)
                if status == "missing" and "%" in href:  # a percent-encoded name
                    status, reason, path = resolve_media_path(unquote(href), [root], root)
                yield MediaReference(field=media_field, value=value, status=status, reason=reason, path=path,
                                     context={**ctx, "media_field": media_field})
            for media_field, sentence in msg.missing:
                yield MediaReference(field=media_field, value=sentence, status="missing",
                                     reason=f"not in the export: {sentence}", context={**ctx, "media_field": media_field})
