"""report.html, rendered from report.json: one self-contained file an analyst can open offline.

No external resource of any kind: pictures are embedded as data: URIs (the redacted files of
report_media/, byte for byte), style and script are inline and allowed by their SHA-256 in a
Content-Security-Policy of `default-src 'none'`, so the page cannot load or send anything even if
a file name or a Telegram message in it tried. Every string from the evidence is escaped.
"""

from __future__ import annotations

import base64
import hashlib
import html
from pathlib import Path

VERDICT_LABEL = {"likely_manipulated": "likely manipulated", "inconclusive": "inconclusive",
                 "no_evidence_of_manipulation": "no evidence of manipulation"}

CSS = """
:root{--red:#b3261e;--amber:#a15c00;--green:#2e6b30;--grey:#5f6368;--ink:#1f1f1f;--line:#d9dce1;--bg:#f6f7f9}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--ink);background:var(--bg)}
.bar{position:sticky;top:0;z-index:5}
.warn{background:var(--red);color:#fff;padding:10px 24px;font-weight:700;font-size:15px;letter-spacing:.2px}
.redaction{padding:5px 24px;font-weight:600;font-size:13px}
.redaction.on{background:#e6f0e6;color:var(--green);border-bottom:1px solid #c5dcc5}
.redaction.off{background:#ffe08a;color:#5c3b00;border-bottom:2px solid var(--red);font-size:15px}
main{max-width:1280px;margin:0 auto;padding:8px 24px 48px}
h1{font-size:24px;margin:18px 0 2px}
h2{font-size:18px;margin:28px 0 10px;padding-bottom:4px;border-bottom:2px solid var(--line)}
h3{font-size:15px;margin:0}
.meta{color:var(--grey);margin:0 0 12px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:10px 14px;min-width:128px}
.card b{display:block;font-size:22px}
.card.likely_manipulated b{color:var(--red)}.card.inconclusive b{color:var(--amber)}
.card.no_evidence_of_manipulation b{color:var(--green)}
.plain{background:#fff;border:1px solid var(--line);border-radius:8px;padding:6px 18px}
.plain li{margin:6px 0}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid var(--line)}
th,td{padding:5px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:#eef0f3;position:sticky;top:62px;cursor:pointer;white-space:nowrap;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.hide{display:none}
code,.mono{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px;word-break:break-all}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff;background:var(--grey);white-space:nowrap}
.badge.likely_manipulated{background:var(--red)}.badge.inconclusive{background:var(--amber)}
.badge.no_evidence_of_manipulation{background:var(--green)}.badge.failed{background:#3c4043}
.badge.group{background:#3949ab}.badge.known{background:#6a1b9a}
.filters{margin:0 0 8px}.filters button{border:1px solid var(--line);background:#fff;border-radius:14px;padding:3px 12px;margin:0 4px 4px 0;cursor:pointer}
.filters button.active{background:var(--ink);color:#fff}
article{background:#fff;border:1px solid var(--line);border-left:6px solid var(--grey);border-radius:8px;padding:12px 16px;margin:0 0 14px}
article.likely_manipulated{border-left-color:var(--red)}article.inconclusive{border-left-color:var(--amber)}
article.no_evidence_of_manipulation{border-left-color:var(--green)}
.head{display:flex;gap:10px;align-items:baseline;flex-wrap:wrap;margin-bottom:8px}
.cols{display:grid;grid-template-columns:minmax(300px,600px) 1fr;gap:18px}
.pics{display:flex;flex-wrap:wrap;gap:8px;align-content:flex-start}
figure{margin:0}figcaption{font-size:12px;color:var(--grey)}
svg.pic{display:block;border-radius:4px;background:#ddd}
dl{display:grid;grid-template-columns:150px 1fr;gap:2px 10px;margin:0}
dt{color:var(--grey)}dd{margin:0}
.note{color:var(--amber);font-weight:600}
.small{font-size:12px;color:var(--grey)}
a{color:#1a56c4}
@media (max-width:900px){.cols{grid-template-columns:1fr}}
@media print{.bar{position:fixed;top:0;left:0;right:0}main{padding-top:70px}th{position:static}.filters{display:none}
 article{break-inside:avoid}tr.hide{display:table-row}}
"""

