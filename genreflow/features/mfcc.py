"""MFCC: mel-frequency cepstral coefficients as librosa defines them, stored (n_mfcc, frames),
unnormalised; computed by ``melspec`` (NumPy, equal to librosa without its import)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from genreflow.core.sections import check
from genreflow.store.kind import Kind
from genreflow.features import melspec
from genreflow.features.base import HopExtractor, valid_frames

__all__ = ["MfccConfig", "MfccExtractor", "compute_mfcc", "valid_frames"]


@dataclass(frozen=True)
class MfccConfig:
    """The ``[mfcc]`` section (librosa conventions; fmax 0 means sample_rate / 2)."""

    n_mfcc: int = 20
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float = 0.0

    def __post_init__(self) -> None:
        check(1 <= self.n_mels <= 1024, "mfcc.n_mels", self.n_mels, "an integer in [1, 1024]")
        check(1 <= self.n_mfcc <= self.n_mels, "mfcc.n_mfcc", self.n_mfcc, f"in [1, n_mels={self.n_mels}]")
        check(16 <= self.n_fft <= 65536, "mfcc.n_fft", self.n_fft, "an integer in [16, 65536]")
        check(1 <= self.hop_length <= 65536, "mfcc.hop_length", self.hop_length, "an integer in [1, 65536]")
        check(math.isfinite(self.fmin) and self.fmin >= 0, "mfcc.fmin", self.fmin, "a finite number >= 0 Hz")
        check(math.isfinite(self.fmax) and (self.fmax == 0 or self.fmax > self.fmin), "mfcc.fmax", self.fmax,
              "0 (= sample_rate/2) or a finite number > fmin")


def compute_mfcc(*, y: np.ndarray, sr: int, config: MfccConfig) -> np.ndarray:
    """librosa's MFCC (``librosa.feature.mfcc`` with these parameters), neither flattened nor normalised.

    Returns np.ndarray [shape=(n_mfcc, 1 + len(y) // hop_length), dtype=float32] (even n_fft).
    """
    return melspec.mfcc(y, sr=sr, n_mfcc=config.n_mfcc, n_fft=config.n_fft, hop_length=config.hop_length,
                        n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax or None)


def check_band(name: str, fmin: float, fmax: float, sample_rate: int) -> None:
    """fmin < fmax <= Nyquist, checked against the rate the extractor really runs at."""
    nyquist = sample_rate / 2
    check(fmin < nyquist, f"{name}.fmin", fmin, f"below sample_rate/2 = {nyquist:g} Hz")
    check(fmax <= nyquist, f"{name}.fmax", fmax, f"0 or at most sample_rate/2 = {nyquist:g} Hz")


class MfccExtractor(HopExtractor):
    name = "mfcc"
    version = 1
    config_class = MfccConfig
    kind = Kind("mfcc", "mfcc", ("n_mfcc", "n_frames"), time_axis=1)

    def __init__(self, section: MfccConfig, audio) -> None:
        super().__init__(section, audio)
        check_band("mfcc", section.fmin, section.fmax, self.sample_rate)

    def frames_of(self, waveform: np.ndarray) -> np.ndarray:
        return compute_mfcc(y=waveform, sr=self.sample_rate, config=self.config)
