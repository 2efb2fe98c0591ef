"""Provenance of an evidence file: an EXIF / container metadata summary and C2PA content credentials.

Both are read offline from the file itself, opened read-only. C2PA manifests are read with
`c2pa-python` with remote manifest fetching and OCSP fetching switched off, so a file that only
points to a manifest on the web is reported as such and nothing is fetched. States:

- `absent`: no C2PA manifest in the file (a remote reference, if any, is named but not fetched);
- `present_valid`: a manifest whose signature and bindings verify and whose signer chains to a
  trust anchor the operator configured (`report.c2pa_trust_anchors`);
- `present_untrusted`: the manifest verifies, but its signer is not on any configured trust list;
- `invalid`: a manifest is there but fails validation (the file was altered after signing, a
  broken signature, a malformed manifest); the failure codes are listed.

Metadata can be edited by anyone: the report states what the file says, not that it is true.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from faketrace.datasets.io import open_readonly

log = logging.getLogger(__name__)

C2PA_STATES = ("absent", "present_valid", "present_untrusted", "invalid", "not_checked")
# EXIF tags worth an analyst's glance (IFD0 and the Exif IFD).
_EXIF_TAGS = {0x010F: "make", 0x0110: "model", 0x0131: "software", 0x0132: "datetime", 0x013B: "artist",
              0x8298: "copyright", 0x010E: "image_description", 0x9003: "datetime_original",
              0x9004: "datetime_digitized", 0x9010: "offset_time", 0xA430: "camera_owner",
              0xA431: "body_serial", 0xA434: "lens_model", 0x0112: "orientation"}
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_VIDEO_KEYS = ("creation_time", "encoder", "major_brand", "compatible_brands", "handler_name", "title", "comment",
               "com.apple.quicktime.make", "com.apple.quicktime.model", "com.apple.quicktime.software",
               "com.apple.quicktime.creationdate", "com.apple.quicktime.location.ISO6709", "location")


def sniff_mime(path: str | Path) -> str | None:
    """A MIME type from the first bytes (what the C2PA reader needs), or None."""
    with open_readonly(path) as fh:
        head = fh.read(32)
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video/avi"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return {b"heic": "image/heic", b"heix": "image/heic", b"mif1": "image/heif", b"avif": "image/avif",
                b"qt  ": "video/quicktime"}.get(brand, "video/mp4")
    return None


def _clean(value) -> str | float | int | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        value = value.replace("\x00", "").strip()
        return value[:300] or None
    if isinstance(value, (int, float)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)[:300]


def _gps(gps: dict) -> dict | None:
    def degrees(v, ref):
        try:
            d, m, s = (float(x) for x in v)
        except (TypeError, ValueError):
            return None
        out = d + m / 60 + s / 3600
        return round(-out if ref in ("S", "W") else out, 6)

    lat, lon = degrees(gps.get(2), gps.get(1)), degrees(gps.get(4), gps.get(3))
    if lat is None or lon is None:
        return {"present": True}
    return {"present": True, "latitude": lat, "longitude": lon}


def image_metadata(path: str | Path) -> dict:
    """EXIF summary (camera, software, dates, GPS), XMP / ICC presence and PNG text keys of an image."""
    from PIL import Image

    out: dict = {}
    try:
        with open_readonly(path) as fh, Image.open(fh) as im:
            exif = im.getexif()
            for tag, name in _EXIF_TAGS.items():
                if tag in exif and _clean(exif[tag]) is not None:
                    out[name] = _clean(exif[tag])
            sub = exif.get_ifd(_EXIF_IFD)
            for tag, name in _EXIF_TAGS.items():
                if tag in sub and _clean(sub[tag]) is not None:
                    out[name] = _clean(sub[tag])
            gps = exif.get_ifd(_GPS_IFD)
            if gps:
                out["gps"] = _gps(gps)
            out["exif_present"] = bool(len(exif))
            info = im.info or {}
            out["xmp_present"] = bool(info.get("xmp") or info.get("XML:com.adobe.xmp"))
            out["icc_profile"] = bool(info.get("icc_profile"))
            text_keys = sorted(k for k, v in info.items() if isinstance(v, str) and k not in ("XML:com.adobe.xmp",))
            if text_keys:
                out["text_chunks"] = text_keys[:20]
            if isinstance(info.get("comment"), bytes | str):
                out["comment"] = _clean(info["comment"])
    except Exception as exc:  # metadata is a courtesy: a file the scan decoded may still have odd tags
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def video_metadata(path: str | Path) -> dict:
    """Container and stream tags of a video (creation time, encoder, device, location)."""
    import av

    out: dict = {}
    try:
        with open_readonly(path) as fh, av.open(fh) as container:
            tags = {k.lower(): v for k, v in (container.metadata or {}).items()}
            for key in _VIDEO_KEYS:
                if tags.get(key.lower()):
                    out[key] = _clean(tags[key.lower()])
            out["format"] = container.format.name
            if container.streams.video:
                s = container.streams.video[0]
                out["codec"] = s.codec_context.name
                for key, value in (s.metadata or {}).items():
                    if key.lower() in ("creation_time", "encoder", "handler_name", "rotate"):
                        out[f"video_stream.{key.lower()}"] = _clean(value)
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


class C2paChecker:
    """Reads C2PA manifests offline; one context for the whole report."""

    def __init__(self, trust_anchors: str | Path | None = None):
        self.error = None
        try:
            import c2pa
        except ImportError as exc:  # reported, not fatal: the rest of the report does not need it
            self.c2pa, self.error = None, f"c2pa-python is not installed ({exc})"
            return
        settings = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
        self.trust_configured = bool(trust_anchors)
        if trust_anchors:
            settings["trust"] = {"trust_anchors": Path(trust_anchors).read_text()}
        self.c2pa = c2pa
        self.version = getattr(c2pa, "__version__", None)
        self.context = c2pa.Context(c2pa.Settings.from_dict(settings))
        self.supported = set(c2pa.Reader.get_supported_mime_types())

    def describe(self) -> dict:
        return {"library": "c2pa-python", "version": getattr(self, "version", None),
                "remote_manifest_fetch": False, "ocsp_fetch": False,
                "trust_anchors_configured": getattr(self, "trust_configured", False), "error": self.error}

    def check(self, path: str | Path) -> dict:
        if self.c2pa is None:
            return {"state": "not_checked", "reason": self.error}
        mime = sniff_mime(path)
        if mime is None or mime not in self.supported:
            return {"state": "not_checked", "reason": f"format not supported by the C2PA reader ({mime})"}
        c2pa = self.c2pa
        try:
            with open_readonly(path) as fh:
                reader = c2pa.Reader.try_create(mime, fh, context=self.context)
                if reader is None:
                    return {"state": "absent"}
                with reader:
                    store = json.loads(reader.json())
                    remote = reader.get_remote_url() if not reader.is_embedded() else None
        except c2pa.C2paError as exc:
            # c2pa-python 0.38 raises a plain C2paError("Remote: must fetch remote manifests from url
            # ...") for a file that only references a manifest on the web, not its RemoteManifest
            # subclass; both mean "nothing in the file to verify", never "invalid".
            if isinstance(exc, c2pa.C2paError.RemoteManifest) or str(exc).startswith("Remote"):
                url = str(exc).rsplit("url ", 1)[-1].strip() if "url " in str(exc) else None
                return {"state": "absent", "remote_reference": url or str(exc),
                        "note": "the file points to a manifest on the web; it was not fetched (offline)"}
            return {"state": "invalid", "reason": f"{type(exc).__name__}: {exc}"}
        return summarise_store(store, remote)


def summarise_store(store: dict, remote_url: str | None = None) -> dict:
    state = store.get("validation_state")
    active = (store.get("manifests") or {}).get(store.get("active_manifest") or "", {})
    failures = [s for s in (store.get("validation_status") or []) if not str(s.get("code", "")).endswith(".trusted")]
    results = store.get("validation_results") or {}
    active_results = results.get("activeManifest") or {}
    failures += active_results.get("failure") or []
    if state == "Trusted":
        mapped = "present_valid"
    elif state == "Valid":
        mapped = "present_untrusted"
    else:
        mapped = "invalid"
    sig = active.get("signature_info") or {}
    actions = []
    for assertion in active.get("assertions") or []:
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            for a in (assertion.get("data") or {}).get("actions") or []:
                actions.append({k: a.get(k) for k in ("action", "digitalSourceType", "softwareAgent", "when")
                                if a.get(k) is not None})
    out = {"state": mapped, "validation_state": state,
           "claim_generator": active.get("claim_generator") or
           ", ".join(str(g.get("name")) for g in active.get("claim_generator_info") or []) or None,
           "title": active.get("title"), "signer": sig.get("issuer") or sig.get("common_name"),
           "signed_at": sig.get("time"), "actions": actions[:20],
           "failures": sorted({str(f.get("code")) for f in failures if f.get("code")})}
    if remote_url:
        out["remote_url"] = remote_url
    return out


def provenance(path: str | Path, media_type: str, checker: C2paChecker | None) -> dict:
    meta = image_metadata(path) if media_type == "image" else video_metadata(path)
    c2 = checker.check(path) if checker is not None else {"state": "not_checked", "reason": "switched off"}
    return {"metadata": meta, "c2pa": c2}