JS = """
(function(){
  function key(td){var v=td.getAttribute('data-sort');if(v===null)v=td.textContent.trim();var n=parseFloat(v);return isNaN(n)||v===''?v.toLowerCase():n;}
  document.querySelectorAll('table.sortable').forEach(function(table){
    var heads=table.querySelectorAll('th');
    heads.forEach(function(th,col){th.addEventListener('click',function(){
      var asc=th.getAttribute('aria-sort')!=='ascending';
      heads.forEach(function(h){h.removeAttribute('aria-sort');});
      th.setAttribute('aria-sort',asc?'ascending':'descending');
      var body=table.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){var x=key(a.cells[col]),y=key(b.cells[col]);
        if(typeof x!==typeof y){x=String(x);y=String(y);}return (x<y?-1:x>y?1:0)*(asc?1:-1);});
      rows.forEach(function(r){body.appendChild(r);});
    });});
  });
  document.querySelectorAll('.filters button').forEach(function(btn){btn.addEventListener('click',function(){
    document.querySelectorAll('.filters button').forEach(function(b){b.classList.remove('active');});
    btn.classList.add('active');var f=btn.getAttribute('data-filter');
    document.querySelectorAll('#items-table tbody tr').forEach(function(tr){
      var show=f==='all'||tr.getAttribute('data-class')===f;tr.classList.toggle('hide',!show);});
  });});
})();
"""

FAILED = ("empty", "unsupported", "decode_error", "oversized", "resource_limit", "timeout", "refused", "error")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def content_security_policy() -> str:
    return (f"default-src 'none'; img-src data:; style-src {_csp_hash(CSS)}; script-src {_csp_hash(JS)}; "
            "base-uri 'none'; form-action 'none'")


def e(x) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _klass(r: dict) -> str:
    if r.get("verdict"):
        return r["verdict"]
    return "failed" if r["status"] in FAILED else r["status"]


def _badge(r: dict) -> str:
    k = _klass(r)
    text = VERDICT_LABEL.get(k) or r["status"].replace("_", " ")
    return f'<span class="badge {e(k)}">{e(text)}</span>'


def _data_uri(case_dir: Path, rel: str) -> str:
    data = (case_dir / rel).read_bytes()
    mime = "image/png" if rel.endswith(".png") else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _picture(case_dir: Path, pic: dict, caption: str, boxes: list[dict] = ()) -> str:
    w, h = pic["width"], pic["height"]
    rects = "".join(
        f'<rect x="{b["box"][0]}" y="{b["box"][1]}" width="{max(1, b["box"][2] - b["box"][0]):.1f}" '
        f'height="{max(1, b["box"][3] - b["box"][1]):.1f}" fill="none" stroke="{"#ff3b30" if b.get("most_suspicious") else "#ffd60a"}" '
        f'stroke-width="{3 if b.get("most_suspicious") else 2}"><title>face p={e(b.get("probability"))}</title></rect>'
        for b in boxes)
    return (f'<figure><svg class="pic" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
            f'aria-label="{e(caption)}"><image href="{_data_uri(case_dir, pic["file"])}" width="{w}" height="{h}"/>'
            f'{rects}</svg><figcaption>{e(caption)}</figcaption></figure>')


