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

from .errors import ConfigError
from .vggish import DEFAULT_HANDLE as DEFAULT_VGGISH_HANDLE

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, packaged as tomli
    import tomli as tomllib

FEATURE_SETS = ("vggish", "mfcc", "vggish+mfcc")


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: must be {allowed}.")


@dataclass(frozen=True)
class AudioConfig:
    """How every file is decoded before feature extraction."""

    sample_rate: int = 22050
    duration_s: float = 30.0

    def __post_init__(self) -> None:
        _check(self.sample_rate > 0, "audio.sample_rate", self.sample_rate, "a positive integer (Hz), e.g. 22050")
        _check(0 < self.duration_s <= 3600, "audio.duration_s", self.duration_s, "in (0, 3600] seconds")


@dataclass(frozen=True)
class MfccConfig:
    """MFCC parameters (librosa conventions)."""

    n_mfcc: int = 20
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float = 0.0  # 0 means sample_rate / 2

    def __post_init__(self) -> None:
        _check(self.n_mels >= 1, "mfcc.n_mels", self.n_mels, "a positive integer")
        _check(1 <= self.n_mfcc <= self.n_mels, "mfcc.n_mfcc", self.n_mfcc, f"in [1, n_mels={self.n_mels}]")
        _check(self.n_fft >= 16, "mfcc.n_fft", self.n_fft, "an integer >= 16")
        _check(self.hop_length >= 1, "mfcc.hop_length", self.hop_length, "a positive integer")
        _check(self.fmin >= 0, "mfcc.fmin", self.fmin, ">= 0 Hz")
        _check(self.fmax == 0 or self.fmax > self.fmin, "mfcc.fmax", self.fmax, "0 (= sample_rate/2) or > fmin")


@dataclass(frozen=True)
class VggishConfig:
    """Which VGGish model to load; a URL handle or a local SavedModel folder."""

    handle: str = DEFAULT_VGGISH_HANDLE

    def __post_init__(self) -> None:
        _check(bool(self.handle.strip()), "vggish.handle", self.handle, "a TF Hub URL or a local SavedModel folder")


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
    """Classifier parameters."""

    features: str = "vggish"
    C: float = 1.0
    max_iter: int = 2000

    def __post_init__(self) -> None:
        _check(self.features in FEATURE_SETS, "train.features", self.features, f"one of {', '.join(FEATURE_SETS)}")
        _check(self.C > 0 and math.isfinite(self.C), "train.C", self.C, "a float in (0, inf)")
        _check(self.max_iter >= 1, "train.max_iter", self.max_iter, "a positive integer")


@dataclass(frozen=True)
class Config:
    """The whole configuration; top-level keys are run-wide, sections belong to one stage."""

    data_dir: str = "data"
    workers: int = 0  # 0 means every CPU of this machine (or of the cluster with --address)
    address: str = ""
    batch_size: int = 32
    audio: AudioConfig = field(default_factory=AudioConfig)
    mfcc: MfccConfig = field(default_factory=MfccConfig)
    vggish: VggishConfig = field(default_factory=VggishConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        _check(bool(self.data_dir), "data_dir", self.data_dir, "a folder path or URI")
        _check(self.workers >= 0, "workers", self.workers, "an integer >= 1 (0 = all CPUs)")
        _check(1 <= self.batch_size <= 4096, "batch_size", self.batch_size, "in [1, 4096]")

    @property
    def n_workers(self) -> int:
        """Workers to use: the configured number, or every CPU of this machine."""
        return self.workers or (os.cpu_count() or 1)


_SECTION_CLASSES = {
    "audio": AudioConfig, "mfcc": MfccConfig, "vggish": VggishConfig, "split": SplitConfig, "train": TrainConfig,
}


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


def _build(cls: type, section: str, values: Mapping[str, Any], base: Any) -> Any:
    known = {f.name: getattr(base, f.name) for f in fields(cls)}
    changes = {}
    for key, value in values.items():
        dotted = f"{section}.{key}" if section else key
        if key not in known:
            allowed = ", ".join(sorted(known))
            raise ConfigError(f"Unknown configuration key {dotted!r} (= {value!r}): allowed keys"
                              f"{' in [' + section + ']' if section else ''} are {allowed}.")
        if value is None:
            continue
        if dataclasses.is_dataclass(known[key]):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{dotted}={value!r} is invalid: must be a table (a [{dotted}] section).")
            changes[key] = _build(type(known[key]), key, value, known[key])
        else:
            changes[key] = _coerce(dotted, value, known[key])
    try:
        return replace(base, **changes)
    except TypeError as exc:  # pragma: no cover - replace only fails on unknown names, checked above
        raise ConfigError(str(exc)) from exc


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Turn {'split.seed': 1} into {'split': {'seed': 1}}, dropping unset (None) flags."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        if value is None:
            continue
        head, _, tail = key.partition(".")
        if tail:
            nested.setdefault(head, {})[tail] = value
        else:
            nested[head] = value
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
