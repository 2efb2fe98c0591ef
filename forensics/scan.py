"""The evidence scan: `python evaluate.py mode=scan inputs=[...] ckpt_path=... case.id=... case.operator=...`.

Items stream from discovery through hashing and scoring into the case store (SQLite), one
committed transaction each, so an interrupted scan resumes without redoing finished items. At the
end every input is hashed again and the custody record states whether all hashes are unchanged.
The case directory is Hydra's run directory and may not lie among the evidence; evidence files
are opened read-only (O_NOATIME where allowed) and nothing is written beside them.

Outputs in the case directory: case.sqlite (state), scan_results.jsonl (one item per line, in
discovery order), scan_summary.json, input_hashes.csv and custody.json; docs/scan.md explains them.
Then the case report (forensics/report.py, docs/report.md) is built from them.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import platform
import socket
import sys
import time
import traceback
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from faketrace.datasets.face_pipeline import PreprocessSpec
from faketrace.datasets.faces import build_detector
from faketrace.datasets.faults import FAULT_ENV, FaultInjector, FaultPlan
from faketrace.datasets.io import atomic_path, atomic_write_text, noatime_report
from faketrace.datasets.media import sniff_media_type
from faketrace.datasets.memory_file import MemoryFile
from faketrace.forensics.archives import ArchiveLimits
from faketrace.forensics.archives import describe as describe_archives
from faketrace.forensics.archives import expand as expand_archives
from faketrace.forensics.case_store import CaseStore, CaseStoreError
from faketrace.forensics.cli import command
from faketrace.forensics.custody import (
    Offline,
    file_identity,
    hash_evidence,
    hash_stream,
    tool_version,
    utc_now,
)
from faketrace.forensics.discover import EvidenceItem, check_case_dir, describe_inputs, iter_items
from faketrace.forensics.guard import holds_lock, lock_case, unlock_case
from faketrace.forensics.names import dumps as strict_dumps
from faketrace.forensics.names import raw_path, visible
from faketrace.forensics.scoring import (
    FAILED_STATUSES,
    VERDICT_WORDS,
    MediaScorer,
    ScanModel,
    ScanOptions,
    load_onnx_model,
    load_torch_model,
)
from faketrace.models.signing import ExportSignatureError, SignaturePolicy

log = logging.getLogger(__name__)

CUSTODY_VERSION = 1
RESULTS_VERSION = 1
# The closing check of the evidence: every file hashed again, or its size, modification time and
# inode compared with what they were when it was hashed (fast; says so in the custody record).
VERIFY_MODES = ("rehash", "stat")
EXIT_OK = 0
EXIT_ITEMS_FAILED = 3
EXIT_REPORT_FAILED = 5
EXIT_MEANING = {EXIT_OK: "every item was scanned or has a definite non-failure status (no_face, missing)",
                EXIT_ITEMS_FAILED: "some items could not be scanned (see their status and reason)",
                EXIT_REPORT_FAILED: "the scan's results are complete but the case report failed "
                                    "(re-render it with scripts/report.py)"}


class UnvalidatedModelError(RuntimeError):
    """A model not fit for casework, used without allow_unvalidated=true."""


def rss_bytes() -> int:
    """Resident memory of this process now (Linux /proc), else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def signature_policy(cfg: DictConfig) -> SignaturePolicy:
    """scan.model_signatures: {required: bool, trusted_keys: [PEM files]} (models/signing.py)."""
    sig = cfg.scan.get("model_signatures") or {}
    return SignaturePolicy.from_paths(bool(sig.get("required", False)), list(sig.get("trusted_keys") or []))


def _checkpoint(cfg: DictConfig, path: str) -> ScanModel:
    if signature_policy(cfg).required:
        raise ExportSignatureError(f"{path}: a training checkpoint carries no signature, and this scan accepts only "
                                   "models signed by a trusted key; export it (scripts/export.py), sign the folder "
                                   "(scripts/sign_export.py sign) and give model_dir=")
    return load_torch_model(path, device=str(cfg.get("device", "auto")))


def load_model(cfg: DictConfig) -> ScanModel:
    if cfg.get("model_dir"):
        return load_onnx_model(cfg.model_dir, threads=cfg.scan.get("threads"), signatures=signature_policy(cfg))
    if cfg.get("ckpt_path"):
        return _checkpoint(cfg, cfg.ckpt_path)
    raise ValueError("a scan needs a model: ckpt_path=CHECKPOINT (PyTorch) or model_dir=EXPORT_FOLDER (ONNX Runtime)")