def _timeline(r: dict) -> str:
    pts = r.get("timeline") or []
    if len(pts) < 2:
        return ""
    W, H, L, B = 520, 130, 34, 22
    xs = [p["frame_index"] for p in pts]
    lo, hi = min(xs), max(xs)
    span = max(1, hi - lo)

    def X(i):
        return L + (W - L - 8) * (i - lo) / span

    def Y(p):
        return 8 + (H - B - 8) * (1 - p)

    bands = r.get("bands") or {}
    lines = "".join(f'<line x1="{L}" x2="{W - 8}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="{c}" stroke-dasharray="4 3"/>'
                    f'<text x="{W - 10}" y="{Y(v) + dy:.1f}" text-anchor="end" font-size="10" fill="{c}">{n} {v:.2f}</text>'
                    for n, v, c, dy in (("upper", bands.get("upper"), "#b3261e", -3),
                                        ("lower", bands.get("lower"), "#2e6b30", 11))
                    if v is not None)
    poly = " ".join(f"{X(p['frame_index']):.1f},{Y(p['probability']):.1f}" for p in pts)
    dots = "".join(f'<circle cx="{X(p["frame_index"]):.1f}" cy="{Y(p["probability"]):.1f}" r="3" fill="#1f1f1f">'
                   f'<title>frame {p["frame_index"]}: {p["probability"]:.3f}</title></circle>' for p in pts)
    axes = (f'<line x1="{L}" x2="{L}" y1="8" y2="{H - B}" stroke="#999"/><line x1="{L}" x2="{W - 8}" y1="{H - B}" '
            f'y2="{H - B}" stroke="#999"/><text x="{L - 4}" y="{Y(1) + 4:.1f}" font-size="10" text-anchor="end">1</text>'
            f'<text x="{L - 4}" y="{Y(0) + 4:.1f}" font-size="10" text-anchor="end">0</text>'
            f'<text x="{L}" y="{H - 6}" font-size="10">frame {lo}</text>'
            f'<text x="{W - 8}" y="{H - 6}" font-size="10" text-anchor="end">frame {hi}</text>')
    return (f'<figure><svg width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="score timeline">'
            f'{axes}{lines}<polyline points="{poly}" fill="none" stroke="#1a56c4" stroke-width="2"/>{dots}</svg>'
            "<figcaption>Per-frame probability (highest face of each sampled frame)</figcaption></figure>")


def _dl(pairs) -> str:
    return "<dl>" + "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in pairs if v not in (None, "")) + "</dl>"


def _provenance(prov: dict | None) -> str:
    if not prov:
        return ""
    meta = prov.get("metadata") or {}
    c2 = prov.get("c2pa") or {}
    meta_text = ", ".join(f"{k}: {v}" for k, v in meta.items() if k not in ("exif_present", "xmp_present", "icc_profile")
                          and v not in (None, False)) or "no camera, software or date tags"
    c2_text = e(c2.get("state", "").replace("_", " "))
    for k in ("claim_generator", "signer", "signed_at", "reason", "note"):
        if c2.get(k):
            c2_text += f"; {e(k.replace('_', ' '))}: {e(c2[k])}"
    if c2.get("failures"):
        c2_text += "; failures: " + e(", ".join(c2["failures"]))
    if c2.get("actions"):
        c2_text += "; actions: " + e(", ".join(str(a.get("action")) for a in c2["actions"]))
    return _dl([("metadata", e(meta_text)), ("C2PA", c2_text)])


def _telegram(ctx: list[dict] | None) -> str:
    if not ctx:
        return ""
    rows = []
    for c in ctx:
        when = c.get("date_utc") or (f"{c.get('date_local_no_zone')} (sender's local time)"
                                     if c.get("date_local_no_zone") else "")
        bits = [f"chat {e(c.get('chat_name'))}", f"message {e(c.get('message_id'))}", e(when),
                f"from {e(c.get('from'))} ({e(c.get('from_id'))})"]
        if c.get("forwarded_from"):
            bits.append(f"forwarded from {e(c['forwarded_from'])}")
        if c.get("text"):
            bits.append(f"text: &ldquo;{e(c['text'])}&rdquo;")
        rows.append("; ".join(b for b in bits if b))
    return "<br>".join(rows)


def _probability(r: dict) -> str | None:
    if r.get("probability") is None:
        return None
    rule = f", {r['rule']} rule" if r.get("rule") else ""
    return e(f"{r['probability']:.6f} ({r.get('level')} level{rule})")


