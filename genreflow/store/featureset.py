"""The content-keyed Parquet feature store.

Layout: ``<data>/processed/store/<kind>/<fingerprint>/part-<keys-hash>.parquet`` plus a
``_params.json``. Rows are keyed by ``content_hash``; arrays are flat float32 Arrow lists with
their shape in two int columns, so plain ``pd.read_parquet(folder)`` works. Readers drop a key
that sits in two shards (two concurrent runs may both write it).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from genreflow import __version__
from genreflow.errors import DataError
from genreflow.core.fingerprint import fingerprint, is_fingerprint, shard_name
from genreflow.core.fs import Location, atomic_write_bytes, atomic_write_text, exists, list_files, read_bytes
from genreflow.core.layout import Layout
from genreflow.store.kind import Kind
from genreflow.store.integrity import read_shard


@dataclass(frozen=True)
class FeatureSet:
    """One fingerprint folder: a kind computed with one exact set of parameters."""

    kind: Kind
    fingerprint: str
    params: dict[str, Any]
    location: Location

    @classmethod
    def create(cls, data_dir: str, kind: Kind, version: int, params: Mapping[str, Any]) -> "FeatureSet":
        fp = fingerprint(kind.name, version, params)
        loc = Layout.of(data_dir).store.join(kind.name, fp)
        return cls(kind, fp, {"name": kind.name, "version": version, "params": dict(params)}, loc)

    def ensure_params_file(self) -> None:
        """Write the human-readable ``_params.json`` (atomically) when it is missing or damaged."""
        target = self.location.join("_params.json")
        if not exists(target) or _params_problem(_load_params(target), self.kind.name, self.fingerprint):
            write_params_file(target, self.fingerprint, self.params)

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
    # page checksums let every reader tell a damaged shard from a good one (genreflow.store.integrity)
    pq.write_table(table, sink, compression="zstd", write_page_checksum=True)
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
    """All rows of a feature set as one Arrow table, one row per content_hash.

    Every shard is checked (footer, fingerprint, schema, page checksums of the columns read); a
    damaged one is moved to ``_quarantine/`` with a warning and its rows are left out, so they
    count as not stored (``genreflow.store.integrity``). None when no readable shard is left.
    """
    import pyarrow as pa

    tables = [t for t in (read_shard(fset, p, columns) for p in fset.shard_paths()) if t is not None]
    if not tables:
        return None
    table = pa.concat_tables(tables, promote_options="default")
    _, first = np.unique(np.asarray(table.column("content_hash").to_pylist(), dtype=object), return_index=True)
    return table.take(pa.array(np.sort(first)))


def iter_batches(fset: FeatureSet, columns: list[str] | None = None, batch_rows: int = 256):
    """Every row of a feature set, one Arrow record batch at a time, each content_hash once.

    Memory is bounded by one shard (not the feature set), which is what lets training pool
    100k clips in constant memory. Each shard is checked as it is read (footer, fingerprint,
    schema, page checksums); a damaged one is quarantined and its rows count as missing.
    """
    import pyarrow as pa

    wanted = None if columns is None else list(dict.fromkeys(["content_hash", *columns]))
    seen: set[str] = set()
    for path in fset.shard_paths():
        table = read_shard(fset, path, wanted)
        if table is None:
            continue
        for batch in table.to_batches(max_chunksize=batch_rows):
            keys = batch.column("content_hash").to_pylist()
            fresh = [i for i, k in enumerate(keys) if k not in seen]
            seen.update(keys)
            if len(fresh) < len(keys):
                batch = batch.take(pa.array(fresh, pa.int64()))
            if batch.num_rows:
                yield batch


def stored_keys(fset: FeatureSet) -> set[str]:
    """The content hashes already in the store (reads one column). A shard cut short or not
    this folder's is quarantined here; garbage inside a value column is only seen by a full
    read (read_table, verify_store), which quarantines it then."""
    table = read_table(fset, columns=["content_hash"])
    return set() if table is None else set(table.column("content_hash").to_pylist())


MAX_PARAMS_BYTES = 1 << 20


class ParamsWarning(UserWarning):
    """A damaged ``_params.json`` was rewritten from its folder's name and its shards' footers."""


def write_params_file(target: Location, fp: str, params: Mapping[str, Any]) -> None:
    atomic_write_text(target, json.dumps({"fingerprint": fp, **params}, indent=2, sort_keys=True) + "\n")


def _load_params(target: Location) -> Any:
    """The parsed ``_params.json`` object, or why it is not one (a str in a 1-tuple). OSErrors
    (permissions, I/O) pass through: they are not damage."""
    data = read_bytes(target, limit=MAX_PARAMS_BYTES)
    if len(data) > MAX_PARAMS_BYTES:
        return (f"over {MAX_PARAMS_BYTES} bytes",)
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return (f"not JSON: {type(exc).__name__}",)
    return doc if isinstance(doc, dict) else (f"holds a JSON {type(doc).__name__}, not an object",)


def _params_problem(doc: Any, kind: str, fp: str) -> str | None:
    """Why a parsed ``_params.json`` cannot describe the folder ``<kind>/<fp>``, or None.

    Every field is checked before anything uses it: the folder name is the truth, so a recorded
    fingerprint must equal it, the name must be the folder's kind, and the parameters must
    hash to the folder's fingerprint."""
    if isinstance(doc, tuple):
        return doc[0]
    if doc.get("fingerprint", fp) != fp:
        return f"it records fingerprint {str(doc.get('fingerprint'))[:80]!r}, not its folder's {fp}"
    if "name" not in doc and "params" not in doc:
        return None  # an old file holding only a fingerprint: nothing to check
    name, version, params = doc.get("name"), doc.get("version"), doc.get("params")
    if name != kind or isinstance(version, bool) or not isinstance(version, int) or not isinstance(params, dict):
        return "its name, version or params are not those of this folder's kind"
    if fingerprint(name, version, params) != fp:
        return f"its parameters hash to {fingerprint(name, version, params)}, not its folder's {fp}"
    return None


