"""genreflow.data.splits: stratified, reproducible, duplicate-safe train/val splits."""

from __future__ import annotations

import json
import shutil
import warnings
from collections import Counter, defaultdict

import numpy as np
import pytest

from conftest import write_clip, write_genre_tree
from genreflow.data.splits import SplitConfig
from genreflow.stages.index import run_index
from genreflow.data.splits import make_splits, splits_json


def records(counts: dict[str, int], dup_sizes: dict[str, list[int]] | None = None) -> list[dict]:
    """Index-like rows; ``dup_sizes[genre]`` lists group sizes (files sharing one content_hash)."""
    rows = []
    for genre, n in counts.items():
        sizes = (dup_sizes or {}).get(genre) or [1] * n
        assert sum(sizes) == n
        i = 0
        for g, size in enumerate(sizes):
            for _ in range(size):
                rows.append({"relpath": f"{genre}/f{i:04d}.wav", "genre": genre, "content_hash": f"{genre}-{g}"})
                i += 1
    return rows


def side_counts(rows: list[dict], splits: dict) -> dict[str, int]:
    val = set(splits["val"])
    return Counter(r["genre"] for r in rows if r["relpath"] in val)


def assert_no_straddle(rows: list[dict], splits: dict) -> None:
    val = set(splits["val"])
    sides = defaultdict(set)
    for r in rows:
        sides[r["content_hash"]].add(r["relpath"] in val)
    assert all(len(s) == 1 for s in sides.values())


@pytest.mark.parametrize("val_fraction", [0.1, 0.2, 0.25, 0.5, 0.75])
def test_each_genre_val_count_is_within_one_of_the_target(val_fraction):
    counts = {"a": 2, "b": 3, "c": 7, "d": 10, "e": 33, "f": 101}
    rows = records(counts)
    splits = make_splits(rows, SplitConfig(val_fraction=val_fraction, seed=3))
    n_val = side_counts(rows, splits)
    for genre, n in counts.items():
        assert abs(n_val[genre] - round(n * val_fraction)) <= 1, (genre, n, n_val[genre])
        assert 1 <= n_val[genre] <= n - 1
    assert sorted(splits["train"] + splits["val"]) == sorted(r["relpath"] for r in rows)
    assert not set(splits["train"]) & set(splits["val"])


def test_duplicate_groups_never_straddle_and_stratification_holds():
    rng = np.random.default_rng(0)
    for trial in range(40):
        counts, dup_sizes = {}, {}
        for genre in ("x", "y", "z"):
            sizes = list(rng.integers(1, 4, size=rng.integers(3, 25)))
            counts[genre], dup_sizes[genre] = int(sum(sizes)), [int(s) for s in sizes]
        rows = records(counts, dup_sizes)
        splits = make_splits(rows, SplitConfig(val_fraction=0.2, seed=trial))
        assert_no_straddle(rows, splits)
        n_val = side_counts(rows, splits)
        for genre, n in counts.items():
            assert abs(n_val[genre] - round(n * 0.2)) <= 1, (trial, genre, dup_sizes[genre], n_val[genre])


def test_a_genre_made_of_triplicates_still_gets_within_one():
    rows = records({"tri": 12}, {"tri": [3, 3, 3, 3]})  # target round(2.4) = 2; no group fits under it
    for seed in range(10):
        splits = make_splits(rows, SplitConfig(seed=seed))
        assert side_counts(rows, splits)["tri"] == 3
        assert_no_straddle(rows, splits)


def test_copies_across_genre_folders_land_on_one_side():
    rows = records({"a": 12, "b": 12})
    for i in range(6):  # b's first six files are byte-identical to a's
        rows[12 + i]["content_hash"] = rows[i]["content_hash"]
    for seed in range(25):
        splits = make_splits(rows, SplitConfig(val_fraction=0.3, seed=seed))
        assert_no_straddle(rows, splits)
        n_val = side_counts(rows, splits)
        assert abs(n_val["a"] - round(12 * 0.3)) <= 1


