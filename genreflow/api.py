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
        config: str | None = None, train: bool = True, **settings: Any) -> dict[str, Any]:
    """Index, extract what is missing, train and evaluate (as `genreflow run`).

    ``settings`` are dotted config keys with ``__`` for the dot, e.g. ``audio__duration_s=10``,
    ``train__classifier="svm"``. Returns {"features": [StageReport...], "metrics": dict | None}.
    """
    from genreflow.cli.commands import run_all_command

    overrides = {"train.features": features, "workers": workers,
                 **{k.replace("__", "."): v for k, v in settings.items()}}
    return run_all_command(_config(data_dir, config, overrides), train=train)


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
        """One row per audio file (folders are expanded): path, genre, probability, one column per
        genre, error (empty when it worked), cached (features came from the store).

        Returns pandas.DataFrame. ``workers > 1`` runs larger batches through Ray.
        """
        import pandas as pd

        from genreflow.cli.outputs import row_of
        from genreflow.stages.predict import collect_paths, model_extractors, predict_stream

        paths = [paths] if isinstance(paths, str) else list(paths)
        overrides = {"vggish": {"handle": vggish_model}} if vggish_model else None
        rows: list[dict[str, Any]] = []
        config = _config(self.data_dir or "data", None, {"workers": workers}) if workers > 1 else None
        predict_stream(collect_paths(paths), self.bundle, model_extractors(self.bundle, overrides),
                       lambda batch: rows.extend(row_of(p, self.genres) for p in batch),
                       data_dir=self.data_dir, config=config)
        return pd.DataFrame(rows, columns=["path", "genre", "probability", *self.genres, "error", "cached"])


def load_model(path: str, *, data_dir: str | None = None, trust_pickle: bool = False) -> Model:
    """Load a model file (local path or URI). With ``data_dir``, features already in that
    folder's store are reused by content hash."""
    from genreflow.model.training import load_model_bundle

    return Model(load_model_bundle(path, trust_pickle=trust_pickle), data_dir)
