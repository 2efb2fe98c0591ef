"""Import a published detector: `python scripts/import_weights.py published=NAME file=PATH [file2=PATH]`.

The registry is configs/published/ (docs/zoo.md lists it); the work is in
faketrace.engine.import_weights. A file whose hash, format or keys do not match the entry is
refused with a message saying what was expected and which formats are accepted.
"""

import sys

import hydra
from omegaconf import DictConfig

from faketrace.engine.distributed import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="../configs", config_name="import_weights")
def main(cfg: DictConfig) -> dict:
    from faketrace.engine.import_weights import import_published
    from faketrace.models.converters.common import ImportRefused

    # Registry files put themselves at published.NAME (`# @package`), so that scan can select several.
    (name, entry), = cfg.published.items()
    roles = [f["role"] for f in entry.release.files]
    try:
        if cfg.file2 is not None and len(roles) < 2:
            raise ImportRefused(f"{name} takes one file ({entry.release.files[0].filename}); file2 is not used")
        given = dict(zip(roles, [cfg.file, cfg.file2][:len(roles)], strict=True))
        summary = import_published(name, given, cfg.out)
    except ImportRefused as exc:
        print(f"import_weights: {exc}", file=sys.stderr)
        sys.exit(2)
    for f in summary["files"]:
        check = "matches the published SHA-256" if f["hash_checked"] else "publisher gives no hash; keys and shapes checked"
        print(f"{f['role']}: {f['given_name']} sha256 {f['sha256']} ({check})")
    for note in summary["notes"]:
        print(f"  {note}")
    print(f"{name}: wrote {cfg.out} (licence: {summary['licence']['name']}; fit_for_casework: false)")
    return summary


if __name__ == "__main__":
    main()