def test_same_input_and_seed_give_identical_json_and_another_seed_another_split():
    rows = records({"a": 30, "b": 30, "c": 30})
    first = splits_json(make_splits(rows, SplitConfig(seed=7)))
    assert splits_json(make_splits(list(reversed(rows)), SplitConfig(seed=7))) == first  # input order is irrelevant
    other = make_splits(rows, SplitConfig(seed=8))
    assert splits_json(other) != first
    assert json.loads(first)["seed"] == 7 and json.loads(first)["val_fraction"] == 0.2
    assert set(json.loads(first)) == {"train", "val", "seed", "val_fraction"}


def test_adding_a_genre_leaves_the_other_genres_split_alone():
    rows = records({"a": 20, "b": 20})
    before = make_splits(rows, SplitConfig(seed=1))
    after = make_splits(rows + records({"c": 20}), SplitConfig(seed=1))
    assert [p for p in after["val"] if not p.startswith("c/")] == before["val"]


def test_genre_with_one_file_stays_in_train_with_a_warning():
    rows = records({"solo": 1, "many": 10})
    with pytest.warns(UserWarning, match=r"Genre 'solo' has 1 valid file\(s\): kept in train"):
        splits = make_splits(rows, SplitConfig())
    assert "solo/f0000.wav" in splits["train"]
    assert side_counts(rows, splits)["many"] == 2


def test_a_genre_of_copies_warns_when_the_target_cannot_be_met():
    rows = records({"copies": 10}, {"copies": [5, 5]})
    with pytest.warns(UserWarning, match=r"Genre 'copies': 0 of 10 files in validation instead of 2"):
        splits = make_splits(rows, SplitConfig())
    assert splits["val"] == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_splits(records({"fine": 10}, {"fine": [2, 2, 2, 1, 1, 1, 1]}), SplitConfig())


def test_real_tree_with_repeats_is_split_reproducibly(tmp_path):
    data = tmp_path / "data"
    write_genre_tree(data, {"rock": 8, "jazz": 8}, seconds=0.2)
    raw = data / "raw"
    for i in range(3):  # repeats under other names, inside the genre and across genres
        shutil.copy(raw / "rock" / "clip_000.wav", raw / "rock" / f"again_{i}.wav")
    (raw / "jazz" / "misfiled").mkdir()
    shutil.copy(raw / "rock" / "clip_001.flac", raw / "jazz" / "misfiled" / "copy.flac")
    write_clip(raw / "solo" / "only.ogg", seconds=0.2, seed=99)

    result = run_index(str(data), workers=2, split_config=SplitConfig(seed=5))
    first = (data / "processed" / "splits.json").read_bytes()
    assert [w for w in result["warnings"] if "'solo' has 1 valid file" in w]
    rows = result["index"]["files"]
    assert_no_straddle(rows, result["splits"])
    assert "solo/only.ogg" in result["splits"]["train"]
    copies = {"rock/clip_000.wav", "rock/again_0.wav", "rock/again_1.wav", "rock/again_2.wav"}
    assert copies <= set(result["splits"]["val"]) or copies <= set(result["splits"]["train"])
    cross = {"rock/clip_001.flac", "jazz/misfiled/copy.flac"}  # a label conflict: in neither split
    assert not cross & (set(result["splits"]["val"]) | set(result["splits"]["train"]))
    reasons = {r["relpath"]: r["reason"] for r in result["index"]["invalid"]}
    assert reasons["jazz/misfiled/copy.flac"].startswith("same audio as rock/clip_001.flac in genre rock")

    run_index(str(data), workers=1, split_config=SplitConfig(seed=5))
    assert (data / "processed" / "splits.json").read_bytes() == first
    moved = tmp_path / "elsewhere"
    shutil.copytree(raw, moved / "raw")
    run_index(str(moved), workers=2, split_config=SplitConfig(seed=5))
    assert (moved / "processed" / "splits.json").read_bytes() == first
    run_index(str(data), workers=1, split_config=SplitConfig(seed=6))
    assert (data / "processed" / "splits.json").read_bytes() != first
