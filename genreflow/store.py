"""The content-keyed Parquet feature store.

Layout: ``<data>/processed/store/<kind>/<fingerprint>/part-<keys-hash>.parquet`` plus a
``_params.json``. Rows are keyed by ``content_hash``; arrays are flat float32 Arrow lists with
their shape in two int columns, so plain ``pd.read_parquet(folder)`` works. Readers drop a key
that sits in two shards (two concurrent runs may both write it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from . import __version__
from .errors import DataError
from .fingerprint import fingerprint, is_fingerprint, shard_name
from .fs import Location, atomic_write_bytes, atomic_write_text, exists, list_files, read_text
from .layout import Layout


@dataclass(frozen=True)
class Kind:
    """How one kind of feature is stored: its value column and the two columns of its shape."""

    name: str
    value_column: str
    shape_columns: tuple[str, str]


KINDS = {
    "mfcc": Kind("mfcc", "mfcc", ("n_mfcc", "n_frames")),
    "vggish": Kind("vggish", "embedding", ("n_frames", "embedding_dim")),
}


@dataclass(frozen=True)
class FeatureSet:
    """One fingerprint folder: a kind computed with one exact set of parameters."""

    kind: Kind
    fingerprint: str
    params: dict[str, Any]
    location: Location

    @classmethod
    def create(cls, data_dir: str, kind: str, version: int, params: Mapping[str, Any]) -> "FeatureSet":
        fp = fingerprint(kind, version, params)
        loc = Layout.of(data_dir).store.join(kind, fp)
        return cls(KINDS[kind], fp, {"name": kind, "version": version, "params": dict(params)}, loc)

    def ensure_params_file(self) -> None:
        """Write the human-readable ``_params.json`` once (atomically)."""
        target = self.location.join("_params.json")
        if not exists(target):
            atomic_write_text(target, json.dumps({"fingerprint": self.fingerprint, **self.params},
                                                 indent=2, sort_keys=True) + "\n")

    def shard_paths(self) -> list[str]:
        """Visible shards only: temp files start with '.', so readers never see half a shard."""
        if not exists(self.location):
            return []
        return sorted(i.path for i in list_files(self.location, recursive=False)
                      if i.base_name.startswith("part-") and i.base_name.endswith(".parquet"))


def shard_table(kind: Kind, keys: list[str], arrays: list[np.ndarray], valid: list[int]):
    """Build one shard's Arrow table from 2-D float32 arrays (all shaped per ``kind``)."""
    import pyarrow as pa

    flat = np.concatenate([a.astype(np.float32, copy=False).ravel() for a in arrays]) if arrays else \
        np.zeros(0, np.float32)
    offsets = np.concatenate([[0], np.cumsum([a.size for a in arrays])]).astype(np.int32)
    rows, cols = kind.shape_columns
    return pa.table({
        "content_hash": pa.array(keys, pa.string()),
        kind.value_column: pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.float32())),
        rows: pa.array([a.shape[0] for a in arrays], pa.int32()),
        cols: pa.array([a.shape[1] for a in arrays], pa.int32()),
        "valid_frames": pa.array(valid, pa.int32()),
    })


def write_shard(fset: FeatureSet, table, extra_metadata: Mapping[str, str] | None = None) -> str:
    """Write a shard atomically under a name derived from its keys; returns the shard's name."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    metadata = {
        "genreflow.fingerprint": fset.fingerprint,
        "genreflow.params": json.dumps(fset.params, sort_keys=True),
        "genreflow.versions": json.dumps(_versions(), sort_keys=True),
        **(extra_metadata or {}),
    }
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    name = shard_name(table.column("content_hash").to_pylist())
    atomic_write_bytes(fset.location.join(name), sink.getvalue().to_pybytes())
    return name


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"genreflow": __version__}
    for pkg in ("librosa", "numpy", "pyarrow", "tensorflow", "tensorflow-hub"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def read_table(fset: FeatureSet, columns: list[str] | None = None):
    """All rows of a feature set as one Arrow table, one row per content_hash."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = fset.shard_paths()
    if not paths:
        return None
    tables = [pq.read_table(p, columns=columns, filesystem=fset.location.fs) for p in paths]
    table = pa.concat_tables(tables, promote_options="default")
    _, first = np.unique(np.asarray(table.column("content_hash").to_pylist(), dtype=object), return_index=True)
    return table.take(pa.array(np.sort(first)))


