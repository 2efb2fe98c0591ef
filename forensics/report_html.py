"""report.html, rendered from report.json: one self-contained file an analyst can open offline.

The page is a Jinja2 template (forensics/templates/report.html.j2) rendered with autoescaping on,
so every string from the evidence (file names, Telegram messages, metadata) is escaped by the
template engine, not by hand. This module turns report.json into plain values for the template
(numbers formatted, geometry of the pictures and the timeline computed); it writes no markup.

No external resource of any kind: pictures are embedded as data: URIs (the redacted files of
report_media/, byte for byte), style and script (templates/report.css and report.js) are inline
and allowed by their SHA-256 in a Content-Security-Policy of `default-src 'none'`, so the page
cannot load or send anything even if a file name or a Telegram message in it tried.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from pathlib import Path

import jinja2
from markupsafe import Markup

TEMPLATES = Path(__file__).resolve().parent / "templates"
VERDICT_LABEL = {"likely_manipulated": "likely manipulated", "inconclusive": "inconclusive",
                 "no_evidence_of_manipulation": "no evidence of manipulation"}
FAILED = ("empty", "unsupported", "decode_error", "oversized", "resource_limit", "timeout", "refused", "error",
          "archive_limit")
CSS = (TEMPLATES / "report.css").read_text(encoding="utf-8")
JS = (TEMPLATES / "report.js").read_text(encoding="utf-8")


@functools.cache
def environment() -> jinja2.Environment:
    # StrictUndefined: a template asking for a value the view does not give fails, never prints "".
    # A value the report leaves null (a missing media type, an unknown operator) prints as nothing.
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              finalize=lambda value: "" if value is None else value)


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def content_security_policy() -> str:
    return (f"default-src 'none'; img-src data:; style-src {_csp_hash(CSS)}; script-src {_csp_hash(JS)}; "
            "base-uri 'none'; form-action 'none'")


def _klass(r: dict) -> str:
    if r.get("verdict"):
        return r["verdict"]
    return "failed" if r["status"] in FAILED else r["status"]


def _badge(r: dict) -> dict:
    k = _klass(r)
    return {"klass": k, "text": VERDICT_LABEL.get(k) or r["status"].replace("_", " ")}


def _data_uri(case_dir: Path, rel: str) -> str:
    data = (case_dir / rel).read_bytes()
    mime = "image/png" if rel.endswith(".png") else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _colour_scale(scale: dict | None, key: str, height: int) -> dict | None:
    """The colour scale of a map drawn over a picture: the overlay's colours from low to high, labelled."""
    if not scale:
        return None
    from faketrace.forensics.heatmaps import colour_stops

    h = max(60, int(height))
    return {"id": key, "h": h, "bar": h - 12, "low_y": h - 6, "stops": [{"offset": f"{t:.2f}", "colour": c}
                                                                       for t, c in colour_stops()],
            "high": f"{scale['high']:g}", "low": f"{scale['low']:g}", "meaning": scale.get("meaning") or ""}


def _picture(case_dir: Path, pic: dict, caption: str, boxes: list[dict] = ()) -> dict:
    rects = [{"x": b["box"][0], "y": b["box"][1], "w": f"{max(1, b['box'][2] - b['box'][0]):.1f}",
              "h": f"{max(1, b['box'][3] - b['box'][1]):.1f}",
              "stroke": "#ff3b30" if b.get("most_suspicious") else "#ffd60a",
              "width": 3 if b.get("most_suspicious") else 2, "probability": b.get("probability")} for b in boxes]
    return {"w": pic["width"], "h": pic["height"], "uri": _data_uri(case_dir, pic["file"]), "caption": caption,
            "rects": rects, "scale": None}


def _timeline(r: dict) -> dict | None:
    pts = r.get("timeline") or []
    if len(pts) < 2:
        return None
    W, H, L, B = 520, 130, 34, 22
    xs = [p["frame_index"] for p in pts]
    lo, hi = min(xs), max(xs)
    span = max(1, hi - lo)

    def X(i):
        return L + (W - L - 8) * (i - lo) / span

    def Y(p):
        return 8 + (H - B - 8) * (1 - p)

    bands = r.get("bands") or {}
    lines = [{"name": n, "value": f"{v:.2f}", "colour": c, "y": f"{Y(v):.1f}", "text_y": f"{Y(v) + dy:.1f}"}
             for n, v, c, dy in (("upper", bands.get("upper"), "#b3261e", -3), ("lower", bands.get("lower"), "#2e6b30", 11))
             if v is not None]
    return {"W": W, "H": H, "L": L, "bottom": H - B, "right": W - 8, "lo": lo, "hi": hi,
            "y1": f"{Y(1) + 4:.1f}", "y0": f"{Y(0) + 4:.1f}", "bands": lines,
            "points": " ".join(f"{X(p['frame_index']):.1f},{Y(p['probability']):.1f}" for p in pts),
            "dots": [{"x": f"{X(p['frame_index']):.1f}", "y": f"{Y(p['probability']):.1f}", "frame": p["frame_index"],
                      "p": f"{p['probability']:.3f}"} for p in pts]}