def _level(level: dict | None) -> str | None:
    """One model's verdict and probability when two models scanned the item."""
    if not level:
        return None
    if level.get("status") != "scanned":
        return e(f"{level.get('status')}: {level.get('reason') or ''}")
    b = level.get("bands") or {}
    return e(f"{VERDICT_LABEL.get(level.get('verdict'), level.get('verdict'))}, probability "
             f"{level['probability']:.6f} (bands {b.get('lower', 0):.3f} / {b.get('upper', 1):.3f})")


def _article(case_dir: Path, r: dict) -> str:
    pics = []
    for f in r.get("frames") or []:
        label = "image" if r.get("level") == "frame" and len(r.get("frames")) == 1 else f"frame {f['frame_index']}"
        pics.append(_picture(case_dir, f, label, f.get("faces") or []))
    hm = r.get("heatmap") or {}
    if hm.get("file"):
        pics.append(_picture(case_dir, hm, f"heatmap ({hm['method'].replace('_', '-')}), most suspicious face, "
                                           f"frame {hm['frame_index']}"))
    im = r.get("image_map") or {}
    if im.get("file"):
        pics.append(_picture(case_dir, im, f"image-level map: calibrated tile probabilities ({im['tile_size']} px "
                                           f"tiles), frame {im['frame_index']}"))
    decode = r.get("decode") or {}
    dims = f"{decode.get('width')} x {decode.get('height')}" if decode.get("width") else None
    dur = f"{decode['duration_s']:.2f} s" if decode.get("duration_s") else None
    pdq = r.get("pdq") or []
    pdq_text = "<br>".join(f'<code>{e(p["hash"])}</code> q{p["quality"]}' + (f" (frame {p['frame_index']})" if len(pdq) > 1 else "")
                           for p in pdq[:4])
    if len(pdq) > 4:
        pdq_text += f"<br><span class='small'>and {len(pdq) - 4} more frames in hashes.csv</span>"
    known = "; ".join(f"{m['algorithm']} {m.get('label') or ''} (distance {m['distance']})"
                      for m in r.get("known_hash_matches") or [])
    group = r.get("duplicate_group")
    notes = "".join(f'<p class="note">{e(n)}</p>' for n in r.get("notes") or [])
    if im.get("error"):
        notes += f'<p class="note">image-level map not made: {e(im["error"])}</p>'
    if hm.get("error"):
        notes += f'<p class="note">heatmap not made: {e(hm["error"])}</p>'
    elif hm.get("file") and not hm.get("crop_matches_scan"):
        notes += ('<p class="note">the rebuilt face crop scores differently from the scan '
                  f'(logit {e(hm.get("logit_rebuilt"))} vs {e(hm.get("logit_scan"))})</p>')
    facts = _dl([
        ("verdict", f"{_badge(r)} {e(r.get('verdict_reason'))}"),
        ("probability", _probability(r)),
        ("face level", _level(r.get("face_level"))),
        ("image level", _level(r.get("image_level"))),
        ("decided by", e(_decided_by(r)) or None),
        ("why", e(r.get("why"))),
        ("faces", e(r.get("n_faces"))),
        ("type", e(" ".join(str(x) for x in (r.get("media_type"), decode.get("format"), dims, dur) if x))),
        ("decoding", e(decode.get("decode_note"))),
        ("size", e(f"{r['size_bytes']:,} bytes") if r.get("size_bytes") is not None else None),
        ("SHA-256", f"<code>{e(r.get('sha256'))}</code>"), ("MD5", f"<code>{e(r.get('md5'))}</code>"),
        ("PDQ", pdq_text),
        ("copies", f'<a href="#group-{e(group)}"><span class="badge group">{e(group)}</span></a>' if group else None),
        ("known hash", f'<span class="badge known">match</span> {e(known)}' if known else None),
        ("Telegram", _telegram(r.get("telegram"))),
        ("source", e(f"{r.get('input')} ({r.get('source')})")),
    ])
    return (f'<article id="item-{r["seq"]}" class="{e(_klass(r))}"><div class="head"><h3>#{r["seq"]} '
            f'<span class="mono">{e(r["item_id"])}</span></h3>{_badge(r)}</div>{notes}'
            f'<div class="cols"><div class="pics">{"".join(pics)}{_timeline(r)}</div>'
            f'<div>{facts}{_provenance(r.get("provenance"))}</div></div></article>')


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


