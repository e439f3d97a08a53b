"""Issue 14: grouped, stratified, reproducible K-fold CV and its reports."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from genreflow.model.classifiers import TUNE_GRIDS, fit_pipeline
from genreflow.model.crossval import (assign_folds, assign_repeats, cross_validate, cv_metrics_json, group_pattern,
                                      make_groups, read_group_csv)
from genreflow.model.reports import cv_report_text, most_confused, oof_rows, prediction_rows
from genreflow.errors import ConfigError, DataError
from genreflow.model.pooling import KindFrames, combine_kinds
from genreflow.data.synth import SYNTH_GENRES, genre_clip

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def catalogue(counts=(10, 12, 15, 11, 20), dup_every: int = 0, artists: int = 0):
    """relpaths, labels, content hashes (optionally every n-th file a copy of the one before)."""
    relpaths, labels, hashes = [], [], []
    for label, count in enumerate(counts):
        for i in range(count):
            artist = f"a{i % artists}_" if artists else ""
            relpaths.append(f"g{label}/{artist}{i:03d}.wav")
            labels.append(label)
            copy = dup_every and i % dup_every == 1
            hashes.append(hashes[-1] if copy else f"h{label}-{i}")
    return relpaths, np.array(labels), hashes


def spread(folds: np.ndarray, labels: np.ndarray, k: int) -> dict[int, int]:
    return {int(g): int(np.ptp(np.bincount(folds[labels == g], minlength=k))) for g in np.unique(labels)}


def test_make_groups_merges_copies_and_user_groups_transitively():
    rel = ["r/a.wav", "r/b.wav", "r/c.wav", "r/d.wav", "j/e.wav"]
    groups = make_groups(rel, ["h1", "h1", "h2", "h3", "h4"], {"r/b.wav": "x", "r/c.wav": "x", "j/e.wav": "y"})
    # a~b by content, b~c by user group -> a, b, c together; d alone; e alone (its group has one file)
    assert groups.tolist() == ["r/a.wav", "r/a.wav", "r/a.wav", "r/d.wav", "j/e.wav"]
    order = [4, 2, 0, 3, 1]  # names do not depend on the order of the files
    again = make_groups([rel[i] for i in order], [["h1", "h1", "h2", "h3", "h4"][i] for i in order],
                        {"r/b.wav": "x", "r/c.wav": "x", "j/e.wav": "y"})
    assert dict(zip([rel[i] for i in order], again)) == dict(zip(rel, groups))
    assert make_groups(rel, ["h1", "h2", "h3", "h4", "h5"]).tolist() == rel
    with pytest.raises(ConfigError, match="None of the 1 relpaths in the groups file is an indexed file"):
        make_groups(rel, ["h1"] * 5, {"raw/r/a.wav": "x"})


def test_group_pattern_takes_the_first_capture_group():
    rel = ["rock/acdc_01.wav", "rock/acdc_02.wav", "jazz/miles_1.mp3", "jazz/untitled.wav"]
    assert group_pattern(rel, r"^[^/]+/([^_]+)_") == {"rock/acdc_01.wav": "acdc", "rock/acdc_02.wav": "acdc",
                                                      "jazz/miles_1.mp3": "miles"}
    with pytest.raises(ConfigError, match=r"group_pattern='\(' is invalid: not a regular expression"):
        group_pattern(rel, "(")
    with pytest.raises(ConfigError, match="needs a capture group"):
        group_pattern(rel, "acdc")
    with pytest.raises(ConfigError, match="matches none of the 4 files"):
        group_pattern(rel, r"^blues/(\w+)")


def test_read_group_csv(tmp_path):
    good = tmp_path / "groups.csv"
    good.write_text('\ufeffgroup,relpath\nacdc,rock/a.wav\n\n"x, y",rock/b.wav\nacdc,rock/a.wav\n', encoding="utf-8")
    assert read_group_csv(good) == {"rock/a.wav": "acdc", "rock/b.wav": "x, y"}
    cases = {
        "relpath;group\nrock/a.wav;acdc\n": "line 1: the header must name the columns relpath,group",
        "relpath,group\nrock/a.wav,acdc\nrock/b.wav\n": "line 3: expected 2 fields (relpath,group), got 1",
        "relpath,group\nrock/a.wav, \n": "line 2: empty relpath or group",
        "relpath,group\nrock/a.wav,acdc\nrock/a.wav,ozzy\n": "line 3: 'rock/a.wav' is already in group 'acdc' (line 2)",
        "relpath,group\n": "has no rows",
        "": "line 1: the header must name",
    }
    for i, (text, message) in enumerate(cases.items()):
        path = tmp_path / f"bad{i}.csv"
        path.write_text(text)
        with pytest.raises(ConfigError) as caught:
            read_group_csv(path)
        assert str(path) in str(caught.value) and message in str(caught.value)
        assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="no such file"):
        read_group_csv(tmp_path / "missing.csv")


def test_folds_are_stratified():
    rel, labels, hashes = catalogue()
    for seed in range(5):
        folds = assign_folds(labels, make_groups(rel, hashes), 5, seed)
        assert sorted(set(folds.tolist())) == [0, 1, 2, 3, 4]
        assert max(spread(folds, labels, 5).values()) <= 1  # single files: as even as possible
    rel, labels, hashes = catalogue(counts=(14, 16, 20), dup_every=2)  # copies come in pairs
    for seed in range(5):
        folds = assign_folds(labels, make_groups(rel, hashes), 4, seed)
        assert max(spread(folds, labels, 4).values()) <= 2  # at most one group's size


def test_folds_are_reproducible_and_seeded():
    rel, labels, hashes = catalogue()
    groups = make_groups(rel, hashes)
    a = assign_folds(labels, groups, 5, seed=42)
    np.testing.assert_array_equal(a, assign_folds(labels, groups, 5, seed=42))
    assert (a != assign_folds(labels, groups, 5, seed=43)).any()
    assert (a != assign_folds(labels, groups, 5, seed=42, repeat=1)).any()
    repeats = assign_repeats(labels, groups, 5, 42, repeats=3)
    assert repeats.shape == (3, len(rel)) and (repeats[0] == a).all()
    order = np.random.default_rng(0).permutation(len(rel))  # file-for-file, whatever the listing order
    shuffled = assign_folds(labels[order], make_groups([rel[i] for i in order], [hashes[i] for i in order]), 5, 42)
    assert dict(zip([rel[i] for i in order], shuffled.tolist())) == dict(zip(rel, a.tolist()))


def test_copies_and_user_groups_never_straddle_a_fold():
    rel, labels, hashes = catalogue(counts=(24, 30, 27), dup_every=3, artists=6)
    hashes[5] = hashes[40]  # one copy even across genres
    groups = make_groups(rel, hashes, group_pattern(rel, r"/(a\d+)_"))
    artist = np.array([f"{r.split('/')[0]}/{r.split('/')[1][:3]}" for r in rel])
    hashes = np.array(hashes)
    folds = assign_repeats(labels, groups, 3, seed=7, repeats=2)
    for fold_of in folds:
        for k in range(3):
            test = fold_of == k
            for key in (hashes, artist, groups):
                assert not set(key[test]) & set(key[~test]), k
    assert len(set(groups)) < len(set(hashes))  # the artists really merged files


def test_too_few_groups_for_the_folds_is_one_clear_line():
    rel, labels, hashes = catalogue(counts=(10, 3))
    with pytest.raises(ConfigError) as caught:
        assign_folds(labels, make_groups(rel, hashes), 5, 0, genres=["rock", "jazz"])
    message = str(caught.value)
    assert message.startswith("Genre 'jazz' has 3 group(s) of files, fewer than folds=5") and "--folds 3" in message
    with pytest.raises(ConfigError, match=r"evaluate\.folds=1 is invalid: must be an integer in \[2, inf\)\."):
        assign_folds(labels, make_groups(rel, hashes), 1, 0)


def stack_clips(per_clip):
    """Per-clip segment matrices -> (design matrix, clip index of each row)."""
    counts = [len(m) for m in per_clip]
    return np.concatenate(per_clip, axis=0), np.repeat(np.arange(len(per_clip)), counts)


def segment_rows(n_clips: int, labels: np.ndarray, seed: int = 0):
    """2..5 noisy segments per clip around a genre centre."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(labels.max() + 1, 5)) * 1.2
    per_clip = [centres[labels[c]] + rng.normal(size=(rng.integers(2, 6), 5)) for c in range(n_clips)]
    return stack_clips(per_clip)


