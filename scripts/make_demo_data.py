"""Generate the embedded demo media and its index: `python scripts/make_demo_data.py`.

Settings (difficulty, sizes, seed) live in configs/data/demo.yaml; `data=demo_shifted` makes the
second domain (configs/data/demo_shifted.yaml) for cross-data-set evaluation; `data=demo_images`
the image-level demo (procedural scenes with pasted and generated fakes, configs/data/demo_images.yaml).
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from faketrace.engine.distributed import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="../configs", config_name="demo_data")
def main(cfg: DictConfig) -> None:
    from hydra.utils import instantiate

    from faketrace.datasets.demo import generate_demo

    # A data option names its generator under `generate` (demo_images); the face demo is the default.
    generate = instantiate(cfg.data.generate) if cfg.data.get("generate") else generate_demo
    gen = OmegaConf.to_container(cfg.data.generator, resolve=True)
    index = generate(cfg.data.root, cfg.data.index_path, int(cfg.data.seed), gen, dataset=cfg.data.name)
    print(f"demo media: {len(index)} items under {cfg.data.root}; index {cfg.data.index_path}")


if __name__ == "__main__":
    main()