def _params_from_shards(folder: Location, kind: str, fp: str) -> dict[str, Any] | None:
    """The ``{"name", "version", "params"}`` a shard's footer records, if it hashes to ``fp``."""
    import pyarrow.parquet as pq

    from genreflow.store.integrity import FINGERPRINT_KEY

    names = sorted(i.path for i in list_files(folder, recursive=False)
                   if i.base_name.startswith("part-") and i.base_name.endswith(".parquet"))
    for path in names[:8]:
        try:
            with folder.fs.open_input_file(path) as handle:
                meta = pq.ParquetFile(handle).schema_arrow.metadata or {}
            if meta.get(FINGERPRINT_KEY, b"").decode("utf-8", "replace") != fp:
                continue
            doc = json.loads(meta[b"genreflow.params"].decode("utf-8"))
        except Exception:  # noqa: BLE001 - a damaged shard says nothing; verify quarantines it
            continue
        if isinstance(doc, dict) and _params_problem(doc, kind, fp) is None and "params" in doc:
            return {"name": doc["name"], "version": doc["version"], "params": doc["params"]}
    return None


def _feature_set_params(folder: Location, kind: str, fp: str) -> dict[str, Any]:
    """The parameters of one fingerprint folder. A damaged or lying ``_params.json`` never stops
    a command: it is rewritten from the folder name and a shard's footer (one ParamsWarning), or,
    when no shard vouches for any parameters (or the store is read-only), read as empty."""
    target = folder.join("_params.json")
    if not exists(target):
        return {}
    doc = _load_params(target)
    problem = _params_problem(doc, kind, fp)
    if problem is None:
        return {k: v for k, v in doc.items() if k != "fingerprint"}
    recovered = _params_from_shards(folder, kind, fp)
    if recovered is None:
        note = "no shard records its parameters, so they are shown as unknown until the next `genreflow features`"
    else:
        try:
            write_params_file(target, fp, recovered)
            note = "rewritten from the folder's fingerprint and its shards' footers"
        except OSError as exc:
            note = f"not rewritten ({exc.strerror or exc}); read from its shards' footers"
    warnings.warn(f"{target} is damaged ({problem}): {note}.", ParamsWarning, stacklevel=3)
    return recovered or {}


def list_feature_sets(data_dir: str, kind: str) -> list[dict[str, Any]]:
    """Every fingerprint folder of ``kind`` with its parameters (from ``_params.json``).

    Only folders named by a fingerprint (16 hex digits) are listed; the folder name is the
    truth, whatever ``_params.json`` says (see ``_feature_set_params``)."""
    root = Layout.of(data_dir).store.join(kind)
    if not exists(root):
        return []
    found = []
    for info in list_files(root, recursive=False):
        name = info.base_name
        if info.is_dir and len(name) == 16 and is_fingerprint(name):
            params = _feature_set_params(Location(root.fs, info.path), kind, name)
            found.append({**params, "fingerprint": name})  # the folder name is the truth
    return sorted(found, key=lambda f: f["fingerprint"])


def open_feature_set(data_dir: str, layout_kind: Kind, fingerprint_: str | None = None) -> FeatureSet:
    """The feature set to read: the given fingerprint, or the only one there is."""
    kind = layout_kind.name
    if fingerprint_ is not None and not (isinstance(fingerprint_, str) and len(fingerprint_) == 16
                                         and is_fingerprint(fingerprint_)):
        raise DataError(f"{str(fingerprint_)[:80]!r} is not a feature-set fingerprint (16 hex digits).")
    sets = list_feature_sets(data_dir, kind)
    if fingerprint_ is None:
        if len(sets) != 1:
            names = ", ".join(s["fingerprint"] for s in sets) or "none"
            raise DataError(f"{len(sets)} {kind} feature sets in {data_dir} ({names}): pass fingerprint=..."
                            if sets else f"No {kind} features in {data_dir}: run `{make_command(kind, data_dir)}` first.")
        fingerprint_ = sets[0]["fingerprint"]
    match = [s for s in sets if s["fingerprint"] == fingerprint_]
    if not match:
        raise DataError(f"No {kind} feature set {fingerprint_!r} in {data_dir}.")
    loc = Layout.of(data_dir).store.join(kind, fingerprint_)
    params = {k: v for k, v in match[0].items() if k != "fingerprint"}
    return FeatureSet(layout_kind, fingerprint_, params, loc)


def make_command(kind: str, data_dir: str) -> str:
    """The command that computes ``kind`` for a data folder (for hints in error messages)."""
    return f"genreflow features --features {kind} --data-dir {data_dir}"
