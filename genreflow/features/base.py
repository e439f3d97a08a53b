"""What every extractor is: a small object the pipeline, store, trainer and predictor all share.

An extractor names itself, carries a version bumped when its values change, owns one config
section (a frozen dataclass), says which sample rate it needs and which parameters enter its
fingerprint, loads heavy state once per worker (``load``) and computes one clip purely
(``compute``). Nothing outside ``genreflow/features/`` switches on an extractor's name.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from genreflow.core.sections import check
from genreflow.data.audio import AudioConfig
from genreflow.core.fingerprint import fingerprint
from genreflow.store.kind import Kind

if TYPE_CHECKING:
    from genreflow.store.featureset import FeatureSet


class Extractor:
    """Base class; subclasses set the class attributes and implement ``compute``.

    Attributes
    ----------
    name : the kind's name, the store folder and the ``--features`` word
    version : bump when stored values change for the same parameters
    config_class : frozen dataclass of the ``[name]`` config section
    kind : how the array is stored (value column, shape columns, time axis)
    uses_model : True for heavy models; they run in Ray actors fed the decoded signal,
        CPU extractors run inside the decode task
    model_env : (section key, environment variable) that points at the model's files, if any
    """

    name: ClassVar[str]
    version: ClassVar[int]
    config_class: ClassVar[type]
    kind: ClassVar[Kind]
    uses_model: ClassVar[bool] = False
    model_env: ClassVar[tuple[str, str] | None] = None  # (section key, environment variable) naming the model

    def __init__(self, section: Any, audio: AudioConfig) -> None:
        self.config = section
        self.audio = audio

    # --- what the pipeline needs -------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        """The rate ``compute`` expects; the pipeline resamples the one decode to it."""
        return self.audio.sample_rate

    @property
    def frame_seconds(self) -> float:
        """Seconds between two frames (the time axis), for segment-level pooling."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """Every parameter that changes the stored values (they make the fingerprint)."""
        return {"sample_rate": self.sample_rate, "duration_s": self.audio.duration_s,
                **dataclasses.asdict(self.config)}

    def resolved(self) -> "Extractor":
        """The extractor with choices like ``auto`` fixed, once, in the driver."""
        return self

    def check(self) -> None:
        """Fail fast in the driver (before Ray starts), e.g. a model that cannot be found."""

    def check_quickly(self) -> None:
        """The part of ``check`` that needs no heavy import: ``run`` calls it before the index
        (a warm run never loads the model), the full check runs before a pass that needs the
        model. Default: ``check``."""
        self.check()

    def load(self, threads: int) -> Any:
        """Heavy state (a model), built once per worker or actor; None for plain maths."""
        return None

    def compute(self, state: Any, waveform: np.ndarray, n_valid: int) -> tuple[np.ndarray, int]:
        """One clip [shape=(n,)] at ``sample_rate`` -> (2-D float32 array as stored, valid frames)."""
        raise NotImplementedError

    def on_accelerator(self) -> "Extractor":
        """The extractor as a GPU actor runs it (e.g. more clips per model call); the values and
        the fingerprint do not change."""
        return self

    def compute_many(self, state: Any, waveforms: list[np.ndarray], n_valid: list[int]) -> list[tuple[np.ndarray, int]]:
        """Several clips at once; models override this to share one call among them."""
        return [self.compute(state, w, n) for w, n in zip(waveforms, n_valid)]

    # --- derived --------------------------------------------------------------------------
    def feature_set(self, data_dir: str) -> "FeatureSet":
        from genreflow.store.featureset import FeatureSet  # pyarrow: not needed for `genreflow --help`

        return FeatureSet.create(data_dir, self.kind, self.version, self.params())

    def fingerprint(self) -> str:
        return fingerprint(self.name, self.version, self.params())

    def recipe(self) -> dict[str, Any]:
        """What a saved model needs to rebuild this extractor anywhere, with no config."""
        return {"name": self.name, "version": self.version, "section": dataclasses.asdict(self.config),
                "audio": dataclasses.asdict(self.audio), "params": self.params(),
                "fingerprint": self.fingerprint()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r}, {self.audio!r})"


def valid_frames(n_valid_samples: int, *, hop_length: int, n_frames: int) -> int:
    """Frames whose centre lies on real audio (not padding); at least 1 so pooling has data."""
    return int(min(n_frames, max(1, math.ceil(n_valid_samples / hop_length))))


class HopExtractor(Extractor):
    """librosa-style kinds: centred frames ``hop_length`` samples apart, stored (rows, frames).

    Subclasses give their section a ``hop_length`` and implement ``frames_of``.
    """

    MAX_STFT_BYTES = 2 << 30  # one clip's complex64 STFT: 2 GiB (30 s at 22.05 kHz, n_fft 2048, hop 512: 5 MB)

    def __init__(self, section: Any, audio: AudioConfig) -> None:
        super().__init__(section, audio)
        frames = int(self.sample_rate * audio.duration_s) // section.hop_length + 1
        stft = (section.n_fft // 2 + 1) * frames * 8
        check(stft <= self.MAX_STFT_BYTES, f"{self.name}.hop_length", section.hop_length,
              f"large enough that one clip's STFT fits in {self.MAX_STFT_BYTES >> 30} GiB (n_fft={section.n_fft}, "
              f"{frames:,} frames of {audio.duration_s:g} s at {self.sample_rate} Hz need {stft / 2**30:.1f} GiB): "
              "raise hop_length or lower n_fft or audio.duration_s")

    @property
    def frame_seconds(self) -> float:
        return self.config.hop_length / self.sample_rate

    def frames_of(self, waveform: np.ndarray) -> np.ndarray:
        """[shape=(rows, 1 + len(waveform) // hop_length), float32]."""
        raise NotImplementedError

    def compute(self, state: Any, waveform: np.ndarray, n_valid: int) -> tuple[np.ndarray, int]:
        array = self.frames_of(waveform)
        return array, valid_frames(n_valid, hop_length=self.config.hop_length, n_frames=array.shape[1])
