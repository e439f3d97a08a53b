"""Reading genreflow's JSON files (index, splits, params, metadata) with one-line errors.

A JSON file cut short by a full disk, edited by hand or written by another version must never
surface as a ``JSONDecodeError`` or ``KeyError`` traceback: the user gets one line naming the
file, what is wrong with it and the command that writes it again.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from genreflow.errors import DataError
from genreflow.core.fs import Location, exists, read_bytes


def read_json(loc: Location, what: str, rebuild: str, required: tuple[str, ...] = (), *,
              check: Callable[[dict[str, Any]], str | None] | None = None) -> dict[str, Any]:
    """The JSON object in ``loc``, or a DataError saying how to rebuild it.

    ``what`` names the file for a missing-file message ("dataset index"); ``rebuild`` is the
    full command that writes it (``genreflow index --data-dir data``); ``required`` are the keys
    it must hold; ``check`` may return a reason when the values are unusable (wrong types).
    OSErrors (permissions, I/O) pass through: they are not damage the command can repair.
    """
    if not exists(loc):
        raise DataError(f"No {what} at {loc}: run `{rebuild}` first.")
    problem = None
    raw = read_bytes(loc)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text at byte {exc.start}"
    except json.JSONDecodeError as exc:
        problem = _decode_problem(exc)
    else:
        if not isinstance(doc, dict):
            problem = f"holds a JSON {_json_type(doc)}, not an object"
        else:
            missing = [key for key in required if key not in doc]
            if missing:
                problem = "missing " + ", ".join(repr(k) for k in missing)
            elif check is not None:
                problem = check(doc)
    if problem:
        raise DataError(f"{loc} is damaged ({problem}): run `{rebuild}` to rebuild it.")
    return doc


def _decode_problem(exc: json.JSONDecodeError) -> str:
    """'cut short at line N' when the text ends mid-document, else where the syntax breaks."""
    if not exc.doc.strip():
        return "empty file"
    if exc.pos >= len(exc.doc.rstrip()):
        return f"cut short at line {exc.lineno}"
    return f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"


def _json_type(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), "null")


def list_of_strings(doc: dict[str, Any], *keys: str) -> str | None:
    """A ``check`` helper: the reason why one of ``keys`` is not a list of strings, else None."""
    for key in keys:
        value = doc.get(key)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            return f"{key!r} is not a list of file paths"
    return None
