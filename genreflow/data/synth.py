"""Deterministic synthetic audio: tones, chords, noise, clicks, and rhythmic "genres".

Used by ``genreflow demo`` (a labelled set for people with no music at hand), by the tests
and by the benchmarks, so every one of them writes real audio bytes the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FORMATS = {  # extension -> (soundfile format, subtype)
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}


def tone(freq: float, seconds: float, sr: int, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def chord(freqs: list[float], seconds: float, sr: int, amp: float = 0.3) -> np.ndarray:
    return (sum(tone(f, seconds, sr, amp / len(freqs)) for f in freqs)).astype(np.float32)


def noise(seconds: float, sr: int, amp: float = 0.1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (amp * rng.standard_normal(int(round(seconds * sr)))).astype(np.float32)


def clicks(bpm: float, seconds: float, sr: int, amp: float = 0.8, click_ms: float = 5.0) -> np.ndarray:
    out = np.zeros(int(round(seconds * sr)), dtype=np.float32)
    step, width = int(sr * 60 / bpm), max(1, int(sr * click_ms / 1000))
    decay = np.exp(-np.linspace(0, 6, width)).astype(np.float32)
    for start in range(0, len(out) - width, step):
        out[start:start + width] += amp * decay
    return out


def write_audio(path: str | Path, samples: np.ndarray, sr: int, fmt: str | None = None) -> Path:
    """Write mono (n,) or multichannel (n, ch) samples; the format follows the extension."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = (fmt or path.suffix.lstrip(".")).lower()
    file_format, subtype = FORMATS[ext]
    sf.write(str(path), samples, sr, format=file_format, subtype=subtype)
    return path


def genre_clip(genre: str, seconds: float, sr: int, seed: int) -> np.ndarray:
    """One clip of a synthetic genre that differs from the others in rhythm, pitch and timbre."""
    rng = np.random.default_rng(seed)
    if genre == "ambient":  # slow low chords, no rhythm
        root = rng.uniform(90, 140)
        return chord([root, root * 1.25, root * 1.5], seconds, sr, amp=0.5) + noise(seconds, sr, 0.01, seed)
    if genre == "techno":  # four-on-the-floor clicks + low bass
        bpm = rng.uniform(124, 132)
        return clicks(bpm, seconds, sr) + tone(rng.uniform(50, 60), seconds, sr, 0.2) + noise(seconds, sr, 0.02, seed)
    if genre == "chiptune":  # fast square-ish arpeggio, high pitch
        out = np.zeros(int(round(seconds * sr)), dtype=np.float32)
        note = int(sr * rng.uniform(0.08, 0.12))
        base = rng.uniform(600, 900)
        for i, start in enumerate(range(0, len(out), note)):
            freq = base * (1.0, 1.26, 1.5, 2.0)[i % 4]
            seg = np.sign(tone(freq, note / sr, sr, 1.0))[: len(out) - start] * 0.2
            out[start:start + len(seg)] = seg
        return out
    if genre == "noise":  # bursts of broadband noise at an irregular pace
        env = np.repeat(rng.uniform(0.05, 1.0, int(seconds * 8) + 1), sr // 8)[: int(round(seconds * sr))]
        return (noise(seconds, sr, 0.3, seed) * env).astype(np.float32)
    raise ValueError(f"genre={genre!r} is not a synthetic genre: use one of {', '.join(SYNTH_GENRES)}")


SYNTH_GENRES = ("ambient", "chiptune", "noise", "techno")
