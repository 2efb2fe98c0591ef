"""Public data set adapters: one module per published layout, each turning a downloaded tree into
the index table of :mod:`faketrace.datasets.schema`.

Every adapter module exposes ``build_index(root, **options) -> (DataFrame, metadata)``; its
module docstring says what layout it reads, which splits are official and which are derived,
and what "identity" means for that data set. :func:`index_dataset` is the one code path that
``scripts/index.py`` (and the tests) use to run an adapter and write the index.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from faketrace.datasets.schema import SPLITS, write_index

log = logging.getLogger(__name__)

ADAPTERS = ("ffpp", "dfd", "celebdf", "dfdc", "dfdc_preview", "deeperforensics", "uadfv",
            "wilddeepfake", "folder", "genimage")


def summarize_index(index: pd.DataFrame) -> pd.DataFrame:
    """Item counts per split, label and method (the table scripts/index.py prints)."""
    table = index.groupby(["split", "label", "method"]).size().rename("items").reset_index()
    order = table["split"].map({s: i for i, s in enumerate(SPLITS)})
    return (table.assign(_order=order).sort_values(["_order", "label", "method"], kind="stable")
            .drop(columns="_order").reset_index(drop=True))


def index_dataset(build_index: Callable[..., tuple[pd.DataFrame, dict]], root: str | Path,
                  index_path: str | Path) -> tuple[pd.DataFrame, dict, Path]:
    """Run an adapter on `root` and write its index (with the adapter's metadata) to `index_path`."""
    index, meta = build_index(root)
    written = write_index(index, index_path, meta)
    log.info("wrote %d rows to %s", len(index), written)
    return index, meta, Path(written)


def index_from_config(cfg) -> tuple[pd.DataFrame, dict, Path]:
    """The body of scripts/index.py: instantiate ``cfg.data.adapter`` and index ``cfg.data.root``."""
    from hydra.utils import instantiate

    build_index = instantiate(cfg.data.adapter, _convert_="all")
    return index_dataset(build_index, cfg.data.root, cfg.data.index_path)