def load_image_model(cfg: DictConfig) -> ScanModel | None:
    """The optional second, image-level model (whole-image tiles) run beside a face-level one."""
    if cfg.get("image_model_dir"):
        model = load_onnx_model(cfg.image_model_dir, threads=cfg.scan.get("threads"), signatures=signature_policy(cfg))
    elif cfg.get("image_ckpt_path"):
        model = _checkpoint(cfg, cfg.image_ckpt_path)
    else:
        return None
    if model.level != "image":
        raise ValueError(f"{model.path} is a {model.level}-level model; image_ckpt_path / image_model_dir take "
                         "an image-level one")
    return model


def options_from_config(cfg: DictConfig, model: ScanModel, image_model: ScanModel | None = None) -> ScanOptions:
    s = cfg.scan
    bands = OmegaConf.to_container(s.bands, resolve=True) if s.get("bands") else None
    default_frames = model.frames_per_video or 32
    image_model = image_model or (model if model.level == "image" else None)
    image_frames = s.get("image_frames_per_video") or (image_model.frames_per_video if image_model else None)
    return ScanOptions(frames_per_video=int(s.frames_per_video or default_frames),
                       image_frames_per_video=int(image_frames) if image_frames else None,
                       video_rule=str(s.video_rule or model.aggregation), batch_size=int(s.batch_size),
                       detector_batch=int(s.detector_batch), min_face_px=int(s.min_face_px),
                       min_jpeg_quality=int(s.min_jpeg_quality),
                       min_video_bits_per_pixel=float(s.min_video_bits_per_pixel),
                       max_file_bytes=int(s.max_file_bytes),
                       **({"max_item_pixels": int(s.max_item_pixels)} if s.get("max_item_pixels") else {}),
                       decoder_max_rss_bytes=int(s.decoder_max_rss_bytes) if s.get("decoder_max_rss_bytes") else None,
                       video_time_limit_s=float(s.video_time_limit_s) if s.video_time_limit_s else None,
                       image_time_limit_s=float(s.image_time_limit_s) if s.image_time_limit_s else None,
                       isolate_decoding=bool(s.isolate_decoding), decode_grace_s=float(s.decode_grace_s),
                       bands_override=bands, decode=str(s.get("decode") or "cpu"))


def fault_plan(cfg: DictConfig) -> FaultPlan | None:
    debug = cfg.get("debug") or {}
    if debug.get("fault"):
        return FaultPlan(debug["fault"], int(debug.get("fault_at", 1)), debug.get("fault_action", "raise"))
    return FaultPlan.parse(os.environ.get(FAULT_ENV))


def scan_item(item: EvidenceItem, scorer: MediaScorer, warning: str | None, hash_time_limit_s: float | None = None,
              progress: bool = False) -> dict:
    """One item's result; any failure becomes a status and a reason, never an exception.

    Size first (a file above scan.max_file_bytes is never decoded), then the hash (custody needs
    it; streamed, within its time budget), then decoding and scoring.
    """
    # item.record() carries an archive member's container: which archive, and its path inside it
    result = {**item.record(), "telegram": item.telegram or None}
    if item.status is not None:
        return {**result, "status": item.status, "reason": item.reason}
    try:
        size = (item.path.stat() if isinstance(item.path, MemoryFile) else
                os.stat(item.path, follow_symlinks=False)).st_size
        hashed = hash_stream(item.path, time_limit_s=hash_time_limit_s, progress=progress)
    except OSError as exc:
        return {**result, "status": "error", "reason": f"cannot read the file: {visible(str(exc))}"}
    result.update({k: v for k, v in hashed.items() if k != "hash_note"})
    limit = scorer.options.max_file_bytes
    if size > limit:
        note = f"; {hashed['hash_note']}" if hashed.get("hash_note") else ""
        return {**result, "status": "oversized", "media_type": sniff_media_type(item.path),
                "reason": f"{size} bytes, above the limit of {limit} (scan.max_file_bytes); not decoded{note}"}
    if hashed.get("hash_note"):
        return {**result, "status": "timeout", "reason": f"{hashed['hash_note']}; not decoded"}
    try:
        result.update(scorer.score_file(item.path))
    except Exception as exc:  # one bad item must not take the case down; the log keeps the traceback
        log.error("item %s failed:\n%s", item.item_id, traceback.format_exc())
        result.update(status="error", reason=f"{type(exc).__name__}: {exc}")
    if result["status"] == "scanned" and warning:
        result["warning"] = warning
    return result


