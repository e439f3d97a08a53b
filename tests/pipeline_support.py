"""Shared helpers for the pipeline tests: small labelled audio trees and configs."""

from __future__ import annotations

from pathlib import Path

from genreflow.config import load_config
from genreflow.data.synth import SYNTH_GENRES, genre_clip, write_audio

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


def feature_set_for(config, kind: str = "mfcc"):
    """The feature set ``kind`` is stored in under ``config`` (as the pipeline resolves it)."""
    from genreflow.config import build_extractor as build

    return build(kind, config).resolved().feature_set(config.data_dir)


def mfcc_feature_set(config):
    return feature_set_for(config, "mfcc")


def extract(config, kinds=("mfcc",), files=None):
    """Run one pipeline pass for ``kinds`` (Ray must be up unless nothing is pending);
    returns the reports (one per kind, in ``kinds`` order)."""
    from genreflow.config import extractors_for
    from genreflow.data.index import read_index
    from genreflow.stages.extract import execute, plan

    files = read_index(config.data_dir)["files"] if files is None else files
    return execute(config, plan(config, extractors_for(config, "+".join(kinds)), files))


def extract_in_process(config, kinds=("mfcc",), rows_per_shard: int = 4096):
    """The features pass in this process (the local executor, one worker: no Ray start), with
    ``rows_per_shard`` files per batch (= per shard); returns the plan it ran."""
    from dataclasses import replace

    from genreflow.config import extractors_for
    from genreflow.data.index import read_index
    from genreflow.stages.extract import execute, plan

    config = replace(config, workers=1, batch_size=rows_per_shard, run=replace(config.run, executor="local"))
    work = plan(config, extractors_for(config, "+".join(kinds)), read_index(config.data_dir)["files"])
    execute(config, work)
    return work


def trained_mfcc_model(root: Path, *, per_genre: int, seconds: float, genres=SYNTH_GENRES[:2]) -> Path:
    """A data folder with an MFCC model trained by `genreflow train` (store filled without Ray);
    returns its genreflow.toml."""
    from click.testing import CliRunner

    from genreflow.cli import main
    from genreflow.cli.commands import run_index_command

    make_tree(root, per_genre=per_genre, seconds=seconds, genres=genres)
    toml = write_toml(root / "genreflow.toml", duration_s=seconds)
    run_index_command(config_for(root, seconds))
    extract_in_process(config_for(root, seconds))
    result = CliRunner().invoke(main, ["train", "--data-dir", str(root), "--config", str(toml), "--features", "mfcc"])
    assert result.exit_code == 0, result.output
    return toml
