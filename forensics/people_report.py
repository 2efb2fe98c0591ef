"""The person's section of the case report, her distribution timeline, and her hash-only takedown package.

Built from the report's item records (which carry each item's people matches, verdict, Telegram
context, PDQ hashes and group of copies), so report.json stays the source of truth: the HTML,
people.csv and the takedown files are rendered from the section.

Takedown package (one per person, in `takedown/`): her items matched (`match`, not `uncertain`)
and judged likely manipulated, plus every copy of them found by PDQ distance or SHA-256 (the
report's groups of copies), as hashes only: MD5 and PDQ for images, MD5 of the file plus the PDQ
of each sampled frame for videos. The CSV's `signal_type` values are the names hash-matching
systems such as ThreatExchange's Hasher-Matcher-Actioner use (`pdq`, `video_md5`, `photo_md5`).
No image bytes, no file name of the evidence, no name of the person.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from faketrace.datasets.io import atomic_path, atomic_write_text

TAKEDOWN_DIR = "takedown"
TAKEDOWN_COLUMNS = ("signal_type", "signal_value", "content_type", "pdq_quality", "frame_index", "item_ref",
                    "reason", "verdict", "match_decision", "copy_of")


def _when(ctx: dict) -> tuple[int, str]:
    """Sort key of a message: UTC times first in order; local times without a zone after, in order."""
    if ctx.get("date_utc"):
        return 0, str(ctx["date_utc"])
    if ctx.get("date_local_no_zone"):
        return 1, str(ctx["date_local_no_zone"])
    return 2, ""


def _copy_key(rec: dict) -> str:
    return f"group {rec['duplicate_group']}" if rec.get("duplicate_group") is not None else f"sha256 {rec.get('sha256')}"


def person_section(person: dict, people_header: dict, records: list[dict], faces_compared: int) -> dict:
    key = person["key"]
    policy = people_header["policy"]
    items, by_copy = [], {}
    for rec in records:
        m = next((x for x in (rec.get("people") or {}).get("matches", []) if x["person"] == key), None)
        if m is None:
            continue
        items.append({"seq": rec.get("seq"), "item_id": rec["item_id"], "rel_path": rec.get("rel_path"), "source": rec.get("source"),
                      "media_type": rec.get("media_type"), "decision": m["decision"], "distance": m["distance"],
                      "faces_matched": m.get("faces_matched"), "faces_uncertain": m.get("faces_uncertain"),
                      "frame_index": m.get("frame_index"), "verdict": rec.get("verdict"),
                      "probability": rec.get("probability"), "decided_by": rec.get("decided_by"),
                      "duplicate_group": rec.get("duplicate_group"), "sha256": rec.get("sha256"),
                      "telegram": rec.get("telegram") or []})
        by_copy.setdefault(_copy_key(rec), []).append(rec["item_id"])
    fmr, ufmr = policy["target_fmr"], policy["uncertain_fmr"]
    counts = {"match": sum(i["decision"] == "match" for i in items),
              "uncertain": sum(i["decision"] == "uncertain" for i in items),
              "match_and_likely_manipulated": sum(i["decision"] == "match" and i["verdict"] == "likely_manipulated"
                                                  for i in items)}
    return {
        "key": key, "label": person["label"], "reference_photos": person["reference_photos"],
        "items": items, "counts": counts,
        "expected_false_hits": {
            "faces_compared": faces_compared,
            "match": round(fmr * faces_compared, 2), "uncertain": round((ufmr - fmr) * faces_compared, 2),
            "explanation": (f"{faces_compared} faces in this evidence were compared with her reference photos. At a "
                            f"false-match rate of {fmr:g} per comparison, about {fmr * faces_compared:.1f} faces of "
                            f"other people would be expected to reach 'match' by chance, and about "
                            f"{(ufmr - fmr) * faces_compared:.1f} more 'uncertain', if the measured rates held for "
                            "the people in this evidence (see the limits: they may be higher)")},
        "timeline": timeline(items),
        "not_identification": people_header["not_identification"],
    }


def timeline(items: list[dict]) -> dict:
    """First appearance and re-posting of her pictures across chats, ordered by message time."""
    events, without = [], []
    for it in items:
        if not it["telegram"]:
            without.append(it["item_id"])
        for ctx in it["telegram"]:
            events.append({"time_utc": ctx.get("date_utc"), "time_local_no_zone": ctx.get("date_local_no_zone"),
                           "chat": ctx.get("chat_name"), "chat_id": ctx.get("chat_id"),
                           "message_id": ctx.get("message_id"), "sender": ctx.get("from"),
                           "sender_id": ctx.get("from_id"), "forwarded_from": ctx.get("forwarded_from"),
                           "item_id": it["item_id"], "decision": it["decision"], "verdict": it["verdict"],
                           "copy": f"group {it['duplicate_group']}" if it.get("duplicate_group") is not None
                           else f"sha256 {it['sha256']}", "_key": _when(ctx)})
    events.sort(key=lambda e: (e["_key"], str(e["chat"]), str(e["message_id"])))
    seen: dict[str, dict] = {}
    notes = []
    for e in events:
        first = seen.get(e["copy"])
        if first is None:
            seen[e["copy"]] = e
            e["event"] = "first appearance in this evidence"
            if e["forwarded_from"]:
                e["event"] += f"; forwarded from {e['forwarded_from']}, which is outside the evidence"
                notes.append(f"the earliest copy of {e['copy']} in this evidence ({e['chat']}, message "
                             f"{e['message_id']}) was forwarded from {e['forwarded_from']}: it was posted before, "
                             "outside this evidence")
        else:
            e["event"] = f"re-posted (first seen {first['time_utc'] or first['time_local_no_zone']} in {first['chat']})"
        e.pop("_key")
    if any(e["time_utc"] is None for e in events):
        notes.append("some messages carry only the sender's local time without a time zone (older exports): they "
                     "are listed after the messages with UTC times")
    return {"events": events, "copies": len(seen), "chats": sorted({str(e["chat"]) for e in events}),
            "items_without_message": without, "notes": notes,
            "ordered_by": "message time (UTC from date_unixtime); the chat and message id break ties"}


def takedown_entries(section: dict, records: list[dict], min_quality: int) -> tuple[list[dict], list[dict]]:
    """Hash rows for her matched, likely-manipulated items and their copies; and the copies left out.

    A copy (same group of copies by PDQ, or same SHA-256) is included when it is the same file, when
    her face matches in it too, or when no face in it could be compared (a crop, a tiny re-post). A
    PDQ near-duplicate in which faces were compared and hers was not found is left out and listed:
    a face swap changes only the face, so the untouched picture it was made from (somebody else's
    photo) is a PDQ near-duplicate of the fake, and its hash would take that picture down too.
    """
    key = section["key"]
    wanted = [i for i in section["items"] if i["decision"] == "match" and i["verdict"] == "likely_manipulated"]
    by_id = {r["item_id"]: r for r in records}
    chosen: dict[str, tuple[dict, str | None]] = {}
    excluded: dict[str, dict] = {}
    for it in wanted:
        chosen.setdefault(it["item_id"], (by_id[it["item_id"]], None))
    for it in wanted:
        for r in records:
            if r["item_id"] in chosen:
                continue
            same_file = bool(r.get("sha256")) and r.get("sha256") == it.get("sha256")
            same_group = it.get("duplicate_group") is not None and r.get("duplicate_group") == it["duplicate_group"]
            if not (same_file or same_group):
                continue
            people = r.get("people") or {}
            hers = any(m["person"] == key for m in people.get("matches", []))
            if same_file or hers or not people.get("faces_compared"):
                chosen[r["item_id"]] = (r, it["item_id"])
            else:
                excluded[r["item_id"]] = {"item_id": r["item_id"], "near_duplicate_of": it["item_id"],
                                          "why_left_out": "a PDQ near-duplicate whose faces were compared and did not "
                                                          "match her: possibly the original picture the fake was made "
                                                          "from; review it before adding its hash"}
    refs = {item_id: f"{key}-{n + 1:04d}" for n, item_id in enumerate(chosen)}
    rows = []
    for item_id, (r, copy_of) in chosen.items():
        if not r.get("md5"):
            continue
        video = r.get("media_type") == "video" or (r.get("decode") or {}).get("n_frames", 1) > 1
        content = "video" if video else "photo"
        own = next((i for i in section["items"] if i["item_id"] == item_id), None)
        base = {"content_type": content, "item_ref": refs[item_id],
                "reason": "matched her face and judged likely manipulated" if copy_of is None
                else "copy (PDQ or SHA-256) of a matched, likely manipulated item",
                "verdict": r.get("verdict"), "match_decision": own["decision"] if own else None,
                "copy_of": refs.get(copy_of) if copy_of else None}
        rows.append({"signal_type": "video_md5" if video else "photo_md5", "signal_value": r["md5"],
                     "pdq_quality": None, "frame_index": None, **base})
        for p in r.get("pdq") or []:
            if p["quality"] < min_quality:
                continue  # a low-quality PDQ matches unrelated pictures: it would take down the wrong ones
            rows.append({"signal_type": "pdq", "signal_value": p["hash"], "pdq_quality": p["quality"],
                         "frame_index": p["frame_index"] if video else None, **base})
    return rows, list(excluded.values())


def write_takedown(case_dir: Path, section: dict, rows: list[dict], case_id: str | None,
                   left_out: int = 0) -> dict:
    folder = case_dir / TAKEDOWN_DIR
    folder.mkdir(exist_ok=True)
    stem = f"{section['key']}_takedown"
    with atomic_path(folder / f"{stem}.csv") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=TAKEDOWN_COLUMNS)
        w.writeheader()
        for row in rows:
            w.writerow({k: "" if row.get(k) is None else row[k] for k in TAKEDOWN_COLUMNS})
    doc = {"takedown_version": 1, "case_id": case_id, "person": section["key"],
           "what": "hashes of pictures judged likely manipulated that show this person's face (matched by a face-"
                   "recognition model, reviewed by an examiner before sending), and of their copies; no image bytes",
           "signal_types": {"pdq": "PDQ perceptual hash (256 bits, hex); match at Hamming distance <= 31",
                            "photo_md5": "MD5 of the image file as found", "video_md5": "MD5 of the video file as found"},
           "caution": "a face swap changes only the face: its PDQ lies close to the PDQ of the untouched picture it "
                      "was made from, so a PDQ match can also hit that original (somebody else's photo); review "
                      "matches before acting on them",
           "near_duplicates_left_out": left_out,
           "entries": rows}
    atomic_write_text(folder / f"{stem}.json", json.dumps(doc, indent=1))
    return {"csv": f"{TAKEDOWN_DIR}/{stem}.csv", "json": f"{TAKEDOWN_DIR}/{stem}.json", "entries": len(rows),
            "items": len({r["item_ref"] for r in rows})}


def people_sections(report_header_people: dict, records: list[dict]) -> dict:
    faces = sum((r.get("people") or {}).get("faces_compared", 0) for r in records)
    too_small = sum((r.get("people") or {}).get("faces_too_small", 0) for r in records)
    return {"persons": [person_section(p, report_header_people, records, faces)
                        for p in report_header_people["persons"]],
            "faces_compared": faces, "faces_too_small_to_compare": too_small,
            "pseudonymised": report_header_people["pseudonymised"], "policy": report_header_people["policy"],
            "embedder": report_header_people["embedder"], "faces_per_track": report_header_people["faces_per_track"],
            "not_identification": report_header_people["not_identification"],
            "known_limits": report_header_people["known_limits"] + [
                "faces under the embedder's minimum size, in profile, masked or heavily compressed are compared "
                "less reliably or not at all; a face swap carries her face and matches, but a picture that shows "
                "only her body does not",
                "dlib's authors report a version trained on mostly Japanese faces (taguchi_face_recognition_resnet_"
                "model_v1) as a replacement for East Asian faces; this scan used the default model"]}


def write_people_csv(report: dict, path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["person", "item_id", "rel_path", "decision", "distance", "verdict", "probability",
                    "duplicate_group", "first_message_utc", "chats"])
        for s in report["people"]["persons"]:
            for it in s["items"]:
                times = sorted(c.get("date_utc") or "" for c in it["telegram"])
                w.writerow([s["label"], it["item_id"], it.get("rel_path") or "", it["decision"], it["distance"],
                            it.get("verdict") or "", "" if it.get("probability") is None else it["probability"],
                            "" if it.get("duplicate_group") is None else it["duplicate_group"],
                            times[0] if times else "", "; ".join(sorted({str(c.get('chat_name'))
                                                                         for c in it["telegram"]}))])


def people_html(report: dict) -> str:
    """The people-of-interest section of report.html (rendered from report.json's `people`)."""
    from markupsafe import escape

    def e(x) -> str:
        return str(escape("" if x is None else x))

    pe = report["people"]
    pol = pe["policy"]
    out = ['<h2 id="people">People of interest</h2>',
           f'<div class="warn"><b>Not an identification.</b> {e(pe["not_identification"])}</div>',
           f'<p>Faces compared: {pe["faces_compared"]} (too small to compare: {pe["faces_too_small_to_compare"]}). '
           f'Match: distance &le; {pol["threshold"]:.3f} (target false-match rate {pol["target_fmr"]:g} per '
           f'comparison); uncertain: up to {pol["uncertain_threshold"]:.3f} ({pol["uncertain_fmr"]:g}). '
           f'Basis: {e(pol["basis"]["method"])}; measured on {e(pol["basis"].get("identities"))} identities, '
           f'{e(pol["basis"].get("impostor_pairs"))} impostor comparisons. {e(pol["basis"]["published"])}. '
           f'{e(pol["basis"]["caveat"])}.</p>',
           "<p><b>Known limits.</b></p><ul>" + "".join(f"<li>{e(x)}</li>" for x in pe["known_limits"]) + "</ul>"]
    for s in pe["persons"]:
        c, x = s["counts"], s["expected_false_hits"]
        out.append(f'<h3 id="person-{e(s["key"])}">{e(s["label"])}</h3>'
                   f'<p>{c["match"]} items match, {c["uncertain"]} uncertain; {c["match_and_likely_manipulated"]} '
                   f'match and are likely manipulated. {e(x["explanation"])}.</p>')
        rows = "".join(
            f'<tr><td><a href="#item-{e(i["seq"])}" class="mono">{e(i["item_id"])}</a></td><td>{e(i["decision"])}</td>'
            f'<td>{i["distance"]:.3f}</td><td>{e((i.get("verdict") or "").replace("_", " "))}</td>'
            f'<td>{_num(i.get("probability"))}</td>'
            f'<td>{e(i.get("duplicate_group") or "")}</td></tr>' for i in s["items"])
        out.append('<table><thead><tr><th>item</th><th>face</th><th>distance</th><th>manipulation verdict</th>'
                   f'<th>probability</th><th>copies</th></tr></thead><tbody>{rows or "<tr><td colspan=6>none</td></tr>"}'
                   "</tbody></table>")
        t = s["timeline"]
        events = "".join(
            f'<tr><td>{e(ev["time_utc"] or (str(ev["time_local_no_zone"]) + " (local, no zone)"))}</td>'
            f'<td>{e(ev["chat"])}</td><td>{e(ev["message_id"])}</td><td>{e(ev["sender"])}</td>'
            f'<td>{e(ev["forwarded_from"] or "")}</td><td>{e(ev["copy"])}</td><td>{e(ev["event"])}</td></tr>'
            for ev in t["events"])
        out.append(f'<p><b>Distribution timeline</b> ({e(t["ordered_by"])}): {len(t["events"])} messages in '
                   f'{len(t["chats"])} chats.</p>'
                   + ('<table><thead><tr><th>time (UTC)</th><th>chat</th><th>message</th><th>sender</th>'
                      f'<th>forwarded from</th><th>picture</th><th>event</th></tr></thead><tbody>{events}</tbody>'
                      '</table>' if events else "")
                   + "".join(f'<p class="small">{e(n)}</p>' for n in t["notes"]))
        td = s.get("takedown") or {}
        out.append(f'<p><b>Takedown package</b>: <span class="mono">{e(td.get("csv"))}</span> and '
                   f'<span class="mono">{e(td.get("json"))}</span>: {e(td.get("entries"))} hashes of '
                   f'{e(td.get("items"))} items (her matched, likely manipulated items and their copies); no image '
                   "bytes. Review every item before sending.</p>"
                   + "".join(f'<p class="small">Left out: <span class="mono">{e(x["item_id"])}</span>, near-duplicate '
                             f'of <span class="mono">{e(x["near_duplicate_of"])}</span>: {e(x["why_left_out"])}.</p>'
                             for x in td.get("near_duplicates_left_out") or []))
    return "\n".join(out)


def _num(x) -> str:
    return "" if x is None else f"{x:.3f}"