def _provenance(prov: dict | None) -> dict | None:
    if not prov:
        return None
    meta = prov.get("metadata") or {}
    c2 = prov.get("c2pa") or {}
    meta_text = ", ".join(f"{k}: {v}" for k, v in meta.items() if k not in ("exif_present", "xmp_present", "icc_profile")
                          and v not in (None, False)) or "no camera, software or date tags"
    c2_text = c2.get("state", "").replace("_", " ")
    for k in ("claim_generator", "signer", "signed_at", "reason", "note"):
        if c2.get(k):
            c2_text += f"; {k.replace('_', ' ')}: {c2[k]}"
    if c2.get("failures"):
        c2_text += "; failures: " + ", ".join(c2["failures"])
    if c2.get("actions"):
        c2_text += "; actions: " + ", ".join(str(a.get("action")) for a in c2["actions"])
    return {"metadata": meta_text, "c2pa": c2_text}


def _text(x) -> str:
    return "" if x is None else str(x)


def _telegram(ctx: list[dict] | None) -> list[str]:
    rows = []
    for c in ctx or []:
        when = c.get("date_utc") or (f"{c.get('date_local_no_zone')} (sender's local time)"
                                     if c.get("date_local_no_zone") else "")
        bits = [f"chat {_text(c.get('chat_name'))}", f"message {_text(c.get('message_id'))}", when,
                f"from {_text(c.get('from'))} ({_text(c.get('from_id'))})"]
        if c.get("forwarded_from"):
            bits.append(f"forwarded from {c['forwarded_from']}")
        if c.get("text"):
            bits.append(f"text: \u201c{c['text']}\u201d")
        rows.append("; ".join(b for b in bits if b))
    return rows


def _probability(r: dict) -> str | None:
    if r.get("probability") is None:
        return None
    rule = f", {r['rule']} rule" if r.get("rule") else ""
    return f"{r['probability']:.6f} ({r.get('level')} level{rule})"


def _level(level: dict | None) -> str | None:
    """One model's verdict and probability when two models scanned the item."""
    if not level:
        return None
    if level.get("status") != "scanned":
        return f"{level.get('status')}: {level.get('reason') or ''}"
    b = level.get("bands") or {}
    return (f"{VERDICT_LABEL.get(level.get('verdict'), level.get('verdict'))}, probability "
            f"{level['probability']:.6f} (bands {b.get('lower', 0):.3f} / {b.get('upper', 1):.3f})")