def test_clip_probability_is_the_mean_of_its_segments_in_every_fold():
    rel, labels, hashes = catalogue(counts=(9, 9, 9))
    X, clip_ids = segment_rows(len(rel), labels)
    folds = assign_folds(labels, make_groups(rel, hashes), 3, seed=1)
    result = cross_validate(X, labels, clip_ids, folds, ["a", "b", "c"], "logreg", seed=3)
    for k in range(3):
        test_clip = folds == k
        model = fit_pipeline("logreg", None, X[~test_clip[clip_ids]], labels[clip_ids][~test_clip[clip_ids]], seed=3)
        for clip in np.flatnonzero(test_clip):
            by_hand = model.predict_proba(X[clip_ids == clip]).mean(axis=0)
            np.testing.assert_allclose(result.oof_proba[0, clip], by_hand, rtol=1e-10)
    assert (result.predicted[0] == np.argmax(result.oof_proba[0], axis=1)).all()
    by_fold = [np.mean(result.predicted[0][folds == k] == labels[folds == k]) for k in range(3)]
    np.testing.assert_allclose(result.fold_accuracy, by_fold)


def test_a_genre_missing_from_training_gets_probability_zero():
    labels = np.repeat([0, 1, 2], 6)
    X, clip_ids = segment_rows(len(labels), labels, seed=2)
    folds = np.tile([0, 1, 2], 6)
    folds[labels == 2] = 0  # genre 2 is only ever in fold 0's test part
    result = cross_validate(X, labels, clip_ids, folds, ["a", "b", "c"], "svm")
    fold0 = folds == 0
    assert (result.oof_proba[0, fold0, 2] == 0).all() and (result.oof_proba[0, ~fold0, 2] > 0).all()
    assert np.allclose(result.oof_proba[0].sum(axis=1), 1)
    per_genre = result.per_genre()
    assert per_genre["c"]["recall_mean"] == 0.0 and per_genre["c"]["recall_std"] == 0.0  # defined in fold 0 only
    assert per_genre["c"]["support"] == 6


