"""The scan's way in and out: refusals before anything is written, one scan per case folder.

`ScanGuard` is a Hydra callback (configs/mode/scan.yaml, hydra.callbacks). Hydra calls its
`on_run_start` before it creates the run directory or writes `.hydra/` and `scan.log`, so:
- a case directory among the evidence, however it was given (`case.dir`, or `hydra.run.dir`
  directly), is refused with nothing created;
- the case folder is locked (an exclusive `flock` on `scan.lock`, held until the process ends): a
  second scan of the same case is refused, naming the holder, before it overwrites anything.

`run_scan` is what `evaluate.py mode=scan` calls: a refusal (inputs, model, case) is one line on
stderr and exit status EXIT_REFUSED, and a case folder this run created for nothing is removed;
a scan that stops midway says why in one line (the traceback goes to scan.log) and keeps every
stored item.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import traceback
from pathlib import Path

from hydra.experimental.callback import Callback

log = logging.getLogger(__name__)

EXIT_FAILED = 1  # the scan stopped midway (stored items are kept; a re-run resumes)
EXIT_REFUSED = 2  # nothing was scanned: inputs, model or case directory refused
EXIT_LOCKED = 4  # another scan holds the case folder
LOCK_NAME = "scan.lock"
# What Hydra writes into a run directory: removed again when a refused run created the folder.
_HYDRA_FILES = (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", ".hydra", "scan.log", LOCK_NAME)

_held: dict[Path, int] = {}  # case folder -> fd holding its lock (this process)
_created: set[Path] = set()  # case folders this process created


class CaseLocked(RuntimeError):
    """Another process holds the case folder."""


def lock_case(case_dir: str | Path) -> Path:
    """Create the case folder if needed (owner only) and take its lock; raise CaseLocked if held.

    The lock is an flock on `scan.lock`, which the kernel releases when the holder ends, killed
    or not; the file says who holds it (pid, host, user, start).
    """
    case = Path(case_dir).resolve()
    if case in _held:
        return case
    if not case.exists():
        case.mkdir(parents=True, mode=0o700)
        _created.add(case)
    path = case / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except ValueError:
            holder = {}
        os.close(fd)
        who = ", ".join(f"{k} {v}" for k, v in holder.items()) or "unknown"
        raise CaseLocked(f"the case folder {case} is in use by another scan ({who}); wait for it to end, "
                         "or choose another case.dir") from None
    from faketrace.forensics.custody import utc_now

    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "user": _user(),
                         "since_utc": utc_now()}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, record, 0)
    _held[case] = fd
    return case


def holds_lock(case_dir: str | Path) -> bool:
    return Path(case_dir).resolve() in _held


def unlock_case(case_dir: str | Path) -> None:
    """Release this process's lock on a case folder (the kernel does it anyway when the process ends)."""
    fd = _held.pop(Path(case_dir).resolve(), None)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _user() -> str | None:
    try:
        import getpass

        return getpass.getuser()
    except (OSError, KeyError):
        return None


def _cause(exc: BaseException) -> BaseException:
    """The innermost cause (a resolver's error comes wrapped in OmegaConf's)."""
    seen = exc
    while seen.__cause__ is not None or (seen.__context__ is not None and not seen.__suppress_context__):
        seen = seen.__cause__ or seen.__context__
    return seen


def refuse(message: str, status: int = EXIT_REFUSED):
    print(f"faketrace scan refused: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


class ScanGuard(Callback):
    """Checks the case directory and locks it before Hydra writes anything (see the module doc)."""

    def on_run_start(self, config, **kwargs) -> None:
        from omegaconf import OmegaConf

        from faketrace.forensics.discover import check_case_dir, describe_inputs

        try:
            inputs = [str(p) for p in config.inputs]
            describe_inputs(inputs)  # every input exists
            # The default run dir is `${case_dir:${case.dir},${inputs}}` (a resolver that checks); a
            # `hydra.run.dir=...` override replaces it. Either way the check runs here, on the path.
            raw = OmegaConf.to_container(config.hydra.run, resolve=False).get("dir")
            run_dir = Path(str(config.case.dir if str(raw).startswith("${case_dir:") else config.hydra.run.dir))
            check_case_dir(run_dir, inputs)
        except Exception as exc:  # noqa: BLE001 - every reason is a refusal, said in one line
            cause = _cause(exc)
            refuse(str(cause) if "MissingMandatoryValue" not in type(cause).__name__ else
                   f"{cause}; a scan needs inputs=[PATH,...], case.id=... and case.operator=...")
        try:
            lock_case(run_dir)
        except CaseLocked as exc:
            refuse(str(exc), EXIT_LOCKED)
        except OSError as exc:
            refuse(f"cannot create or lock the case folder {run_dir}: {exc}")


def remove_if_created(case_dir: str | Path) -> bool:
    """Remove a case folder this process created when it holds nothing but Hydra's files."""
    case = Path(case_dir).resolve()
    if case not in _created:
        return False
    for handler in logging.getLogger().handlers[:]:  # scan.log's handler holds the file open
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == case:
            handler.close()
            logging.getLogger().removeHandler(handler)
    leftovers = {p.relative_to(case).as_posix() for p in case.rglob("*")} - set(_HYDRA_FILES)
    if leftovers:
        return False
    for name in _HYDRA_FILES:
        p = case / name
        if p.is_dir():
            p.rmdir()
        elif p.exists():
            p.unlink()
    fd = _held.pop(case, None)
    if fd is not None:
        os.close(fd)
    case.rmdir()
    _created.discard(case)
    return True


def run_scan(cfg) -> dict:
    """`evaluate.py mode=scan`: the scan, with refusals and failures as one line and an exit status."""
    from faketrace.forensics.case_store import CaseStoreError
    from faketrace.forensics.scan import CaseScan, format_summary

    case_dir = cfg.paths.output_dir
    try:
        scan = CaseScan(cfg)
    except Exception as exc:  # noqa: BLE001 - inputs, model, permissions: nothing was scanned
        log.error("scan refused:\n%s", traceback.format_exc())
        removed = remove_if_created(case_dir)
        refuse(f"{exc}" + ("" if removed else f" (case folder {case_dir}: nothing scanned)"))
    try:
        summary = scan.run()
    except CaseLocked as exc:
        refuse(str(exc), EXIT_LOCKED)
    except (CaseStoreError, OSError) as exc:
        log.error("scan stopped:\n%s", traceback.format_exc())
        print(f"faketrace scan stopped: {exc}", file=sys.stderr, flush=True)
        sys.exit(EXIT_FAILED)
    except Exception as exc:  # noqa: BLE001 - a fault of ours: the traceback goes to scan.log
        log.error("scan stopped:\n%s", traceback.format_exc())
        print(f"faketrace scan stopped: {type(exc).__name__}: {exc}. Items stored so far are kept in {case_dir}; "
              f"the details are in {case_dir}/scan.log; re-running the same command resumes.",
              file=sys.stderr, flush=True)
        sys.exit(EXIT_FAILED)
    print(format_summary(summary))
    print(f"case: {case_dir} (scan_results.jsonl, scan_summary.json, custody.json)")
    if summary["exit_status"]:
        sys.exit(summary["exit_status"])
    return summary
