"""Classifier choice: logreg, svm, mlp or hgb, each a scikit-learn Pipeline (scaler + model).

Each classifier has a frozen dataclass of hyperparameters (the ``[train.<name>]`` TOML
section), checked on construction with scikit-learn's message shape, a builder, and a small
grid for ``--tune``. Everything built here is a plain, picklable scikit-learn object (no genreflow class inside,
so a saved model loads without genreflow; ``modelfile`` lists the types skops may rebuild). scikit-learn is
imported inside the functions, so importing this module for its names stays instant.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from genreflow.core.sections import check
from genreflow.errors import ConfigError, DataError


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _positive_float(key: str, value: Any) -> None:
    check(_is_number(value) and math.isfinite(value) and value > 0, key, value, "a float in (0, inf)")


def _int_at_least(key: str, value: Any, low: int, high: int | None = None) -> None:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low
    check(ok, key, value, f"an integer in [{low}, inf)")
    if high is not None:
        check(value <= high, key, value, f"an integer in [{low}, {high}] (larger values cannot finish on one machine)")


# Upper bounds (documented in each section's docstring): sizes past them cannot finish on one
# machine (mlp [100000, 100000] is a 74.5 GiB weight matrix; hgb 1e9 rounds never end).
MAX_ITER = 100_000  # logreg and mlp solver iterations
MAX_HIDDEN_UNITS = 4096  # per mlp layer (4096 x 4096 weights with Adam's moments: ~0.5 GiB)
MAX_HIDDEN_LAYERS = 8
MAX_HGB_ITER = 10_000  # boosting rounds
MAX_LEAF_NODES = 4096
MAX_CALIBRATION_FOLDS = 20
SEED_MODULUS = 2**32  # scikit-learn's random_state must be below it: seeds are used modulo 2**32


@dataclass(frozen=True)
class LogregParams:
    """Multinomial logistic regression (lbfgs): the fast, well-calibrated baseline.
    ``max_iter`` <= 100000."""

    section: ClassVar[str] = "train.logreg"
    C: float = 1.0
    max_iter: int = 2000

    def __post_init__(self) -> None:
        _positive_float(f"{self.section}.C", self.C)
        _int_at_least(f"{self.section}.max_iter", self.max_iter, 1, MAX_ITER)


@dataclass(frozen=True)
class SvmParams:
    """RBF SVM; gamma is 'scale' (1 / n_features after scaling), 'auto' or a positive float;
    ``calibration_folds`` in [2, 20]."""

    section: ClassVar[str] = "train.svm"
    C: float = 10.0
    gamma: float | str = "scale"
    calibration_folds: int = 5

    def __post_init__(self) -> None:
        _positive_float(f"{self.section}.C", self.C)
        ok = self.gamma in ("scale", "auto") if isinstance(self.gamma, str) else \
            _is_number(self.gamma) and math.isfinite(self.gamma) and self.gamma > 0
        check(ok, f"{self.section}.gamma", self.gamma, "'scale', 'auto' or a float in (0, inf)")
        _int_at_least(f"{self.section}.calibration_folds", self.calibration_folds, 2, MAX_CALIBRATION_FOLDS)


@dataclass(frozen=True)
class MlpParams:
    """One or more ReLU layers trained with Adam; early stopping is off (it would hold out
    random rows, i.e. segments of training clips, and so validate on near-copies).
    ``hidden``: 1 to 8 layers of 1 to 4096 units; ``max_iter`` <= 100000."""

    section: ClassVar[str] = "train.mlp"
    hidden: tuple[int, ...] = (256,)
    alpha: float = 1e-4
    max_iter: int = 500
    learning_rate_init: float = 1e-3
    early_stopping: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.hidden, list):
            object.__setattr__(self, "hidden", tuple(self.hidden))
        ok = isinstance(self.hidden, tuple) and len(self.hidden) > 0 and all(
            isinstance(h, (int, np.integer)) and not isinstance(h, bool) and h >= 1 for h in self.hidden)
        check(ok, f"{self.section}.hidden", self.hidden, "a non-empty list of positive integers, e.g. [256, 128]")
        check(len(self.hidden) <= MAX_HIDDEN_LAYERS and max(self.hidden) <= MAX_HIDDEN_UNITS, f"{self.section}.hidden",
              self.hidden, f"a list of 1 to {MAX_HIDDEN_LAYERS} integers in [1, {MAX_HIDDEN_UNITS}], e.g. [256, 128]")
        check(_is_number(self.alpha) and math.isfinite(self.alpha) and self.alpha >= 0,
               f"{self.section}.alpha", self.alpha, "a float in [0, inf)")
        _int_at_least(f"{self.section}.max_iter", self.max_iter, 1, MAX_ITER)
        _positive_float(f"{self.section}.learning_rate_init", self.learning_rate_init)
        check(isinstance(self.early_stopping, bool), f"{self.section}.early_stopping", self.early_stopping,
               "true or false")


@dataclass(frozen=True)
class HgbParams:
    """Histogram gradient boosting; early stopping is off for the same reason as the MLP's.
    ``max_iter`` <= 10000 rounds, ``max_leaf_nodes`` in [2, 4096]."""

    section: ClassVar[str] = "train.hgb"
    learning_rate: float = 0.1
    max_iter: int = 200
    max_leaf_nodes: int = 31

    def __post_init__(self) -> None:
        _positive_float(f"{self.section}.learning_rate", self.learning_rate)
        _int_at_least(f"{self.section}.max_iter", self.max_iter, 1, MAX_HGB_ITER)
        _int_at_least(f"{self.section}.max_leaf_nodes", self.max_leaf_nodes, 2, MAX_LEAF_NODES)


Params = LogregParams | SvmParams | MlpParams | HgbParams


def _logreg(p: LogregParams, seed: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=p.C, max_iter=p.max_iter, solver="lbfgs")


def _svm(p: SvmParams, seed: int):
    # Platt scaling fitted on out-of-fold decision values, as SVC(probability=True) did (that
    # flag is deprecated in scikit-learn 1.9); no shuffling, so the fit is deterministic.
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    return CalibratedClassifierCV(SVC(kernel="rbf", C=p.C, gamma=p.gamma), method="sigmoid", ensemble=False,
                                  cv=p.calibration_folds)


def _mlp(p: MlpParams, seed: int):
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(hidden_layer_sizes=p.hidden, alpha=p.alpha, max_iter=p.max_iter,
                         learning_rate_init=p.learning_rate_init, early_stopping=p.early_stopping,
                         random_state=seed)


def _hgb(p: HgbParams, seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(learning_rate=p.learning_rate, max_iter=p.max_iter,
                                          max_leaf_nodes=p.max_leaf_nodes, early_stopping=False,
                                          random_state=seed)


@dataclass(frozen=True)
class ClassifierSpec:
    """A registry entry: the hyperparameter dataclass, its estimator builder, its --tune grid."""

    params: type
    build: Callable[[Any, int], Any]  # (params, seed) -> the final estimator of the Pipeline
    grid: Mapping[str, tuple]  # params field -> candidates; same-named estimator parameter


CLASSIFIERS: dict[str, ClassifierSpec] = {
    "logreg": ClassifierSpec(LogregParams, _logreg, {"C": (0.1, 1.0, 10.0)}),
    "svm": ClassifierSpec(SvmParams, _svm, {"C": (1.0, 10.0, 100.0), "gamma": ("scale", 0.001, 0.01)}),
    "mlp": ClassifierSpec(MlpParams, _mlp, {"alpha": (1e-4, 1e-3, 1e-2, 1e-1)}),
    "hgb": ClassifierSpec(HgbParams, _hgb, {"learning_rate": (0.03, 0.1, 0.3)}),
}
TUNE_GRIDS: dict[str, Mapping[str, tuple]] = {name: spec.grid for name, spec in CLASSIFIERS.items()}

def spec(name: str) -> ClassifierSpec:
    """The registry entry, or a ConfigError listing the choices."""
    if name not in CLASSIFIERS:
        raise ConfigError(f"train.classifier={name!r} is invalid: must be one of {', '.join(sorted(CLASSIFIERS))}.")
    return CLASSIFIERS[name]


def default_params(name: str) -> Params:
    return spec(name).params()


def params_from_mapping(name: str, values: Mapping[str, Any] | None) -> Params:
    """Build ``name``'s params from a TOML section or CLI flags (None values are skipped).

    Lists become tuples (``hidden``), numeric strings become floats (``gamma="0.01"``), and an
    unknown key is a ConfigError that lists the known ones.
    """
    cls = spec(name).params
    known = {f.name for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in (values or {}).items():
        if key not in known:
            raise ConfigError(f"{cls.section}.{key} is not a setting: use one of {', '.join(sorted(known))}.")
        if value is None:
            continue
        if key == "hidden" and isinstance(value, str):
            try:
                value = tuple(int(v) for v in value.replace(" ", "").split(",") if v)
            except ValueError:
                pass  # left as a string: __post_init__ names it
        elif key == "gamma" and isinstance(value, str) and value not in ("scale", "auto"):
            try:
                value = float(value)
            except ValueError:
                pass
        kwargs[key] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def describe(name: str, params: Params) -> dict[str, Any]:
    """JSON-ready record of a classifier choice (for metrics files and saved models)."""
    return {"classifier": name, "params": {k: list(v) if isinstance(v, tuple) else v
                                           for k, v in asdict(params).items()}}


def build_pipeline(name: str, params: Params | None = None, seed: int = 0):
    """Unfitted Pipeline([('scale', StandardScaler()), ('model', estimator)]).

    ``seed`` fixes every random choice inside (MLP initialisation, HGB binning), so two fits
    on the same rows give the same model. Any seed >= 0 works: scikit-learn takes seeds below
    2**32, so ``seed % 2**32`` is used (as ``tune`` does).
    """
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    entry = spec(name)
    params = entry.params() if params is None else params
    if not isinstance(params, entry.params):
        raise ConfigError(f"build_pipeline({name!r}) needs {entry.params.__name__}, got {type(params).__name__}.")
    return Pipeline([("scale", StandardScaler()), ("model", entry.build(params, int(seed) % SEED_MODULUS))])


def fit_pipeline(name: str, params: Params | None, X: np.ndarray, y: np.ndarray, seed: int = 0,
                 genres: list[str] | None = None):
    """Build and fit; the way to train (cross_validate and `train` both use it).

    X [shape=(n_rows, n_features)], y [shape=(n_rows,)] integer labels. The svm's calibration
    uses as many folds as the rarest genre allows (2 to ``calibration_folds``), because
    scikit-learn refuses a class with fewer rows than folds. ``genres`` (label -> name) lets
    that message name the genre.
    """
    y = np.asarray(y)
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise DataError(f"The training rows hold {len(classes)} genre(s); a classifier needs at least 2: "
                        "add audio for more genres, or use fewer folds.")
    pipeline = build_pipeline(name, params, seed)
    if name == "svm":
        folds = int(min(pipeline.named_steps["model"].cv, counts.min()))
        if folds < 2:
            label = int(classes[int(np.argmin(counts))])
            who = f"genre {genres[label]!r}" if genres is not None and 0 <= label < len(genres) else f"label {label}"
            raise DataError(f"The svm classifier needs at least 2 training rows per genre to calibrate its "
                            f"probabilities; {who} has 1: add files of that genre, or use another "
                            "classifier (--classifier logreg).")
        pipeline.set_params(model__cv=folds)
    return pipeline.fit(X, y)


def _tuning_pipeline(name: str, params: Params, seed: int):
    """The pipeline a grid is scored on: for svm a bare SVC (the grid scores predict, so the
    calibration's extra fits per candidate would buy nothing)."""
    if name != "svm":
        return build_pipeline(name, params, seed)
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    return Pipeline([("scale", StandardScaler()), ("model", SVC(kernel="rbf", C=params.C, gamma=params.gamma))])


def tune(name: str, params: Params | None, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None,
         seed: int = 0, inner_folds: int = 3, scoring: str = "accuracy", n_jobs: int = 1) -> tuple[Params, float]:
    """Pick the grid point with the best inner-CV score; returns (params with it, that score).

    X [shape=(n_rows, n_features)], y [shape=(n_rows,)]. ``groups`` [shape=(n_rows,)] keeps
    duplicates, user groups and the segments of one clip inside one inner fold
    (StratifiedGroupKFold); without it rows are split freely (StratifiedKFold), which is only
    right for clip-level rows with no duplicates. Ties go to the earlier grid point. The score
    is per row (per segment for segment-level models), a proxy for the clip-level accuracy.
    """
    from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, StratifiedKFold

    entry = spec(name)
    params = entry.params() if params is None else params
    _int_at_least("evaluate.inner_folds", inner_folds, 2)
    n_groups = len(np.unique(groups)) if groups is not None else len(y)
    if n_groups < inner_folds:
        raise DataError(f"Tuning needs at least inner_folds={inner_folds} groups of training rows, got {n_groups}.")
    if groups is not None:
        splitter = StratifiedGroupKFold(n_splits=inner_folds, shuffle=True, random_state=seed % SEED_MODULUS)
    else:
        splitter = StratifiedKFold(n_splits=inner_folds, shuffle=True, random_state=seed % SEED_MODULUS)
    pipeline = _tuning_pipeline(name, params, seed)
    grid = {f"model__{key}": list(values) for key, values in entry.grid.items()}
    search = GridSearchCV(pipeline, grid, scoring=scoring, cv=splitter, refit=False, n_jobs=n_jobs,
                          error_score="raise")
    search.fit(X, y, groups=groups)
    chosen = {key.removeprefix("model__"): value for key, value in search.best_params_.items()}
    return replace(params, **chosen), float(search.best_score_)


def clip_proba(model, X: np.ndarray, clip_ids: np.ndarray, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Clip probabilities = mean of the clip's row (segment) probabilities, over all labels.

    X [shape=(n_rows, n_features)], clip_ids [shape=(n_rows,)]. Returns (clips [shape=(n,)],
    the sorted distinct clip ids; proba [shape=(n, n_labels)]). Columns follow the integer
    labels 0..n_labels-1, so a genre the model never saw gets probability 0.
    """
    clip_ids = np.asarray(clip_ids)
    if len(clip_ids) != len(X):
        raise DataError(f"clip_ids has {len(clip_ids)} entries for {len(X)} rows.")
    clips, inverse = np.unique(clip_ids, return_inverse=True)
    rows = np.zeros((len(X), n_labels))
    if len(X):
        rows[:, np.asarray(model.classes_, dtype=np.int64)] = model.predict_proba(X)
    sums = np.zeros((len(clips), n_labels))
    np.add.at(sums, inverse, rows)
    return clips, sums / np.bincount(inverse, minlength=len(clips))[:, None]
