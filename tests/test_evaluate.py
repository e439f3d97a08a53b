"""Issue 14: k-fold and grouped CV, classifier choice, segment-level models, per-file results."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from pipeline_support import config_for, extract_in_process, make_tree, write_toml

from genreflow.model.bundle import load_model_bundle
from genreflow.cli import main
from genreflow.cli.commands import run_index_command
from genreflow.data.synth import SYNTH_GENRES


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """4 synthetic genres x 6 clips of 3 s, MFCC + spectral stored (no Ray: the decode task itself)."""
    root = tmp_path_factory.mktemp("cv")
    make_tree(root, per_genre=6, seconds=3.0, genres=SYNTH_GENRES)
    toml = write_toml(root / "genreflow.toml", duration_s=3.0)
    config = config_for(root, 3.0)
    run_index_command(config)
    extract_in_process(config, ("mfcc", "spectral"))
    return root, toml


def cli(root: Path, toml: Path, *args: str):
    result = CliRunner().invoke(main, [*args, "--data-dir", str(root), "--config", str(toml)])
    assert result.exit_code == 0, result.output
    return result


def latest_cv(root):
    """The newest evaluation's own report folder (each evaluate keeps its own)."""
    return sorted((root / "processed" / "reports" / "cv").iterdir())[-1]


def test_evaluate_writes_folds_metrics_and_oof_rows_without_touching_the_split(store):
    root, toml = store
    splits = (root / "processed" / "splits.json").read_bytes()
    model = root / "processed" / "classifier_model.zip"
    before = model.read_bytes() if model.exists() else None
    result = cli(root, toml, "evaluate", "--features", "mfcc", "--folds", "3", "--repeats", "2")
    assert "3-fold cross-validation x 2 repeats" in result.output and "ambient" in result.output
    metrics = json.loads((latest_cv(root) / "cv_metrics.json").read_text())
    for key in ("accuracy_mean", "accuracy_std", "f1_macro_mean", "f1_macro_std", "folds", "per_genre", "settings"):
        assert key in metrics
    assert metrics["folds"] == 3 and metrics["repeats"] == 2 and len(metrics["fold_accuracy"]) == 6
    assert metrics["settings"]["features"] == "mfcc" and metrics["settings"]["classifier"] == "logreg"
    assert np.mean(metrics["fold_accuracy"]) == pytest.approx(metrics["accuracy_mean"])
    with open(latest_cv(root) / "oof_predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 24 and {r["relpath"] for r in rows} == {
        str(p.relative_to(root / "raw")) for p in (root / "raw").rglob("clip_*")}
    assert all(abs(sum(float(r[f"p_{g}"]) for g in SYNTH_GENRES) - 1) < 1e-6 for r in rows)
    assert (root / "processed" / "splits.json").read_bytes() == splits
    assert (model.read_bytes() if model.exists() else None) == before  # evaluate saves no model


def test_evaluate_is_reproducible_and_groups_never_straddle_folds(store):
    root, toml = store
    runs = []
    for _ in range(2):
        cli(root, toml, "evaluate", "--features", "mfcc", "--folds", "2", "--group-pattern", r"/clip_(\d)")
        with open(latest_cv(root) / "oof_predictions.csv") as handle:
            runs.append({r["relpath"]: r["fold"] for r in csv.DictReader(handle)})
    assert runs[0] == runs[1]
    groups = {}
    for rel, fold in runs[0].items():
        groups.setdefault(rel.rsplit("clip_", 1)[1][0], set()).add(fold)
    assert len(groups) == 6 and all(len(folds) == 1 for folds in groups.values()), groups  # clip_i: one fold


@pytest.mark.parametrize("classifier", ["logreg", "svm", "mlp", "hgb"])
def test_each_classifier_trains_saves_loads_and_predicts(store, classifier):
    root, toml = store
    result = cli(root, toml, "train", "--features", "mfcc", "--classifier", classifier)
    assert "accuracy:" in result.output
    bundle = load_model_bundle(str(root / "processed" / "classifier_model.zip"))
    assert bundle.classifier["classifier"] == classifier
    clip = next((root / "raw" / SYNTH_GENRES[2]).glob("clip_5.*"))
    out = cli(root, toml, "predict", str(clip), "--format", "json")
    (row,) = json.loads(out.stdout)
    assert row["genre"] in SYNTH_GENRES and not row["error"]
    with open(root / "processed" / "reports" / "val_predictions.csv") as handle:
        val = list(csv.DictReader(handle))
    assert len(val) == json.loads((root / "processed" / "reports" / "metrics.json").read_text())["n_val"]


def test_tune_picks_from_its_grid(store):
    root, toml = store
    # start from a C outside the grid, so an ignored --tune cannot pass
    result = cli(root, toml, "train", "--features", "mfcc", "--classifier", "logreg", "--C", "3.0", "--tune")
    assert "tuned logreg" in result.output
    bundle = load_model_bundle(str(root / "processed" / "classifier_model.zip"))
    assert bundle.classifier["params"]["C"] in (0.1, 1.0, 10.0)


def test_segment_model_predicts_the_mean_of_its_segment_probabilities(store):
    from genreflow.stages.predict import ClipFeatures, model_extractors

    root, toml = store
    cli(root, toml, "train", "--features", "mfcc+spectral", "--segment-s", "1.0")
    bundle = load_model_bundle(str(root / "processed" / "classifier_model.zip"))
    assert bundle.segment_s == 1.0
    clip = next((root / "raw" / SYNTH_GENRES[1]).glob("clip_4.*"))
    out = cli(root, toml, "predict", str(clip), "--format", "json")
    (row,) = json.loads(out.stdout)
    features = ClipFeatures(model_extractors(bundle), bundle.segment_s)
    rows = features.rows(features.decode(str(clip)))
    assert len(rows) >= 5  # 3 s in 1 s windows, 0.5 s apart (+1 flush with the end)
    by_hand = bundle.pipeline.predict_proba(rows).mean(axis=0)
    classes = [bundle.genres[int(c)] for c in bundle.pipeline.classes_]
    assert [row[f"p_{g}"] for g in classes] == pytest.approx(list(by_hand), abs=1e-6)


def test_classifier_flag_that_does_not_apply_is_one_clear_line(store):
    root, toml = store
    result = CliRunner().invoke(main, ["train", "--data-dir", str(root), "--config", str(toml), "--classifier",
                                       "hgb", "--C", "2"])
    assert result.exit_code == 2 and "--c does not apply to --classifier hgb" in result.output.lower()
