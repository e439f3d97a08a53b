"""Issue 5: training, evaluation reports, prediction, `run` and `demo`."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from pipeline_support import make_tree, write_toml

from genreflow.model.bundle import load_model_bundle
from genreflow.cli import main
from genreflow.model.pooling import pool_frames
from genreflow.data.synth import SYNTH_GENRES, write_audio


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ray_local):
    """A 4-genre synthetic set run end to end with MFCC features (3 s clips)."""
    root = tmp_path_factory.mktemp("trained")
    make_tree(root, per_genre=6, seconds=3.0, genres=SYNTH_GENRES)
    toml = write_toml(root / "genreflow.toml", duration_s=3.0)
    result = CliRunner().invoke(main, ["run", "--data-dir", str(root), "--config", str(toml), "--features", "mfcc",
                                       "--workers", "2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return root, toml, result.output


def test_pooling_ignores_padding_frames():
    frames = np.zeros((1, 10, 2), dtype=np.float32)
    frames[0, :4] = [[1, 2], [3, 4], [5, 6], [7, 8]]  # 4 real frames, 6 padding zeros
    pooled = pool_frames(frames, np.array([4]))
    assert np.allclose(pooled[0], [4, 5, np.std([1, 3, 5, 7]), np.std([2, 4, 6, 8])])


def test_run_writes_model_metrics_and_reports(trained):
    root, _, output = trained
    processed = root / "processed"
    metrics = json.loads((processed / "reports" / "metrics.json").read_text())
    assert {"accuracy", "per_genre", "confusion_matrix", "labels", "features", "n_train", "n_val"} <= set(metrics)
    assert metrics["labels"] == sorted(SYNTH_GENRES) and metrics["features"] == "mfcc"
    assert metrics["n_train"] + metrics["n_val"] == 24 and metrics["n_val"] == 4
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (4, 4) and matrix.sum() == metrics["n_val"]
    assert metrics["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    assert all(metrics["per_genre"][g]["support"] == matrix[i].sum() for i, g in enumerate(metrics["labels"]))
    assert (processed / "reports" / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "precision" in (processed / "reports" / "classification_report.txt").read_text()
    bundle = load_model_bundle(str(processed / "classifier_model.zip"))
    assert bundle.genres == metrics["labels"] and bundle.features == "mfcc"
    assert set(bundle.fingerprints) == {"mfcc"} and "scikit-learn" in bundle.versions
    (recipe,) = bundle.extractors
    assert (recipe["name"], recipe["version"], recipe["params"]["duration_s"]) == ("mfcc", 1, 3.0)
    assert "accuracy:" in output and "confusion matrix" in output


def test_second_run_reuses_the_store(trained):
    root, toml, _ = trained
    result = CliRunner().invoke(main, ["run", "--data-dir", str(root), "--config", str(toml), "--features", "mfcc"])
    assert result.exit_code == 0, result.output
    assert "0 computed, 24 already cached" in result.output


def test_predict_formats_and_unreadable_files(trained, tmp_path):
    root, toml, _ = trained
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....WAVEfmt garbage")
    clip = root / "raw" / "techno" / "clip_0.wav"
    runner = CliRunner()
    result = runner.invoke(main, ["predict", str(clip), str(bad), str(root / "raw" / "ambient"), "--data-dir",
                                  str(root), "--config", str(toml), "--format", "json"])
    assert result.exit_code == 1  # one file failed, the others were still predicted
    rows = json.loads(result.stdout)
    assert len(rows) == 8
    by_path = {r["path"]: r for r in rows}
    assert by_path[str(bad)]["error"] and not by_path[str(clip)]["error"]
    for row in rows:
        if not row["error"]:
            probabilities = [row[f"p_{g}"] for g in SYNTH_GENRES if f"p_{g}" in row]
            assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
            assert row["probability"] == max(probabilities)
            assert row["genre"] in SYNTH_GENRES
    csv = runner.invoke(main, ["predict", str(clip), "--data-dir", str(root), "--config", str(toml), "--format", "csv"])
    assert csv.exit_code == 0
    header, line = csv.stdout.strip().splitlines()
    assert header.split(",")[:3] == ["path", "genre", "probability"] and len(line.split(",")) == 3 + 4 + 2  # + error, cached


def test_predict_follows_the_model_not_the_current_config(trained, tmp_path):
    """Issue 11: the model's recipe decides the features; another config changes nothing."""
    root, _, _ = trained
    other = write_toml(tmp_path / "other.toml", duration_s=7.0, mfcc={"n_mfcc": 13})
    clip = str(root / "raw" / "techno" / "clip_0.wav")
    outputs = [CliRunner().invoke(main, ["predict", clip, "--data-dir", str(root), "--format", "csv", *extra])
               for extra in ([], ["--config", str(other)])]
    assert [r.exit_code for r in outputs] == [0, 0], [r.output for r in outputs]
    assert outputs[0].output == outputs[1].output and "techno" in outputs[0].output


