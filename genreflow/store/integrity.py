"""A damaged feature store heals: bad shards are moved aside, their rows recomputed.

Shards are written with Parquet page checksums (CRC32 of every page). A shard is *damaged*
when its bytes cannot be parsed (cut short: no footer; garbage: a failed checksum, a broken
page or footer), when its footer says it is not its folder's (another fingerprint, or a
schema without the kind's columns and types), or when the values it holds cannot be what
genreflow wrote (NaN or inf, shape columns that do not match the values, valid_frames outside
[1, n_frames]: ``values_problem``). ``read_shard`` moves such a shard into the
feature-set folder's ``_quarantine/`` (never deletes it), with a ``.reason.txt`` beside it,
warns once (QuarantineWarning, one line naming it) and returns None, so its keys count as not
stored and the next extraction recomputes them.

What each reader can see: every read checks the footer (truncation, fingerprint, schema) and
verifies the checksums of the pages it reads. ``stored_keys`` reads only the key column, so
garbage inside a value column is found by the first full read (``read_table``, training, or
``verify_store``), which quarantines the shard; the rows are then missing and the next
``genreflow features`` recomputes them. I/O errors (permissions, a network hiccup) are told
apart from damage by re-reading the whole file: if the bytes cannot be fetched the error is
raised as is, and nothing is moved.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import warnings
from dataclasses import dataclass
from typing import Any

from genreflow.core.fs import Location, atomic_write_text, exists, makedirs, not_regular_reason, read_bytes

QUARANTINE = "_quarantine"
FINGERPRINT_KEY = b"genreflow.fingerprint"


class QuarantineWarning(UserWarning):
    """A damaged shard was moved to ``_quarantine/``; its rows will be recomputed."""


class _Mismatch(Exception):
    """The shard parses but is not its folder's (fingerprint or schema)."""


@dataclass(frozen=True)
class ShardIssue:
    """One shard moved aside: where it was, why, and where it is now."""

    shard: str
    reason: str
    moved_to: str


def expected_columns(kind: Any) -> dict[str, str]:
    """Column name -> Arrow type name every shard of ``kind`` must hold."""
    rows, cols = kind.shape_columns
    return {"content_hash": "string", kind.value_column: "list<float>", rows: "int32", cols: "int32",
            "valid_frames": "int32"}


def footer_problem(fset: Any, schema: Any) -> str | None:
    """Why a shard's footer (Arrow schema + metadata) does not belong in ``fset``'s folder."""
    import pyarrow as pa

    recorded = (schema.metadata or {}).get(FINGERPRINT_KEY)
    if recorded is None:
        return "it records no genreflow fingerprint"
    if recorded.decode("utf-8", "replace") != fset.fingerprint:
        return f"it records fingerprint {recorded.decode('utf-8', 'replace')}, not this folder's {fset.fingerprint}"
    for name, wanted in expected_columns(fset.kind).items():
        index = schema.get_field_index(name)
        if index < 0:
            return f"it has no {name!r} column"
        found = schema.field(index).type
        if pa.types.is_list(found) or pa.types.is_large_list(found):
            found_name = f"list<{found.value_type}>"
        else:
            found_name = str(found)
        if found_name != wanted:
            return f"its {name!r} column is {found_name}, not {wanted}"
    return None