def _row(r: dict) -> str:
    p = r.get("probability")
    bar = (f'<svg width="60" height="8" aria-hidden="true"><rect width="60" height="8" fill="#e3e5e8"/>'
           f'<rect width="{60 * p:.1f}" height="8" fill="#1f1f1f"/></svg> {p:.3f}' if p is not None else "")
    link = f'<a href="#item-{r["seq"]}">{e(r["rel_path"] or r["item_id"])}</a>' if r["status"] == "scanned" else e(r["rel_path"] or r["item_id"])
    extra = ""
    if r.get("duplicate_group"):
        extra += f' <a href="#group-{e(r["duplicate_group"])}"><span class="badge group">{e(r["duplicate_group"])}</span></a>'
    if r.get("known_hash_matches"):
        extra += ' <span class="badge known">known hash</span>'
    order = {"likely_manipulated": 0, "inconclusive": 1, "no_evidence_of_manipulation": 2}.get(r.get("verdict"), 3)
    return (f'<tr data-class="{e(_klass(r))}"><td class="num" data-sort="{r["seq"]}">{r["seq"]}</td>'
            f'<td><span class="mono">{link}</span>{extra}<div class="small">input {e(r["item_id"].split("/")[0])}, '
            f'{e(r.get("source"))}</div></td><td>{e(r.get("media_type"))}</td>'
            f'<td data-sort="{order}">{_badge(r)}</td><td class="num" data-sort="{"" if p is None else p}">{bar}</td>'
            f'<td class="num">{e(r.get("n_faces") or "")}</td><td>{e(_decided_by(r))}</td>'
            f'<td class="small">{e(_why(r))}</td></tr>')