@pytest.mark.slow
def test_train_computes_missing_features_keeps_every_model_and_trains_the_best_evaluation(tmp_path):
    make_tree(tmp_path, per_genre=5, seconds=1.0)
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path)]
    assert runner.invoke(main, ["index", *data]).exit_code == 0
    first = runner.invoke(main, ["train", *data, "--features", "mfcc"])  # nothing stored yet: computed first
    assert first.exit_code == 0, first.output
    assert "mfcc [" in first.output and "features mfcc, classifier logreg, whole clips" in first.output
    second = runner.invoke(main, ["train", *data, "--features", "mfcc", "--classifier", "svm", "--segment-s", "0.5"])
    assert second.exit_code == 0, second.output
    assert "mfcc [" not in second.output  # stored: not recomputed
    models = sorted(p.name for p in (tmp_path / "processed" / "models").glob("*.zip"))
    assert len(models) == 2 and models[0].endswith("-mfcc-logreg.zip") and models[1].endswith("-mfcc-svm-seg0.5.zip")
    assert "note: it replaces" in second.output and models[0][:-4] in second.output
    assert (tmp_path / "processed" / "classifier_model.zip").read_bytes() == \
        (tmp_path / "processed" / "models" / models[1]).read_bytes()
    for classifier in ("logreg", "svm"):
        done = runner.invoke(main, ["evaluate", *data, "--features", "mfcc", "--classifier", classifier, "--folds", "2"])
        assert done.exit_code == 0, done.output
        assert f"features mfcc, classifier {classifier}, whole clips" in done.output
    evaluations = sorted((tmp_path / "processed" / "reports" / "cv").iterdir())
    assert len(evaluations) == 2  # each evaluate keeps its own folder
    status = runner.invoke(main, ["status", *data])
    assert status.exit_code == 0
    assert sum(line.startswith(("model", "evaluation")) for line in status.output.splitlines()) == 4
    scores = {e.name: json.loads((e / "cv_metrics.json").read_text())["accuracy_mean"] for e in evaluations}
    best = max(scores, key=lambda name: (scores[name], name))
    chosen = runner.invoke(main, ["train", *data, "--from-evaluation", "best"])
    assert chosen.exit_code == 0, chosen.output
    assert f"setting of evaluation {best}" in chosen.output
    classifier = "svm" if best.endswith("-svm") else "logreg"
    assert f"features mfcc, classifier {classifier}, whole clips" in chosen.output
    missing = runner.invoke(main, ["train", *data, "--from-evaluation", "no-such-run"])
    assert missing.exit_code == 2 and "no such evaluation" in missing.output


def test_run_stops_on_unloadable_vggish_without_switching_features(tmp_path):
    make_tree(tmp_path, per_genre=2, seconds=1.0)
    result = subprocess.run([sys.executable, "-m", "genreflow", "run", "--data-dir", str(tmp_path), "--features",
                             "vggish", "--vggish-model", str(tmp_path / "missing-model")],
                            capture_output=True, text=True)
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert "missing-model" in result.stderr and "--features musicnn" in result.stderr  # names the offline kinds
    assert not (tmp_path / "processed" / "classifier_model.zip").exists()


