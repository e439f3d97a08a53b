"""The Python API: what the CLI does, callable from a notebook.

    import genreflow
    result = genreflow.run("data", features="mfcc", workers=2)     # index -> features -> train
    model = genreflow.load_model("data/processed/classifier_model.zip")
    frame = model.predict(["song.mp3", "more_songs/"])              # one row per file

The CLI is a thin layer over the same command functions; nothing here prints less or does
more than the matching command.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence


def _config(data_dir: str, config_path: str | None, overrides: dict[str, Any]):
    from genreflow.config import load_config

    return load_config(config_path, {"data_dir": data_dir, **overrides})


def run(data_dir: str = "data", *, features: str | None = None, workers: int | None = None,
        config: str | None = None, train: bool = True, retrain: bool = False, verbose: bool = False,
        **settings: Any) -> dict[str, Any]:
    """Index, extract what is missing, train and evaluate (as `genreflow run`), silently unless
    ``verbose=True`` (then it prints what the command prints). A current model trained on the
    same inputs is kept, its saved metrics returned, unless ``retrain=True``.

    ``settings`` are dotted config keys with ``__`` for the dot, e.g. ``audio__duration_s=10``,
    ``train__classifier="svm"``. Returns {"features": [StageReport...], "metrics": dict | None}.
    Every model is kept in ``processed/models/``; ``classifier_model.zip`` is the newest.
    """
    from genreflow.cli.commands import run_all_command
    from genreflow.core.console import silenced

    overrides = {"train.features": features, "workers": workers,
                 **{k.replace("__", "."): v for k, v in settings.items()}}
    resolved = _config(data_dir, config, overrides)
    with silenced(not verbose):
        return run_all_command(resolved, train=train, retrain=retrain)


@dataclass
class Model:
    """A saved genreflow model with its recipe; ``predict`` works from any folder."""

    bundle: Any
    data_dir: str | None = None

    @property
    def genres(self) -> list[str]:
        return list(self.bundle.genres)

    @property
    def features(self) -> str:
        return self.bundle.features

    def predict(self, paths: str | Sequence[str], *, workers: int = 1, vggish_model: str | None = None):
        """One row per audio file (folders are expanded), in input order: path, genre, probability,
        ``p_<genre>`` per genre, error (empty when it worked), cached (features came from the store).

        Returns pandas.DataFrame. ``workers > 1`` runs larger batches through Ray.
        """
        import pandas as pd

        from genreflow.stages.predict import (collect_paths, model_extractors, predict_stream, prediction_columns,
                                              prediction_row)

        paths = [paths] if isinstance(paths, str) else list(paths)
        overrides = {"vggish": {"handle": vggish_model}} if vggish_model else None
        results: list = []
        config = _config(self.data_dir or "data", None, {"workers": workers})
        files = collect_paths(paths)
        predict_stream(files, self.bundle, model_extractors(self.bundle, overrides, config), results.extend,
                       data_dir=self.data_dir, config=config if workers > 1 else None)
        order = {path: i for i, path in enumerate(files)}
        results.sort(key=lambda p: order.get(p.path, len(order)))  # the order of the inputs
        return pd.DataFrame([prediction_row(p, self.genres) for p in results], columns=prediction_columns(self.genres))


def load_model(path: str, *, data_dir: str | None = None, trust_pickle: bool = False) -> Model:
    """Load a model file (local path or URI). With ``data_dir``, features already in that
    folder's store are reused by content hash."""
    from genreflow.model.bundle import load_model_bundle

    return Model(load_model_bundle(path, trust_pickle=trust_pickle), data_dir)


def _kind(name: str):
    """The storage layout of a registered kind, or one clear error naming the choices."""
    from genreflow.errors import DataError
    from genreflow.features import registered

    extractors = registered()
    if name not in extractors:
        raise DataError(f"kind={name!r} is not a feature kind: use one of {', '.join(extractors)}.")
    return extractors[name].kind


def read_features(data_dir: str = "data", kind: str = "mfcc", *, fingerprint: str | None = None,
                  with_index: bool = False):
    """One feature set as a pandas DataFrame (one row per content_hash).

    With ``with_index=True`` the rows are joined with the index (relpath, genre, label, split):
    one row per file, so a file stored twice under two names appears twice.
    """
    from genreflow.errors import DataError
    from genreflow.store.featureset import make_command, open_feature_set, read_table

    fset = open_feature_set(data_dir, _kind(kind), fingerprint)
    table = read_table(fset)
    if table is None:
        raise DataError(f"The {kind} feature set {fset.fingerprint} is empty: run `{make_command(kind, data_dir)}` first.")
    frame = table.to_pandas()
    if not with_index:
        return frame
    return index_frame(data_dir).merge(frame, on="content_hash", how="inner")


def index_frame(data_dir: str):
    """The index rows (relpath, genre, label, content_hash, split) as a DataFrame."""
    import pandas as pd

    from genreflow.core.fs import exists
    from genreflow.core.layout import Layout
    from genreflow.data.index import read_index
    from genreflow.data.splits import read_splits

    files = read_index(data_dir)["files"]
    frame = pd.DataFrame(files, columns=["relpath", "genre", "label", "content_hash"])
    split = {}
    if exists(Layout.of(data_dir).splits_json):
        splits = read_splits(data_dir)
        split = {**{p: "train" for p in splits["train"]}, **{p: "val" for p in splits["val"]}}
    frame["split"] = frame["relpath"].map(split).fillna("train")
    return frame


def feature_array(row: Any):
    """Rebuild the 2-D array of one DataFrame row: (n_mfcc, n_frames) or (n_frames, 128)."""
    import numpy as np

    from genreflow.errors import DataError
    from genreflow.features import registered

    for kind in (e.kind for e in registered().values()):
        if kind.value_column in row:
            rows, cols = kind.shape_columns
            return np.asarray(row[kind.value_column], dtype=np.float32).reshape(int(row[rows]), int(row[cols]))
    columns = ", ".join(repr(e.kind.value_column) for e in registered().values())
    raise DataError(f"This row holds no feature column (expected one of {columns}).")
