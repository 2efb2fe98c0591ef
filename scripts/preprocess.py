"""Face preprocessing: `python scripts/preprocess.py [data=NAME]` (configs/preprocess.yaml).

Reads the data set's index, writes face crops and the manifest under data.faces_dir.
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from faketrace.engine.distributed import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="../configs", config_name="preprocess")
def main(cfg: DictConfig) -> None:
    from faketrace.datasets.preprocess import PreprocessSpec, preprocess_index
    from faketrace.datasets.schema import read_index

    index, _ = read_index(cfg.data.index_path)
    if cfg.split:
        index = index[index["split"] == cfg.split]
    spec = PreprocessSpec.from_dict(OmegaConf.to_container(cfg.face, resolve=True))
    manifest = preprocess_index(index, cfg.data.root, cfg.data.faces_dir, spec, cfg.data.manifest_path, cfg.device)
    counts = manifest.groupby("status").size().to_dict()
    print(f"manifest: {cfg.data.manifest_path} ({len(manifest)} frame rows; by status {counts})")


if __name__ == "__main__":
    main()