def _parse(fset: Any, source: Any, columns: list[str] | None):
    """Footer check, then the wanted columns with every page's checksum verified, then their
    values (``values_problem``)."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(source, page_checksum_verification=True)
    problem = footer_problem(fset, parquet.schema_arrow)
    if problem:
        raise _Mismatch(problem)
    table = parquet.read(columns=columns)
    problem = values_problem(fset.kind, table)
    if problem:
        raise _Mismatch(problem)
    return table


def values_problem(kind: Any, table: Any) -> str | None:
    """Why the values of a shard's columns (those ``table`` holds) cannot be what genreflow wrote:
    a missing key, NaN or inf in the values, a shape column that does not match the length of
    its row's values, or ``valid_frames`` outside [1, n_frames]. Such a shard is damage (forged
    or a buggy plug-in), quarantined like a failed checksum, so readers never reshape or pool it."""
    import pyarrow.compute as pc

    names = set(table.column_names)
    if "content_hash" in names and table.column("content_hash").null_count:
        return "a row has no content_hash"
    rows_col, cols_col = kind.shape_columns
    shape = [table.column(c) for c in (rows_col, cols_col) if c in names]
    for name in (rows_col, cols_col, "valid_frames"):
        column = table.column(name) if name in names else None
        if column is not None and (column.null_count or (len(column) and pc.min(column).as_py() < 1)):
            return f"its {name!r} column holds a value below 1"
    if kind.value_column in names:
        values = table.column(kind.value_column)
        flat = pc.list_flatten(values)
        if values.null_count:
            return f"a row of {kind.value_column!r} is null"
        if len(flat) and not pc.all(pc.is_finite(flat)).as_py():
            return f"{kind.value_column!r} holds NaN or infinite values"
        if len(shape) == 2:
            lengths = pc.list_value_length(values).cast("int64")
            product = pc.multiply(shape[0].cast("int64"), shape[1].cast("int64"))
            if not pc.all(pc.equal(lengths, product)).as_py():
                return f"its {rows_col}/{cols_col} columns do not match the length of {kind.value_column!r}"
    frames_col = kind.shape_columns[kind.time_axis]
    if "valid_frames" in names and frames_col in names and len(table):
        if not pc.all(pc.less_equal(table.column("valid_frames"), table.column(frames_col))).as_py():
            return f"its valid_frames exceed {frames_col}"
    return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _Mismatch):
        return str(exc)
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"unreadable: {text.split('. ')[0].rstrip('.')}"  # pyarrow's first sentence says it


def read_shard(fset: Any, path: str, columns: list[str] | None = None):
    """One shard as an Arrow table, or None when it is damaged (then quarantined, with one
    QuarantineWarning) or gone.

    ``columns`` None reads (and checksums) everything; a subset checks the footer and those
    columns' pages only. Raises OSError when the file cannot be read at all (not damage).
    """
    return check_shard(fset, path, columns)[0]


def check_shard(fset: Any, path: str, columns: list[str] | None = None, *,
                warn: bool = True) -> tuple[Any, ShardIssue | None]:
    """(table, None) for a good shard; (None, issue) for one moved aside now; (None, None)
    for one that vanished (another reader moved it first)."""
    import pyarrow as pa

    fs = fset.location.fs
    identity = _identity(fset.location, path)
    odd = not_regular_reason(Location(fs, path))  # a FIFO would block the open below
    if odd:
        return None, quarantine(fset, path, odd, identity, warn=warn)
    try:
        with fs.open_input_file(path) as handle:
            return _parse(fset, handle, columns), None
    except FileNotFoundError:
        return None, None
    except _Mismatch as exc:
        problem = _describe(exc)
    except Exception:  # noqa: BLE001 - damage or I/O: decided below by re-reading from memory
        try:
            data = read_bytes(Location(fs, path))
        except FileNotFoundError:
            return None, None
        try:
            return _parse(fset, pa.BufferReader(data), columns), None  # the first error was transient
        except Exception as exc:  # noqa: BLE001 - the bytes are here and do not parse: damage
            problem = _describe(exc)
    return None, quarantine(fset, path, problem, identity, warn=warn)


def _identity(loc: Location, path: str) -> tuple[int, int] | None:
    """(device, inode) of a local shard, so a shard rewritten meanwhile is not moved by mistake."""
    if not loc.local:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def quarantine(fset: Any, path: str, reason: str, identity: tuple[int, int] | None = None, *,
               warn: bool = True) -> ShardIssue | None:
    """Move ``path`` into the folder's ``_quarantine/`` with its reason; warn once (unless
    ``warn`` is false). Returns None when another process moved (or rewrote) it first.

    A store that cannot be changed (read-only mount, read-only credentials, no permission)
    never stops a command over one damaged shard: the shard stays where it is, its rows count
    as missing for this run, and the issue says it was not moved (``moved_to`` empty; one
    warning per shard and process)."""
    folder = fset.location.join(QUARANTINE)
    name = posixpath.basename(path)
    try:
        makedirs(folder)
        target, n = folder.join(name), 1
        while exists(target):
            target, n = folder.join(f"{name[:-len('.parquet')]}.{n}.parquet"), n + 1
        if fset.location.local:
            if identity is not None and _identity(fset.location, path) != identity:
                return None
            os.replace(path, target.path)
        else:
            fset.location.fs.move(path, target.path)
    except FileNotFoundError:
        return None
    except OSError as exc:  # read-only: leave it, and read around it
        issue = ShardIssue(str(Location(fset.location.fs, path)), reason, "")
        if warn and issue.shard not in _UNMOVABLE_WARNED:
            _UNMOVABLE_WARNED.add(issue.shard)
            warnings.warn(f"damaged shard {issue.shard} ({reason}): cannot move it to {QUARANTINE}/ "
                          f"({getattr(exc, 'strerror', None) or str(exc).rpartition('Detail: ')[2]}; a read-only "
                          "store?), so its rows count as "
                          "not stored in this run; `genreflow verify` with write access moves it aside.",
                          QuarantineWarning, stacklevel=4)
        return issue
    with contextlib.suppress(OSError):
        atomic_write_text(Location(target.fs, target.path + ".reason.txt"), reason + "\n")
    issue = ShardIssue(str(Location(target.fs, path)), reason, str(target))
    if warn:
        warnings.warn(f"moved damaged shard {issue.shard} to {issue.moved_to} ({reason}); its rows count as not "
                      "stored, and the next `genreflow features` recomputes them.", QuarantineWarning, stacklevel=4)
    return issue


_UNMOVABLE_WARNED: set[str] = set()
