"""Configuration: defaults < genreflow.toml < CLI flags, one frozen dataclass per stage.

Each stage receives only its own section, so a stage's fingerprint can hash exactly the
parameters that change its output.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from genreflow.core.host import usable_cpus
from genreflow.core.sections import build_section, check
from genreflow.errors import ConfigError
from genreflow.data.audio import AudioConfig
from genreflow.data.splits import SplitConfig
from genreflow.features import Extractor, parse_kinds, registered
from genreflow.model.classifiers import CLASSIFIERS, default_params, params_from_mapping
from genreflow.model.pooling import MIN_SEGMENT_S

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, packaged as tomli
    import tomli as tomllib


@dataclass(frozen=True)
class TrainConfig:
    """Which features and classifier; ``[train.<classifier>]`` sections hold each one's settings."""

    features: str = "musicnn"  # the best measured setting that needs no download (README, "Feature kinds")
    classifier: str = "logreg"
    segment_s: float = 0.0  # 0 = whole clip; else windows of this many seconds, 50 % overlap
    tune: bool = False
    allow_no_val: bool = False
    logreg: Any = field(default_factory=lambda: _classifier_params("logreg"))
    svm: Any = field(default_factory=lambda: _classifier_params("svm"))
    mlp: Any = field(default_factory=lambda: _classifier_params("mlp"))
    hgb: Any = field(default_factory=lambda: _classifier_params("hgb"))

    def __post_init__(self) -> None:
        parse_kinds(self.features, "train.features (--features)")
        check(self.classifier in CLASSIFIERS, "train.classifier", self.classifier, "one of " + ", ".join(CLASSIFIERS))
        check(math.isfinite(self.segment_s) and (self.segment_s == 0 or MIN_SEGMENT_S <= self.segment_s <= 600),
              "train.segment_s", self.segment_s, f"0 (whole clip) or a number of seconds in [{MIN_SEGMENT_S}, 600]")

    @property
    def params(self) -> Any:
        """The chosen classifier's settings."""
        return getattr(self, self.classifier)

    @property
    def segments(self) -> float | None:
        return self.segment_s or None


def _classifier_params(name: str) -> Any:
    return default_params(name)


@dataclass(frozen=True)
class RunConfig:
    """How the pipeline uses the cluster (``[run]``)."""

    gpus_per_model_actor: float = 1.0  # on a cluster with GPUs; 0 keeps model actors on CPUs
    executor: str = "auto"  # auto: Ray for a cluster, > 2 workers or a GPU; else the pass runs in-process

    def __post_init__(self) -> None:
        check(self.executor in ("auto", "ray", "local"), "run.executor", self.executor, "one of auto, ray, local")
        check(math.isfinite(self.gpus_per_model_actor) and 0 <= self.gpus_per_model_actor <= 8,
              "run.gpus_per_model_actor", self.gpus_per_model_actor,
              "a number of GPUs in [0, 8] (fractions share a GPU; 0 = model actors on CPUs)")


@dataclass(frozen=True)
class EvaluateConfig:
    """Cross-validation: K folds, R repeats, optional groups kept within one fold."""

    folds: int = 5
    repeats: int = 1
    inner_folds: int = 3
    groups: str = ""  # a CSV of relpath,group
    group_pattern: str = ""  # a regex whose first capture group on the relpath is the group

    def __post_init__(self) -> None:
        check(2 <= self.folds <= 100, "evaluate.folds", self.folds, "an integer in [2, 100]")
        check(1 <= self.repeats <= 100, "evaluate.repeats", self.repeats, "an integer in [1, 100]")
        check(2 <= self.inner_folds <= 20, "evaluate.inner_folds", self.inner_folds, "an integer in [2, 20]")
        check(not (self.groups and self.group_pattern), "evaluate.groups", self.groups,
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
    run: RunConfig = field(default_factory=RunConfig)
    extractors: Mapping[str, Any] = field(default_factory=dict)  # [<kind>] sections, by registry name

    def __post_init__(self) -> None:
        check(bool(self.data_dir), "data_dir", self.data_dir, "a folder path or URI")
        check(self.workers >= 0, "workers", self.workers, "an integer >= 1 (0 = all CPUs)")
        check(1 <= self.batch_size <= 4096, "batch_size", self.batch_size, "in [1, 4096]")
        if self.run.executor == "local" and self.cluster_address:
            raise ConfigError(f"--executor local runs on this machine only, but a Ray cluster was given "
                              f"({self.cluster_address!r}, from --address or $RAY_ADDRESS): drop one of them")
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
    def cluster_address(self) -> str:
        """The Ray cluster to join: --address, else $RAY_ADDRESS (as ``ray job submit`` sets it), else ""."""
        return self.address or os.environ.get("RAY_ADDRESS") or ""

    @property
    def n_workers(self) -> int:
        """Workers to use: the configured number capped at the CPUs this process may use
        (on a cluster, --address, Ray decides and the number is passed through)."""
        available = usable_cpus()
        if self.cluster_address:
            return self.workers or available
        return min(self.workers, available) if self.workers else available





def _build(cls: type, section: str, values: Mapping[str, Any], base: Any) -> Any:
    """``build_section`` plus the two tables only this root knows: extractor sections by
    registry name (``[mfcc]``, ``[vggish]``...) and ``[train.<classifier>]``."""
    if cls is Config:
        values = dict(values)
        extractors = dict(base.extractors)
        for name, ext_cls in registered().items():
            if name in values and values[name] is not None:
                extractors[name] = build_section(ext_cls.config_class, name, values.pop(name), extractors[name])
        values.pop("extractors", None)
        built = build_section(Config, section, values, base, skip=("extractors",), also_allowed=base.extractors,
                              table=lambda key, value, current: _build(type(current), key, value, current))
        return replace(built, extractors=extractors)
    if cls is TrainConfig:  # [train.<classifier>]: lists and numbers as the classifier wants them
        return build_section(TrainConfig, section, values, base,
                             table=lambda key, value, current: params_from_mapping(
                                 key, {**dataclasses.asdict(current), **value}))
    return build_section(cls, section, values, base)


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
    except RecursionError:
        raise ConfigError(f"Config file {str(path)!r} nests tables too deeply to be a genreflow config.") from None
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
        try:
            config = _build(Config, "", read_toml(config_path), config)
        except ConfigError as exc:
            if str(config_path) in str(exc):
                raise
            raise ConfigError(f"{config_path}: {exc}") from None
    for name, cls in registered().items():  # e.g. GENREFLOW_VGGISH_MODEL, GENREFLOW_MUSICNN_MODEL
        if cls.model_env and os.environ.get(cls.model_env[1]):
            config = _build(Config, "", {name: {cls.model_env[0]: os.environ[cls.model_env[1]]}}, config)
    return _build(Config, "", _nest(overrides or {}), config)


def with_overrides(config: Config, overrides: Mapping[str, Any]) -> Config:
    """``config`` with dotted keys changed (``{"train.classifier": "svm"}``), checked like flags."""
    return _build(Config, "", _nest(overrides), config)


def build_extractor(name: str, config: Config) -> Extractor:
    """The extractor ``name`` with its section of ``config``."""
    return registered()[name](config.section(name), config.audio)


def extractors_for(config: Config, features: str | None = None) -> list[Extractor]:
    """The resolved extractors of a '+'-joined feature set (default: the configured one)."""
    return [build_extractor(kind, config).resolved() for kind in parse_kinds(features or config.train.features)]
