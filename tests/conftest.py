"""Shared helpers for the tests: real audio bytes written into tmp dirs with genreflow.data.synth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genreflow.data.synth import chord, clicks, noise, tone, write_audio

FORMATS = ("wav", "flac", "ogg", "mp3")
RATES = (8000, 16000, 22050, 44100, 48000)


def clip(seconds: float = 0.5, sr: int = 22050, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A short, distinct signal per seed: tone, chord, noise or clicks; (n,) or (n, channels)."""
    kind = seed % 4
    if kind == 0:
        mono = tone(220.0 + 37 * seed, seconds, sr)
    elif kind == 1:
        mono = chord([110.0 + 11 * seed, 165.0 + 7 * seed], seconds, sr)
    elif kind == 2:
        mono = noise(seconds, sr, seed=seed)
    else:
        mono = clicks(90.0 + seed, seconds, sr) * 0.5
    mono = mono + noise(seconds, sr, amp=0.002, seed=10_000 + seed)  # no two seeds give equal bytes
    if channels == 1:
        return mono
    return np.stack([mono * (1.0 - 0.2 * c) for c in range(channels)], axis=1).astype(np.float32)


def write_clip(path: Path, seconds: float = 0.5, sr: int = 22050, channels: int = 1, seed: int = 0,
               fmt: str | None = None) -> Path:
    """Write a clip; the format follows the extension (any letter case) unless ``fmt`` is given."""
    return write_audio(path, clip(seconds, sr, channels, seed), sr, fmt=fmt or Path(path).suffix[1:].lower())


def write_genre_tree(data_dir: Path, counts: dict[str, int], seconds: float = 0.3, start_seed: int = 0) -> list[Path]:
    """DATA/raw/<genre>/clip_<i>.<fmt>, each file distinct, formats/rates/channels cycling."""
    paths, seed = [], start_seed
    for genre, count in counts.items():
        for i in range(count):
            fmt = FORMATS[i % 4]
            sr = (8000, 16000, 22050, 44100)[i % 4] if fmt != "ogg" else 22050
            paths.append(write_clip(data_dir / "raw" / genre / f"clip_{i:03d}.{fmt}", seconds, sr,
                                    channels=1 + i % 2, seed=seed))
            seed += 1
    return paths


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty data folder (raw/ is created by the writers)."""
    return tmp_path / "data"


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray (2 CPUs) for every in-process pipeline test; the pipeline joins it."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def standin_model(tmp_path_factory) -> str:
    """The small VGGish stand-in SavedModel, built once per session."""
    from genreflow.testing import build_vggish_standin

    return str(build_vggish_standin(tmp_path_factory.mktemp("vggish") / "model", seed=3))
