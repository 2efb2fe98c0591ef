"""Face preprocessing: `python scripts/preprocess.py [data=NAME]` (configs/preprocess.yaml).

Reads the data set's index, writes face crops, the manifest and its videos table under
data.faces_dir; a rerun resumes. `python scripts/preprocess.py merge` joins shard manifests.
"""

import sys

import hydra
from omegaconf import DictConfig

from faketrace.engine.distributed import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="../configs", config_name="preprocess")
def main(cfg: DictConfig) -> None:
    from faketrace.datasets.preprocess import preprocess_from_config

    print(preprocess_from_config(cfg)["summary"])


if __name__ == "__main__":
    # `merge` as a sub-command reads better than the override it stands for.
    if len(sys.argv) > 1 and sys.argv[1] == "merge":
        sys.argv[1] = "step=merge"
    main()
