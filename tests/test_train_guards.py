"""Issue 15, the parts that live in train / features / predict: refusals that keep results,
NaN never stored, temp files swept, FIFOs never opened, old pickle models only when trusted."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
from click.testing import CliRunner
from pipeline_support import config_for, make_tree, trained_mfcc_model, write_toml

from genreflow import features
from genreflow.config import build_extractor
from genreflow.cli import main
from genreflow.cli.commands import run_index_command
from genreflow.features import check
from genreflow.features.base import Extractor
from genreflow.store.featureset import Kind
from genreflow.data.synth import SYNTH_GENRES


@pytest.fixture
def trained(tmp_path):
    return tmp_path, trained_mfcc_model(tmp_path, per_genre=4, seconds=1.0)


def train(root, toml, *extra):
    return CliRunner().invoke(main, ["train", "--data-dir", str(root), "--config", str(toml), "--features", "mfcc",
                                     *extra])


def test_splits_naming_only_unknown_files_keep_the_previous_model(trained):
    root, toml = trained
    processed = root / "processed"
    model, metrics = (processed / "classifier_model.zip").read_bytes(), (processed / "reports" / "metrics.json").read_bytes()
    splits = json.loads((processed / "splits.json").read_text())
    splits["val"] = ["nowhere/a.wav", "nowhere/b.wav"]
    (processed / "splits.json").write_text(json.dumps(splits))
    refused = train(root, toml)
    assert refused.exit_code == 2 and "No validation file" in refused.output and "--allow-no-val" in refused.output
    assert "Traceback" not in refused.output
    assert (processed / "classifier_model.zip").read_bytes() == model
    assert (processed / "reports" / "metrics.json").read_bytes() == metrics
    allowed = train(root, toml, "--allow-no-val")
    assert allowed.exit_code == 0 and "No validation files" in allowed.output


def test_train_sweeps_temp_files_of_killed_writers(trained):
    root, toml = trained
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    prefix = f".tmp-{socket.gethostname()}-{dead.pid}-0123456789ab-"
    leftovers = [root / "processed" / f"{prefix}classifier_model.zip",
                 root / "processed" / "reports" / f"{prefix}confusion_matrix.png"]
    for path in leftovers:
        path.write_bytes(b"half written")
    assert train(root, toml).exit_code == 0
    assert not any(p.exists() for p in leftovers)


def test_features_fail_when_every_pending_file_failed(tmp_path):
    make_tree(tmp_path, per_genre=2, seconds=1.0)
    run_index_command(config_for(tmp_path, 1.0))
    for path in (tmp_path / "raw").rglob("clip_*"):
        path.write_bytes(b"gone bad after indexing")
    toml = write_toml(tmp_path / "g.toml", duration_s=1.0)
    result = subprocess.run([sys.executable, "-m", "genreflow", "features", "--data-dir", str(tmp_path),
                             "--config", str(toml), "--workers", "1"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Every pending file failed for mfcc" in result.stderr and "Traceback" not in result.stderr
    assert "changed since `genreflow index`" in result.stdout


@dataclass(frozen=True)
class NanConfig:
    when: float = 0.0

    def __post_init__(self) -> None:
        check(self.when >= 0, "nan.when", self.when, ">= 0")


class NanExtractor(Extractor):
    """A kind whose maths breaks on loud clips (as fmax = inf used to): NaN rows."""

    name, version, config_class = "nan", 1, NanConfig
    kind = Kind("nan", "nan", ("n_frames", "n_values"), time_axis=0)
    frame_seconds = 1.0

    def compute(self, state, waveform, n_valid):
        value = np.nan if np.abs(waveform).max() > 0.05 else 1.0
        return np.full((2, 3), value, np.float32), 1


def test_nan_features_are_failures_never_stored(tmp_path):
    from genreflow.data.index import read_index
    from genreflow.stages.extract import plan
    from genreflow.stages.workers import decode_batch
    from genreflow.store.featureset import stored_keys

    features.register(NanExtractor)
    try:
        make_tree(tmp_path, per_genre=2, seconds=1.0)
        config = config_for(tmp_path, 1.0)
        run_index_command(config)
        extractor = build_extractor("nan", config)
        work = plan(config, [extractor], read_index(str(tmp_path))["files"])
        batch = {k: np.array([r[k] for r in work.todo], dtype=object) for k in ("content_hash", "relpath", "kinds")}
        out = decode_batch(batch, data_dir=str(tmp_path), duration_s=1.0, cpu=[extractor], cpu_sets=work.fsets,
                           model_rates=[])
        assert all("NaN or infinite" in s for s in out["status:nan"]), list(out["status:nan"])
        assert stored_keys(work.fsets["nan"]) == set()
    finally:
        features.unregister("nan")


def test_predict_skips_a_fifo_without_opening_it(trained, tmp_path_factory):
    root, toml = trained
    fifo = tmp_path_factory.mktemp("fifo") / "stream.wav"
    os.mkfifo(fifo)
    result = subprocess.run([sys.executable, "-m", "genreflow", "predict", str(fifo), "--model",
                             str(root / "processed" / "classifier_model.zip"), "--format", "json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    (row,) = json.loads(result.stdout)
    assert row["error"].startswith("not a regular file")


def test_workers_beyond_the_cpus_are_capped_with_a_note(trained):
    root, toml = trained
    result = CliRunner().invoke(main, ["status", "--data-dir", str(root), "--config", str(toml), "--workers", "512"])
    assert result.exit_code == 0 and "--workers 512 capped at the" in result.output


def test_an_old_pickle_model_loads_only_when_trusted(trained, tmp_path_factory):
    """A genreflow 0.1 model file (joblib dict) predicts with --trust-pickle, refused without."""
    import joblib

    from genreflow.model.bundle import load_model_bundle

    root, toml = trained
    bundle = load_model_bundle(str(root / "processed" / "classifier_model.zip"))
    (recipe,) = bundle.extractors
    old = tmp_path_factory.mktemp("old") / "classifier_model.pkl"
    joblib.dump({"pipeline": bundle.pipeline, "genres": bundle.genres, "features": "mfcc",
                 "fingerprints": bundle.fingerprints, "audio": recipe["audio"], "mfcc": recipe["section"],
                 "vggish_handle": "x", "versions": {}}, old)
    clip = next((root / "raw" / SYNTH_GENRES[0]).glob("clip_0.*"))
    args = [sys.executable, "-m", "genreflow", "predict", str(clip), "--model", str(old), "--format", "json"]
    refused = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 3 and "--trust-pickle" in refused.stderr and "Traceback" not in refused.stderr
    trusted = subprocess.run([*args, "--trust-pickle"], capture_output=True, text=True, timeout=120)
    assert trusted.returncode == 0, trusted.stderr
    assert "can run code" in trusted.stderr
    assert json.loads(trusted.stdout)[0]["genre"] == SYNTH_GENRES[0]
