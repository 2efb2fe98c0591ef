"""Calibrate a checkpoint on validation data: `python scripts/calibrate.py ckpt_path=...`.

Writes <ckpt>.calibrated.ckpt (frame and video maps, EER and target-FPR thresholds in
`calibration`) and calibration.json in the run directory. Settings: configs/calibrate.yaml.
"""

import hydra
from omegaconf import DictConfig

from faketrace.engine.distributed import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="../configs", config_name="calibrate")
def main(cfg: DictConfig) -> dict:
    from faketrace.engine.calibration import maps_summary
    from faketrace.engine.evaluate import calibrate_checkpoint

    result = calibrate_checkpoint(cfg)
    cal = result["calibration"]
    fitted = cal["fitted_on"]
    print(f"{maps_summary(cal)}; forms {cal['form']}; fitted on {fitted['n_videos']} {cfg.split} "
          f"{fitted.get('items', 'videos')}")
    if (cal.get("sample_size") or {}).get("warning"):
        print(f"warning: {cal['sample_size']['warning']}")
    if cal["held_out"]:
        print(f"held out ({cal['held_out']['how']}):")
        for level in ("frame", "video"):
            b, a = cal["held_out"]["before"][level], cal["held_out"]["after"][level]
            print(f"  {level} ECE {b['ece']:.4f} -> {a['ece']:.4f} (perfect calibration would show "
                  f"{a['ece_if_calibrated']:.4f}), log loss {b['log_loss']:.4f} -> {a['log_loss']:.4f}, "
                  f"Brier {b['brier']:.4f} -> {a['brier']:.4f}")
    if cal.get("not_applied"):
        print(f"not applied: {cal['not_applied']['reason']}")
    print(f"{'calibrated' if cal.get('applied', True) else 'uncalibrated (see above)'} checkpoint: "
          f"{result['checkpoint']}")
    return result


if __name__ == "__main__":
    main()
