"""Phase 1: discover genres under raw/, validate every candidate by decoding it, write the index.

Validation and hashing run in a process pool bounded by ``workers``, the CPUs this process may
use and the number of files; one bad file becomes an ``invalid`` entry with a reason and never
stops the run. Rules for hostile trees (each left-out item is named in a warning or a reason):

- FIFOs, sockets and devices are skipped as "not a regular file (...)" without being opened
  (opening a FIFO blocks until someone writes to it).
- Symbolic links and oversized genre folders: see ``discovery``.
- Label conflicts: identical bytes (same ``content_hash``) under two or more genres cannot have
  one right label, so every copy goes to ``invalid`` with "same audio as ... (label conflict)"
  and one warning per group names them all; copies inside one genre stay valid duplicates
  (the split keeps them on one side).
- A genre folder with no audio file, or none usable, is named in a warning: it gets no label.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Callable

from pyarrow.fs import FileType

from genreflow import __version__
from genreflow.data.audio import BLOCK_FRAMES, EXTENSIONS, HEAD_BYTES, TAIL_BYTES, inspect_audio, os_error_phrase
from genreflow.errors import AudioDecodeError
from genreflow.data.decode import HashingReader
from genreflow.data import statcache
from genreflow.data.discovery import Discovery, discover
from genreflow.core.fs import (Location, atomic_write_bytes, atomic_write_text, not_regular_reason, open_input,
                 remove_stale_temps_tree)
from genreflow.core.console import VERBOSITY, Progress, display_name
from genreflow.core.host import usable_cpus
from genreflow.core.layout import Layout

INDEX_COLUMNS = ("relpath", "genre", "label", "content_hash", "duration_s", "sample_rate", "channels", "format", "bytes")


PROBE_FRAMES = 3 * BLOCK_FRAMES  # ~4.5 s at 44.1 kHz: enough to tell audio from garbage


def validate_file(raw: Location, relpath: str, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Hash one file and probe it; return its record, or ``{'relpath', 'reason'}`` if unusable.

    The probe reads the headers, checks the raw bytes for truncation (WAV, MP3, Ogg) and decodes
    the first PROBE_FRAMES frames; the full decode happens once, in extraction, which reports a
    file that fails there with its reason and keeps it out of training. ``previous`` is the
    file's record in the last index: when the bytes still hash the same, that record stands.
    """
    loc = raw.join(relpath)
    reason = not_regular_reason(loc)  # before any open(): opening a FIFO blocks
    if reason:
        return {"relpath": relpath, "reason": reason}
    try:
        digest, size, head, tail = _read_once(loc)
        if previous and previous.get("content_hash") == digest and previous.get("bytes") == size:
            return _kept(relpath, previous)
        info = _inspect(loc, head, size, tail)
    except AudioDecodeError as exc:
        return {"relpath": relpath, "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one odd file must not sink the run; its reason says what broke
        return {"relpath": relpath, "reason": f"unexpected error while reading ({type(exc).__name__}: {exc})"}
    return {
        "relpath": relpath, "content_hash": digest, "duration_s": round(info.duration_s, 6),
        "sample_rate": info.sample_rate, "channels": info.channels, "format": info.format, "bytes": size,
    }


def _kept(relpath: str, previous: dict[str, Any]) -> dict[str, Any]:
    """A file's record carried over from the previous index (its bytes are the same)."""
    return {"relpath": relpath, **{k: previous[k] for k in INDEX_COLUMNS[3:]}}


def _inspect(loc: Location, head: bytes, size: int, tail: bytes):
    """Probe the file (a path locally, a stream from a remote filesystem)."""
    try:
        source = open_input(loc)
    except OSError as exc:
        raise AudioDecodeError(_unreadable_reason(loc, exc)) from None
    try:
        return inspect_audio(source, header=head, file_size=size, tail=tail, probe_frames=PROBE_FRAMES)
    finally:
        if not isinstance(source, str):
            source.close()


def _read_once(loc: Location) -> tuple[str, int, bytes, bytes]:
    """sha256, size, first HEAD_BYTES and last TAIL_BYTES of a file, in one sequential read."""
    try:
        with loc.fs.open_input_stream(loc.path) as stream:
            reader = HashingReader(stream, 0, head_keep=HEAD_BYTES, window=TAIL_BYTES)
            digest, size = reader.finish()
    except OSError as exc:
        raise AudioDecodeError(_unreadable_reason(loc, exc)) from None
    return digest, size, reader.head, reader.tail


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
    from genreflow.core.fs import exists, read_text

    try:
        if not exists(layout.index_json):
            return {}
        previous = json.loads(read_text(layout.index_json))
    except (OSError, ValueError):
        return {}
    if previous.get("genreflow_version") != __version__:
        return {}
    return {r["relpath"]: r for r in previous.get("files", []) if all(k in r for k in INDEX_COLUMNS[3:])}


def pool_size(workers: int, n_tasks: int, *, processes: bool = True) -> int:
    """Workers worth starting: never more than tasks, and for processes never more than the
    usable CPUs (``--workers 64`` on 2 cores would start 64 interpreters for nothing). Threads
    waiting on a remote filesystem may exceed the CPUs, up to 4 per CPU."""
    limit = usable_cpus() * (1 if processes else 4)
    return max(1, min(workers, n_tasks, limit))


Validator = Callable[[Location, list[str], list, Callable[[int], None]], list[dict[str, Any]]]


def _validate_all(raw: Location, relpaths: list[str], workers: int,
                  previous: dict[str, dict[str, Any]] | None = None, validate: Validator | None = None,
                  unchanged: int = 0) -> list[dict[str, Any]]:
    """Validate every candidate with a progress bar: ``validate(raw, relpaths, known, tick)``
    when given (Ray tasks near the data on a cluster), else a local process pool (threads for
    remote files)."""
    known = [(previous or {}).get(rel) for rel in relpaths]
    if unchanged and not relpaths and not VERBOSITY.quiet:
        print(f"validate: all {unchanged} file(s) unchanged since the last index, not read again "
              "(`genreflow index --rehash` reads them)", file=sys.stderr, flush=True)
    with Progress(len(relpaths), "validate", "file") as progress:
        if validate is not None:
            results = validate(raw, relpaths, known, progress.update)
        else:
            results = list(_validate_locally(raw, relpaths, known, workers, progress.update))
        progress.close(f"validated {len(relpaths)} file(s)" + (
            f" ({unchanged} unchanged since the last index were not read)" if unchanged else ""))
    return results


def _main_guarded() -> bool:
    """Whether process workers may start: they re-import the main module, which is harmless for
    a notebook or `python -c` (none), genreflow's own entry points and pytest (guarded), but
    re-runs a user's script that calls genreflow.run without `if __name__ == "__main__":`."""
    main = sys.modules.get("__main__")
    if getattr(main, "__file__", None) is None:
        return True
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name.split(".")[0] in ("genreflow", "pytest"):
        return True
    return os.path.basename(main.__file__) in ("genreflow", "pytest", "py.test")


def _validate_locally(raw: Location, relpaths: list[str], known: list, workers: int, tick):
    workers = pool_size(workers, len(relpaths), processes=raw.local)
    if workers <= 1 or len(relpaths) < 8:
        for rel, prev in zip(relpaths, known):
            yield validate_file(raw, rel, prev)
            tick()
        return
    if raw.local and _main_guarded():
        # forkserver, not fork: the caller may already run threads (Ray, gRPC, a test runner)
        # that a forked child would inherit half-held; workers start clean and are reused
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])  # workers fork with the decoders already imported
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    else:  # remote files are I/O-bound and their filesystem handles may not survive a fork; and a
        # user's script without a __main__ guard would be re-run by every process worker
        pool = ThreadPoolExecutor(max_workers=workers)
    with pool:
        chunk = max(1, len(relpaths) // (workers * 8))
        for record in pool.map(validate_file, [raw] * len(relpaths), relpaths, known, chunksize=chunk):
            yield record
            tick()


def build_index(data_dir: str, workers: int, validate: Validator | None = None, *, rehash: bool = False
                ) -> dict[str, Any]:
    """Discover and validate ``DIR/raw``; return the index document (not yet written).

    Files the stat cache vouches for keep their previous record unread (``statcache``);
    ``rehash`` reads and hashes every file."""
    layout = Layout.of(data_dir)
    found = discover(layout.raw)
    genre_of = dict(found.candidates)
    relpaths = [rel for rel, _ in found.candidates]
    previous = _previous_records(layout)
    stats = statcache.stat_files(layout.raw, relpaths)
    kept = {} if rehash else statcache.unchanged(layout, stats, previous)
    fresh = iter(_validate_all(layout.raw, [rel for rel in relpaths if rel not in kept], workers, previous, validate,
                                len(kept)))
    results = [_kept(rel, kept[rel]) if rel in kept else next(fresh) for rel in relpaths]
    readable = [r for r in results if "reason" not in r]
    statcache.write(layout, stats, readable)
    valid, conflicts, conflict_notes = _drop_label_conflicts(readable, genre_of)
    invalid = sorted([{"relpath": r["relpath"], "reason": r["reason"]} for r in results if "reason" in r]
                     + conflicts + found.unusable, key=lambda r: r["relpath"])
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
        # one visible line each: a genre or file name with a newline or U+202E is shown escaped
        "warnings": [display_name(n) for n in found.notes + _genre_notes(layout.raw, found, files) + conflict_notes],
    }


