"""Whether the current model was trained on exactly what ``run`` would train it on now.

A second ``run`` over unchanged data used to retrain an identical model (the fit is seeded)
and file another copy of it in the history: seconds of imports and fitting, on a run whose
features all came from the store. The model's history summary records a key of everything
training reads: the index and split files, the training, split and tuning settings, each
feature kind's recipe (its fingerprint) and the genreflow and scikit-learn versions. When the
current model's key equals the key of now, ``run`` shows its saved report instead
(``run --retrain`` and ``genreflow train`` always train).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from importlib import metadata
from typing import Any

from genreflow import __version__
from genreflow.config import Config
from genreflow.core.fs import exists, read_bytes
from genreflow.core.jsonfiles import read_json
from genreflow.core.layout import Layout
from genreflow.errors import DataError
from genreflow.features import Extractor
from genreflow.stages.history import current_model_name, model_summary


def training_key(config: Config, extractors: list[Extractor]) -> str:
    """sha256 of everything a fit depends on (any change means: train again)."""
    layout = Layout.of(config.data_dir)
    try:
        sklearn_version = metadata.version("scikit-learn")
    except metadata.PackageNotFoundError:
        sklearn_version = "?"
    parts = {
        "train": dataclasses.asdict(config.train), "split": dataclasses.asdict(config.split),
        "inner_folds": config.evaluate.inner_folds, "extractors": [e.recipe() for e in extractors],
        "index": hashlib.sha256(read_bytes(layout.index_json)).hexdigest(),
        "splits": hashlib.sha256(read_bytes(layout.splits_json)).hexdigest(),
        "versions": {"genreflow": __version__, "scikit-learn": sklearn_version},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class CurrentModel:
    """The current model, trained from the same inputs: its history name, summary and metrics."""

    name: str
    summary: dict[str, Any]
    metrics: dict[str, Any]


def up_to_date_model(config: Config, extractors: list[Extractor]) -> CurrentModel | None:
    """The current model when its recorded key equals ``training_key`` now, with the metrics
    its training wrote; None when anything differs or a file it needs is missing or damaged."""
    layout = Layout.of(config.data_dir)
    name = current_model_name(config.data_dir)
    if name is None or not exists(layout.model) or not exists(layout.reports.join("metrics.json")):
        return None
    summary = model_summary(config.data_dir, name)
    if not summary or summary.get("training_key") != training_key(config, extractors):
        return None
    try:
        metrics = read_json(layout.reports.join("metrics.json"), "metrics", "genreflow train")
    except DataError:
        return None
    if metrics.get("training_key") != summary["training_key"]:
        return None  # the reports of another training
    return CurrentModel(name, summary, metrics)
