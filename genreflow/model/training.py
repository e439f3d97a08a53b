"""Train and evaluate the genre classifier from the feature store (the driver's job).

A scikit-learn pipeline (scaler + classifier) on pooled clip vectors, fitted on the train split
only and evaluated on the validation split. The saved model carries its own recipe: for each
feature kind the extractor's name, version, parameters and fingerprint, and the audio
preprocessing, so ``predict`` rebuilds exactly those extractors with no configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genreflow import __version__
from genreflow.config import Config
from genreflow.errors import DataError, ModelLoadError
from genreflow.features import Extractor, build, parse_kinds
from genreflow.core.layout import Layout
from genreflow.store.featureset import make_command

MODEL_FORMAT = "genreflow-model/1"


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


@dataclass
class ModelBundle:
    """A trained pipeline plus everything needed to use it anywhere (its recipe)."""

    pipeline: Any
    genres: list[str]
    features: str
    extractors: list[dict[str, Any]]  # Extractor.recipe() per kind, in column order
    classifier: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    segment_s: float | None = None  # clip = mean of its segments' probabilities

    @property
    def fingerprints(self) -> dict[str, str]:
        return {r["name"]: r["fingerprint"] for r in self.extractors}

    def meta(self) -> dict[str, Any]:
        return {"format": MODEL_FORMAT, "genres": self.genres, "features": self.features,
                "extractors": self.extractors, "fingerprints": self.fingerprints,
                "classifier": self.classifier, "segment_s": self.segment_s, "versions": self.versions}

    @classmethod
    def from_meta(cls, pipeline: Any, meta: Any, where: str) -> "ModelBundle":
        """Check a loaded model's metadata; a malformed one is one clear error, never a KeyError."""
        meta = legacy_meta(meta)
        ok = (isinstance(meta, dict) and isinstance(meta.get("genres"), list) and isinstance(meta.get("features"), str)
              and isinstance(meta.get("extractors"), list) and all(isinstance(r, dict) and "name" in r
                                                                     for r in meta["extractors"]))
        if not ok or not hasattr(pipeline, "predict_proba"):
            raise ModelLoadError(f"{where} is not a usable genreflow model (its metadata is incomplete): "
                                 "retrain with `genreflow train`.")
        return cls(pipeline, meta["genres"], meta["features"], meta["extractors"], meta.get("classifier", {}),
                   meta.get("versions", {}), meta.get("segment_s"))


def extractors_for(config: Config, features: str | None = None) -> list[Extractor]:
    """The resolved extractors of a '+'-joined feature set (default: the configured one)."""
    return [build(kind, config).resolved() for kind in parse_kinds(features or config.train.features)]


def _missing_hint(config: Config, extractor: Extractor, fp: str) -> str:
    return (f"No {extractor.name} features with the current parameters (fingerprint {fp}) in {config.data_dir}: "
            f"run `{make_command(extractor.name, config.data_dir)}` first.")


def load_dataset(config: Config, extractors: list[Extractor] | None = None) -> Dataset:
    """Join the index, the splits and every feature set the model needs, pooling shard by shard
    (memory grows with clips x pooled dimensions, not with frames)."""
    from genreflow.data.index import read_index
    from genreflow.model.pooling import clip_rows
    from genreflow.data.splits import read_splits

    index = read_index(config.data_dir)
    val = set(read_splits(config.data_dir)["val"])
    extractors = extractors or extractors_for(config)
    keys = {f["content_hash"] for f in index["files"]}
    sets = []
    for extractor in extractors:
        fset = extractor.feature_set(config.data_dir)
        if not fset.shard_paths():
            raise DataError(_missing_hint(config, extractor, fset.fingerprint))
        sets.append((fset, extractor.frame_seconds))
    rows = clip_rows(sets, keys, config.train.segments)
    files = [f for f in index["files"] if f["content_hash"] in rows]
    if not files:
        raise DataError(f"None of the indexed files of {config.data_dir} has all of {config.train.features}: "
                        f"run `{make_command(config.train.features, config.data_dir)}` first.")
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


