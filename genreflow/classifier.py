"""Train and evaluate the genre classifier from the feature store (the driver's job).

StandardScaler + multinomial LogisticRegression (lbfgs) on pooled clip vectors, fitted on the
train split only, evaluated on the validation split.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import __version__
from .config import Config
from .errors import DataError
from .featuresets import feature_set, kinds_for
from .fs import atomic_write_bytes, exists, read_bytes, read_text
from .layout import Layout
from .pooling import pool_table
from .store import FeatureSet, read_table

FEATURE_COMMAND = {"mfcc": "genreflow features", "vggish": "genreflow embed"}


@dataclass
class Dataset:
    """Pooled vectors of every indexed file that has features, with labels and split."""

    X: np.ndarray  # [shape=(n_files, n_features)]
    y: np.ndarray  # [shape=(n_files,)]
    relpaths: list[str]
    is_val: np.ndarray  # bool [shape=(n_files,)]
    genres: list[str]  # label order
    fingerprints: dict[str, str]
    missing: int  # indexed files without features (failed to decode)


def pooled_by_key(fset: FeatureSet, data_dir: str) -> tuple[dict[str, int], np.ndarray]:
    """Read one feature set with pyarrow and pool every row; returns (key -> row, matrix)."""
    table = read_table(fset)
    if table is None:
        command = FEATURE_COMMAND[fset.kind.name]
        raise DataError(f"No {fset.kind.name} features with the current parameters (fingerprint "
                        f"{fset.fingerprint}) in {data_dir}: run `{command} --data-dir {data_dir}` first.")
    keys = table.column("content_hash").to_pylist()
    return {k: i for i, k in enumerate(keys)}, pool_table(fset.kind, table)


def load_dataset(config: Config) -> Dataset:
    """Join the index, the splits and every feature set the configured feature set needs."""
    from .dataset import read_index

    layout = Layout.of(config.data_dir)
    index = read_index(config.data_dir)
    if not exists(layout.splits_json):
        raise DataError(f"No splits at {layout.splits_json}: run `genreflow index --data-dir {config.data_dir}`.")
    val = set(json.loads(read_text(layout.splits_json))["val"])
    fsets = [feature_set(config, kind) for kind in kinds_for(config.train.features)]
    pooled = [pooled_by_key(fset, config.data_dir) for fset in fsets]
    files = [f for f in index["files"] if all(f["content_hash"] in rows for rows, _ in pooled)]
    parts = [matrix[[rows[f["content_hash"]] for f in files]] for rows, matrix in pooled]
    return Dataset(
        X=np.concatenate(parts, axis=1) if files else np.zeros((0, 0), np.float32),
        y=np.array([f["label"] for f in files], dtype=np.int64),
        relpaths=[f["relpath"] for f in files],
        is_val=np.array([f["relpath"] in val for f in files], dtype=bool),
        genres=[g for g, _ in sorted(index["genres"].items(), key=lambda kv: kv[1])],
        fingerprints={fs.kind.name: fs.fingerprint for fs in fsets},
        missing=len(index["files"]) - len(files),
    )


def fit(data: Dataset, config: Config):
    """Fit the scaler + logistic regression on the train rows only."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train = ~data.is_val
    present = np.unique(data.y[train])
    if len(present) < 2:
        raise DataError(f"The train split holds {len(present)} genre(s) with features; a classifier needs at "
                        "least 2: add audio for more genres to raw/ and re-run `genreflow index`.")
    model = make_pipeline(StandardScaler(),
                          LogisticRegression(C=config.train.C, max_iter=config.train.max_iter, solver="lbfgs"))
    return model.fit(data.X[train], data.y[train])


def evaluate(model, data: Dataset) -> dict[str, Any]:
    """Accuracy, per-genre precision/recall/F1/support and the confusion matrix on val."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    labels = list(range(len(data.genres)))
    X, y = data.X[data.is_val], data.y[data.is_val]
    if len(y) == 0:
        return {"accuracy": None, "per_genre": {}, "confusion_matrix": [], "labels": data.genres,
                "n_val": 0, "n_train": int((~data.is_val).sum())}
    pred = model.predict(X)
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "per_genre": {g: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, g in enumerate(data.genres)},
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
        "labels": data.genres,
        "n_train": int((~data.is_val).sum()),
        "n_val": int(len(y)),
    }


def save_model(model, data: Dataset, config: Config) -> dict[str, Any]:
    """Write classifier_model.pkl (joblib) atomically; returns the bundle's metadata."""
    import joblib
    import sklearn

    meta = {
        "genres": data.genres,
        "features": config.train.features,
        "fingerprints": data.fingerprints,
        "audio": vars(config.audio),
        "mfcc": vars(config.mfcc),
        "vggish_handle": config.vggish.handle,
        "versions": {"genreflow": __version__, "scikit-learn": sklearn.__version__},
    }
    buffer = io.BytesIO()
    joblib.dump({"pipeline": model, **meta}, buffer)
    layout = Layout.of(config.data_dir)
    atomic_write_bytes(layout.model, buffer.getvalue())
    return meta


def load_model_bundle(path: str) -> dict[str, Any]:
    """Load a saved classifier, or say how to make one."""
    import joblib

    from .errors import ModelLoadError
    from .fs import locate

    loc = locate(path)
    if not exists(loc):
        raise ModelLoadError(f"No classifier at {path}: run `genreflow train` (or `genreflow run`) first, "
                             "or pass --model FILE.")
    try:
        bundle = joblib.load(io.BytesIO(read_bytes(loc)))
    except Exception as exc:
        raise ModelLoadError(f"{path} is not a genreflow classifier ({type(exc).__name__}: {exc}).") from None
    if not isinstance(bundle, dict) or "pipeline" not in bundle:
        raise ModelLoadError(f"{path} is not a genreflow classifier (no pipeline inside).")
    return bundle