def render_html(report: dict, case_dir: str | Path) -> str:
    case_dir = Path(case_dir)
    items = report["items"]
    s = report["summary"]
    case = report.get("case") or {}
    warning = report.get("warning")
    redaction = (f'<div class="redaction on">Pictures in this report are blurred in their pixels (redacted). '
                 f'{e(report["redaction"]["method"])}.</div>' if report["redacted"] else
                 '<div class="redaction off">UNREDACTED: this report shows pictures of the evidence unblurred '
                 '(report.redact=false). Handle it as the evidence itself.</div>')
    bar = (f'<div class="bar">{f"<div class=warn>&#9888; {e(warning)}</div>" if warning else ""}{redaction}</div>')
    counts = {"items": s["items"], **{k: s["by_verdict"].get(k, 0) for k in VERDICT_LABEL}}
    failed = sum(v for k, v in s["by_status"].items() if k in FAILED)
    cards = "".join(f'<div class="card {k}"><b>{v}</b>{e(VERDICT_LABEL.get(k, k))}</div>' for k, v in counts.items())
    cards += (f'<div class="card"><b>{s["by_status"].get("no_face", 0)}</b>no face (not assessed)</div>'
              f'<div class="card"><b>{failed}</b>not scanned (see reason)</div>'
              f'<div class="card"><b>{s["duplicate_groups"]}</b>groups of copies</div>'
              f'<div class="card"><b>{s["known_hash_matches"]}</b>known-hash matches</div>'
              f'<div class="card"><b>{"yes" if s.get("evidence_unchanged") else "NO"}</b>evidence unchanged</div>')
    pl = report["plain_language"]
    plain = "<ul>" + "".join(f"<li>{e(t)}</li>" for t in [pl["fitness_for_casework"], pl["model"], *pl["thresholds"],
                                                          pl.get("combination"), pl["inconclusive"],
                                                          pl["no_evidence"], pl["no_face"], pl["heatmaps"],
                                                          pl.get("image_level"),
                                                          pl["duplicates"],
                                                          pl["hashes"]] if t) + "</ul>"
    filters = "".join(f'<button data-filter="{k}"{" class=active" if k == "all" else ""}>{e(t)}</button>'
                      for k, t in (("all", "all"), ("likely_manipulated", "likely manipulated"),
                                   ("inconclusive", "inconclusive"), ("no_evidence_of_manipulation", "no evidence"),
                                   ("no_face", "no face"), ("failed", "not scanned")))
    table = ('<table class="sortable" id="items-table"><thead><tr><th>#</th><th>item</th><th>type</th><th>result</th>'
             '<th>probability</th><th>faces</th><th>decided by</th><th>why</th></tr></thead><tbody>'
             + "".join(_row(r) for r in items) + "</tbody></table>")
    by_verdict = sorted((r for r in items if r["status"] == "scanned"),
                        key=lambda r: ({"likely_manipulated": 0, "inconclusive": 1}.get(r.get("verdict"), 2),
                                       -(r.get("probability") or 0)))
    articles = "".join(_article(case_dir, r) for r in by_verdict)
    seq_of = {r["item_id"]: r["seq"] for r in items}
    groups = "".join(
        f'<li id="group-{e(g["group"])}"><span class="badge group">{e(g["group"])}</span> '
        + ", ".join(f'<a href="#item-{seq_of[i]}" class="mono">{e(i)}</a>' for i in g["items"])
        + f' <span class="small">(largest PDQ distance among links {g["max_pdq_distance"]}; '
        + e(", ".join(sorted({lk["basis"] for lk in g["links"]}))) + ")</span></li>"
        for g in report["duplicate_groups"]) or "<li>none</li>"
    integrity = (report.get("custody") or {}).get("evidence_integrity") or {}
    sessions = (report.get("custody") or {}).get("sessions") or []
    model = report["model"]
    custody = _dl([
        ("evidence", e(f"{integrity.get('items_hashed')} files hashed before and after the scan; all unchanged: "
                       f"{integrity.get('all_unchanged')}")),
        ("handling", e((report.get("custody") or {}).get("evidence_handling"))),
        ("sessions", "<br>".join(e(f"session {x.get('session')}: {x.get('started_utc')} to {x.get('ended_utc') or '-'}"
                                   f" by {x.get('operator')} on {x.get('host')} ({x.get('ended')}, exit {x.get('exit_status')})")
                                 for x in sessions)),
        ("model", f"<code>{e(model.get('path'))}</code><br>SHA-256 <code>{e(model.get('sha256'))}</code>"),
        ("C2PA reader", e(report["settings"]["c2pa"])),
        ("report files", e("report.json (source of truth), report.html, items.csv, hashes.csv, report_media/; "
                           "their SHA-256 are in the audit table of case.sqlite")),
        ("notes", "<br>".join(e(n) for n in report.get("notes") or []) or None),
        ("warnings", "<br>".join(e(w) for w in s.get("warnings") or []) or None),
    ])
    title = f"Case {case.get('id')} - faketrace report" + (" - NOT FIT FOR CASEWORK" if warning else "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{e(content_security_policy())}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{e(title)}</title>
<style>{CSS}</style></head>
<body>{bar}<main>
<h1>Case {e(case.get('id'))}: deepfake scan report</h1>
<p class="meta">Operator {e(case.get('operator'))} &middot; generated {e(report['generated_utc'])} &middot;
faketrace {e((report.get('tool') or {}).get('version'))} ({e((report.get('tool') or {}).get('git_sha'))}) &middot;
report version {report['report_version']} &middot; case folder <span class="mono">{e(case.get('directory'))}</span></p>
<section class="cards">{cards}</section>
<h2 id="read">How to read this report</h2><div class="plain">{plain}</div>
<h2 id="items">Items ({len(items)})</h2><div class="filters">{filters}</div>{table}
<h2 id="details">Scanned items, most suspicious first</h2>{articles or "<p>No item had a face to score.</p>"}
<h2 id="duplicates">Copies of the same picture</h2><ul>{groups}</ul>
<h2 id="custody">Custody and integrity</h2>{custody}
</main><script>{JS}</script></body></html>
"""
