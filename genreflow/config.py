"""Configuration: defaults < genreflow.toml < CLI flags, one frozen dataclass per stage.

Each stage receives only its own section, so a stage's fingerprint can hash exactly the
parameters that change its output.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from genreflow.errors import ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, packaged as tomli
    import tomli as tomllib

MAX_SAMPLE_RATE = 384_000


def check(ok: bool, key: str, value: Any, allowed: str) -> None:
    """Raise one clear line naming the key, its value and what it must be."""
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: must be {allowed}.")


_check = check


@dataclass(frozen=True)
class AudioConfig:
    """How every file is decoded before feature extraction."""

    sample_rate: int = 22050
    duration_s: float = 30.0

    def __post_init__(self) -> None:
        _check(1000 <= self.sample_rate <= MAX_SAMPLE_RATE, "audio.sample_rate", self.sample_rate,
               f"an integer in [1000, {MAX_SAMPLE_RATE}] (Hz), e.g. 22050")
        _check(math.isfinite(self.duration_s) and 0 < self.duration_s <= 3600, "audio.duration_s",
               self.duration_s, "in (0, 3600] seconds")


@dataclass(frozen=True)
class SplitConfig:
    """Stratified train/validation split parameters."""

    val_fraction: float = 0.2
    seed: int = 42

    def __post_init__(self) -> None:
        _check(0 < self.val_fraction < 1, "split.val_fraction", self.val_fraction, "in the open range (0, 1)")
        _check(self.seed >= 0, "split.seed", self.seed, "an integer >= 0")


@dataclass(frozen=True)
class TrainConfig:
    """Which features and classifier; ``[train.<classifier>]`` sections hold each one's settings."""

    features: str = "vggish"
    classifier: str = "logreg"
    segment_s: float = 0.0  # 0 = whole clip; else windows of this many seconds, 50 % overlap
    tune: bool = False
    allow_no_val: bool = False
    logreg: Any = field(default_factory=lambda: _classifier_params("logreg"))
    svm: Any = field(default_factory=lambda: _classifier_params("svm"))
    mlp: Any = field(default_factory=lambda: _classifier_params("mlp"))
    hgb: Any = field(default_factory=lambda: _classifier_params("hgb"))

    def __post_init__(self) -> None:
        from genreflow.model.classifiers import CLASSIFIERS
        from genreflow.features import parse_kinds

        parse_kinds(self.features, "train.features")
        _check(self.classifier in CLASSIFIERS, "train.classifier", self.classifier, "one of " + ", ".join(CLASSIFIERS))
        _check(math.isfinite(self.segment_s) and 0 <= self.segment_s <= 600, "train.segment_s", self.segment_s,
               "0 (whole clip) or a number of seconds in (0, 600]")

    @property
    def params(self) -> Any:
        """The chosen classifier's settings."""
        return getattr(self, self.classifier)

    @property
    def segments(self) -> float | None:
        return self.segment_s or None


def _classifier_params(name: str) -> Any:
    from genreflow.model.classifiers import default_params

    return default_params(name)


@dataclass(frozen=True)
class EvaluateConfig:
    """Cross-validation: K folds, R repeats, optional groups kept within one fold."""

    folds: int = 5
    repeats: int = 1
    inner_folds: int = 3
    groups: str = ""  # a CSV of relpath,group
    group_pattern: str = ""  # a regex whose first capture group on the relpath is the group

    def __post_init__(self) -> None:
        _check(2 <= self.folds <= 100, "evaluate.folds", self.folds, "an integer in [2, 100]")
        _check(1 <= self.repeats <= 100, "evaluate.repeats", self.repeats, "an integer in [1, 100]")
        _check(2 <= self.inner_folds <= 20, "evaluate.inner_folds", self.inner_folds, "an integer in [2, 20]")
        _check(not (self.groups and self.group_pattern), "evaluate.groups", self.groups,
               "empty when evaluate.group_pattern is set (use one of --groups / --group-pattern)")


