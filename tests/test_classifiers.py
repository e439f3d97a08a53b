"""Issue 14: classifier choice, hyperparameter checks, --tune grids, clip = mean of segment probabilities."""

from __future__ import annotations

import dataclasses

import pickle

import numpy as np
import pytest

from genreflow.model.classifiers import (CLASSIFIERS, TUNE_GRIDS, HgbParams, LogregParams, MlpParams,
                                   SvmParams, build_pipeline, clip_proba, describe, fit_pipeline, params_from_mapping,
                                   tune)
from genreflow.model.modelfile import SKOPS_TRUSTED
from genreflow.errors import ConfigError, DataError

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# small but real settings so the whole file stays fast on 2 shared cores
FAST = {"logreg": LogregParams(), "svm": SvmParams(), "mlp": MlpParams(hidden=(16,), max_iter=150),
        "hgb": HgbParams(max_iter=30)}


@pytest.fixture(autouse=True)
def one_openmp_thread():
    """HGB's OpenMP threads crawl on a busy 2-core machine; one thread is 10x faster there."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="openmp"):
        yield


def blobs(n_per: int = 20, n_classes: int = 3, d: int = 6, seed: int = 0, spread: float = 3.0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per)
    centres = rng.normal(size=(n_classes, d)) * spread
    return (centres[y] + rng.normal(size=(len(y), d))).astype(np.float32), y


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_each_classifier_trains_predicts_and_pickles(name):
    X, y = blobs()
    model = fit_pipeline(name, FAST[name], X, y, seed=1)
    assert list(model.named_steps) == ["scale", "model"]
    proba = model.predict_proba(X)
    assert proba.shape == (60, 3) and np.allclose(proba.sum(axis=1), 1)
    assert (model.predict(X) == model.classes_[np.argmax(proba, axis=1)]).all()
    assert np.mean(model.predict(X) == y) > 0.9
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(X), proba)
    refit = fit_pipeline(name, FAST[name], X, y, seed=1)  # same seed, same rows -> same model
    np.testing.assert_allclose(refit.predict_proba(X), proba, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_each_classifier_round_trips_through_skops_with_the_trusted_list(name):
    sio = pytest.importorskip("skops.io")
    X, y = blobs(seed=2)
    model = fit_pipeline(name, FAST[name], X, y, seed=0)
    data = sio.dumps(model)
    assert set(sio.get_untrusted_types(data=data)) <= set(SKOPS_TRUSTED)
    np.testing.assert_array_equal(sio.loads(data, trusted=SKOPS_TRUSTED).predict_proba(X), model.predict_proba(X))


def test_mlp_seed_changes_the_model():
    X, y = blobs(seed=3)
    a = fit_pipeline("mlp", FAST["mlp"], X, y, seed=0).predict_proba(X)
    b = fit_pipeline("mlp", FAST["mlp"], X, y, seed=1).predict_proba(X)
    assert not np.allclose(a, b)


@pytest.mark.parametrize("build, message", [
    (lambda: SvmParams(C=-1), "train.svm.C=-1 is invalid: must be a float in (0, inf)."),
    (lambda: SvmParams(gamma="big"),
     "train.svm.gamma='big' is invalid: must be 'scale', 'auto' or a float in (0, inf)."),
    (lambda: SvmParams(gamma=0.0), "train.svm.gamma=0.0 is invalid"),
    (lambda: LogregParams(C=float("inf")), "train.logreg.C=inf is invalid: must be a float in (0, inf)."),
    (lambda: LogregParams(max_iter=0), "train.logreg.max_iter=0 is invalid: must be an integer in [1, inf)."),
    (lambda: LogregParams(max_iter=True), "train.logreg.max_iter=True is invalid"),
    (lambda: MlpParams(hidden=()), "train.mlp.hidden=() is invalid: must be a non-empty list of positive integers"),
    (lambda: MlpParams(hidden=(64, 0)), "train.mlp.hidden=(64, 0) is invalid"),
    (lambda: MlpParams(alpha=-1e-3), "train.mlp.alpha=-0.001 is invalid: must be a float in [0, inf)."),
    (lambda: MlpParams(learning_rate_init=0), "train.mlp.learning_rate_init=0 is invalid"),
    (lambda: HgbParams(learning_rate="fast"), "train.hgb.learning_rate='fast' is invalid"),
    (lambda: HgbParams(max_leaf_nodes=1), "train.hgb.max_leaf_nodes=1 is invalid: must be an integer in [2, inf)."),
])
def test_params_are_checked_with_sklearn_style_messages(build, message):
    with pytest.raises(ConfigError) as caught:
        build()
    assert str(caught.value).startswith(message)


def test_params_from_mapping_coerces_toml_and_cli_values():
    assert params_from_mapping("mlp", {"hidden": [128, 64], "alpha": None}) == MlpParams(hidden=(128, 64))
    assert params_from_mapping("mlp", {"hidden": "32,16"}).hidden == (32, 16)
    assert params_from_mapping("svm", {"gamma": "0.01", "C": 3}) == SvmParams(C=3, gamma=0.01)
    assert params_from_mapping("svm", {"gamma": "scale"}).gamma == "scale"
    assert params_from_mapping("hgb", None) == HgbParams()
    with pytest.raises(ConfigError, match=r"train\.svm\.alpha is not a setting: use one of C, calibration_folds, "):
        params_from_mapping("svm", {"alpha": 1.0})
    with pytest.raises(ConfigError, match="train.svm.gamma='wide' is invalid"):
        params_from_mapping("svm", {"gamma": "wide"})
    assert describe("mlp", MlpParams()) == {"classifier": "mlp", "params": {
        "hidden": [256], "alpha": 1e-4, "max_iter": 500, "learning_rate_init": 1e-3, "early_stopping": False}}


def test_unknown_classifier_and_wrong_params_type():
    message = r"train\.classifier='knn' is invalid: must be one of hgb, logreg, mlp, svm\."
    with pytest.raises(ConfigError, match=message):
        build_pipeline("knn")
    with pytest.raises(ConfigError, match="needs SvmParams, got LogregParams"):
        build_pipeline("svm", LogregParams())
    X, y = blobs()
    with pytest.raises(DataError, match="at least 2"):
        fit_pipeline("logreg", None, X, np.zeros_like(y))


def test_svm_calibrates_with_as_many_folds_as_the_rarest_genre_allows():
    X, y = blobs(n_per=12)
    keep = np.r_[0:12, 12:24, 24:27]  # the third genre has 3 rows: 3 calibration folds, not 5
    model = fit_pipeline("svm", None, X[keep], y[keep])
    assert model.named_steps["model"].cv == 3 and model.predict_proba(X).shape == (36, 3)
    with pytest.raises(DataError, match="at least 2 training rows per genre"):
        fit_pipeline("svm", None, X[np.r_[0:24, 24]], y[np.r_[0:24, 24]])


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_tune_picks_from_its_grid_deterministically(name):
    X, y = blobs(n_per=15, seed=4, spread=1.0)
    groups = np.arange(len(y)) // 3
    start = FAST[name]
    outside = {key: _off_grid(values) for key, values in TUNE_GRIDS[name].items()}
    start = dataclasses.replace(start, **outside)  # an ignored grid cannot pass: every tuned key starts off it
    best, score = tune(name, start, X, y, groups=groups, seed=5)
    assert type(best) is type(FAST[name]) and 0.0 <= score <= 1.0
    for key, values in TUNE_GRIDS[name].items():
        assert getattr(best, key) in values
    untouched = {k: v for k, v in vars(start).items() if k not in TUNE_GRIDS[name]}
    assert {k: getattr(best, k) for k in untouched} == untouched
    assert tune(name, start, X, y, groups=groups, seed=5) == (best, score)


def _off_grid(values: tuple):
    """A value of the grid's type that the grid does not hold."""
    first = values[0]
    if isinstance(first, tuple):
        return tuple(v + 7 for v in first)
    if isinstance(first, str):  # svm gamma: "scale" or a number
        return 0.123
    return type(first)(max(v for v in values if not isinstance(v, str)) * 3 + 1)