def test_repeats_metrics_json_and_oof_rows():
    rel, labels, hashes = catalogue(counts=(8, 10, 9))
    genres = ["blues", "fold", "p_x"]  # names that could clash with fixed columns do not
    X, clip_ids = segment_rows(len(rel), labels, seed=4)
    folds = assign_repeats(labels, make_groups(rel, hashes), 4, seed=0, repeats=2)
    seen = []
    result = cross_validate(X, labels, clip_ids, folds, genres, "logreg", seed=0,
                            progress=lambda r, k, acc: seen.append((r, k)))
    assert seen == [(r, k) for r in range(2) for k in range(4)]
    assert result.oof_proba.shape == (2, len(rel), 3) and len(result.fold_accuracy) == 8
    assert result.confusion.sum() == 2 * len(rel)
    metrics = cv_metrics_json(result, {"features": "mfcc", "segment_s": 1.5, "seed": 0})
    json.dumps(metrics, allow_nan=False)
    assert metrics["accuracy_mean"] == pytest.approx(np.mean(result.fold_accuracy))
    assert metrics["accuracy_std"] == pytest.approx(np.std(result.fold_accuracy))
    assert metrics["f1_macro_mean"] == pytest.approx(np.mean(result.fold_f1_macro))
    assert (metrics["folds"], metrics["repeats"], metrics["n_clips"]) == (4, 2, len(rel))
    assert metrics["labels"] == genres and metrics["classifier"] == "logreg" and metrics["params"]["C"] == 1.0
    assert metrics["settings"]["segment_s"] == 1.5 and metrics["tuned_params"] is None
    assert set(metrics["per_genre"]["fold"]) >= {"precision_mean", "recall_std", "f1_mean", "support"}
    assert np.trace(np.array(metrics["confusion_matrix"])) == round(np.mean(result.predicted == labels) * 2 * len(rel))
    rows = oof_rows(result, rel)
    assert len(rows) == 2 * len(rel)
    assert list(rows[0]) == ["relpath", "genre", "predicted", "p_blues", "p_fold", "p_p_x", "fold", "repeat"]
    assert rows[0]["relpath"] == rel[0] and rows[0]["genre"] == "blues" and rows[0]["fold"] == folds[0, 0]
    assert sum(r["p_blues"] + r["p_fold"] + r["p_p_x"] for r in rows) == pytest.approx(len(rows))
    single = cross_validate(X, labels, clip_ids, folds[0], genres, "logreg")
    assert "repeat" not in oof_rows(single, rel)[0] and len(oof_rows(single, rel)) == len(rel)
    text = cv_report_text(metrics)
    assert "4-fold cross-validation x 2 repeats" in text and "accuracy: " in text and "±" in text


