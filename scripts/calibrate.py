"""Calibrate a checkpoint on validation data: `python scripts/calibrate.py ckpt_path=...`.

Writes <ckpt>.calibrated.ckpt (temperature, EER and target-FPR thresholds in `calibration`)
and calibration.json in the run directory. Settings: configs/calibrate.yaml.
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../configs", config_name="calibrate")
def main(cfg: DictConfig) -> dict:
    from faketrace.engine.evaluate import calibrate_checkpoint

    result = calibrate_checkpoint(cfg)
    cal = result["calibration"]
    print(f"temperature {cal['temperature']:.4f} fitted on {cal['fitted_on']['n_videos']} {cfg.split} videos")
    if cal["held_out"]:
        for level in ("frame", "video"):
            b, a = cal["held_out"]["before"][level], cal["held_out"]["after"][level]
            print(f"held-out {level} ECE {b['ece']:.4f} -> {a['ece']:.4f}, log loss {b['log_loss']:.4f} -> "
                  f"{a['log_loss']:.4f}")
    print(f"calibrated checkpoint: {result['checkpoint']}")
    return result


if __name__ == "__main__":
    main()
