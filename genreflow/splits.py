"""Stratified, reproducible, leakage-safe train/validation split.

Files with identical bytes form one group that never straddles the split: datasets such as
GTZAN hold exact repeats, and a repeat on both sides inflates validation accuracy.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections import defaultdict
from typing import Any

import numpy as np

from .config import SplitConfig


def _genre_seed(seed: int, genre: str) -> int:
    """A per-genre seed that does not depend on which other genres exist."""
    digest = hashlib.sha256(f"{seed}:{genre}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def make_splits(files: list[dict[str, Any]], config: SplitConfig) -> dict[str, Any]:
    """Assign every file to train or val.

    Per genre, whole duplicate groups are drawn in a seeded order until the validation count
    reaches round(n * val_fraction) (at least 1, leaving at least 1 in train). A group whose
    copies sit in several genre folders is assigned with the genre of its first relpath.
    Genres with fewer than 2 files stay in train, with a warning.
    """
    groups: dict[str, list[str]] = defaultdict(list)
    genre_of: dict[str, str] = {}
    for record in sorted(files, key=lambda r: r["relpath"]):
        groups[record["content_hash"]].append(record["relpath"])
        genre_of[record["relpath"]] = record["genre"]
    by_genre: dict[str, list[list[str]]] = defaultdict(list)
    for members in groups.values():
        by_genre[genre_of[members[0]]].append(members)

    val: list[str] = []
    for genre in sorted(by_genre):
        genre_groups = sorted(by_genre[genre])
        n_files = sum(len(g) for g in genre_groups)
        if n_files < 2:
            warnings.warn(f"Genre {genre!r} has {n_files} valid file(s): kept in train, none in validation.",
                          stacklevel=2)
            continue
        target = min(max(1, int(round(n_files * config.val_fraction))), n_files - 1)
        order = np.random.default_rng(_genre_seed(config.seed, genre)).permutation(len(genre_groups))
        taken = 0
        for i in order:
            size = len(genre_groups[i])
            if taken + size <= target:
                val.extend(genre_groups[i])
                taken += size
            if taken == target:
                break
    val_set = set(val)
    return {
        "seed": config.seed,
        "val_fraction": config.val_fraction,
        "train": sorted(r["relpath"] for r in files if r["relpath"] not in val_set),
        "val": sorted(val_set),
    }


def splits_json(splits: dict[str, Any]) -> str:
    """Canonical JSON so the same index and seed give a byte-identical file."""
    return json.dumps(splits, indent=2, sort_keys=True) + "\n"
