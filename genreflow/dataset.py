"""Phase 1: discover genres under raw/, validate every candidate by decoding it, write the index.

Validation and hashing run in a process pool bounded by ``workers``; one bad file becomes an
``invalid`` entry with a reason and never stops the run.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import posixpath
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pyarrow.fs import FileType

from . import __version__
from .audio import EXTENSIONS, HEAD_BYTES, TAIL_BYTES, inspect_audio, os_error_phrase
from .errors import AudioDecodeError, DataError
from .fs import Location, remove_stale_temps, atomic_write_bytes, atomic_write_text, is_dir, iter_chunks, list_files, open_input
from .layout import Layout

EXPECTED_LAYOUT = """Expected layout:
  {raw}/
    rock/    song1.wav  song2.mp3 ...
    jazz/    take1.flac ...
    <genre>/ <file>.{{wav,mp3,flac,ogg}}  (sub-folders allowed)"""

INDEX_COLUMNS = ("relpath", "genre", "label", "content_hash", "duration_s", "sample_rate", "channels", "format", "bytes")


@dataclass
class Discovery:
    """Candidate audio files and the files skipped because of their extension."""

    genres: list[str]
    candidates: list[tuple[str, str]] = field(default_factory=list)  # (relpath, genre)
    ignored: list[str] = field(default_factory=list)
    unusable: list[dict[str, str]] = field(default_factory=list)  # found but unusable before decoding


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _printable(name: str) -> str:
    """A non-UTF-8 name as text: undecodable bytes become U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _hidden(relpath: str) -> bool:
    return any(part.startswith(".") for part in relpath.split("/"))


def discover(raw: Location) -> Discovery:
    """Find genre folders (first level under raw/) and the audio files anywhere below them."""
    if not is_dir(raw):
        raise DataError(f"No raw audio folder at {raw}.\n" + EXPECTED_LAYOUT.format(raw=raw))
    entries = list_files(raw, recursive=True)
    prefix = raw.path.rstrip("/") + "/"
    genres: set[str] = set()
    found = Discovery(genres=[])
    # sorted by relpath, never by host-specific listing order, so every machine agrees
    for info in sorted(entries, key=lambda i: i.path):
        relpath = info.path[len(prefix):] if info.path.startswith(prefix) else info.path
        if _hidden(relpath):
            continue
        parts = relpath.split("/")
        is_audio_name = posixpath.splitext(relpath)[1].lower() in EXTENSIONS
        if not _utf8(relpath):
            found.unusable.append({"relpath": _printable(relpath),
                                   "reason": "file name is not valid UTF-8: rename it (e.g. with convmv)"})
            continue
        if info.is_dir:
            if len(parts) == 1:
                genres.add(parts[0])
            elif is_audio_name:  # a folder named like a file: reported, its contents still scanned
                found.candidates.append((relpath, parts[0]))
            continue
        if len(parts) == 1:
            found.ignored.append(relpath)  # a file directly in raw/ has no genre
        elif is_audio_name:
            found.candidates.append((relpath, parts[0]))
        else:
            found.ignored.append(relpath)
    if not genres:
        raise DataError(f"No genre folders in {raw}.\n" + EXPECTED_LAYOUT.format(raw=raw))
    found.genres = sorted(genres)
    return found