def test_tune_takes_the_best_inner_score_and_keeps_groups_together(monkeypatch):
    import sklearn.model_selection as ms
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_score

    X, y = blobs(n_per=15, seed=5, spread=0.3, d=40)  # noisy enough that C matters
    groups = np.arange(len(y)) // 3
    seen = []

    class Spy(ms.GridSearchCV):
        def fit(self, X, y=None, **params):
            seen.extend(self.cv.split(X, y, params.get("groups")))
            return super().fit(X, y, **params)

    monkeypatch.setattr(ms, "GridSearchCV", Spy)
    best, score = tune("logreg", None, X, y, groups=groups, seed=7, inner_folds=3)
    assert len(seen) == 3
    for train, test in seen:
        assert not set(groups[train]) & set(groups[test])
    splitter = StratifiedGroupKFold(n_splits=3, shuffle=True, random_state=7)
    scores = [cross_val_score(build_pipeline("logreg", LogregParams(C=c)), X, y, groups=groups, cv=splitter).mean()
              for c in TUNE_GRIDS["logreg"]["C"]]
    assert sorted(scores)[-1] > sorted(scores)[-2]  # one clear winner, so the check below means something
    assert best.C == TUNE_GRIDS["logreg"]["C"][int(np.argmax(scores))]
    assert score == pytest.approx(max(scores))


def test_clip_proba_is_the_mean_of_segment_probabilities_over_all_genres():
    X, y = blobs(n_per=10, n_classes=4, seed=8)
    seen = y != 2  # genre 2 is never trained on
    model = fit_pipeline("logreg", None, X[seen], y[seen])
    rows = np.random.default_rng(9).permutation(len(y))[:25]
    clip_ids = np.random.default_rng(10).integers(3, 9, size=25)  # clips 3..8, uneven segment counts
    clips, proba = clip_proba(model, X[rows], clip_ids, 4)
    assert clips.tolist() == sorted(set(clip_ids.tolist()))
    by_row = model.predict_proba(X[rows])  # columns = classes 0, 1, 3
    for clip, p in zip(clips, proba):
        expected = by_row[clip_ids == clip].mean(axis=0)
        np.testing.assert_allclose(p[[0, 1, 3]], expected, rtol=1e-6)  # float32 rows, float64 mean
        assert p[2] == 0.0 and p.sum() == pytest.approx(1.0)
    with pytest.raises(DataError, match="clip_ids has 3 entries for 25 rows"):
        clip_proba(model, X[rows], clip_ids[:3], 4)