def _drop_label_conflicts(valid: list[dict[str, Any]], genre_of: dict[str, str]
                          ) -> tuple[list[dict[str, Any]], list[dict[str, str]], list[str]]:
    """Split off files whose bytes also sit under another genre: (kept, invalid records, notes)."""
    members: dict[str, list[str]] = defaultdict(list)
    for record in sorted(valid, key=lambda r: r["relpath"]):
        members[record["content_hash"]].append(record["relpath"])
    conflicts: dict[str, str] = {}
    notes = []
    for relpaths in members.values():
        genres = sorted({genre_of[rel] for rel in relpaths})
        if len(genres) < 2:
            continue
        for rel in relpaths:
            other = next(o for o in relpaths if genre_of[o] != genre_of[rel])
            conflicts[rel] = (f"same audio as {other} in genre {genre_of[other]} (label conflict): "
                              "keep it in one genre folder")
        shown = ", ".join(relpaths[:6]) + (f" and {len(relpaths) - 6} more" if len(relpaths) > 6 else "")
        notes.append(f"label conflict: the same audio is filed under genres {', '.join(genres)} ({shown}); "
                     f"all {len(relpaths)} copies are left out of training: keep it in one genre folder.")
    kept = [r for r in valid if r["relpath"] not in conflicts]
    return kept, [{"relpath": rel, "reason": why} for rel, why in conflicts.items()], notes


