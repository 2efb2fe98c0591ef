"""Cross-data-set matrix: `python scripts/cross_eval.py 'checkpoints=[A,B]' 'test_sets=[demo,demo_shifted]'`.

Writes cross_eval.csv, .json, .md and .png (heatmap) in the run directory (configs/cross_eval.yaml).
"""

import hydra
from hydra import compose
from omegaconf import DictConfig, OmegaConf

from faketrace.engine.distributed import register_resolvers

register_resolvers()


def test_set_config(name: str, cfg: DictConfig) -> DictConfig:
    """The `data` node of option `name`, composed with this run's paths, resolved."""
    composed = compose(config_name="cross_eval", overrides=[f"+data={name}", f"paths.data_dir={cfg.paths.data_dir}"])
    data = OmegaConf.create({"paths": {"data_dir": cfg.paths.data_dir}, "data": composed.data})
    OmegaConf.resolve(data)
    return data.data


@hydra.main(version_base="1.3", config_path="../configs", config_name="cross_eval")
def main(cfg: DictConfig) -> None:
    from faketrace.engine.crosseval import cross_evaluate, matrix_markdown

    test_sets = {name: test_set_config(name, cfg) for name in cfg.test_sets}
    boot = OmegaConf.to_container(cfg.bootstrap) if cfg.bootstrap else None
    table = cross_evaluate(list(cfg.checkpoints), test_sets, cfg.paths.output_dir, cfg.split, boot, cfg.aggregation,
                           cfg.device, cfg.batch_size, cfg.num_workers)
    print(matrix_markdown(table, boot))
    print(f"matrix: {cfg.paths.output_dir}/cross_eval.csv (.json, .md, .png)")


if __name__ == "__main__":
    main()
