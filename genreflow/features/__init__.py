"""The extractor registry: every feature kind genreflow can compute, by name.

To add a kind, write one module with an ``Extractor`` subclass and its config section, and
add one line to ``_MODULES`` below. The CLI choices, config sections, fingerprints,
``status``, training and ``predict`` all iterate this registry.
"""

from __future__ import annotations

import importlib
from typing import Any

from genreflow.core.sections import build_section, check
from genreflow.data.audio import AudioConfig
from genreflow.errors import ConfigError
from genreflow.store.kind import Kind
from genreflow.features.base import Extractor

_MODULES = {
    "mfcc": "genreflow.features.mfcc:MfccExtractor",
    "spectral": "genreflow.features.spectral:SpectralExtractor",
    "musicnn": "genreflow.features.musicnn:MusicnnExtractor",
    "vggish": "genreflow.features.vggish:VggishExtractor",
}
_extra: dict[str, type[Extractor]] = {}


def register(cls: type[Extractor]) -> type[Extractor]:
    """Register an extractor class at run time (plug-ins, tests); usable as a decorator."""
    _extra[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    _extra.pop(name, None)


def registered() -> dict[str, type[Extractor]]:
    """name -> extractor class, built-ins first, sorted by name within each group."""
    found = {}
    for name, target in _MODULES.items():
        module, _, attr = target.partition(":")
        found[name] = getattr(importlib.import_module(module), attr)
    return {**found, **dict(sorted(_extra.items()))}


def names() -> list[str]:
    return list(registered())


def parse_kinds(text: str, key: str = "--features") -> list[str]:
    """'vggish+mfcc' -> ['mfcc', 'vggish'] (sorted, unique); unknown names give one clear line
    that suggests the nearest registered kind."""
    import difflib

    known = registered()
    kinds = [part.strip() for part in str(text).split("+")]
    unknown = [k for k in kinds if k not in known]
    if not text or unknown or "" in kinds:
        near = [m for k in unknown for m in difflib.get_close_matches(k, list(known), n=1, cutoff=0.5)]
        hint = f" Did you mean {' or '.join(repr(n) for n in dict.fromkeys(near))}?" if near else ""
        raise ConfigError(f"{key}={text!r} is invalid: must be one or more of {', '.join(known)} "
                          f"joined with '+' (e.g. mfcc+spectral).{hint}")
    return sorted(set(kinds))


def from_recipe(recipe: dict[str, Any]) -> Extractor:
    """Rebuild an extractor from a saved model's recipe; refuse another version's values."""
    known = registered()
    name = recipe.get("name")
    if name not in known:
        raise ConfigError(f"The model needs the feature kind {name!r}, which this genreflow does not have "
                          f"(it has {', '.join(known)}): install the plug-in that provides it.")
    cls = known[name]
    if recipe.get("version") != cls.version:
        raise ConfigError(f"The model was trained on {name} features version {recipe.get('version')}; this "
                          f"genreflow computes version {cls.version}: retrain with `genreflow run`.")
    section = build_section(cls.config_class, name, recipe.get("section", {}))
    audio = build_section(AudioConfig, "audio", recipe.get("audio", {}))
    return cls(section, audio)


__all__ = ["Extractor", "Kind", "check", "from_recipe", "names", "parse_kinds", "register", "registered", "unregister"]