def _article(case_dir: Path, r: dict) -> dict:
    pics = []
    for f in r.get("frames") or []:
        label = "image" if r.get("level") == "frame" and len(r.get("frames")) == 1 else f"frame {f['frame_index']}"
        pics.append(_picture(case_dir, f, label, f.get("faces") or []))
    hm = r.get("heatmap") or {}
    if hm.get("file"):
        top = (r.get("most_suspicious_face") or {}).get("probability")
        box = [{"box": hm["face_box_px"], "most_suspicious": True, "probability": top}] if hm.get("face_box_px") else []
        pics.append({**_picture(case_dir, hm, f"heatmap ({hm['method'].replace('_', '-')}) over the blurred frame, "
                                              f"most suspicious face boxed, frame {hm['frame_index']}", box),
                     "scale": _colour_scale(hm.get("colour_scale"), f"scale-h-{r['seq']}", hm["height"])})
    im = r.get("image_map") or {}
    if im.get("file"):
        pics.append({**_picture(case_dir, im, f"image-level map: calibrated tile probabilities ({im['tile_size']} "
                                              f"px tiles), frame {im['frame_index']}"),
                     "scale": _colour_scale(im.get("colour_scale"), f"scale-i-{r['seq']}", im["height"])})
    decode = r.get("decode") or {}
    dims = f"{decode.get('width')} x {decode.get('height')}" if decode.get("width") else None
    dur = f"{decode['duration_s']:.2f} s" if decode.get("duration_s") else None
    pdq = r.get("pdq") or []
    notes = [str(n) for n in r.get("notes") or []]
    if im.get("error"):
        notes.append(f"image-level map not made: {im['error']}")
    if hm.get("error"):
        notes.append(f"heatmap not made: {hm['error']}")
    elif hm.get("file") and not hm.get("crop_matches_scan"):
        notes.append(f"the rebuilt face crop scores differently from the scan "
                     f"(logit {hm.get('logit_rebuilt')} vs {hm.get('logit_scan')})")
    plain = [
        ("probability", _probability(r)),
        ("face level", _level(r.get("face_level"))),
        ("image level", _level(r.get("image_level"))),
        ("decided by", _decided_by(r) or None),
        ("why", r.get("why")),
        ("panel", "; ".join(f"{n}: {_level(p)}" for n, p in (r.get("panel") or {}).items()) or None),
        ("faces", r.get("n_faces")),
        ("type", " ".join(str(x) for x in (r.get("media_type"), decode.get("format"), dims, dur) if x)),
        ("decoding", decode.get("decode_note")),
        ("size", f"{r['size_bytes']:,} bytes" if r.get("size_bytes") is not None else None),
    ]
    facts = {
        "verdict_reason": r.get("verdict_reason") or "",
        "plain": [(k, v) for k, v in plain if v not in (None, "")],
        "sha256": r.get("sha256"), "md5": r.get("md5"),
        "pdq": [{"hash": p["hash"], "quality": p["quality"], "frame": p.get("frame_index") if len(pdq) > 1 else None}
                for p in pdq[:4]],
        "pdq_more": max(0, len(pdq) - 4),
        "group": r.get("duplicate_group"),
        "known": "; ".join(f"{m['algorithm']} {m.get('label') or ''} (distance {m['distance']})"
                           for m in r.get("known_hash_matches") or []),
        "telegram": _telegram(r.get("telegram")),
        "source": f"{r.get('input')} ({r.get('source')})",
    }
    return {"seq": r["seq"], "klass": _klass(r), "item_id": r["item_id"], "badge": _badge(r), "notes": notes,
            "pics": pics, "timeline": _timeline(r), "facts": facts, "provenance": _provenance(r.get("provenance"))}


def _why(r: dict) -> str | None:
    """The table's reason: why there is no result, or who decided and how (bands, every score, the rule)."""
    if r["status"] != "scanned":
        return r.get("reason")
    return r.get("why") or r.get("verdict_reason") or ""


def _decided_by(r: dict) -> str:
    """The deciding model, or why none did; an out-of-domain item says so in capitals."""
    if r.get("out_of_domain"):
        return "NO MODEL: outside every model's training domain"
    if not r.get("decided_by"):
        return ""
    return next((o["title"] for o in r.get("opinions") or [] if o.get("model") == r["decided_by"]),
                f"{r['decided_by']}-level model")


def _row(r: dict) -> dict:
    p = r.get("probability")
    order = {"likely_manipulated": 0, "inconclusive": 1, "no_evidence_of_manipulation": 2}.get(r.get("verdict"), 3)
    return {"seq": r["seq"], "klass": _klass(r), "linked": r["status"] == "scanned",
            "label": r["rel_path"] or r["item_id"], "group": r.get("duplicate_group"),
            "known": bool(r.get("known_hash_matches")), "input": r["item_id"].split("/")[0], "source": r.get("source"),
            "media_type": r.get("media_type"), "order": order, "badge": _badge(r), "p": p,
            "p_sort": "" if p is None else p, "bar": "" if p is None else f"{60 * p:.1f}",
            "p_text": "" if p is None else f"{p:.3f}", "n_faces": r.get("n_faces") or "", "decided_by": _decided_by(r), "why": _why(r) or ""}


def _panel_model_text(m: dict) -> str:
    """A panel model (forensics/panel.py) in the custody section: what it is and its validation state."""
    v = m.get("validation")
    if v and v.get("fit_for_casework"):
        state = f"validated by {v.get('operator')} on {v.get('date')}: {v.get('why')}"
    elif v:
        state = (f"NOT FIT FOR CASEWORK: the validation by {v.get('operator')} on {v.get('date')} did not qualify "
                 f"({v.get('why')}); its calibration is not used")
    else:
        state = f"NOT VALIDATED FOR CASEWORK: {m.get('casework_note')}"
    media = ", ".join((m.get("domain") or {}).get("media") or []) or "as its training data"
    return (f"{m.get('name')} ({m.get('paper') or m.get('kind')}; licence {m.get('licence')}; SHA-256 "
            f"{m.get('sha256')}): {state}; judges {media}")


