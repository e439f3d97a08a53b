"""The features pass without Ray (stages/local.py): the same shards as Ray's pass, chosen by
``--executor`` / ``[run] executor`` (auto: local on 1-2 workers), and Ray never imported."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from genreflow.errors import ConfigError
from genreflow.stages import session
from genreflow.stages.session import uses_ray
from pipeline_support import config_for, extract, feature_set_for, make_tree, write_toml
from test_musicnn_net import needs_musicnn


def stored(config, kind: str) -> dict[str, np.ndarray]:
    from genreflow.store.featureset import read_table

    table = read_table(feature_set_for(config, kind))
    return {k: np.asarray(v, dtype=np.float32) for k, v in
            zip(table.column("content_hash").to_pylist(), table.column(kind).to_pylist())}


def test_batches_are_even_and_fill_whole_waves_in_order():
    """200 files at 32 rows on 2 workers: 8 x 25, not 6 x 32 + a last 8 decoded on one core."""
    from genreflow.stages.local import even_batches

    assert [len(b) for b in even_batches(list(range(200)), 32, 2)] == [25] * 8
    assert [len(b) for b in even_batches(list(range(1000)), 32, 2)] == [32] * 8 + [31] * 24
    for files, rows, workers in [(7, 4, 2), (1, 32, 4), (65, 32, 2), (33, 32, 3), (64, 32, 2), (5, 1, 2)]:
        todo = [f"file-{i}" for i in range(files)]
        batches = even_batches(todo, rows, workers)
        assert [row for batch in batches for row in batch] == todo  # every file once, in order
        sizes = [len(b) for b in batches]
        assert max(sizes) <= rows and max(sizes) - min(sizes) <= 1 and min(sizes) >= 1, (files, sizes)
        assert len(batches) % workers == 0 or len(batches) == files, (files, rows, workers, sizes)  # 1 file each
    assert even_batches([], 32, 2) == []


def test_auto_runs_locally_only_on_a_small_machine_without_a_cluster(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(session, "_ray_running_here", lambda: False)  # the session's test Ray may be up
    monkeypatch.setattr(session, "_gpu_visible", lambda: False)
    assert not uses_ray("auto", "", 1) and not uses_ray("auto", "", 2)
    assert uses_ray("auto", "", 3)  # more cores: Ray's processes keep CPU kinds off one GIL
    assert uses_ray("auto", "10.0.0.1:6379", 2)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert uses_ray("auto", "", 2)
    monkeypatch.delenv("RAY_ADDRESS")
    monkeypatch.setattr(session, "_gpu_visible", lambda: True)
    assert uses_ray("auto", "", 2)  # model actors get their GPU from Ray
    assert not uses_ray("local", "", 8) and uses_ray("ray", "", 1)


def test_local_with_a_cluster_is_refused_when_the_configuration_loads(monkeypatch):
    from genreflow.config import load_config

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ConfigError, match="--executor local runs on this machine only"):
        load_config(None, {"run.executor": "local", "address": "10.0.0.1:6379"})
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    with pytest.raises(ConfigError, match="--executor local runs on this machine only.*RAY_ADDRESS"):
        load_config(None, {"run.executor": "local"})


def test_executor_option_is_checked_and_local_with_a_cluster_is_one_line(tmp_path):
    make_tree(tmp_path / "data", per_genre=2, seconds=1.0)
    cli = [sys.executable, "-m", "genreflow"]
    bad = subprocess.run([*cli, "features", "--data-dir", str(tmp_path / "data"), "--executor", "threads"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "'threads' is not one of 'auto', 'ray', 'local'" in bad.stderr
    both = subprocess.run([*cli, "run", "--features", "mfcc", "--data-dir", str(tmp_path / "data"),
                           "--executor", "local", "--address", "10.0.0.1:6379"], capture_output=True, text=True)
    assert both.returncode != 0 and "Traceback" not in both.stderr
    assert "--executor local runs on this machine only" in both.stderr


def test_a_local_run_never_imports_ray(tmp_path):
    """Two workers on this machine: index, the features pass and training without Ray."""
    data = tmp_path / "data"
    make_tree(data, per_genre=3, seconds=1.0)
    toml = write_toml(tmp_path / "g.toml", 1.0)
    script = textwrap.dedent(f"""
        import sys
        from genreflow.cli import main
        try:
            main(["run", "--features", "mfcc", "--workers", "2", "--data-dir", {str(data)!r},
                  "--config", {str(toml)!r}], standalone_mode=False)
        finally:
            print("RAY IMPORTED" if "ray" in sys.modules else "NO RAY")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=_env_without_ray())
    assert out.returncode == 0, out.stderr[-2000:]
    assert "mfcc [" in out.stdout and "6 computed" in out.stdout
    assert out.stdout.strip().endswith("NO RAY")


def _env_without_ray() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}


@pytest.mark.slow
@needs_musicnn
def test_local_and_ray_passes_store_the_same_features(tmp_path, ray_local):
    """The same files through both executors: CPU kinds bit-identical, musicnn equal to float
    noise, the same counts, and a rerun finds everything stored."""
    local_dir, ray_dir = tmp_path / "local", tmp_path / "ray"
    make_tree(local_dir, per_genre=3, seconds=4.0)  # wav, flac, ogg, mp3
    shutil.copytree(local_dir / "raw", ray_dir / "raw")
    from genreflow.stages.index import run_index

    reports = {}
    for name, folder in (("local", local_dir), ("ray", ray_dir)):
        config = config_for(folder, 4.0, **{"run.executor": name, "musicnn.precision": "fp32"})
        run_index(str(folder), 2, config.split)
        reports[name] = extract(config, ("mfcc", "musicnn"))
        assert [(r.computed, r.cached, len(r.failed)) for r in reports[name]] == [(6, 0, 0), (6, 0, 0)]
        again = extract(config, ("mfcc", "musicnn"))
        assert [(r.computed, r.cached) for r in again] == [(0, 6), (0, 6)]
    configs = {name: config_for(folder, 4.0, **{"musicnn.precision": "fp32"})
               for name, folder in (("local", local_dir), ("ray", ray_dir))}
    mfcc = {name: stored(c, "mfcc") for name, c in configs.items()}
    assert mfcc["local"].keys() == mfcc["ray"].keys() and len(mfcc["local"]) == 6
    assert all(np.array_equal(mfcc["local"][k], mfcc["ray"][k]) for k in mfcc["local"])
    musicnn = {name: stored(c, "musicnn") for name, c in configs.items()}
    assert musicnn["local"].keys() == musicnn["ray"].keys()
    for key, value in musicnn["local"].items():
        other = musicnn["ray"][key]
        assert value.shape == other.shape and np.abs(value - other).max() <= 1e-4 * np.abs(other).max()
