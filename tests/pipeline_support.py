"""Shared helpers for the pipeline tests: small labelled audio trees and configs."""

from __future__ import annotations

from pathlib import Path

from genreflow.config import load_config
from genreflow.synth import SYNTH_GENRES, genre_clip, write_audio

SR = 22050
FORMATS = ("wav", "flac", "ogg", "mp3")


def make_tree(data_dir: Path, per_genre: int = 3, seconds: float = 3.0, genres=SYNTH_GENRES[:2]) -> list[Path]:
    """Write DATA/raw/<genre>/clip_i.<fmt> with real audio bytes; returns the paths."""
    paths = []
    for g, genre in enumerate(genres):
        for i in range(per_genre):
            fmt = FORMATS[i % len(FORMATS)]
            path = data_dir / "raw" / genre / f"clip_{i}.{fmt}"
            paths.append(write_audio(path, genre_clip(genre, seconds, SR, seed=100 * g + i), SR))
    return paths


def write_toml(path: Path, duration_s: float = 3.0, **sections: dict) -> Path:
    """A genreflow.toml with a short duration (fast tests) plus extra sections."""
    lines = ["[audio]", f"duration_s = {duration_s}"]
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in values.items())
    path.write_text("\n".join(lines) + "\n")
    return path


def config_for(data_dir: Path, duration_s: float = 3.0, **overrides):
    """A Config for ``data_dir`` with a short duration and 2 workers."""
    return load_config(None, {"data_dir": str(data_dir), "workers": 2, "audio.duration_s": duration_s, **overrides})
