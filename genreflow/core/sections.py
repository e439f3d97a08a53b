"""Config sections: one checked frozen dataclass per table, built from TOML, flags or a recipe.

Every section (``[audio]``, ``[mfcc]``, ``[train.svm]``...) is validated in its own
``__post_init__`` with ``check``, so a bad value fails as one line naming the key, whichever
way it arrived. ``build_section`` turns a mapping into a section with the same type rules.
"""

from __future__ import annotations

import dataclasses
from dataclasses import fields, replace
from typing import Any, Callable, Iterable, Mapping

from genreflow.errors import ConfigError

_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def check(ok: bool, key: str, value: Any, allowed: str) -> None:
    """Raise one clear line naming the key, its value and what it must be."""
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: must be {allowed}.")


def coerce(key: str, value: Any, default: Any) -> Any:
    """Accept a TOML/CLI value only if it has the default's type (ints count as floats)."""
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
        expected = _TYPE_WORDS.get(kind, f"of type {kind.__name__}")
        raise ConfigError(f"{key}={value!r} is invalid: must be {expected}.")
    return value


def build_section(cls: type, section: str, values: Any, base: Any = None, *,
                  table: Callable[[str, Mapping[str, Any], Any], Any] | None = None,
                  skip: Iterable[str] = (), also_allowed: Iterable[str] = ()) -> Any:
    """A section dataclass from a mapping (TOML table, saved recipe), with the same checks.

    ``table(key, mapping, current)`` builds a field whose value is itself a section (default:
    the same rules, recursively); ``skip`` names fields set by the caller; ``also_allowed``
    names keys the caller consumed (listed in the unknown-key message).
    """
    if not isinstance(values, Mapping):
        raise ConfigError(f"{section}={values!r} is invalid: must be a table (a [{section}] section).")
    base = cls() if base is None else base
    known = {f.name: getattr(base, f.name) for f in fields(cls) if f.name not in set(skip)}
    changes = {}
    for key, value in values.items():
        dotted = f"{section}.{key}" if section else key
        if key not in known:
            allowed = ", ".join(sorted([*known, *also_allowed]))
            raise ConfigError(f"Unknown configuration key {dotted!r} (= {value!r}): allowed keys"
                              f"{' in [' + section + ']' if section else ''} are {allowed}.")
        if value is None:
            continue
        if dataclasses.is_dataclass(known[key]):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{dotted}={value!r} is invalid: must be a table (a [{dotted}] section).")
            changes[key] = (table(key, value, known[key]) if table is not None
                            else build_section(type(known[key]), key, value, known[key]))
        else:
            changes[key] = coerce(dotted, value, known[key])
    return replace(base, **changes)