def validate_file(raw: Location, relpath: str, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Hash and decode one file; return its record, or ``{'relpath', 'reason'}`` if unusable.

    ``previous`` is the file's record in the last index: when the bytes still hash the same,
    that record stands and the file is not decoded again (hashing costs a fraction of decoding).
    """
    loc = raw.join(relpath)
    try:
        digest, size, head, tail = _read_once(loc)
        if previous and previous.get("content_hash") == digest and previous.get("bytes") == size:
            return {"relpath": relpath, **{k: previous[k] for k in INDEX_COLUMNS[3:]}}
        info = _inspect(loc, head, size, tail)
    except AudioDecodeError as exc:
        return {"relpath": relpath, "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one odd file must not sink the run; its reason says what broke
        return {"relpath": relpath, "reason": f"unexpected error while reading ({type(exc).__name__}: {exc})"}
    return {
        "relpath": relpath, "content_hash": digest, "duration_s": round(info.duration_s, 6),
        "sample_rate": info.sample_rate, "channels": info.channels, "format": info.format, "bytes": size,
    }


def _inspect(loc: Location, head: bytes, size: int, tail: bytes):
    """Decode the whole file (a path locally, a stream from a remote filesystem)."""
    try:
        source = open_input(loc)
    except OSError as exc:
        raise AudioDecodeError(_unreadable_reason(loc, exc)) from None
    try:
        return inspect_audio(source, header=head, file_size=size, tail=tail)
    finally:
        if not isinstance(source, str):
            source.close()


def _read_once(loc: Location) -> tuple[str, int, bytes, bytes]:
    """sha256, size, first HEAD_BYTES and last TAIL_BYTES of a file, in one sequential read."""
    digest, size, head, tail = hashlib.sha256(), 0, b"", b""
    try:
        for chunk in iter_chunks(loc):
            digest.update(chunk)
            size += len(chunk)
            if len(head) < HEAD_BYTES:
                head += chunk[:HEAD_BYTES - len(head)]
            tail = (tail + chunk)[-TAIL_BYTES:]
    except OSError as exc:
        raise AudioDecodeError(_unreadable_reason(loc, exc)) from None
    return digest.hexdigest(), size, head, tail


def _unreadable_reason(loc: Location, exc: OSError) -> str:
    """Why a candidate could not be read, without its path (the relpath is shown beside it)."""
    if isinstance(exc, PermissionError):
        return "unreadable: permission denied (check the file's permissions)"
    try:
        kind = loc.fs.get_file_info(loc.path).type
    except OSError:
        kind = None
    if kind == FileType.Directory or isinstance(exc, IsADirectoryError):
        return "is a folder, not an audio file"
    if isinstance(exc, FileNotFoundError) and loc.local and os.path.islink(loc.path):
        return "broken symbolic link (its target does not exist)"
    return f"unreadable: {os_error_phrase(exc)}"


def _previous_records(layout: Layout) -> dict[str, dict[str, Any]]:
    """relpath -> record of the index this genreflow version wrote last ({} if none or unreadable)."""
    from .fs import exists, read_text

    try:
        if not exists(layout.index_json):
            return {}
        previous = json.loads(read_text(layout.index_json))
    except (OSError, ValueError):
        return {}
    if previous.get("genreflow_version") != __version__:
        return {}
    return {r["relpath"]: r for r in previous.get("files", []) if all(k in r for k in INDEX_COLUMNS[3:])}


def _validate_all(raw: Location, relpaths: list[str], workers: int,
                  previous: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    known = [(previous or {}).get(rel) for rel in relpaths]
    if workers <= 1 or len(relpaths) < 8:
        return [validate_file(raw, rel, prev) for rel, prev in zip(relpaths, known)]
    if raw.local:
        # forkserver, not fork: the caller may already run threads (Ray, gRPC, a test runner)
        # that a forked child would inherit half-held; workers start clean and are reused
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])  # workers fork with the decoders already imported
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    else:  # remote files are I/O-bound and their filesystem handles may not survive a fork
        pool = ThreadPoolExecutor(max_workers=workers)
    with pool:
        chunk = max(1, len(relpaths) // (workers * 8))
        return list(pool.map(validate_file, [raw] * len(relpaths), relpaths, known, chunksize=chunk))


def build_index(data_dir: str, workers: int) -> dict[str, Any]:
    """Discover and validate ``DIR/raw``; return the index document (not yet written)."""
    layout = Layout.of(data_dir)
    found = discover(layout.raw)
    genre_of = dict(found.candidates)
    results = _validate_all(layout.raw, [rel for rel, _ in found.candidates], workers, _previous_records(layout))
    valid = [r for r in results if "reason" not in r]
    invalid = sorted([{"relpath": r["relpath"], "reason": r["reason"]} for r in results if "reason" in r]
                     + found.unusable, key=lambda r: r["relpath"])
    labels = {name: i for i, name in enumerate(sorted({genre_of[r["relpath"]] for r in valid}))}
    files = [
        {"relpath": r["relpath"], "genre": genre_of[r["relpath"]], "label": labels[genre_of[r["relpath"]]],
         **{k: r[k] for k in INDEX_COLUMNS[3:]}}
        for r in sorted(valid, key=lambda r: r["relpath"])
    ]
    return {
        "genreflow_version": __version__,
        "genres": labels,
        "files": files,
        "invalid": invalid,
        "ignored": found.ignored,
        "params": {"extensions": list(EXTENSIONS), "genre_folders": found.genres},
    }


def write_index(index: dict[str, Any], data_dir: str) -> None:
    """Write dataset_index.json and index.parquet atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    layout = Layout.of(data_dir)
    remove_stale_temps(layout.processed)
    atomic_write_text(layout.index_json, json.dumps(index, indent=2, sort_keys=True) + "\n")
    table = index_table(index)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write_bytes(layout.index_parquet, sink.getvalue().to_pybytes())


def index_table(index: dict[str, Any]):
    """The valid-file rows as an Arrow table with stable column types."""
    import pyarrow as pa

    schema = pa.schema([
        ("relpath", pa.string()), ("genre", pa.string()), ("label", pa.int32()),
        ("content_hash", pa.string()), ("duration_s", pa.float64()), ("sample_rate", pa.int32()),
        ("channels", pa.int32()), ("format", pa.string()), ("bytes", pa.int64()),
    ])
    return pa.Table.from_pylist(index["files"], schema=schema)


def read_index(data_dir: str) -> dict[str, Any]:
    """Load dataset_index.json, or say which command creates it."""
    from .fs import exists, read_text

    layout = Layout.of(data_dir)
    if not exists(layout.index_json):
        raise DataError(f"No dataset index at {layout.index_json}: run `genreflow index --data-dir {data_dir}` first.")
    return json.loads(read_text(layout.index_json))


def run_index(data_dir: str, workers: int, split_config) -> dict[str, Any]:
    """Index, split and write everything; return the index and splits for the summary."""
    import warnings

    from .splits import make_splits, splits_json

    layout = Layout.of(data_dir)
    index = build_index(data_dir, workers)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits = make_splits(index["files"], split_config)
    write_index(index, data_dir)
    atomic_write_text(layout.splits_json, splits_json(splits))
    return {"index": index, "splits": splits, "warnings": [str(w.message) for w in caught]}


def summary_rows(index: dict[str, Any], splits: dict[str, Any]) -> list[list[Any]]:
    """Per-genre counts: valid, invalid, duplicates, train, val."""
    from collections import Counter

    genres = index["params"]["genre_folders"]
    valid = Counter(f["genre"] for f in index["files"])
    invalid = Counter(r["relpath"].split("/")[0] for r in index["invalid"])
    seen: set[str] = set()
    dupes: Counter = Counter()
    for record in index["files"]:
        if record["content_hash"] in seen:
            dupes[record["genre"]] += 1
        seen.add(record["content_hash"])
    val = set(splits["val"])
    n_val = Counter(f["genre"] for f in index["files"] if f["relpath"] in val)
    rows = [[g, valid[g], invalid[g], dupes[g], valid[g] - n_val[g], n_val[g]] for g in genres]
    rows.append(["total", sum(valid.values()), len(index["invalid"]), sum(dupes.values()),
                 len(splits["train"]), len(splits["val"])])
    return rows
