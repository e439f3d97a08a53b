"""The training set and the classifier's metrics on it: pooled rows in, scores out.

A scikit-learn pipeline (scaler + classifier) is fitted on pooled clip (or segment) vectors of
the train split only and scored on the validation split; each clip's probability is the mean
of its segments' (``model.classifiers.clip_proba``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from genreflow.data.index import read_index
from genreflow.data.splits import read_splits
from genreflow.errors import DataError
from genreflow.features import Extractor
from genreflow.model.classifiers import Params, clip_proba, fit_pipeline, tune
from genreflow.model.crossval import make_groups
from genreflow.model.pooling import clip_rows
from genreflow.store.featureset import make_command

@dataclass
class Dataset:
    """Pooled rows of every indexed file that has features, with labels and split.

    A row is a whole clip, or one segment of a clip (``clip_ids`` maps rows to files)."""

    X: np.ndarray  # [shape=(n_rows, n_features)]
    clip_ids: np.ndarray  # [shape=(n_rows,)] index of each row's file
    y: np.ndarray  # [shape=(n_files,)]
    relpaths: list[str]
    content_hashes: list[str]
    is_val: np.ndarray  # bool [shape=(n_files,)]
    genres: list[str]  # label order
    fingerprints: dict[str, str]
    missing: int  # indexed files without features (not computed yet, or failed)

    def rows_of(self, clips: np.ndarray) -> np.ndarray:
        """Boolean row mask for a boolean clip mask."""
        return clips[self.clip_ids]


def clip_probabilities(model, data: Dataset, clips: np.ndarray) -> np.ndarray:
    """[shape=(clips.sum(), n_genres)]: each clip's mean segment probability, in clip order."""
    rows = data.rows_of(clips)
    _, proba = clip_proba(model, data.X[rows], data.clip_ids[rows], len(data.genres))  # clips in index order
    return proba


def evaluate(model, data: Dataset) -> dict[str, Any]:
    """Accuracy, per-genre precision/recall/F1/support and the confusion matrix on val, plus
    the validation predictions per file."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    labels = list(range(len(data.genres)))
    y = data.y[data.is_val]
    if len(y) == 0:
        return {"accuracy": None, "per_genre": {}, "confusion_matrix": [], "labels": data.genres,
                "n_val": 0, "n_train": int((~data.is_val).sum()), "val_proba": np.zeros((0, len(labels)))}
    proba = clip_probabilities(model, data, data.is_val)
    pred = proba.argmax(axis=1)
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "per_genre": {g: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, g in enumerate(data.genres)},
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
        "labels": data.genres,
        "n_train": int((~data.is_val).sum()),
        "n_val": int(len(y)),
        "val_proba": proba,
    }


def _missing_hint(data_dir: str, extractor: Extractor, fp: str) -> str:
    return (f"No {extractor.name} features with the current parameters (fingerprint {fp}) in {data_dir}: "
            f"run `{make_command(extractor.name, data_dir)}` first.")


def load_dataset(data_dir: str, extractors: list[Extractor], segment_s: float | None = None) -> Dataset:
    """Join the index, the splits and every feature set the model needs, pooling shard by shard
    (memory grows with clips x pooled dimensions, not with frames)."""
    index = read_index(data_dir)
    val = set(read_splits(data_dir)["val"])
    keys = {f["content_hash"] for f in index["files"]}
    sets = []
    for extractor in extractors:
        fset = extractor.feature_set(data_dir)
        if not fset.shard_paths():
            raise DataError(_missing_hint(data_dir, extractor, fset.fingerprint))
        sets.append((fset, extractor.frame_seconds))
    rows = clip_rows(sets, keys, segment_s)
    files = [f for f in index["files"] if f["content_hash"] in rows]
    features = "+".join(e.name for e in extractors)
    if not files:
        raise DataError(f"None of the indexed files of {data_dir} has all of {features}: "
                        f"run `{make_command(features, data_dir)}` first.")
    per_clip = [rows[f["content_hash"]] for f in files]
    return Dataset(
        X=np.concatenate(per_clip).astype(np.float32, copy=False),
        clip_ids=np.repeat(np.arange(len(files)), [len(r) for r in per_clip]),
        y=np.array([f["label"] for f in files], dtype=np.int64),
        relpaths=[f["relpath"] for f in files],
        content_hashes=[f["content_hash"] for f in files],
        is_val=np.array([f["relpath"] in val for f in files], dtype=bool),
        genres=[g for g, _ in sorted(index["genres"].items(), key=lambda kv: kv[1])],
        fingerprints={e.name: e.fingerprint() for e in extractors},
        missing=len(index["files"]) - len(files),
    )


def fit(data: Dataset, classifier: str, params: Params, *, seed: int, tune_params: bool = False,
        inner_folds: int = 3, clips: np.ndarray | None = None) -> tuple[Any, Params]:
    """Fit ``classifier`` (scaler inside) on the rows of the train clips only; with
    ``tune_params`` first pick its hyperparameters by inner cross-validation (clips that share
    bytes or a group stay on one side). Returns (fitted pipeline, the params used)."""
    train = ~data.is_val if clips is None else clips
    present = np.unique(data.y[train])
    if len(present) < 2:
        raise DataError(f"The train split holds {len(present)} genre(s) with features; a classifier needs at "
                        "least 2: add audio for more genres to raw/ and re-run `genreflow index`.")
    rows = data.rows_of(train)
    X, y = data.X[rows], data.y[data.clip_ids[rows]]
    if tune_params:
        groups = make_groups(data.relpaths, data.content_hashes)[data.clip_ids[rows]]
        params, _ = tune(classifier, params, X, y, groups=groups, seed=seed, inner_folds=inner_folds)
    return fit_pipeline(classifier, params, X, y, seed=seed, genres=data.genres), params