@dataclass(frozen=True)
class Config:
    """The whole configuration; top-level keys are run-wide, sections belong to one stage."""

    data_dir: str = "data"
    workers: int = 0  # 0 means every CPU of this machine (or of the cluster with --address)
    address: str = ""
    batch_size: int = 32
    audio: AudioConfig = field(default_factory=AudioConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    extractors: Mapping[str, Any] = field(default_factory=dict)  # [<kind>] sections, by registry name

    def __post_init__(self) -> None:
        _check(bool(self.data_dir), "data_dir", self.data_dir, "a folder path or URI")
        _check(self.workers >= 0, "workers", self.workers, "an integer >= 1 (0 = all CPUs)")
        _check(1 <= self.batch_size <= 4096, "batch_size", self.batch_size, "in [1, 4096]")
        from genreflow.features import registered

        sections = {name: self.extractors.get(name) or cls.config_class() for name, cls in registered().items()}
        object.__setattr__(self, "extractors", sections)
        for name, cls in registered().items():  # checks that span sections (e.g. fmax <= sample_rate/2)
            cls(sections[name], self.audio)

    def section(self, name: str) -> Any:
        """The config section of the extractor ``name`` (``[mfcc]``, ``[vggish]``, ...)."""
        return self.extractors[name]

    def __getattr__(self, name: str) -> Any:
        """``config.mfcc`` / ``config.vggish``: extractor sections read like the fixed ones."""
        extractors = self.__dict__.get("extractors") or {}
        if name in extractors:
            return extractors[name]
        raise AttributeError(name)

    def with_section(self, name: str, **changes: Any) -> "Config":
        """A copy with some keys of one extractor section changed."""
        return replace(self, extractors={**self.extractors, name: replace(self.section(name), **changes)})

    @property
    def n_workers(self) -> int:
        """Workers to use: the configured number capped at the CPUs this process may use
        (on a cluster, --address, Ray decides and the number is passed through)."""
        from genreflow.stages.session import usable_cpus  # affinity mask and cgroup quota, not the machine's count

        available = usable_cpus()
        if self.address or os.environ.get("RAY_ADDRESS"):
            return self.workers or available
        return min(self.workers, available) if self.workers else available





_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Accept a TOML/CLI value only if it has the default's type (ints count as floats)."""
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
        expected = _TYPE_WORDS.get(kind, f"of type {kind.__name__}")
        raise ConfigError(f"{key}={value!r} is invalid: must be {expected}.")
    return value


def build_section(cls: type, section: str, values: Mapping[str, Any], base: Any = None) -> Any:
    """One section dataclass from a mapping (TOML table, saved recipe), with the same checks."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{section}={values!r} is invalid: must be a table (a [{section}] section).")
    return _build(cls, section, values, cls() if base is None else base)


def _build(cls: type, section: str, values: Mapping[str, Any], base: Any) -> Any:
    known = {f.name: getattr(base, f.name) for f in fields(cls) if f.name != "extractors"}
    if cls is Config:
        extractors = dict(base.extractors)
        values = dict(values)
        from genreflow.features import registered

        for name, ext_cls in registered().items():
            if name in values and values[name] is not None:
                extractors[name] = build_section(ext_cls.config_class, name, values.pop(name), extractors[name])
    changes = {}
    for key, value in values.items():
        dotted = f"{section}.{key}" if section else key
        if key not in known:
            allowed = ", ".join(sorted([*known, *(base.extractors if cls is Config else [])]))
            raise ConfigError(f"Unknown configuration key {dotted!r} (= {value!r}): allowed keys"
                              f"{' in [' + section + ']' if section else ''} are {allowed}.")
        if value is None:
            continue
        if dataclasses.is_dataclass(known[key]):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{dotted}={value!r} is invalid: must be a table (a [{dotted}] section).")
            if cls is TrainConfig:  # [train.<classifier>]: lists and numbers as the classifier wants them
                from genreflow.model.classifiers import params_from_mapping

                changes[key] = params_from_mapping(key, {**dataclasses.asdict(known[key]), **value})
            else:
                changes[key] = _build(type(known[key]), key, value, known[key])
        else:
            changes[key] = _coerce(dotted, value, known[key])
    if cls is Config:
        changes["extractors"] = extractors
    try:
        return replace(base, **changes)
    except TypeError as exc:  # pragma: no cover - replace only fails on unknown names, checked above
        raise ConfigError(str(exc)) from exc


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Turn {'split.seed': 1, 'train.svm.C': 2} into nested tables, dropping unset (None) flags."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        if value is None:
            continue
        *heads, tail = key.split(".")
        table = nested
        for head in heads:
            table = table.setdefault(head, {})
        table[tail] = value
    return nested


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a genreflow.toml, turning syntax errors into one clear line."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"Config file {str(path)!r} does not exist: pass an existing file to --config.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Config file {str(path)!r} is not valid TOML: {exc}.") from None
    except OSError as exc:  # a folder, no permission
        raise ConfigError(f"Config file {str(path)!r} cannot be read: {exc.strerror or exc}.") from None


def load_config(config_path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Build the configuration: defaults < TOML file < CLI overrides (dotted keys, None = unset).

    Without ``config_path`` a ``./genreflow.toml`` is used when present.
    """
    config = Config()
    if config_path is None and Path("genreflow.toml").is_file():
        config_path = "genreflow.toml"
    if config_path is not None:
        config = _build(Config, "", read_toml(config_path), config)
    env_handle = os.environ.get("GENREFLOW_VGGISH_MODEL")
    if env_handle:
        config = _build(Config, "", {"vggish": {"handle": env_handle}}, config)
    return _build(Config, "", _nest(overrides or {}), config)


def as_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config or one of its sections."""
    return dataclasses.asdict(config)