def _custody(report: dict) -> list[tuple[str, list[dict]]]:
    integrity = (report.get("custody") or {}).get("evidence_integrity") or {}
    sessions = (report.get("custody") or {}).get("sessions") or []
    model = report["model"]
    s = report["summary"]

    def text(*lines):
        return [{"text": str(x), "code": None} for x in lines if x not in (None, "")]

    rows = [
        ("evidence", text(f"{integrity.get('items_hashed')} files hashed before and after the scan; all unchanged: "
                          f"{integrity.get('all_unchanged')}")),
        ("handling", text((report.get("custody") or {}).get("evidence_handling"))),
        ("sessions", text(*(f"session {x.get('session')}: {x.get('started_utc')} to {x.get('ended_utc') or '-'} by "
                            f"{x.get('operator')} on {x.get('host')} ({x.get('ended')}, exit {x.get('exit_status')})"
                            for x in sessions))),
        ("model", [{"before": "", "code": str(model.get("path"))}, {"before": "SHA-256 ", "code": str(model.get("sha256"))}]),
        ("panel", text(*(_panel_model_text(m) for m in report.get("panel") or []))),
        ("C2PA reader", text(report["settings"]["c2pa"])),
        ("report files", text("report.json (source of truth), report.html, items.csv, hashes.csv, report_media/; "
                              "their SHA-256 are in the audit table of case.sqlite")),
        ("notes", text(*(report.get("notes") or []))),
        ("warnings", text(*(s.get("warnings") or []))),
    ]
    return [(label, lines) for label, lines in rows if lines]


def render_html(report: dict, case_dir: str | Path) -> str:
    from faketrace.forensics.people_report import people_html

    case_dir = Path(case_dir)
    items = report["items"]
    s = report["summary"]
    case = report.get("case") or {}
    warning = report.get("warning")
    counts = {"items": s["items"], **{k: s["by_verdict"].get(k, 0) for k in VERDICT_LABEL}}
    failed = sum(v for k, v in s["by_status"].items() if k in FAILED)
    cards = [{"klass": k, "value": v, "label": VERDICT_LABEL.get(k, k)} for k, v in counts.items()]
    cards += [{"klass": "", "value": s["by_status"].get("no_face", 0), "label": "no face (not assessed)"},
              {"klass": "", "value": failed, "label": "not scanned (see reason)"},
              {"klass": "", "value": s["duplicate_groups"], "label": "groups of copies"},
              {"klass": "", "value": s["known_hash_matches"], "label": "known-hash matches"},
              {"klass": "", "value": "yes" if s.get("evidence_unchanged") else "NO", "label": "evidence unchanged"}]
    pl = report["plain_language"]
    plain = [t for t in [pl["fitness_for_casework"], pl["model"], *pl["thresholds"], pl.get("combination"),
                         pl["inconclusive"],
                         pl["no_evidence"], pl["no_face"], pl["heatmaps"], pl.get("image_level"), pl["duplicates"],
                         pl["hashes"]] if t]
    filters = [("all", "all"), ("likely_manipulated", "likely manipulated"), ("inconclusive", "inconclusive"),
               ("no_evidence_of_manipulation", "no evidence"), ("no_face", "no face"), ("failed", "not scanned")]
    by_verdict = sorted((r for r in items if r["status"] == "scanned"),
                        key=lambda r: ({"likely_manipulated": 0, "inconclusive": 1}.get(r.get("verdict"), 2),
                                       -(r.get("probability") or 0)))
    seq_of = {r["item_id"]: r["seq"] for r in items}
    groups = [{"group": g["group"], "members": [{"id": i, "seq": seq_of[i]} for i in g["items"]],
               "max_pdq_distance": g["max_pdq_distance"], "bases": ", ".join(sorted({lk["basis"] for lk in g["links"]}))}
              for g in report["duplicate_groups"]]
    tool = report.get("tool") or {}
    return environment().get_template("report.html.j2").render(
        title=f"Case {case.get('id')} - faketrace report" + (" - NOT FIT FOR CASEWORK" if warning else ""),
        csp=content_security_policy(), css=Markup(CSS), js=Markup(JS), warning=warning,
        redacted=bool(report["redacted"]), redaction_method=(report.get("redaction") or {}).get("method"),
        case={"id": case.get("id"), "operator": case.get("operator"), "directory": case.get("directory")},
        generated_utc=report["generated_utc"], tool={"version": tool.get("version"), "git_sha": tool.get("git_sha")},
        report_version=report["report_version"], cards=cards, plain=plain, filters=filters,
        rows=[_row(r) for r in items], articles=[_article(case_dir, r) for r in by_verdict], groups=groups,
        custody=_custody(report),
        # The people-of-interest section (forensics/people_report.py), built from report.json's `people`.
        people=Markup(people_html(report)) if report.get("people") else "")
