"""genreflow's NumPy mel front end equals librosa's on the same samples, and computing MFCCs
does not import librosa (whose import stalled the first seconds of every features pass)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from genreflow.data.synth import chord, clicks, noise, tone
from genreflow.features import melspec
from genreflow.features.mfcc import MfccConfig, compute_mfcc

librosa = pytest.importorskip("librosa")

SR = 22050


def signals(seconds: float = 3.0, sr: int = SR) -> dict[str, np.ndarray]:
    n = int(seconds * sr)
    quiet_tail = np.zeros(n, dtype=np.float32)
    quiet_tail[: n // 4] = noise(seconds / 4, sr, amp=0.2, seed=3)[: n // 4]
    return {
        "tone": tone(440.0, seconds, sr),
        "chord+noise": chord([196.0, 247.0, 294.0], seconds, sr) + noise(seconds, sr, amp=0.05, seed=1),
        "clicks": clicks(120.0, seconds, sr),
        "noise then silence": quiet_tail,
        "silence": np.zeros(n, dtype=np.float32),
    }


CONFIGS = [
    {},  # genreflow's [mfcc] defaults = librosa's
    {"n_mfcc": 13, "n_fft": 1001, "hop_length": 300, "n_mels": 40, "fmin": 50.0, "fmax": 8000.0},  # odd n_fft
    {"n_mfcc": 40, "n_fft": 512, "hop_length": 256, "n_mels": 96},
]


@pytest.mark.parametrize("params", CONFIGS, ids=["defaults", "odd-n_fft-band", "short-window"])
def test_mfcc_equals_librosa(params: dict) -> None:
    config = MfccConfig(**params)
    for name, y in signals().items():
        y = y.astype(np.float32)
        ours = compute_mfcc(y=y, sr=SR, config=config)
        theirs = librosa.feature.mfcc(y=y, sr=SR, n_mfcc=config.n_mfcc, n_fft=config.n_fft,
                                      hop_length=config.hop_length, n_mels=config.n_mels,
                                      fmin=config.fmin, fmax=config.fmax or None)
        assert ours.dtype == np.float32 and ours.flags.c_contiguous, name
        assert ours.shape == theirs.shape, name
        # float32 FFTs where librosa uses float64: ~1e-6 of the largest coefficient
        scale = max(1.0, float(np.abs(theirs).max()))
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5 * scale, err_msg=name)


def test_each_step_equals_librosa() -> None:
    y = signals()["chord+noise"].astype(np.float32)
    for sr, n_fft, n_mels, fmin, fmax in [(SR, 2048, 128, 0.0, None), (16000, 512, 96, 0.0, None),
                                          (SR, 1001, 40, 50.0, 8000.0)]:
        filters = melspec.mel_filters(sr, n_fft, n_mels, fmin, fmax)
        expected = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
        assert filters.shape == expected.T.shape and not filters.flags.writeable
        np.testing.assert_allclose(filters, expected.T, rtol=1e-5, atol=1e-9)
    power = melspec.power_spectrogram(y, n_fft=2048, hop_length=512)
    expected_power = np.abs(librosa.stft(y, n_fft=2048, hop_length=512)) ** 2
    assert power.shape == expected_power.T.shape == (1 + len(y) // 512, 1025)
    np.testing.assert_allclose(power, expected_power.T, rtol=0, atol=1e-5 * float(expected_power.max()))
    mel = power @ melspec.mel_filters(SR, 2048, 128)
    np.testing.assert_allclose(melspec.power_to_db(mel), librosa.power_to_db(mel), rtol=0, atol=1e-4)


def test_a_clip_shorter_than_the_window_is_padded_like_librosa() -> None:
    y = tone(330.0, 0.03, SR).astype(np.float32)  # 661 samples < n_fft 2048
    ours = compute_mfcc(y=y, sr=SR, config=MfccConfig())
    with pytest.warns(UserWarning):  # librosa warns that n_fft is larger than the signal
        theirs = librosa.feature.mfcc(y=y, sr=SR)
    assert ours.shape == theirs.shape == (20, 1 + len(y) // 512)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5 * float(np.abs(theirs).max()))


def test_computing_mfcc_and_decoding_do_not_import_librosa(tmp_path) -> None:
    """The pass's CPU kind must not pay librosa's 2-3 s import (scipy.signal, numba)."""
    import soundfile

    path = tmp_path / "chord.flac"
    soundfile.write(path, chord([220.0, 277.2, 329.6], 2.0, 44100), 44100)
    code = (
        "import sys\n"
        "from genreflow.data.audio import load_audio\n"
        "from genreflow.features.mfcc import MfccConfig, compute_mfcc\n"
        f"wave = load_audio({str(path)!r}, sample_rate=22050, duration_s=2.0)\n"
        "out = compute_mfcc(y=wave.samples, sr=22050, config=MfccConfig())\n"
        "print(out.shape, sorted(m for m in ('librosa', 'numba', 'scipy.signal') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "(20, 87) []"
