"""Regenerate the published detectors shipped inside the package (development only).

    python scripts/convert_published.py --release /path/to/published-weights [NAME ...]

For each shipped registry entry (configs/published/NAME.yaml) the publisher's files, found under
--release in mesonet/ or lrnet/<dataset>/ and checked against the SHA-256 the entry lists, are
converted (models/mesonet.py, models/published.py) and written to the entry's `shipped.path` as
safetensors; the entry's `shipped.sha256` is updated; the licence and notice files are copied beside
the weights. Needs h5py for the MesoNet files (the `published-dev` extra).
"""

import argparse
import re
import shutil
from pathlib import Path

from safetensors.torch import save_file

from faketrace.models import published


def release_folder(root: Path, entry: dict) -> Path:
    if entry["family"] == "mesonet":
        return root / "mesonet"
    return root / "lrnet" / entry["name"].split("_", 1)[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--release", required=True, type=Path, help="folder holding mesonet/ and lrnet/ as released")
    ap.add_argument("names", nargs="*", help="registry names (default: every shipped entry)")
    args = ap.parse_args()
    for name in args.names or published.shipped_names():
        entry = published.load_entry(name)
        src = release_folder(args.release, entry)
        state = published.convert_entry(name, src)
        out = published.shipped_path(entry)
        out.parent.mkdir(parents=True, exist_ok=True)
        meta = {"name": name, "release": entry["release"]["url"], "commit": entry["release"]["commit"],
                "licence": entry["licence"]["spdx"],
                "source_sha256": ",".join(f["sha256"] for f in entry["release"]["files"])}
        save_file(state, str(out), metadata=meta)
        for lic in entry["licence"]["files"]:
            shutil.copyfile(src / lic if (src / lic).is_file() else src.parent / lic, out.parent / lic)
        digest = published.sha256_file(out)
        yaml_path = published.registry_dir() / f"{name}.yaml"
        text = re.sub(r"(shipped:\n  path: .*\n  sha256:) \S+", rf"\1 {digest}", yaml_path.read_text())
        yaml_path.write_text(text)
        print(f"{name}: {out} ({len(state)} tensors, sha256 {digest})")


if __name__ == "__main__":
    main()
