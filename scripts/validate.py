"""A lab's own validation of a model: `python scripts/validate.py published=[meso4_df] labels=CSV operator=NAME`.

Scores a labelled set the lab holds with the scan's own code, reports AUC, EER and TPR at fixed FPR
with intervals and the items per class, fits calibration and the verdict bands, and writes a copy of
the model carrying the validation certificate (forensics/validation.py; configs/validate.yaml).
"""

import json

import hydra
from omegaconf import DictConfig

from faketrace.engine.distributed import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="../configs", config_name="validate")
def main(cfg: DictConfig) -> dict:
    from faketrace.forensics.validation import run_validation

    cert = run_validation(cfg)
    m, c = cert.get("metrics") or {}, cert["counts"]
    print(f"validation of {cert['model']['name']}: {c['scored_real']} real and {c['scored_fake']} fake items scored "
          f"(of {c['real']} and {c['fake']}; by status {json.dumps(c['by_status'])})")
    if m:
        ci = m.get("auc_interval") or {}
        print(f"  AUC {m['auc']:.4f} (95 % {ci.get('low', float('nan')):.4f}-{ci.get('high', float('nan')):.4f}), "
              f"EER {m['eer']:.4f}; " + ", ".join(f"TPR@FPR {f} {v['tpr']:.3f}" if v["tpr"] is not None
                                                    else f"TPR@FPR {f}: {v['note']}" for f, v in m["tpr_at_fpr"].items()))
    print(f"  fit for casework: {cert['fit_for_casework']} ({cert['why']})")
    print(f"  validated copy: {cert['copy']}")
    return cert


if __name__ == "__main__":
    main()
