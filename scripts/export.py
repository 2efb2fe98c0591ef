"""Export a checkpoint: `python scripts/export.py ckpt_path=... [out_dir=...] [evaluation=.../metrics.json]`.

Writes a verified export folder: model.onnx (checked against PyTorch on real crops at batch
sizes 1 and 8), face_detector.onnx, weights.safetensors (timm round trip checked), optional fp16
and int8 models, a Triton repository, model_card.json and MODEL_CARD.md (see engine/export.py).
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
    print(f"export: {cfg.out_dir} (ONNX max |logit diff| {check['max_abs_logit_diff']:.2e} on {check['n_images']} "
          f"real {check['split']} {'tiles' if card.get('level') == 'image' else 'crops'}, batch sizes {', '.join(check['batch_sizes'])})")
    if card["weights"].get("round_trip"):
        print(f"weights.safetensors: timm round trip {card['weights']['round_trip']['max_abs_logit_diff']:.2e}")
    if card["quantization"]:
        q = card["quantization"]
        auc = ", ".join(f"{k} AUC {v['fp32']:.4f} -> {v['int8']:.4f}" for k, v in q["validation"]["auc"].items())
        print(f"int8: {auc}; " + ("written" if q["written"] else f"REFUSED ({q['refused_reason']})"))
    if card["fp16"]:
        v = card["fp16"]["verification"]
        print("fp16: " + (f"max |logit diff| {v['max_abs_logit_diff']:.2e}" if v["checked"] else f"NOT CHECKED: {v['reason']}"))
    if card["warning"]:
        print(card["warning"])


if __name__ == "__main__":
    main()
