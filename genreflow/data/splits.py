"""Stratified, reproducible, leakage-safe train/validation split.

Files with identical bytes form one group that never straddles the split: datasets such as
GTZAN hold exact repeats, and a repeat on both sides inflates validation accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import hashlib
import json
import warnings
from collections import defaultdict
from typing import Any

import numpy as np

from genreflow.core.sections import check


@dataclass(frozen=True)
class SplitConfig:
    """Stratified train/validation split parameters (the ``[split]`` section)."""

    val_fraction: float = 0.2
    seed: int = 42

    def __post_init__(self) -> None:
        check(0 < self.val_fraction < 1, "split.val_fraction", self.val_fraction, "in the open range (0, 1)")
        check(self.seed >= 0, "split.seed", self.seed, "an integer >= 0")


def _genre_seed(seed: int, genre: str) -> int:
    """A per-genre seed that does not depend on which other genres exist."""
    digest = hashlib.sha256(f"{seed}:{genre}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def make_splits(files: list[dict[str, Any]], config: SplitConfig) -> dict[str, Any]:
    """Assign every file to train or val.

    Files with the same ``content_hash`` form one group that always lands on one side. Genres
    are handled in name order; in each, the groups not yet placed are drawn in a seeded order
    (the seed mixes ``config.seed`` with the genre name, so adding a genre leaves the others'
    draws alone); each joins val if it still fits under round(n * val_fraction), kept in
    [1, n - 1], and then one larger group may join if that gets closer to the target. So a
    genre's val count is within one file of the target unless its copies come in big groups
    (then a warning says so). A group with copies in several genres is placed by the first of
    them and counts for every genre it holds files of. A genre with fewer than 2 valid files
    stays in train, with a warning.
    """
    group_of: dict[str, str] = {}
    members: dict[str, list[str]] = defaultdict(list)
    by_genre: dict[str, list[str]] = defaultdict(list)
    for record in sorted(files, key=lambda r: r["relpath"]):
        group_of[record["relpath"]] = record["content_hash"]
        members[record["content_hash"]].append(record["relpath"])
        by_genre[record["genre"]].append(record["relpath"])

    in_val: dict[str, bool] = {}  # content_hash -> placed in val?
    for genre in sorted(by_genre):
        relpaths = by_genre[genre]
        if len(relpaths) < 2:
            warnings.warn(f"Genre {genre!r} has {len(relpaths)} valid file(s): kept in train, none in validation.",
                          stacklevel=2)
        _place_genre(genre, relpaths, group_of, in_val, config)
    val = sorted(rel for key, rels in members.items() if in_val.get(key) for rel in rels)
    val_set = set(val)
    return {
        "seed": config.seed,
        "val_fraction": config.val_fraction,
        "train": sorted(r["relpath"] for r in files if r["relpath"] not in val_set),
        "val": val,
    }


def _place_genre(genre: str, relpaths: list[str], group_of: dict[str, str], in_val: dict[str, bool],
                 config: SplitConfig) -> None:
    """Decide train/val for the groups of one genre that no earlier genre has placed."""
    sizes: dict[str, int] = defaultdict(int)  # content_hash -> files of this genre in the group
    for rel in relpaths:
        sizes[group_of[rel]] += 1
    free = sorted(key for key in sizes if key not in in_val)
    n_files = len(relpaths)
    if n_files < 2:
        in_val.update((key, False) for key in free)
        return
    target = min(max(1, int(round(n_files * config.val_fraction))), n_files - 1)
    taken = sum(size for key, size in sizes.items() if in_val.get(key))
    order = [free[int(i)] for i in np.random.default_rng(_genre_seed(config.seed, genre)).permutation(len(free))]
    for key in order:  # whole groups that fit under the target, in seeded order
        in_val[key] = taken + sizes[key] <= target
        taken += sizes[key] if in_val[key] else 0
    # groups too big to fit: one may still bring the count closer without emptying train
    left = [key for key in order if not in_val[key]]
    if taken < target and left:
        key = min(left, key=lambda k: sizes[k])  # min() keeps the seeded order among equals
        if abs(taken + sizes[key] - target) < target - taken and taken + sizes[key] <= n_files - 1:
            in_val[key] = True
            taken += sizes[key]
    if abs(taken - target) > 1:
        warnings.warn(f"Genre {genre!r}: {taken} of {n_files} files in validation instead of {target}, "
                      "because its files come in large groups of identical copies.", stacklevel=3)


def read_splits(data_dir: str) -> dict[str, Any]:
    """splits.json, checked: ``train``/``val`` lists of relpaths and the ``seed`` that drew them.

    A damaged or incomplete file is one DataError naming it and `genreflow index`, which
    rewrites it (the split is reproducible from the index and the seed).
    """
    from genreflow.core.jsonfiles import list_of_strings, read_json
    from genreflow.core.layout import Layout

    def check(doc: dict[str, Any]) -> str | None:
        if not isinstance(doc["seed"], int) or isinstance(doc["seed"], bool):
            return "'seed' is not an integer"
        return list_of_strings(doc, "train", "val")

    return read_json(Layout.of(data_dir).splits_json, "splits", f"genreflow index --data-dir {data_dir}",
                     ("train", "val", "seed"), check=check)


def splits_json(splits: dict[str, Any]) -> str:
    """Canonical JSON so the same index and seed give a byte-identical file."""
    return json.dumps(splits, indent=2, sort_keys=True) + "\n"
