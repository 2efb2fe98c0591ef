"""Regenerate tests/data/lrnet_reference.json with the LRNet repository's own code (development only).

    python tests/data/make_lrnet_reference.py /path/to/LRNet WEIGHTS_ROOT tests/data/lrnet_reference.json

LRNet: github.com/frederickszk/LRNet @ 9a172a0ccebea85556ca2b385645342806e24bc8 (MIT); WEIGHTS_ROOT holds
ffpp/g{1,2}.pth and deeperforensics/g{1,2}.pth (PROVENANCE.md). The publisher's model class and its
windowing function (demo/utils/model.py, demo/classify.py) are imported from that checkout, never copied
here. Inputs are landmark sequences generated from a seed by `synthetic_sequences` (tests/test_published.py
generates the same ones), written to text files the way the publisher's loader reads them. With
`--demo`, the publisher's own demo landmark files are scored too (the numbers go to docs/zoo.md; the
files themselves are never committed).
"""

import hashlib
import json
import os
import sys
import tempfile

import numpy as np
import torch


def synthetic_sequences(seed: int = 18) -> dict[str, np.ndarray]:
    """Landmark feature sequences (frames, 136) in [-1, 1]: a random face-like point set with a smooth
    random walk per point, rounded to 5 decimals (the precision of the publisher's landmark files)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, frames, step in (("steady_95", 95, 0.002), ("jittery_95", 95, 0.02), ("short_60", 60, 0.01)):
        base = rng.uniform(-0.8, 0.8, (68, 2))
        walk = np.cumsum(rng.normal(0, step, (frames, 68, 2)), axis=0)
        out[name] = np.round(np.clip(base + walk, -1, 1).reshape(frames, 136), 5)
    return out


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, np.float64).tobytes()).hexdigest()


def main() -> None:
    repo, weights, out_path = (os.path.abspath(a) for a in sys.argv[1:4])
    demo = "--demo" in sys.argv
    sys.path.insert(0, os.path.join(repo, "demo"))
    os.chdir(os.path.join(repo, "demo"))
    import yaml
    from classify import get_data_for_test  # the publisher's windowing
    from utils.model import LRNet  # the publisher's model

    args_model = yaml.safe_load(open("configs/args_model.yaml"))
    block = yaml.safe_load(open("configs/args_inference.yaml"))["BLOCK_SIZE"]
    seqs = synthetic_sequences()
    result = {"how": __doc__.strip().splitlines()[0], "lrnet_commit": "9a172a0ccebea85556ca2b385645342806e24bc8",
              "block": block, "inputs": {k: {"shape": list(v.shape), "sha256_float64": digest(v)} for k, v in seqs.items()},
              "models": {}}
    sources = {"synthetic": seqs}
    if demo:
        sources["demo"] = {f[:-4]: np.loadtxt(os.path.join("landmarks", f)) for f in sorted(os.listdir("landmarks"))}
    for model_name in ("ffpp", "deeperforensics"):
        g1, g2 = LRNet(**args_model), LRNet(**args_model)
        g1.load_state_dict(torch.load(os.path.join(weights, model_name, "g1.pth"), map_location="cpu"))
        g2.load_state_dict(torch.load(os.path.join(weights, model_name, "g2.pth"), map_location="cpu"))
        g1.eval(), g2.eval()
        per_model = {}
        for source, items in sources.items():
            for name, arr in items.items():
                with tempfile.TemporaryDirectory() as tmp:
                    np.savetxt(os.path.join(tmp, name + ".txt"), arr, fmt="%1.5f")
                    x, x_diff, _, _, _, _ = get_data_for_test(tmp, 1, block)
                with torch.no_grad():
                    p1 = g1(torch.from_numpy(x).float()).numpy()[:, 1]
                    p2 = g2(torch.from_numpy(x_diff).float()).numpy()[:, 1]
                mix = (p1 + p2) / 2
                per_model[f"{source}/{name}"] = {"n_frames": int(arr.shape[0]), "g1_fake": p1.tolist(),
                                                 "g2_fake": p2.tolist(), "window_fake": mix.tolist(),
                                                 "video_vote": float(np.mean(mix >= 0.5))}
        result["models"][model_name] = per_model
    with open(out_path, "w") as fh:
        json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