class CaseScan:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.case_dir = Path(cfg.paths.output_dir)
        self.inputs = describe_inputs(list(cfg.inputs))
        check_case_dir(self.case_dir, [i.path for i in self.inputs])
        self.published = load_published_models(cfg)  # [(name, registry entry, torch module)]
        primary_name, primary_domain = "model", None
        trained = cfg.get("model_dir") or cfg.get("ckpt_path")
        self.model = load_model(cfg) if trained or not self.published else None
        if self.model is None:  # the first published face model leads (LRNet cannot: it needs a face model's decode)
            from faketrace.forensics.panel import published_face_model

            face = [p for p in self.published if p[1]["spec"]["level"] == "face"]
            if not face:
                raise ValueError("published=[...] needs at least one face-level model (e.g. meso4_df) or a "
                                 "ckpt_path / model_dir: landmark models (LRNet) score videos beside one")
            primary_name, entry, module = face[0]
            self.published.remove(face[0])
            self.model = published_face_model(entry, module, self._device())
            primary_domain = entry["domain"]
        self.image_model = load_image_model(cfg)
        models = [m for m in (self.model, self.image_model) if m is not None]
        unfit = [m for m in models if not m.fit_for_casework]
        unfit += [_Unfit(n, e) for n, e, _ in self.published if not (e.get("validation") or {}).get("fit_for_casework")]
        if unfit and not cfg.allow_unvalidated:
            raise UnvalidatedModelError(
                f"{unfit[0].path} is not fit for casework ({unfit[0].casework_note}). A scan with it is for "
                "testing the tool only: pass allow_unvalidated=true to run it anyway; every output will say so.")
        self.warning = " | ".join(m.warning for m in unfit) or None
        face_model = self.model if self.model.level == "face" else None
        self.detector = self.detector_used = None
        runtime = str(cfg.scan.get("detector_runtime") or "auto")
        self.warnings: list[str] = [self.warning] if self.warning else []
        if face_model is not None:
            spec = face_model.face_spec
            self.detector = build_detector(spec.detector, runtime=runtime, score_threshold=spec.score_threshold,
                                           nms_threshold=spec.nms_threshold, max_side=spec.detector_max_side,
                                           device=face_model.device, threads=int(cfg.scan.get("threads") or 1))
            self.detector_used = self.detector.describe()
            if face_model.stand_in_detector:
                self.warnings.append(face_model.stand_in_detector)
            trained_with = face_model.detector.weights_sha256
            if trained_with and trained_with != self.detector_used["weights_sha256"]:
                self.warnings.append(f"the face detector weights ({self.detector_used['weights_sha256']}) differ "
                                     f"from those the model's crops were made with ({trained_with})")
        self.options = options_from_config(cfg, self.model, self.image_model)
        self.people = self._enrol_people(cfg)
        self.scorer = MediaScorer(self.model, self.detector, self.options, image_model=self.image_model,
                                  people=self.people)
        # Set on the primary scorer: the panel below passes attribute reads through to it.
        self.archive_limits = self.scorer.archive_limits = ArchiveLimits.from_config(cfg.scan.get("archives"))
        self.panel = None
        if self.published or primary_name != "model":
            self.scorer = self.panel = self._panel(primary_name, primary_domain)
        self.fault = FaultInjector(fault_plan(cfg))
        limit = cfg.scan.get("hash_time_limit_s")
        self.hash_time_limit_s = float(limit) if limit else None
        self.verify = str(cfg.scan.get("verify") or "rehash")
        if self.verify not in VERIFY_MODES:
            raise ValueError(f"scan.verify={self.verify!r}: expected one of {', '.join(VERIFY_MODES)}")
        for info in self.inputs:
            self.warnings.extend(info.notes)

    def _enrol_people(self, cfg: DictConfig):
        """People of interest (forensics/people.py): enrolled before anything is scanned; refusals stop here."""
        entries = cfg.get("people") or []
        if not entries:
            return None
        from faketrace.datasets.face_embedding import DlibFaceEmbedder
        from faketrace.forensics.people import (
            PeopleMatcher,
            check_consistent,
            enrol,
            key_for,
            parse_people,
            policy_for,
        )

        pm = cfg.get("people_match") or {}
        if self.detector is None:  # an image-level model only: faces are detected to find the people
            spec = PreprocessSpec()
            self.detector = build_detector(spec.detector, score_threshold=spec.score_threshold,
                                           nms_threshold=spec.nms_threshold, max_side=spec.detector_max_side,
                                           threads=int(cfg.scan.get("threads") or 1))
            self.detector_used = self.detector.describe()
        policy = policy_for(float(pm.get("target_fmr", 0.01)), float(pm.get("uncertain_fmr", 0.05)))
        embedder = DlibFaceEmbedder(batch_size=int(pm.get("batch_size", 32)))
        people = []
        for i, (name, folder) in enumerate(parse_people(entries)):
            person = enrol(key_for(i), name, folder, cfg.get("people_consent"), self.detector, embedder,
                           min_face_px=int(pm.get("min_reference_face_px", 80)))
            check_consistent(person, policy)
            people.append(person)
        self.pseudonymise = bool(pm.get("pseudonymise", True))
        return PeopleMatcher(people, embedder, policy, faces_per_track=int(pm.get("faces_per_track", 4)),
                             min_face_px=int(pm.get("min_face_px", embedder.spec.min_face_px)))

    def _people_header(self) -> dict | None:
        """What results and the report say about the people searched for (labels only; names in custody)."""
        if self.people is None:
            return None
        from faketrace.forensics.people import NEVER_IDENTIFICATION

        return {"persons": [{"key": p.key, "label": p.label(self.pseudonymise), "reference_photos": len(p.photos)}
                            for p in self.people.people],
                "pseudonymised": self.pseudonymise, "policy": self.people.policy.to_dict(),
                "embedder": self.people.embedder.spec.to_dict(),
                "faces_per_track": self.people.faces_per_track, "min_face_px": self.people.min_face_px,
                "not_identification": NEVER_IDENTIFICATION,
                "known_limits": list(self.people.embedder.spec.known_limits)}
    def _device(self) -> str:
        device = str(self.cfg.get("device", "auto"))
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        return device

    def _panel(self, primary_name: str, primary_domain: dict | None):
        """The other published models as panel members (forensics/panel.py)."""
        from faketrace.forensics.panel import FaceMember, LandmarkMember, PanelScorer, published_face_model

        members = []
        for name, entry, module in self.published:
            if entry["spec"]["level"] == "face":
                scorer = MediaScorer(published_face_model(entry, module, self._device()), self.detector, self.options)
                members.append(FaceMember(name, scorer, entry["domain"]))
            elif entry["spec"]["level"] == "clip":
                predictor, error = None, None
                try:
                    from faketrace.datasets.landmarks import load_landmark_predictor

                    predictor = load_landmark_predictor(self.cfg.scan.get("landmark_model"))
                except (RuntimeError, FileNotFoundError) as exc:
                    error = str(exc)
                    self.warnings.append(f"{name}: not applicable to any item: {error}")
                if self.detector is None:
                    raise ValueError(f"{name} needs the face detector of a face-level model")
                members.append(LandmarkMember(name, entry, module, self.detector, self.scorer.decoder, self.options,
                                              predictor=predictor, predictor_error=error,
                                              max_frames=int(self.cfg.scan.get("landmark_frames") or 300),
                                              frame_bytes=int(self.cfg.scan.get("landmark_frame_bytes") or 384 << 20)))
            else:
                raise ValueError(f"{name}: level {entry['spec']['level']!r} cannot run in the scan")
        return PanelScorer(self.scorer, primary_name, members, primary_domain)

    def identity(self) -> dict:
        """What makes two runs the same scan: a case directory never mixes two."""
        o = self.options
        return {"case_id": str(self.cfg.case.id), "inputs": [visible(i.path) for i in self.inputs],
                "model_sha256": self.model.sha256,
                "image_model_sha256": self.image_model.sha256 if self.image_model else None,
                **({"panel": [(m["name"], m["sha256"]) for m in self.panel.describe()]} if self.panel else {}),
                "options": {"frames_per_video": o.frames_per_video, "video_rule": o.video_rule,
                            **({"image_frames_per_video": o.image_frames_per_video}
                               if o.image_frames_per_video else {}),
                            "min_face_px": o.min_face_px, "min_jpeg_quality": o.min_jpeg_quality,
                            "min_video_bits_per_pixel": o.min_video_bits_per_pixel,
                            "max_file_bytes": o.max_file_bytes, "max_item_pixels": o.max_item_pixels,
                            "bands": o.bands_override,
                            # which archive members become items depends on these
                            "archives": self.archive_limits.to_dict()},
                **({"people": [{"key": p.key, "photos_sha256": sorted(x["sha256"] for x in p.photos)}
                               for p in self.people.people],
                    "people_match": {k: v for k, v in self.people.policy.to_dict().items() if k != "basis"},
                    "faces_per_track": self.people.faces_per_track} if self.people is not None else {})}

    def run(self) -> dict:
        Offline.enter()
        # The case holds derivatives of the evidence: only its owner may enter or read it.
        locked_here = not holds_lock(self.case_dir)  # evaluate.py's guard took it before Hydra wrote
        lock_case(self.case_dir)  # one scan per case folder (forensics/guard.py); creates it if needed
        os.chmod(self.case_dir, 0o700)
        umask = os.umask(0o077)
        try:
            store = CaseStore(self.case_dir)
        except Exception:
            if locked_here:
                unlock_case(self.case_dir)
            raise
        try:
            known = store.get_meta("identity")
            if known is None:
                store.set_meta("identity", self.identity())
                if self.people is not None:  # embeddings and photo hashes only: never a photo or its path
                    store.set_meta("people", [p.meta() for p in self.people.people])
            elif known != self.identity():
                raise CaseStoreError(f"{self.case_dir} holds a scan of other inputs, model or settings "
                                     f"({json.dumps(known)}); choose a new case.dir")
            return self._run(store)
        finally:
            Offline.active = False
            os.umask(umask)
            self.scorer.close()
            store.close()
            if locked_here:
                unlock_case(self.case_dir)

    def _session_record(self) -> dict:
        return {"host": socket.gethostname(), "operator": str(self.cfg.case.operator), "pid": os.getpid(),
                "argv": sys.argv, "user": _user()}

    def _run(self, store: CaseStore) -> dict:
        started = utc_now()
        session = store.start_session(started, self._session_record())
        self._write_custody(store, session, started, None, None, None)  # a killed run still leaves a record
        scanned = skipped = 0
        progress_every = int(self.cfg.scan.get("progress_every") or 0)
        t0 = time.perf_counter()
        show_progress = bool(self.cfg.scan.get("progress", True))
        bar = tqdm(desc="scan", unit="item", disable=not show_progress, file=sys.stderr)
        items = expand_archives(iter_items(self.inputs, self.cfg.scan.get("max_export_json_bytes")),
                                self.archive_limits)  # archive members follow their archive (forensics/archives.py)
        for seq, item in enumerate(items):
            bar.update(1)
            if store.done(item.item_id) is not None:
                skipped += 1
                continue
            result = scan_item(item, self.scorer, self.warning, self.hash_time_limit_s, progress=show_progress)
            self.fault("scan_before_item_stored")
            store.put(item.item_id, seq, result, session)
            self.fault("scan_after_item_stored")
            scanned += 1
            if progress_every and (scanned % progress_every == 0):
                with open(self.case_dir / "progress.jsonl", "a") as fh:
                    fh.write(strict_dumps({"session": session, "items_this_session": scanned, "seq": seq,
                                         "rss_bytes": rss_bytes(), "seconds": time.perf_counter() - t0}) + "\n")
        bar.close()
        self.fault("scan_before_outputs")
        integrity = self._verify_hashes(store)
        counts = store.counts()
        failed = sum(n for s, n in counts.items() if s in FAILED_STATUSES)
        exit_status = EXIT_ITEMS_FAILED if failed or not integrity["all_unchanged"] else EXIT_OK
        summary = self._write_results(store, counts, integrity, exit_status, scanned, skipped)
        ended = utc_now()
        store.end_session(session, ended, exit_status, scanned)
        self._write_custody(store, session, started, ended, exit_status, integrity, counts)
        summary["exit_status"] = exit_status
        summary["report"] = self._report()
        summary["resources"] = self._resources()  # peaks including the report's
        atomic_write_text(self.case_dir / "scan_summary.json",
                          strict_dumps({k: v for k, v in summary.items() if k != "report"}, indent=2, sort_keys=True))
        if summary["report"] and summary["report"].get("error"):
            # A case without its report is not done: the exit status and every record say so.
            exit_status = EXIT_REPORT_FAILED
            summary.update(exit_status=exit_status, exit_meaning=EXIT_MEANING[exit_status])
            atomic_write_text(self.case_dir / "scan_summary.json",
                              strict_dumps({k: v for k, v in summary.items() if k != "report"}, indent=2,
                                           sort_keys=True))
            ended = utc_now()
            store.end_session(session, ended, exit_status, scanned)
            self._write_custody(store, session, started, ended, exit_status, integrity, counts)
        return summary

    def _report(self) -> dict | None:
        """The case report (forensics/report.py); its failure leaves the scan's results intact."""
        rcfg = self.cfg.get("report")
        if rcfg is None or not rcfg.get("enabled", True):
            return None
        from faketrace.forensics.report import ReportOptions, build_report

        try:
            report = build_report(self.case_dir, ReportOptions.from_config(rcfg), self.model, self.detector)
        except Exception as exc:
            log.error("the report failed:\n%s", traceback.format_exc())
            return {"error": f"{type(exc).__name__}: {exc}",
                    "retry": f"{command('faketrace-report')} case_dir={self.case_dir}"}
        return {"html": str(self.case_dir / "report.html"), "json": str(self.case_dir / "report.json"),
                "redacted": report["redacted"], "heatmaps": report["summary"]["heatmaps"],
                "duplicate_groups": report["summary"]["duplicate_groups"],
                "people": [{"label": p["label"], **p["counts"], "expected_false_matches": p["expected_false_hits"]["match"],
                            "takedown": str(self.case_dir / p["takedown"]["csv"]), "takedown_entries": p["takedown"]["entries"]}
                           for p in (report.get("people") or {}).get("persons", [])]}

    # -- integrity --
    def _verify_hashes(self, store: CaseStore) -> dict:
        """Check every input file again (hash, or size + mtime + inode); custody says which and the outcome."""
        changed, n, by_stat = [], 0, 0
        with atomic_path(self.case_dir / "input_hashes.csv") as tmp, open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["item_id", "path", "size_bytes", "md5", "sha256_before", "sha256_after", "unchanged",
                        "checked_by"])
            outcome = {}  # archive file item -> unchanged: its members are verified through it
            for r in store.results():
                if not r.get("sha256") and not r.get("stat"):
                    continue
                container = r.get("container") or {}
                if container.get("archive_item_id"):  # an archive member, read from memory
                    top = f"{r['input_index']}/{container['chain'][0]}"  # the archive file on disk
                    same, how, after = outcome.get(top, False), "its archive file", f"inside {top}"
                    n += 1
                    if not same:
                        changed.append(r["item_id"])
                    w.writerow([r["item_id"], r["rel_path"], r["size_bytes"], r.get("md5"), r.get("sha256"), after,
                                same, how])
                    continue
                path = raw_path(r)
                if self.verify == "rehash" and r.get("sha256"):
                    how = "sha256"
                    try:
                        after = hash_evidence(path)[0]
                    except OSError as exc:
                        after = f"unreadable: {visible(str(exc))}"
                    same = after == r["sha256"]
                else:  # stat mode, or a file whose hash did not finish in its budget
                    how, after = "size+mtime+inode", "not re-hashed"
                    by_stat += 1
                    try:
                        same = file_identity(os.stat(path, follow_symlinks=False)) == r.get("stat")
                    except OSError as exc:
                        same, after = False, f"unreadable: {visible(str(exc))}"
                outcome[r["item_id"]] = same
                n += 1
                if not same:
                    changed.append(r["item_id"])
                w.writerow([r["item_id"], visible(str(path)), r["size_bytes"], r.get("md5"), r.get("sha256"), after,
                            same, how])
        algorithm = ("SHA-256 of each file before it was decoded and again after the whole scan"
                     if self.verify == "rehash" else
                     "SHA-256 of each file before it was decoded; after the whole scan its size, modification time, "
                     "inode and device were compared with those at hashing (scan.verify=stat), not its content")
        if by_stat and self.verify == "rehash":
            algorithm += (f"; {by_stat} file(s) whose hashing stopped at its time budget were checked by size, "
                          "modification time, inode and device only")
        return {"items_hashed": n, "all_unchanged": not changed, "changed": changed, "hash_list": "input_hashes.csv",
                "verification": self.verify, "checked_by_stat": by_stat, "algorithm": algorithm}

    # -- outputs --
    def _resources(self) -> dict:
        """Peak resident memory of this process and of the decoder processes, and the limits."""
        import os
        import resource

        from ..datasets.media import process_memory

        o = self.options
        # VmHWM belongs to this process's own address space. getrusage's ru_maxrss does not: Linux
        # carries the parent's peak across fork and exec, so a scan started by a large process
        # (a test runner, a notebook) would report that process's memory as its own.
        peak = process_memory(os.getpid())[1] or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return {"scan_peak_rss_bytes": peak,
                "decoder_peak_rss_bytes": self.scorer.decoder.peak_rss_bytes or None,
                "decoder_max_rss_bytes": o.decoder_max_rss_bytes, "max_item_pixels": o.max_item_pixels,
                "max_image_pixels": o.max_image_pixels, "max_file_bytes": o.max_file_bytes,
                "hash_time_limit_s": self.hash_time_limit_s}

    def _describe(self, m: ScanModel) -> dict:
        bands = self.scorer.bands if m.level == "face" else self.scorer.image_bands
        return {"kind": m.kind, "level": m.level, "path": m.path, "sha256": m.sha256,
                "fit_for_casework": m.fit_for_casework, "casework_note": m.casework_note, "card": m.card,
                "calibration": m.calibration, "video_rule": self.options.video_rule,
                "spec": m.spec.to_dict(),
                "bands": {lvl: vars(b) for lvl, b in bands.items()}}

    def _header(self) -> dict:
        header = {"case_id": str(self.cfg.case.id), "warning": self.warning, "model": self._describe(self.model),
                  "verdicts": VERDICT_WORDS,
                "inconclusive_means": ("the score lies between the bands, or the input is outside what the model "
                                       f"can judge (faces under {self.options.min_face_px} px, JPEG quality under "
                                       f"{self.options.min_jpeg_quality}, video under "
                                       f"{self.options.min_video_bits_per_pixel} bits per pixel per frame)")}
        if self.people is not None:
            header["people"] = self._people_header()
        if self.image_model is not None:
            header["image_model"] = self._describe(self.image_model)
            header["combination"] = MediaScorer.COMBINATION
        if self.panel is not None:
            header["panel"] = self.panel.describe()
            header["panel_combination"] = self.panel.COMBINATION
        return header

    def _write_results(self, store: CaseStore, counts: dict, integrity: dict, exit_status: int, scanned: int,
                       skipped: int) -> dict:
        verdicts: dict[str, int] = {}
        with atomic_path(self.case_dir / "scan_results.jsonl") as tmp, open(tmp, "w") as fh:
            fh.write(strict_dumps({"results_version": RESULTS_VERSION, **self._header()}, sort_keys=True) + "\n")
            for r in store.results():
                if r.get("verdict"):
                    verdicts[r["verdict"]] = verdicts.get(r["verdict"], 0) + 1
                fh.write(strict_dumps(r, sort_keys=True) + "\n")
        summary = {"results_version": RESULTS_VERSION, **self._header(), "warnings": self.warnings,
                   "items": sum(counts.values()), "by_status": counts, "by_verdict": verdicts,
                   "scanned_this_session": scanned, "already_done": skipped,
                   "evidence_unchanged": integrity["all_unchanged"], "exit_status": exit_status,
                   "exit_meaning": EXIT_MEANING[exit_status], "resources": self._resources(),
                   "access_times": noatime_report(),
                   "inputs": [vars(i) for i in self.inputs]}
        atomic_write_text(self.case_dir / "scan_summary.json", strict_dumps(summary, indent=2, sort_keys=True))
        return summary

    def _write_custody(self, store: CaseStore, session: int, started: str, ended: str | None,
                       exit_status: int | None, integrity: dict | None, counts: dict | None = None) -> None:
        from faketrace.engine.checkpoint import git_sha, versions

        m = self.model
        record = {
            "custody_version": CUSTODY_VERSION,
            "warning": self.warning,
            "case": {"id": str(self.cfg.case.id), "operator": str(self.cfg.case.operator),
                     "directory": str(self.case_dir.resolve())},
            "session": {"number": session, "started_utc": started, "ended_utc": ended,
                        "exit_status": exit_status,
                        "exit_meaning": EXIT_MEANING.get(exit_status, "running or interrupted")},
            "sessions": store.sessions(),
            "host": {"hostname": socket.gethostname(), "platform": platform.platform(),
                     "python": platform.python_version(), "user": _user()},
            "tool": {"name": "faketrace", "version": tool_version(), "git_sha": git_sha(), "versions": versions()},
            "model": {"kind": m.kind, "path": m.path, "sha256": m.sha256,
                      # who signed the export folder and with which key, or unsigned (models/signing.py)
                      "signature": m.card.get("signature") or {"status": "unsigned", "note": "a checkpoint"},
                      "fit_for_casework": m.fit_for_casework,
                      "casework_note": m.casework_note, "card": m.card, "calibration": m.calibration,
                      "face_detector_trained_with": m.detector, "face_detector_used": self.detector_used},
            "image_model": None if self.image_model is None else
            {k: v for k, v in self._describe(self.image_model).items() if k != "bands"},
            "panel": self.panel.describe() if self.panel is not None else None,
            "inputs": [vars(i) for i in self.inputs],
            "people_of_interest": None if self.people is None else {
                "consent_or_legal_basis": str(self.cfg.get("people_consent")),
                "persons": [{"key": p.key, "name": p.name, "reference_photos": p.photos} for p in self.people.people],
                "kept": "the reference faces' embeddings (case.sqlite, meta 'people') and each photo's SHA-256; the "
                        "photos, crops and their paths are not copied into the case; faces matching nobody are not "
                        "stored", "policy": self.people.policy.to_dict(),
                "embedder": self.people.embedder.describe()},
            "evidence_handling": "opened read-only (O_NOATIME where permitted); nothing written beside it; "
                                 "no network connection is made by the scan",
            "access_times": noatime_report(),
            "resources": self._resources(),
            "evidence_integrity": integrity,
            # archives opened read-only in memory, their limits; disk images recognised, not opened
            "archives": describe_archives(self.archive_limits),
            "counts": counts,
            "warnings": self.warnings,
            "config": OmegaConf.to_yaml(self.cfg, resolve=True),
        }
        atomic_write_text(self.case_dir / "custody.json", strict_dumps(record, indent=2, default=str))