def stored_keys(fset: FeatureSet) -> set[str]:
    """The content hashes already in the store (reads one column)."""
    table = read_table(fset, columns=["content_hash"])
    return set() if table is None else set(table.column("content_hash").to_pylist())


def list_feature_sets(data_dir: str, kind: str) -> list[dict[str, Any]]:
    """Every fingerprint folder of ``kind`` with its parameters (from ``_params.json``)."""
    root = Layout.of(data_dir).store.join(kind)
    if not exists(root):
        return []
    found = []
    for info in list_files(root, recursive=False):
        if info.is_dir and is_fingerprint(info.base_name):
            params_file = Location(root.fs, info.path).join("_params.json")
            params = json.loads(read_text(params_file)) if exists(params_file) else {}
            found.append({"fingerprint": info.base_name, **params})
    return sorted(found, key=lambda f: f["fingerprint"])


def open_feature_set(data_dir: str, kind: str, fingerprint_: str | None = None) -> FeatureSet:
    """The feature set to read: the given fingerprint, or the only one there is."""
    if kind not in KINDS:
        raise DataError(f"kind={kind!r} is not a feature kind: use one of {', '.join(KINDS)}.")
    sets = list_feature_sets(data_dir, kind)
    if fingerprint_ is None:
        if len(sets) != 1:
            names = ", ".join(s["fingerprint"] for s in sets) or "none"
            raise DataError(f"{len(sets)} {kind} feature sets in {data_dir} ({names}): pass fingerprint=..."
                            if sets else f"No {kind} features in {data_dir}: run `genreflow features` first.")
        fingerprint_ = sets[0]["fingerprint"]
    match = [s for s in sets if s["fingerprint"] == fingerprint_]
    if not match:
        raise DataError(f"No {kind} feature set {fingerprint_!r} in {data_dir}.")
    loc = Layout.of(data_dir).store.join(kind, fingerprint_)
    params = {k: v for k, v in match[0].items() if k != "fingerprint"}
    return FeatureSet(KINDS[kind], fingerprint_, params, loc)


def read_features(data_dir: str = "data", kind: str = "mfcc", *, fingerprint: str | None = None,
                  with_index: bool = False):
    """One feature set as a pandas DataFrame (one row per content_hash).

    With ``with_index=True`` the rows are joined with the index (relpath, genre, label, split):
    one row per file, so a file stored twice under two names appears twice.
    """
    fset = open_feature_set(data_dir, kind, fingerprint)
    table = read_table(fset)
    if table is None:
        raise DataError(f"The {kind} feature set {fset.fingerprint} is empty: run `genreflow features` first.")
    frame = table.to_pandas()
    if not with_index:
        return frame
    return index_frame(data_dir).merge(frame, on="content_hash", how="inner")


def index_frame(data_dir: str):
    """The index rows (relpath, genre, label, content_hash, split) as a DataFrame."""
    import pandas as pd

    from .dataset import read_index

    layout = Layout.of(data_dir)
    files = read_index(data_dir)["files"]
    frame = pd.DataFrame(files, columns=["relpath", "genre", "label", "content_hash"])
    split = {}
    if exists(layout.splits_json):
        splits = json.loads(read_text(layout.splits_json))
        split = {**{p: "train" for p in splits["train"]}, **{p: "val" for p in splits["val"]}}
    frame["split"] = frame["relpath"].map(split).fillna("train")
    return frame


def feature_array(row: Mapping[str, Any]) -> np.ndarray:
    """Rebuild the 2-D array of one DataFrame row: (n_mfcc, n_frames) or (n_frames, 128)."""
    for kind in KINDS.values():
        if kind.value_column in row:
            rows, cols = kind.shape_columns
            return np.asarray(row[kind.value_column], dtype=np.float32).reshape(int(row[rows]), int(row[cols]))
    raise DataError("This row holds no feature column (expected 'mfcc' or 'embedding').")
