"""Export a checkpoint: `python scripts/export.py ckpt_path=... [out_dir=...]`.

Writes model.onnx (verified against PyTorch on real crops), weights.safetensors and model_card.json.
"""

import hydra
from omegaconf import DictConfig

from faketrace.engine.distributed import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="../configs", config_name="export")
def main(cfg: DictConfig) -> None:
    from faketrace.engine.export import export_checkpoint

    card = export_checkpoint(cfg)
    check = card["onnx"]["verification"]
    print(f"export: {cfg.out_dir} (ONNX max |logit diff| {check['max_abs_logit_diff']:.2e} "
          f"on {check['n_images']} real crops)")
    if card["warning"]:
        print(card["warning"])


if __name__ == "__main__":
    main()