class _Unfit:
    """A published panel member not fit for casework, as the refusal and warning name it."""

    def __init__(self, name: str, entry: dict):
        from faketrace.forensics.panel import CASEWORK_NOTE

        self.path = name
        self.casework_note = entry.get("casework_note") or CASEWORK_NOTE
        self.warning = f"NOT VALIDATED FOR CASEWORK: {name}: {self.casework_note}"


def load_published_models(cfg: DictConfig) -> list:
    """(name, registry entry, torch module) of each model in published=[...], loaded from the package."""
    from faketrace.forensics.panel import load_published

    names = list((cfg.get("published") or {}).keys())
    device = str(cfg.get("device", "auto"))
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    validated = cfg.scan.get("validated_dir")
    return [(n, *load_published(n, device, validated)) for n in names]


def _user() -> str | None:
    try:
        import getpass

        return getpass.getuser()
    except (OSError, KeyError):
        return None


def scan_from_config(cfg: DictConfig) -> dict:
    return CaseScan(cfg).run()


def format_summary(summary: dict) -> str:
    lines = []
    if summary.get("warning"):
        lines += ["!" * 78, f"!! {summary['warning']}", "!" * 78]
    lines.append(f"case {summary['case_id']}: {summary['items']} items "
                 f"({summary['scanned_this_session']} scanned now, {summary['already_done']} done before)")
    lines.append("  by status:  " + ", ".join(f"{k} {v}" for k, v in sorted(summary["by_status"].items())))
    lines.append("  by verdict: " + (", ".join(f"{VERDICT_WORDS[k]} {v}" for k, v in sorted(summary["by_verdict"].items()))
                                     or "none"))
    lines.append(f"  evidence unchanged (SHA-256 before = after): {summary['evidence_unchanged']}")
    for w in summary.get("warnings", [])[1:] if summary.get("warning") else summary.get("warnings", []):
        lines.append(f"  note: {w}")
    lines.append(f"  exit status {summary['exit_status']}: {summary['exit_meaning']}")
    report = summary.get("report")
    if report and report.get("error"):
        lines.append(f"  REPORT FAILED: {report['error']}; the results are intact: {report['retry']}")
    elif report:
        lines.append(f"  report: {report['html']} ({'redacted' if report['redacted'] else 'UNREDACTED'}; "
                     f"{report['heatmaps']} heatmaps, {report['duplicate_groups']} groups of copies)")
        for p in report.get("people") or []:
            lines.append(f"  person {p['label']}: {p['match']} items match, {p['uncertain']} uncertain "
                         f"(about {p['expected_false_matches']:g} false matches expected by chance; a match is not an "
                         f"identification); takedown: {p['takedown']} ({p['takedown_entries']} hashes)")
    return "\n".join(lines)
