"""The built-in demo set: synthetic "genres" that differ in rhythm, pitch and timbre, written in
all four formats so that someone with no music at hand can run the whole pipeline."""

from __future__ import annotations

import os

from genreflow.errors import ConfigError
from genreflow.core.layout import Layout
from genreflow.data.synth import SYNTH_GENRES, genre_clip, write_audio

DEMO_RATE = 22050
FORMAT_CYCLE = ("wav", "flac", "ogg", "mp3")


def write_demo_set(data_dir: str, *, clips_per_genre: int = 20, seconds: float = 10.0) -> dict:
    """Write DIR/raw/<genre>/clip_NN.<fmt> for each synthetic genre; existing files are kept."""
    raw = Layout.of(data_dir).raw
    if not raw.local:
        raise ConfigError(f"--data-dir {data_dir!r} is a URI: the demo writes its clips to a local folder only. "
                          "Run it locally, upload DIR/raw, then `genreflow run --data-dir URI`.")
    new = total = 0
    for g, genre in enumerate(SYNTH_GENRES):
        for i in range(clips_per_genre):
            path = os.path.join(raw.path, genre, f"clip_{i:02d}.{FORMAT_CYCLE[i % len(FORMAT_CYCLE)]}")
            total += 1
            if os.path.exists(path):
                continue
            write_audio(path, genre_clip(genre, seconds, DEMO_RATE, seed=1000 * g + i), DEMO_RATE)
            new += 1
    return {"raw": raw.path, "total": total, "new": new}