def fit(data: Dataset, config: Config, clips: np.ndarray | None = None):
    """Fit the configured classifier (scaler inside) on the rows of the train clips only;
    with ``train.tune`` first pick its hyperparameters by inner cross-validation.
    Returns (fitted pipeline, the params used)."""
    from genreflow.model.classifiers import fit_pipeline, tune
    from genreflow.model.crossval import make_groups

    train = ~data.is_val if clips is None else clips
    present = np.unique(data.y[train])
    if len(present) < 2:
        raise DataError(f"The train split holds {len(present)} genre(s) with features; a classifier needs at "
                        "least 2: add audio for more genres to raw/ and re-run `genreflow index`.")
    rows = data.rows_of(train)
    X, y = data.X[rows], data.y[data.clip_ids[rows]]
    params = config.train.params
    if config.train.tune:
        groups = make_groups(data.relpaths, data.content_hashes)[data.clip_ids[rows]]
        params, _ = tune(config.train.classifier, params, X, y, groups=groups, seed=config.split.seed,
                         inner_folds=config.evaluate.inner_folds)
    return fit_pipeline(config.train.classifier, params, X, y, seed=config.split.seed), params


def clip_probabilities(model, data: Dataset, clips: np.ndarray) -> np.ndarray:
    """[shape=(clips.sum(), n_genres)]: each clip's mean segment probability, in clip order."""
    from genreflow.model.classifiers import clip_proba

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


def make_bundle(model, params, data: Dataset, config: Config, extractors: list[Extractor]) -> ModelBundle:
    import sklearn

    from genreflow.model.classifiers import describe

    return ModelBundle(
        pipeline=model, genres=data.genres, features="+".join(e.name for e in extractors),
        extractors=[e.recipe() for e in extractors], classifier=describe(config.train.classifier, params),
        versions={"genreflow": __version__, "scikit-learn": sklearn.__version__}, segment_s=config.train.segments)


def legacy_meta(meta: Any) -> Any:
    """Metadata of a model saved by genreflow 0.1 (joblib): its MFCC recipe rebuilt from the
    parameters it stored; other kinds then fail the version check with a clear message."""
    if not isinstance(meta, dict) or "extractors" in meta or not isinstance(meta.get("fingerprints"), dict):
        return meta
    recipes = []
    for name, fp in meta["fingerprints"].items():
        section = meta.get("mfcc", {}) if name == "mfcc" else {"handle": meta.get("vggish_handle", "")}
        params = {"sample_rate": meta.get("audio", {}).get("sample_rate"), **section} if name == "mfcc" else {}
        if name == "mfcc":
            params["duration_s"] = meta.get("audio", {}).get("duration_s")
        recipes.append({"name": name, "version": 1, "section": section, "audio": meta.get("audio", {}),
                        "params": params, "fingerprint": fp})
    return {**meta, "extractors": recipes}


def save_model(bundle: ModelBundle, config: Config) -> dict[str, Any]:
    """Write the model file (skops + JSON, atomically); returns its metadata."""
    from genreflow.model.modelfile import save_model_file

    save_model_file(Layout.of(config.data_dir).model, bundle.pipeline, bundle.meta())
    return bundle.meta()


def load_model_bundle(path: str, trust_pickle: bool = False) -> ModelBundle:
    """Load a saved model (local path or URI), or say how to make one."""
    from genreflow.core.fs import exists, locate
    from genreflow.model.modelfile import load_model_file

    if not exists(locate(path)):
        raise ModelLoadError(f"No classifier at {path}: run `genreflow train` (or `genreflow run`) first, "
                             "or pass --model FILE.")
    pipeline, meta = load_model_file(path, trust_pickle=trust_pickle)
    return ModelBundle.from_meta(pipeline, meta, path)
