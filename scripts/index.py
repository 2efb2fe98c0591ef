"""Index a downloaded public data set: ``python scripts/index.py data=<name> data.root=<path>``.

Writes ``data.index_path`` (Parquet, schema in faketrace/datasets/schema.py, with the adapter's
metadata: split sources, identity overlap, warnings) and prints item counts per split, label and
method. The options of each data set are in configs/data/<name>.yaml.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from faketrace.datasets.sources import index_from_config, summarize_index
from faketrace.engine.distributed import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="../configs", config_name="index")
def main(cfg: DictConfig) -> None:
    index, meta, path = index_from_config(cfg)
    print(summarize_index(index).to_string(index=False))
    print(f"{len(index)} items, split source {meta['split_source']}, "
          f"{len(meta['warnings'])} warnings -> {path}")


if __name__ == "__main__":
    main()
