"""MFCC extraction: a pure function, waveform in, (n_mfcc, frames) matrix out."""

from __future__ import annotations

import math

import numpy as np

from .config import MfccConfig

FEATURE_NAME = "mfcc"
FEATURE_VERSION = 1  # bump when the stored values change for the same parameters


def compute_mfcc(*, y: np.ndarray, sr: int, config: MfccConfig) -> np.ndarray:
    """librosa MFCC, neither flattened nor normalised.

    Returns np.ndarray [shape=(n_mfcc, 1 + len(y) // hop_length), dtype=float32].
    """
    import librosa

    return librosa.feature.mfcc(
        y=np.asarray(y, dtype=np.float32), sr=sr, n_mfcc=config.n_mfcc, n_fft=config.n_fft,
        hop_length=config.hop_length, n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax or None,
    ).astype(np.float32, copy=False)


def valid_frames(n_valid_samples: int, *, hop_length: int, n_frames: int) -> int:
    """Frames whose centre lies on real audio (not padding); at least 1 so pooling has data."""
    return int(min(n_frames, max(1, math.ceil(n_valid_samples / hop_length))))
