"""`genreflow evaluate`: stratified (grouped) K-fold cross-validation over the indexed files
with features, and the per-file reports `train` and `evaluate` share.

No model is saved and the train/val split files are never touched: this is for comparing
settings with a number that does not move by ±6 points with the split.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np

from genreflow.config import extractors_for
from genreflow.model.training import Dataset
from genreflow.stages.train import load_dataset
from genreflow.config import Config
from genreflow.core.fs import Location, atomic_write_text
from genreflow.stages.history import evaluation_folder


def csv_text(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue()


def write_val_predictions(data: Dataset, proba: np.ndarray, folder: Location) -> Location:
    """reports/val_predictions.csv: relpath, genre, predicted, p_<genre>... per validation file."""
    from genreflow.model.reports import prediction_rows

    relpaths = [r for r, v in zip(data.relpaths, data.is_val) if v]
    target = folder.join("val_predictions.csv")
    atomic_write_text(target, csv_text(prediction_rows(relpaths, data.y[data.is_val], proba, data.genres)))
    return target


def user_groups(config: Config, relpaths: list[str]) -> dict[str, str] | None:
    from genreflow.model.crossval import group_pattern, read_group_csv

    if config.evaluate.groups:
        return read_group_csv(config.evaluate.groups)
    if config.evaluate.group_pattern:
        return group_pattern(relpaths, config.evaluate.group_pattern)
    return None


def settings_of(config: Config, extractors) -> dict[str, Any]:
    from genreflow.model.classifiers import describe

    return {"features": config.train.features, "fingerprints": {e.name: e.fingerprint() for e in extractors},
            **describe(config.train.classifier, config.train.params), "tune": config.train.tune,
            "segment_s": config.train.segments, "folds": config.evaluate.folds,
            "repeats": config.evaluate.repeats, "seed": config.split.seed,
            "groups": config.evaluate.groups or None, "group_pattern": config.evaluate.group_pattern or None}


def run_cross_validation(config: Config, progress=None) -> dict[str, Any]:
    """Cross-validate the configured features + classifier; write reports/cv/<time>-<setting>/ and return
    {"metrics", "written", "dataset"}."""
    from threadpoolctl import threadpool_limits

    from genreflow.model.crossval import assign_repeats, cross_validate, cv_metrics_json, make_groups
    from genreflow.model.reports import oof_rows
    from genreflow.model.reports import confusion_png

    extractors = extractors_for(config)
    data = load_dataset(config, extractors)
    groups = make_groups(data.relpaths, data.content_hashes, user_groups(config, data.relpaths))
    folds = assign_repeats(data.y, groups, config.evaluate.folds, config.split.seed, config.evaluate.repeats,
                           data.genres)
    with threadpool_limits(limits=1, user_api="openmp"):  # HGB's OpenMP threads thrash small folds
        result = cross_validate(data.X, data.y, data.clip_ids, folds, data.genres, config.train.classifier,
                                config.train.params, seed=config.split.seed, tune=config.train.tune, groups=groups,
                                inner_folds=config.evaluate.inner_folds, progress=progress)
    metrics = cv_metrics_json(result, settings_of(config, extractors))
    folder = evaluation_folder(config)
    import json

    from genreflow.core.fs import atomic_write_bytes

    written = [folder.join("cv_metrics.json"), folder.join("oof_predictions.csv"), folder.join("confusion_matrix.png")]
    atomic_write_text(written[0], json.dumps(metrics, indent=2, sort_keys=True, allow_nan=False) + "\n")
    atomic_write_text(written[1], csv_text(oof_rows(result, data.relpaths, data.genres)))
    title = (f"Out-of-fold confusion ({config.train.features}, {config.train.classifier}, "
             f"accuracy {metrics['accuracy_mean']:.3f} ± {metrics['accuracy_std']:.3f})")
    atomic_write_bytes(written[2], confusion_png(metrics, title))
    return {"metrics": metrics, "written": written, "dataset": data, "missing": data.missing}