def test_tuned_cross_validation_records_a_grid_point_per_fold():
    labels = np.repeat([0, 1, 2], 8)
    X, clip_ids = segment_rows(len(labels), labels, seed=5)
    folds = np.tile([0, 1], 12)
    result = cross_validate(X, labels, clip_ids, folds, ["a", "b", "c"], "logreg", seed=0, tune=True)
    assert [(t["repeat"], t["fold"]) for t in result.tuned] == [(0, 0), (0, 1)]
    assert all(t["params"]["C"] in TUNE_GRIDS["logreg"]["C"] and 0 <= t["inner_score"] <= 1 for t in result.tuned)
    assert cv_metrics_json(result, {})["tuned_params"][0]["params"]["C"] == result.tuned[0]["params"]["C"]


def test_cross_validate_rejects_inconsistent_inputs():
    labels = np.array([0, 1, 0, 1])
    X = np.zeros((5, 2))
    with pytest.raises(DataError, match="clip_ids must lie in"):
        cross_validate(X, labels, np.array([0, 1, 2, 3, 4]), np.array([0, 1, 0, 1]), ["a", "b"], "logreg")
    with pytest.raises(DataError, match="1 clip.s. have no rows .first: clip 3."):
        cross_validate(X, labels, np.array([0, 1, 2, 2, 0]), np.array([0, 1, 0, 1]), ["a", "b"], "logreg")
    with pytest.raises(ConfigError, match="train.classifier='rf'"):
        cross_validate(X, labels, np.array([0, 1, 2, 3, 3]), np.array([0, 1, 0, 1]), ["a", "b"], "rf")


def test_prediction_rows_for_val_predictions():
    rows = prediction_rows(["a/1.wav", "b/2.wav"], np.array([0, 1]), np.array([[0.2, 0.8], [0.1, 0.9]]), ["a", "b"])
    assert rows == [{"relpath": "a/1.wav", "genre": "a", "predicted": "b", "p_a": 0.2, "p_b": 0.8},
                    {"relpath": "b/2.wav", "genre": "b", "predicted": "b", "p_a": 0.1, "p_b": 0.9}]


def test_most_confused_pairs():
    confusion = np.array([[5, 3, 0], [1, 6, 4], [0, 0, 9]])
    assert most_confused(confusion, ["a", "b", "c"], top=2) == [("b", "c", 4), ("a", "b", 3)]
    assert most_confused(np.eye(3, dtype=int), ["a", "b", "c"]) == []


def test_end_to_end_on_real_audio_segments():
    """Synth audio -> librosa MFCC frames -> 0.5 s segments -> grouped 3-fold CV with an SVM."""
    import librosa

    sr, hop, seconds = 16000, 512, 2.0
    relpaths, labels, hashes, per_clip = [], [], [], []
    for g, genre in enumerate(SYNTH_GENRES):
        for i in range(6):
            wave = genre_clip(genre, seconds, sr, seed=100 * g + i)
            frames = librosa.feature.mfcc(y=wave, sr=sr, n_mfcc=13, hop_length=hop).T.astype(np.float32)
            valid = math.ceil(len(wave) / hop)
            per_clip.append(combine_kinds([KindFrames(frames, valid, hop / sr)], 0.5))
            relpaths.append(f"{genre}/clip_{i}.wav")
            labels.append(g)
            hashes.append(f"{genre}-{i}")
    relpaths.append("techno/copy_of_clip_0.wav")  # an identical copy must share its original's fold
    labels.append(SYNTH_GENRES.index("techno"))
    hashes.append("techno-0")
    per_clip.append(per_clip[relpaths.index("techno/clip_0.wav")])
    labels = np.array(labels)
    X, clip_ids = stack_clips(per_clip)
    assert len(X) > 5 * len(relpaths)  # several segments per clip
    folds = assign_folds(labels, make_groups(relpaths, hashes), 3, seed=0, genres=list(SYNTH_GENRES))
    assert folds[-1] == folds[relpaths.index("techno/clip_0.wav")]
    result = cross_validate(X, labels, clip_ids, folds, list(SYNTH_GENRES), "svm", seed=0)
    metrics = cv_metrics_json(result, {"features": "mfcc", "segment_s": 0.5})
    assert metrics["accuracy_mean"] > 0.6  # four very different synthetic genres; chance is 0.25
    assert len(oof_rows(result, relpaths)) == len(relpaths)


def test_the_folds_bound_names_the_smallest_genre():
    """Two short genres: the message must name the one with fewest groups, so its bound works."""
    labels = np.array([0] * 60 + [1] * 51 + [2] * 50)
    groups = np.arange(len(labels))
    with pytest.raises(ConfigError, match=r"Genre 'c' has 50 group\(s\).*use --folds 50 or fewer"):
        assign_folds(labels, groups, 100, seed=0, genres=["a", "b", "c"])
