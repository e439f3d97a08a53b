"""The train stage: the configured features and classifier, fitted, scored and saved.

Thin glue between a ``Config`` and the model layer, which takes explicit arguments.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from genreflow.config import Config, extractors_for
from genreflow.core.fs import Location
from genreflow.core.layout import Layout
from genreflow.features import Extractor
from genreflow.model import bundle as _bundle
from genreflow.model import training
from genreflow.model.bundle import ModelBundle
from genreflow.model.classifiers import Params
from genreflow.model.training import Dataset


def load_dataset(config: Config, extractors: list[Extractor] | None = None) -> Dataset:
    """Pooled rows of every indexed file with the configured (or given) features."""
    return training.load_dataset(config.data_dir, extractors or extractors_for(config), config.train.segments)


def fit(data: Dataset, config: Config, clips: np.ndarray | None = None) -> tuple[Any, Params]:
    """Fit the configured classifier on the train clips (``clips``: a boolean clip mask)."""
    return training.fit(data, config.train.classifier, config.train.params, seed=config.split.seed,
                        tune_params=config.train.tune, inner_folds=config.evaluate.inner_folds, clips=clips)


def make_bundle(model: Any, params: Params, data: Dataset, config: Config,
                extractors: list[Extractor]) -> ModelBundle:
    return _bundle.make_bundle(model, config.train.classifier, params, data, extractors, config.train.segments)


def save_model(bundle: ModelBundle, config: Config) -> dict[str, Any]:
    """Write the model file of the data folder."""
    return _bundle.save_model(bundle, Layout.of(config.data_dir).model)


def model_writer(bundle: ModelBundle) -> Callable[[Location], Any]:
    """What writes ``bundle`` to a location (the history keeps it, then copies it)."""
    return lambda target: _bundle.save_model(bundle, target)
