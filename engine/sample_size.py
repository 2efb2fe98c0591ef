"""How much a validation set can decide: AUC intervals and the minimum number of items per class.

Model selection (the best epoch) and calibration are decided on the validation split. With a
handful of items per class, a validation AUC is noise: 11 real items against 30 fakes give
AUC 0.59 an interval of about [0.40, 0.78], which contains chance. Both decisions therefore report
the interval of the number they decide on, and warn below `MIN_ITEMS_PER_CLASS` items (videos or
images) in the smaller class.

The interval is Hanley and McNeil's normal approximation (Radiology 1982) for the standard error
of an AUC; it needs no resampling, so it is cheap enough to compute every epoch. The minimum of
50 per class buys a 95 % interval about 0.13 wide at AUC 0.90 and 0.19 wide at AUC 0.75
(against 0.29 and 0.44 with 10 per class; `interval_width_table` computes these figures and
docs/evaluation.md quotes them).
"""

from __future__ import annotations

import logging
import math

log = logging.getLogger(__name__)

MIN_ITEMS_PER_CLASS = 50
Z_95 = 1.959963984540054


def auc_standard_error(auc: float, n_fake: int, n_real: int) -> float:
    """Hanley-McNeil standard error of an AUC with n_fake positives and n_real negatives."""
    a = min(max(float(auc), 1e-6), 1 - 1e-6)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n_fake - 1) * (q1 - a * a) + (n_real - 1) * (q2 - a * a)) / (n_fake * n_real)
    return math.sqrt(max(var, 0.0))


def auc_interval(auc: float | None, n_fake: int, n_real: int) -> list[float] | None:
    """95 % interval [low, high] of an AUC (clipped to [0, 1]); None without both classes."""
    if auc is None or n_fake < 1 or n_real < 1:
        return None
    half = Z_95 * auc_standard_error(auc, n_fake, n_real)
    return [max(0.0, float(auc) - half), min(1.0, float(auc) + half)]


def interval_width_table(per_class=(10, 20, 50, 100, 200), aucs=(0.6, 0.75, 0.9)) -> dict:
    """Width of the 95 % AUC interval by items per class (equal classes) and AUC."""
    return {int(n): {float(a): round(2 * Z_95 * auc_standard_error(a, n, n), 3) for a in aucs} for n in per_class}


def decision_record(what: str, auc: float | None, n_fake: int, n_real: int, unit: str = "items",
                    minimum: int = MIN_ITEMS_PER_CLASS) -> dict:
    """The AUC a decision rests on, its interval, the class counts and a warning when they are too few."""
    record = {"auc": auc, "interval_95": auc_interval(auc, n_fake, n_real), "interval_method": "Hanley-McNeil",
              "n_fake": int(n_fake), "n_real": int(n_real), "unit": unit, "min_per_class": int(minimum),
              "warning": None}
    smaller = min(int(n_fake), int(n_real))
    if smaller < minimum:
        ci = record["interval_95"]
        span = f"; AUC {auc:.3f}, 95% interval [{ci[0]:.2f}, {ci[1]:.2f}]" if auc is not None and ci else ""
        record["warning"] = (f"{what} rests on {n_real} real and {n_fake} fake {unit}, fewer than {minimum} in a "
                             f"class{span}: the decision is close to noise (docs/evaluation.md, Small validation sets)")
    return record


def selection_record(report: dict, monitor: str, media: str = "videos") -> dict:
    """What the choice of the best epoch rests on: the monitored AUC, its interval and the class counts.

    `report` is a validation report (levels frame and video); `monitor` like "val/video_auc";
    `media` what the validation items are: "videos", "stills" or "videos and stills".
    """
    level = monitor.split("/", 1)[1].split("_", 1)[0]
    part = report.get(level) or {}
    stills = media == "stills"
    unit = ("frames" if level != "video" else "images" if stills else "videos" if media == "videos"
            else f"items ({media})")
    record = decision_record("model selection", part.get("auc"), int(part.get("n_fake") or 0),
                             int(part.get("n_real") or 0), unit=unit)
    return {"monitor": monitor, "level": "item (still image)" if stills and level == "video" else level, **record}