def _genre_notes(raw: Location, found: Discovery, files: list[dict[str, Any]]) -> list[str]:
    """Genre folders that will get no label: empty ones, and ones whose files are all unusable."""
    candidates = Counter(genre for _, genre in found.candidates)
    valid = Counter(f["genre"] for f in files)
    notes = []
    for genre in found.genres:
        if not candidates[genre]:
            notes.append(f"genre folder {raw.join(genre)} holds no audio files ({', '.join(EXTENSIONS)}): it gets no "
                         "label; add audio to it or remove it.")
        elif not valid[genre]:
            notes.append(f"genre folder {raw.join(genre)} has no usable audio ({candidates[genre]} file(s), all "
                         "listed as invalid): it gets no label.")
    return notes


def write_index(index: dict[str, Any], data_dir: str) -> None:
    """Write dataset_index.json and index.parquet atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    layout = Layout.of(data_dir)
    remove_stale_temps_tree(layout.processed)
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


def _inside_raw(relpath: str) -> bool:
    """A relpath genreflow wrote: relative, below raw/, no '..' part."""
    return bool(relpath) and not relpath.startswith("/") and ".." not in relpath.split("/") and "://" not in relpath


def read_index(data_dir: str) -> dict[str, Any]:
    """Load dataset_index.json; a missing, cut-short or incomplete one is one DataError line
    naming the command that rewrites it."""
    from genreflow.core.jsonfiles import read_json

    def check(doc: dict[str, Any]) -> str | None:
        if not isinstance(doc["genres"], dict) or not isinstance(doc["invalid"], list):
            return "'genres' or 'invalid' has the wrong type"
        if not isinstance(doc["files"], list) or not all(
                isinstance(f, dict) and all(k in f for k in INDEX_COLUMNS) for f in doc["files"]):
            return "'files' is not a list of complete file records"
        outside = [f["relpath"] for f in doc["files"] if not _inside_raw(str(f["relpath"]))]
        if outside:
            return f"relpath {outside[0]!r} points outside raw/"
        return None

    return read_json(Layout.of(data_dir).index_json, "dataset index", f"genreflow index --data-dir {data_dir}",
                     ("genres", "files", "invalid"), check=check)
