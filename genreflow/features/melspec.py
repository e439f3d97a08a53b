"""Power spectrogram, mel filterbank, decibels and MFCC in NumPy and scipy.fft, equal to librosa's.

Why not call librosa: its first ``feature.mfcc`` imports scipy.signal, scipy.stats and numba
(1.8-2.8 s of one core, much of it holding the interpreter lock; scipy.fft alone: 0.15 s) in
every process that computes a clip, which on 2 cores stalls the first seconds of every features
pass (benchmarks/bench_imports.py). The maths is small and fixed:
librosa's conventions (centred frames with zero padding, periodic Hann window, Slaney mel
scale and area normalisation, ``power_to_db`` with ``amin`` 1e-10 and ``top_db`` 80, an
orthonormal DCT-II), computed in float32 where librosa uses float64 FFTs. tests/test_melspec.py
compares every function with librosa on the same samples.

Arrays are (frames, bins) inside, so each step is one contiguous matrix product; the public
MFCC is (n_mfcc, frames) like librosa's.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["power_spectrogram", "mel_filters", "power_to_db", "mfcc_of_mel_db", "mfcc"]

AMIN = 1e-10  # floor before the logarithm (librosa's power_to_db default)
TOP_DB = 80.0  # dynamic range kept below each clip's loudest cell


@lru_cache(maxsize=8)
def _hann(n_fft: int) -> np.ndarray:
    """Periodic Hann window (scipy's ``get_window('hann', n, fftbins=True)``)."""
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    window.flags.writeable = False
    return window


def power_spectrogram(y: np.ndarray, *, n_fft: int, hop_length: int) -> np.ndarray:
    """|STFT|**2 of centred frames (``n_fft // 2`` zeros on both sides).

    Returns np.ndarray [shape=(1 + (len(y) + 2 * (n_fft // 2) - n_fft) // hop_length, 1 + n_fft // 2), float32].
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D mono samples; got shape={y.shape}")
    half = n_fft // 2
    padded = np.zeros(len(y) + 2 * half, dtype=np.float32)
    padded[half:half + len(y)] = y
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length]
    from scipy.fft import rfft  # 0.15 s to import; float32 transforms 3x faster than NumPy's

    spectrum = rfft(frames * _hann(n_fft), axis=-1)
    power = np.square(spectrum.real)
    power += np.square(spectrum.imag)
    return power


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear (3 per 200 Hz) below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log_region = 15.0 + np.log(np.maximum(hz, 1e-300) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_region, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * (200.0 / 3)
    log_region = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log_region, linear)


@lru_cache(maxsize=16)
def mel_filters(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Triangular filters on the Slaney mel scale, each scaled to unit area (librosa's
    ``filters.mel`` with ``norm='slaney'``), transposed for (frames, bins) @ filters.

    Returns np.ndarray [shape=(1 + n_fft // 2, n_mels), float32], read-only (shared by the cache).
    """
    fmax = sr / 2.0 if fmax is None else float(fmax)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1.0 / sr)
    widths = np.diff(edges)
    rising = (bins[None, :] - edges[:-2, None]) / widths[:-1, None]
    falling = (edges[2:, None] - bins[None, :]) / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    out = np.ascontiguousarray(weights.T, dtype=np.float32)
    out.flags.writeable = False
    return out


def power_to_db(power: np.ndarray) -> np.ndarray:
    """10 log10(power) floored at ``AMIN`` and at ``TOP_DB`` below the array's maximum."""
    db = np.log10(np.maximum(power, np.float32(AMIN)))
    db *= np.float32(10.0)
    if db.size:
        np.maximum(db, db.max() - np.float32(TOP_DB), out=db)
    return db


@lru_cache(maxsize=8)
def _dct_ortho(n_mels: int, n_mfcc: int) -> np.ndarray:
    """The first ``n_mfcc`` rows of the orthonormal DCT-II of size ``n_mels``, transposed."""
    k = np.arange(n_mfcc)[:, None]
    n = np.arange(n_mels)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_mels)) * np.sqrt(2.0 / n_mels)
    basis[0] /= np.sqrt(2.0)
    out = np.ascontiguousarray(basis.T, dtype=np.float32)
    out.flags.writeable = False
    return out


def mfcc_of_mel_db(mel_db: np.ndarray, n_mfcc: int) -> np.ndarray:
    """MFCCs of a (frames, n_mels) log-mel array. Returns [shape=(n_mfcc, frames), float32]."""
    return np.ascontiguousarray((mel_db @ _dct_ortho(mel_db.shape[1], n_mfcc)).T)


def mfcc(y: np.ndarray, *, sr: int, n_mfcc: int = 20, n_fft: int = 2048, hop_length: int = 512,
         n_mels: int = 128, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """librosa.feature.mfcc with its defaults (DCT-II ortho, no lifter).

    Returns np.ndarray [shape=(n_mfcc, frames), float32]; frames = 1 + len(y) // hop_length for even n_fft.
    """
    mel = power_spectrogram(y, n_fft=n_fft, hop_length=hop_length) @ mel_filters(sr, n_fft, n_mels, fmin, fmax)
    return mfcc_of_mel_db(power_to_db(mel), n_mfcc)