@pytest.mark.slow
def test_demo_without_vggish_uses_musicnn_with_one_note(tmp_path):
    result = subprocess.run([sys.executable, "-m", "genreflow", "demo", "--data-dir", str(tmp_path), "--workers", "2",
                             "--clips-per-genre", "4", "--clip-seconds", "2", "--features", "vggish",
                             "--vggish-model", str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    notes = [line for line in result.stderr.splitlines() if "model is not available" in line]
    assert len(notes) == 1 and notes[0].startswith("note: the vggish model") and "--features musicnn" in notes[0]
    assert "!!!" not in result.stderr
    metrics = json.loads((tmp_path / "processed" / "reports" / "metrics.json").read_text())
    assert metrics["features"] == "musicnn" and metrics["n_train"] + metrics["n_val"] == 16
    formats = {p.suffix for p in (tmp_path / "raw").rglob("*.*")}
    assert formats == {".wav", ".flac", ".ogg", ".mp3"}


def test_demo_set_is_deterministic(tmp_path):
    from genreflow.data.demo import write_demo_set

    write_demo_set(str(tmp_path / "a"), clips_per_genre=2, seconds=1.0)
    write_demo_set(str(tmp_path / "b"), clips_per_genre=2, seconds=1.0)
    for path in sorted((tmp_path / "a" / "raw").rglob("*.wav")):
        twin = tmp_path / "b" / path.relative_to(tmp_path / "a")
        assert path.read_bytes() == twin.read_bytes()
    again = write_demo_set(str(tmp_path / "a"), clips_per_genre=2, seconds=1.0)
    assert again["new"] == 0 and again["total"] == 8


def test_accuracy_is_high_and_metrics_agree_with_scikit_learn(trained):
    from sklearn.metrics import accuracy_score, confusion_matrix

    from genreflow.stages.train import load_dataset
    from genreflow.config import load_config

    root, toml, _ = trained
    metrics = json.loads((root / "processed" / "reports" / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.9  # 4 separable synthetic classes
    config = load_config(str(toml), {"data_dir": str(root), "train.features": "mfcc"})
    data = load_dataset(config)
    pipeline = load_model_bundle(str(root / "processed" / "classifier_model.zip")).pipeline
    X, y = data.X[data.is_val], data.y[data.is_val]
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y, pipeline.predict(X)))
    assert metrics["confusion_matrix"] == confusion_matrix(y, pipeline.predict(X), labels=range(4)).tolist()


def test_saved_model_predicts_a_held_out_file_in_a_fresh_process(trained, tmp_path):
    from genreflow.data.synth import genre_clip

    root, toml, _ = trained
    held_out = {}
    for genre in SYNTH_GENRES:
        path = tmp_path / f"new_{genre}.wav"
        write_audio(path, genre_clip(genre, 3.0, 22050, seed=999), 22050)
        held_out[str(path)] = genre
    result = subprocess.run([sys.executable, "-m", "genreflow", "predict", *held_out, "--model",
                             str(root / "processed" / "classifier_model.zip"), "--config", str(toml),
                             "--format", "json"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    predicted = {row["path"]: row["genre"] for row in json.loads(result.stdout)}
    assert predicted == held_out


@pytest.mark.slow
def test_run_finishes_with_the_vggish_standin(tmp_path, ray_local, standin_model):
    make_tree(tmp_path, per_genre=4, seconds=2.0, genres=SYNTH_GENRES[:3])
    toml = write_toml(tmp_path / "genreflow.toml", duration_s=2.0, vggish={"handle": standin_model})
    result = CliRunner().invoke(main, ["run", "--data-dir", str(tmp_path), "--config", str(toml), "--features",
                                       "vggish+mfcc", "--workers", "2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "processed" / "reports" / "metrics.json").read_text())
    assert metrics["features"] == "vggish+mfcc" and set(metrics["fingerprints"]) == {"mfcc", "vggish"}
    status = CliRunner().invoke(main, ["status", "--data-dir", str(tmp_path), "--config", str(toml)])
    assert status.exit_code == 0 and "12/12" in status.output
    assert re.search(r"^model \*\s+\S+-vggish\+mfcc-logreg\s+vggish\+mfcc\s+logreg\s+whole clip\s+\d\.\d{3} \(val\)",
                     status.output, re.MULTILINE), status.output
