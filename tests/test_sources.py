"""Public data set adapters on miniature replicas of each layout.

Every replica uses the real file names and metadata formats (FF++ pair lists, Celeb-DF's test
list with its reversed labels, DFDC metadata.json and labels.csv, DFDC Preview dataset.json,
DeeperForensics split lists, ...) with a few bytes per media file. Derived splits are seeded
hashes, so their exact counts below are regression values: a change means the split moved.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from faketrace.datasets.schema import SPLITS, read_index, validate_index
from faketrace.datasets.sources import (
    ADAPTERS,
    celebdf,
    deeperforensics,
    dfd,
    dfdc,
    dfdc_preview,
    ffpp,
    folder,
    genimage,
    index_from_config,
    summarize_index,
    uadfv,
    wilddeepfake,
)
from faketrace.datasets.sources.common import DatasetLayoutError, identities_of, split_by_identity

REPO = Path(__file__).resolve().parents[1]
FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
FFPP_PAIRS = {"train": [["000", "001"], ["002", "003"], ["004", "005"]], "val": [["006", "007"]],
              "test": [["008", "009"]]}


def touch(path: Path, content: bytes = b"\x00\x00\x00\x18ftypmp42") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def counts(index: pd.DataFrame) -> dict[tuple[str, int], int]:
    return {k: int(v) for k, v in index.groupby(["split", "label"]).size().items()}


def assert_disjoint(index: pd.DataFrame, *pairs: tuple[str, str]) -> None:
    for a, b in pairs:
        shared = identities_of(index[index["split"] == a]) & identities_of(index[index["split"] == b])
        assert not shared, f"{a} and {b} share identities {sorted(shared)[:5]}"


def assert_common(index: pd.DataFrame, meta: dict) -> None:
    validate_index(index)
    assert set(index["split"]) <= set(SPLITS)
    assert (index.loc[index["label"] == 0, "method"] == "real").all()
    assert not index["path"].str.contains("\\\\", regex=False).any()
    assert_disjoint(index, ("val", "test"))
    val, test = set(index.loc[index["split"] == "val", "id"]), set(index.loc[index["split"] == "test", "id"])
    assert val and test and not (val & test), "validation must exist and never be the test split"
    assert meta["identity"] and set(meta["split_source"]) == set(SPLITS)


# ----------------------------------------------------------------------------- replicas


def make_ffpp(root: Path, compression: str = "c23", split_lists: bool = True, actors: bool = True) -> Path:
    numbers = [n for pairs in FFPP_PAIRS.values() for pair in pairs for n in pair]
    for n in numbers:
        touch(root / f"original_sequences/youtube/{compression}/videos/{n}.mp4")
    for method in (*FFPP_METHODS, "FaceShifter"):
        for pairs in FFPP_PAIRS.values():
            for a, b in pairs:
                touch(root / f"manipulated_sequences/{method}/{compression}/videos/{a}_{b}.mp4")
                touch(root / f"manipulated_sequences/{method}/{compression}/videos/{b}_{a}.mp4")
    touch(root / "manipulated_sequences/Deepfakes/masks/videos/000_001.mp4")
    if split_lists:
        for split, pairs in FFPP_PAIRS.items():
            (root / f"{split}.json").write_text(json.dumps(pairs))
    if actors:
        for actor in ("01", "02", "03", "04", "05", "06"):
            for scene in ("exit_phone_room", "kitchen_pan"):
                touch(root / f"original_sequences/actors/{compression}/videos/{actor}__{scene}.mp4")
            for other in ("01", "02", "03", "04", "05", "06"):
                if other != actor:
                    touch(root / f"manipulated_sequences/DeepFakeDetection/{compression}/videos/"
                                 f"{actor}_{other}__exit_phone_room__ABCD{actor}{other}.mp4")
    return root


def make_celebdf(root: Path, youtube: bool = True) -> Path:
    for i in range(6):
        for clip in ("0000", "0001"):
            touch(root / f"Celeb-real/id{i}_{clip}.mp4")
        touch(root / f"Celeb-synthesis/id{i}_id{(i + 1) % 6}_0000.mp4")
    if youtube:
        for n in range(4):
            touch(root / f"YouTube-real/{n:05d}.mp4")
    # The official list's first column is 1 for real and 0 for fake.
    lines = ["1 Celeb-real/id0_0000.mp4", "0 Celeb-synthesis/id0_id1_0000.mp4"]
    if youtube:
        lines.insert(0, "1 YouTube-real/00000.mp4")
    (root / "List_of_testing_videos.txt").write_text("\n".join(lines) + "\n")
    return root


def make_dfdc(root: Path) -> Path:
    part0 = {f"o{i}.mp4": {"label": "REAL", "split": "train", "original": None} for i in range(1, 5)}
    part0.update({"f1a.mp4": {"label": "FAKE", "split": "train", "original": "o1.mp4"},
                  "f1b.mp4": {"label": "FAKE", "split": "train", "original": "o1.mp4"},
                  "f2a.mp4": {"label": "FAKE", "split": "train", "original": "o2.mp4"},
                  "f3a.mp4": {"label": "FAKE", "split": "train", "original": "o3.mp4"},
                  "f4a.mp4": {"label": "FAKE", "split": "train", "original": "o4.mp4"}})
    part1 = {"o5.mp4": {"label": "REAL", "split": "train", "original": None},
             "f5a.mp4": {"label": "FAKE", "split": "train", "original": "o5.mp4"},
             "f6a.mp4": {"label": "FAKE", "split": "train", "original": "o6.mp4"},  # o6 is in a part not downloaded
             "gone.mp4": {"label": "FAKE", "split": "train", "original": "o5.mp4"}}  # listed, not on disk
    for part, metadata in (("dfdc_train_part_0", part0), ("dfdc_train_part_1", part1)):
        for name in metadata:
            if name != "gone.mp4":
                touch(root / part / name)
        (root / part / "metadata.json").write_text(json.dumps(metadata))
    touch(root / "test/videos/t1.mp4")
    touch(root / "test/videos/t2.mp4")
    (root / "test/labels.csv").write_text("filename,label\nt1.mp4,1\nt2.mp4,0\n")
    return root


def make_dfdc_preview(root: Path) -> Path:
    records = {}
    for person, split in (("100", "train"), ("101", "train"), ("102", "train"), ("103", "train"),
                          ("104", "train"), ("200", "test")):
        records[f"original_videos/{person}/{person}_A_001.mp4"] = {"label": "real", "set": split}
    records["method_A/100/100_A/101_100_A_001.mp4"] = {"label": "fake", "set": "train", "target_id": "100",
                                                       "source_id": "101"}
    records["method_B/102/102_B/103_102_B_001.mp4"] = {"label": "fake", "set": "train", "target_id": "102",
                                                       "source_id": "103"}
    records["method_A/200/200_A/201_200_A_001.mp4"] = {"label": "fake", "set": "test", "target_id": "200",
                                                       "source_id": "201"}
    for key in records:
        touch(root / key)
    records["method_B/104/104_B/100_104_B_002.mp4"] = {"label": "fake", "set": "train"}  # not downloaded
    (root / "dataset.json").write_text(json.dumps(records))
    return root


def make_deeperforensics(root: Path, lists: bool = True) -> Path:
    fakes = {"000_M001.mp4": "train", "001_M002.mp4": "train", "002_W001.mp4": "train", "003_W002.mp4": "val",
             "004_W003.mp4": "test"}
    for actor in ("M001", "M002", "W001", "W002", "W003"):
        touch(root / f"source_videos/{actor}/BlendShape/camera_front/{actor}_BlendShape_camera_front.mp4")
    touch(root / "source_videos/M001/light_uniform/happy/camera_left/M001_light_uniform_happy_camera_left.mp4")
    for perturbation in ("end_to_end", "end_to_end_level_1"):
        for name in fakes:
            touch(root / "manipulated_videos" / perturbation / name)
    if lists:
        for split in SPLITS:
            touch(root / f"lists/splits/{split}.txt",
                  "".join(f"{n}\n" for n, s in fakes.items() if s == split).encode())
    return root


def make_uadfv(root: Path) -> Path:
    for n in range(6):
        touch(root / f"real/{n:04d}.mp4")
        touch(root / f"fake/{n:04d}_fake.mp4")
    return root


def make_wilddeepfake(root: Path) -> Path:
    layout = {"real_train": {"1": 2, "2": 2, "3": 2}, "fake_train": {"4": 2, "5": 2, "6": 2},
              "real_test": {"7": 2}, "fake_test": {"8": 3}}
    for group, clips in layout.items():
        kind = group.split("_")[0]
        for clip, frames in clips.items():
            for f in range(frames):
                touch(root / group / clip / kind / "0" / f"{f}.png", b"\x89PNG")
    touch(root / "fake_test/9.tar.gz")
    return root


def make_folder_tree(root: Path) -> Path:
    for rel in ("real/a.mp4", "real/b.mp4", "real/sub/c.jpg", "fake/x.mp4", "fake/faceswap/y.mp4",
                "fake/faceswap/z.png", "fake/notes.txt"):
        touch(root / rel)
    return root


def make_genimage(root: Path) -> Path:
    bases = {"ADM": root / "ADM/imagenet_ai_0508_adm", "sdv4": root / "sdv4"}
    for generator, base in bases.items():
        for i in range(3):
            touch(base / f"train/nature/n01_{i}_{generator}.JPEG", b"\xff\xd8")
            touch(base / f"train/ai/{i}_{generator}.png", b"\x89PNG")
        touch(base / f"val/ai/9_{generator}.png", b"\x89PNG")
    touch(bases["ADM"] / "val/nature/n02_9.JPEG", b"\xff\xd8")
    touch(bases["sdv4"] / "val/nature/n02_8.JPEG", b"\xff\xd8")
    touch(bases["sdv4"] / "train/nature/n02_9.JPEG", b"\xff\xd8")  # the same photo in ADM's val
    return root


REPLICAS = {
    "ffpp": make_ffpp, "dfd": make_ffpp, "celebdf": make_celebdf, "dfdc": make_dfdc,
    "dfdc_preview": make_dfdc_preview, "deeperforensics": make_deeperforensics, "uadfv": make_uadfv,
    "wilddeepfake": make_wilddeepfake, "folder": make_folder_tree, "genimage": make_genimage,
}
BUILDERS = {
    "ffpp": ffpp.build_index, "dfd": dfd.build_index, "celebdf": celebdf.build_index, "dfdc": dfdc.build_index,
    "dfdc_preview": dfdc_preview.build_index, "deeperforensics": deeperforensics.build_index,
    "uadfv": uadfv.build_index, "wilddeepfake": wilddeepfake.build_index, "folder": folder.build_index,
    "genimage": genimage.build_index,
}


# ----------------------------------------------------------------------------- FaceForensics++ and DFD


def test_ffpp_official_pair_lists(tmp_path):
    index, meta = ffpp.build_index(make_ffpp(tmp_path / "FaceForensics++"))
    assert_common(index, meta)
    # 5 pairs -> 10 sequences; each pair has 2 fakes per method, 4 methods (FaceShifter not asked for)
    assert counts(index) == {("train", 0): 6, ("train", 1): 24, ("val", 0): 2, ("val", 1): 8,
                             ("test", 0): 2, ("test", 1): 8}
    assert set(index["method"]) == {"real", *FFPP_METHODS}
    assert meta["split_source"] == {"train": "official", "val": "official", "test": "official"}
    fake = index.set_index("id").loc["manipulated_sequences/Deepfakes/c23/videos/008_009"]
    assert (fake["split"], fake["source_identity"], fake["target_identity"]) == ("test", "008", "009")
    assert fake["original_id"] == "original_sequences/youtube/c23/videos/008"
    assert fake["original_id"] in set(index["id"])
    assert set(index.loc[index["id"].str.endswith("/009_008"), "split"]) == {"test"}
    masks = index.dropna(subset=["mask_path"])
    assert masks["mask_path"].tolist() == ["manipulated_sequences/Deepfakes/masks/videos/000_001.mp4"]
    assert (index["compression"] == "c23").all() and (index["media_type"] == "video").all()
    assert_disjoint(index, ("train", "val"), ("train", "test"))


def test_ffpp_without_lists_derives_pair_split_deterministically(tmp_path, caplog):
    root = make_ffpp(tmp_path / "ffpp", split_lists=False)
    index, meta = ffpp.build_index(root)
    again, _ = ffpp.build_index(root)
    pd.testing.assert_frame_equal(index, again)
    assert_common(index, meta)
    assert meta["split_source"]["test"] == "derived"
    assert any("deterministic split" in w for w in meta["warnings"])
    assert "deterministic split" in caplog.text
    # 5 pairs at 360/70/70 proportions: 1 test pair, 1 val pair, 3 train pairs, each pair whole
    assert counts(index) == {("train", 0): 6, ("train", 1): 24, ("val", 0): 2, ("val", 1): 8,
                             ("test", 0): 2, ("test", 1): 8}
    assert_disjoint(index, ("train", "val"), ("train", "test"))


def test_ffpp_partial_download_indexes_what_is_there(tmp_path):
    root = make_ffpp(tmp_path / "ffpp", compression="c40", actors=False)
    for video in (root / "manipulated_sequences/NeuralTextures/c40/videos").iterdir():
        video.unlink()
    (root / "manipulated_sequences/NeuralTextures/c40/videos").rmdir()
    index, meta = ffpp.build_index(root, compression="c40", methods=["Deepfakes", "NeuralTextures", "FaceShifter"])
    assert any("partial download" in w and "NeuralTextures" in w for w in meta["warnings"])
    assert index.groupby("method").size().to_dict() == {"Deepfakes": 10, "FaceShifter": 10, "real": 10}
    with pytest.raises(ValueError, match="data=dfd"):
        ffpp.build_index(root, methods=["DeepFakeDetection"])


def test_dfd_splits_by_actor(tmp_path):
    index, meta = dfd.build_index(make_ffpp(tmp_path / "ffpp"))
    assert_common(index, meta)
    assert_disjoint(index, ("train", "val"), ("train", "test"))
    # 6 actors -> 4/1/1; each actor has 2 real scenes; fakes are kept only within one split:
    # 4*3 ordered pairs inside train, none inside a one-actor split; 30 - 12 = 18 left out.
    assert counts(index) == {("train", 0): 8, ("train", 1): 12, ("val", 0): 2, ("test", 0): 2}
    assert any("18 fakes" in w for w in meta["warnings"])
    fake = index[index["label"] == 1].iloc[0]
    assert fake["method"] == "DeepFakeDetection"
    assert fake["original_id"].startswith("original_sequences/actors/c23/videos/")
    assert fake["original_id"] in set(index["id"])


# ----------------------------------------------------------------------------- Celeb-DF


def test_celebdf_v2_official_test_list_and_label_mapping(tmp_path):
    index, meta = celebdf.build_index(make_celebdf(tmp_path / "Celeb-DF-v2"))
    assert_common(index, meta)
    assert meta["celebdf_version"] == "v2" and "name" in meta["version_rule"]
    assert (index["dataset"] == "celebdf_v2").all()
    test = index[index["split"] == "test"].set_index("path")["label"].to_dict()
    # the list says 1 for these two reals and 0 for the fake: mapped to our 0 real / 1 fake
    assert test == {"YouTube-real/00000.mp4": 0, "Celeb-real/id0_0000.mp4": 0, "Celeb-synthesis/id0_id1_0000.mp4": 1}
    assert meta["split_source"] == {"train": "derived", "val": "derived", "test": "official"}
    # the official list shares id0/id1 with the training videos: reported, not hidden
    overlap = meta["identity_overlap"]["train/test"]
    assert {"id0", "id1"} <= set(overlap["examples"])
    assert any("train/test" in w for w in meta["warnings"])
    assert_disjoint(index, ("train", "val"))
    assert not {"id0", "id1"} & identities_of(index[index["split"] == "val"])
    fake = index.set_index("path").loc["Celeb-synthesis/id4_id5_0000.mp4"]
    assert (fake["source_identity"], fake["target_identity"], fake["original_id"]) == (
        "id4", "id5", "Celeb-real/id4_0000")
    # 12 Celeb-real + 4 YouTube-real + 6 synthesis = 22; 3 in test; the val cut drops 2 fakes
    assert counts(index) == {("train", 0): 12, ("train", 1): 3, ("val", 0): 2, ("test", 0): 2, ("test", 1): 1}


def test_celebdf_version_rule(tmp_path):
    _, meta = celebdf.build_index(make_celebdf(tmp_path / "Celeb-DF", youtube=False))
    assert meta["celebdf_version"] == "v1" and meta["version_rule"] == "no YouTube-real folder"
    index, meta = celebdf.build_index(make_celebdf(tmp_path / "downloads"))
    assert meta["celebdf_version"] == "v2" and meta["version_rule"].startswith("default")
    _, meta = celebdf.build_index(tmp_path / "downloads", version="v1")
    assert meta["celebdf_version"] == "v1"


def test_celebdf_rejects_malformed_test_list(tmp_path):
    root = make_celebdf(tmp_path / "Celeb-DF-v2")
    (root / "List_of_testing_videos.txt").write_text("real Celeb-real/id0_0000.mp4\n")
    with pytest.raises(DatasetLayoutError, match="line 1"):
        celebdf.build_index(root)


# ----------------------------------------------------------------------------- DFDC and DFDC Preview


def test_dfdc_keeps_originals_with_their_fakes(tmp_path):
    index, meta = dfdc.build_index(make_dfdc(tmp_path / "dfdc"))
    assert_common(index, meta)
    assert_disjoint(index, ("train", "val"), ("train", "test"))
    assert any("gone.mp4" in w for w in meta["warnings"])
    assert any("2 of 50 training parts" in w for w in meta["warnings"])
    test = index[index["split"] == "test"].set_index("path")["label"].to_dict()
    assert test == {"test/videos/t1.mp4": 1, "test/videos/t2.mp4": 0}
    by_original = index[index["split"] != "test"].groupby("source_identity")["split"].nunique()
    assert (by_original == 1).all()
    fake = index.set_index("id").loc["dfdc_train_part_0/f1a"]
    assert fake["original_id"] == "dfdc_train_part_0/o1" and fake["source_identity"] == "o1"
    assert index.set_index("id").loc["dfdc_train_part_1/f6a", "original_id"] == "o6.mp4"
    # 5 reals + 7 fakes in the parts (6 groups: o1..o6), 2 test videos
    assert counts(index) == {("train", 0): 4, ("train", 1): 6, ("val", 0): 1, ("val", 1): 1,
                             ("test", 0): 1, ("test", 1): 1}
    assert meta["split_source"] == {"train": "official", "val": "derived", "test": "official"}


def test_dfdc_preview_official_sets(tmp_path):
    index, meta = dfdc_preview.build_index(make_dfdc_preview(tmp_path / "dfdc_preview_set"))
    assert_common(index, meta)
    assert_disjoint(index, ("train", "val"))
    assert any("not on disk" in w for w in meta["warnings"])
    test = index[index["split"] == "test"]
    assert sorted(test["method"]) == ["method_A", "real"]
    assert set(test["source_identity"]) == {"200"}
    fake = index.set_index("path").loc["method_B/102/102_B/103_102_B_001.mp4"]
    assert (fake["label"], fake["source_identity"], fake["target_identity"]) == (1, "102", "103")
    assert counts(index) == {("train", 0): 4, ("train", 1): 2, ("val", 0): 1, ("test", 0): 1, ("test", 1): 1}


# ----------------------------------------------------------------------------- the others


def test_deeperforensics_official_lists(tmp_path):
    index, meta = deeperforensics.build_index(make_deeperforensics(tmp_path / "DeeperForensics-1.0"))
    assert_common(index, meta)
    assert counts(index) == {("train", 0): 4, ("train", 1): 6, ("val", 0): 1, ("val", 1): 2,
                             ("test", 0): 1, ("test", 1): 2}
    assert set(index["method"]) == {"real", "end_to_end", "end_to_end_level_1"}
    fake = index.set_index("path").loc["manipulated_videos/end_to_end/004_W003.mp4"]
    assert (fake["split"], fake["source_identity"], fake["target_identity"]) == ("test", "ffpp:004", "W003")
    assert_disjoint(index, ("train", "val"), ("train", "test"))
    only, _ = deeperforensics.build_index(tmp_path / "DeeperForensics-1.0", perturbations=["end_to_end"])
    assert set(only["method"]) == {"real", "end_to_end"}


def test_deeperforensics_without_lists_splits_by_actor(tmp_path):
    index, meta = deeperforensics.build_index(make_deeperforensics(tmp_path / "df", lists=False))
    assert_common(index, meta)
    assert_disjoint(index, ("train", "val"), ("train", "test"))
    assert meta["split_source"]["test"] == "derived"
    assert len(index) == 16


def test_uadfv(tmp_path):
    index, meta = uadfv.build_index(make_uadfv(tmp_path / "UADFV"))
    assert_common(index, meta)
    assert_disjoint(index, ("train", "val"), ("train", "test"))
    assert counts(index) == {("train", 0): 4, ("train", 1): 4, ("val", 0): 1, ("val", 1): 1,
                             ("test", 0): 1, ("test", 1): 1}
    assert index.set_index("id").loc["fake/0003_fake", "original_id"] == "real/0003"


def test_wilddeepfake_splits_by_clip(tmp_path):
    index, meta = wilddeepfake.build_index(make_wilddeepfake(tmp_path / "WildDeepfake"))
    assert_common(index, meta)
    assert (index["media_type"] == "image").all()
    assert any(".tar.gz" in w for w in meta["warnings"])
    assert "unknown" in meta["identity"]
    assert index.groupby("source_identity")["split"].nunique().max() == 1
    assert counts(index) == {("train", 0): 4, ("train", 1): 6, ("val", 0): 2, ("test", 0): 2, ("test", 1): 3}


def test_folder_tree_and_csv(tmp_path):
    index, meta = folder.build_index(make_folder_tree(tmp_path / "mine"))
    assert_common(index, meta)
    assert len(index) == 6 and sorted(set(index["method"])) == ["faceswap", "fake", "real"]
    assert set(index["media_type"]) == {"video", "image"}
    root = tmp_path / "mine"
    (root / "labels.csv").write_text(
        "path,label,video_id,identity,split\n"
        "real/a.mp4,real,a,p1,train\nfake/x.mp4,1,x,p1,train\nreal/b.mp4,0,b,p2,train\n"
        "fake/faceswap/y.mp4,fake,y,p3,train\nreal/sub/c.jpg,0,c,p4,test\nfake/faceswap/z.png,1,z,p4,test\n"
        "missing.mp4,1,m,p5,train\n")
    index, meta = folder.build_index(root, csv_file="labels.csv", dataset_name="mine")
    assert_common(index, meta)
    assert sorted(index.loc[index["split"] == "test", "id"]) == ["c", "z"] and set(index["dataset"]) == {"mine"}
    assert meta["split_source"]["val"] == "derived" and any("missing.mp4" in w for w in meta["warnings"])
    assert_disjoint(index, ("train", "val"))


def test_genimage_val_is_test_and_validation_is_carved(tmp_path):
    index, meta = genimage.build_index(make_genimage(tmp_path / "GenImage"))
    assert_common(index, meta)
    assert set(index["media_type"]) == {"image"}
    test = index[index["split"] == "test"]
    assert sorted(zip(test["method"], test["label"], strict=True)) == [("ADM", 1), ("real", 0), ("real", 0), ("sdv4", 1)]
    assert meta["identity_overlap"]["train/test"]["examples"] == ["photo:n02_9"]
    assert counts(index) == {("train", 0): 7, ("train", 1): 5, ("val", 1): 1, ("test", 0): 2, ("test", 1): 2}


# ----------------------------------------------------------------------------- shared rules


@pytest.mark.parametrize("name", ADAPTERS)
def test_unknown_tree_names_what_was_expected_and_found(tmp_path, name):
    touch(tmp_path / "holiday_photos" / "beach.txt")
    with pytest.raises(DatasetLayoutError, match=r"(?s)(expected|Expected).*holiday_photos"):
        BUILDERS[name](tmp_path)


def test_split_by_identity_is_seeded_and_keeps_test_identities_out_of_val():
    rows = pd.DataFrame({"id": [f"v{i}" for i in range(40)],
                         "source_identity": [f"p{i % 20}" for i in range(40)], "target_identity": None})
    first, dropped = split_by_identity(rows, {"val": 0.2, "test": 0.2}, seed=1)
    again, _ = split_by_identity(rows, {"val": 0.2, "test": 0.2}, seed=1)
    other, _ = split_by_identity(rows, {"val": 0.2, "test": 0.2}, seed=2)
    assert first.equals(again) and not first.equals(other) and dropped.empty
    assert first.value_counts().to_dict() == {"train": 24, "test": 8, "val": 8}
    kept, _ = split_by_identity(rows, {"val": 0.5}, seed=1, keep_in_train={"p0", "p1"})
    assert set(kept[rows["source_identity"].isin(["p0", "p1"])]) == {"train"}


# ----------------------------------------------------------------------------- Hydra configs and script


@pytest.mark.parametrize("name", ADAPTERS)
def test_every_data_config_composes_and_indexes(tmp_path, name):
    root = REPLICAS[name](tmp_path / "raw")
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="index", overrides=[f"data={name}", f"data.root={root}",
                                                      f"paths.data_dir={tmp_path}"], return_hydra_config=True)
    assert cfg.data.name == name and cfg.task_name == "index"
    index, meta, path = index_from_config(cfg)
    # Derived files go under the project's data directory, keyed by the root; the root is only read.
    assert path == Path(cfg.data.index_path) and path.parent.parent == tmp_path / "derived"
    assert path.parent.name.startswith(root.name + "-") and not (root / path.name).exists()
    stored, stored_meta = read_index(path)
    assert len(stored) == len(index) and stored_meta["adapter"] == name
    assert stored_meta["split_source"] == meta["split_source"]
    assert summarize_index(stored)["items"].sum() == len(index)


def test_index_script_runs(tmp_path):
    root = make_uadfv(tmp_path / "UADFV")
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts/index.py"), "data=uadfv", f"data.root={root}",
         f"paths.log_dir={tmp_path / 'logs'}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "12 items" in result.stdout and "Deepfakes" in result.stdout
    assert not (root / "index.parquet").exists()  # the data set's root is only read
    assert len(list((tmp_path / "data" / "derived").glob("UADFV-*/index.parquet"))) == 1
