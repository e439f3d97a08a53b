"""Models and evaluations users can keep and compare.

Every ``train`` writes its model as ``processed/models/<time>-<setting>.zip`` with a summary
beside it (``.json``: features, classifier, segment, validation accuracy, date), and
``classifier_model.zip`` becomes a copy of the newest; nothing a previous run saved is lost.
Every ``evaluate`` writes its reports into its own ``reports/cv/<time>-<setting>/``. ``status``
lists both as one table, and ``train --from-evaluation`` trains the setting an evaluation
measured (``best``: the highest mean accuracy).
"""

from __future__ import annotations

import json
import posixpath
import time
from dataclasses import dataclass
from typing import Any, Callable

from genreflow.config import Config
from genreflow.core.fs import Location, atomic_write_bytes, atomic_write_text, exists, list_files, read_bytes
from genreflow.core.jsonfiles import read_json
from genreflow.core.layout import Layout
from genreflow.errors import DataError


def setting_name(features: str, classifier: str, segment_s: float | None) -> str:
    """'musicnn-logreg', 'mfcc+spectral-svm-seg1.5': what a file or folder name records."""
    return f"{features}-{classifier}" + (f"-seg{segment_s:g}" if segment_s else "")


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime())


def _models(layout: Layout) -> Location:
    return layout.processed.join("models")


def _evaluations(layout: Layout) -> Location:
    return layout.reports.join("cv")


def _fresh(folder: Location, stem: str, suffix: str = "") -> str:
    """``stem``, or ``stem-2``, ``stem-3``... whichever is not taken yet (two runs in one second)."""
    name, n = stem, 1
    while exists(folder.join(name + suffix)):
        n += 1
        name = f"{stem}-{n}"
    return name


def evaluation_folder(config: Config) -> Location:
    """A new report folder for one `evaluate` run: reports/cv/<time>-<setting>/."""
    name = setting_name(config.train.features, config.train.classifier, config.train.segments)
    folder = _evaluations(Layout.of(config.data_dir))
    return folder.join(_fresh(folder, f"{_stamp()}-{name}"))


def keep_model(config: Config, write: Callable[[Location], Any], summary: dict[str, Any]
               ) -> tuple[Location, str | None]:
    """Write the model into the history and make it the current one; returns (its history
    file, the name of the model it replaced as current, if any)."""
    layout = Layout.of(config.data_dir)
    folder = _models(layout)
    name = _fresh(folder, f"{_stamp()}-{setting_name(summary['features'], summary['classifier'], summary.get('segment_s'))}",
                  ".zip")
    previous = None
    if exists(layout.model):
        history = current_model_name(config.data_dir)
        if history is None:  # a model from before the history (genreflow 0.2): keep it in it
            history = _fresh(folder, f"{_stamp()}-previous", ".zip")
            atomic_write_bytes(folder.join(history + ".zip"), read_bytes(layout.model))
            atomic_write_text(folder.join(history + ".json"), json.dumps(
                {"name": history, "features": "?", "classifier": "?", "segment_s": None, "accuracy": None,
                 "note": "saved before genreflow kept a history"}, indent=2) + "\n")
        previous = history
    target = folder.join(name + ".zip")
    write(target)  # atomic
    atomic_write_text(folder.join(name + ".json"), json.dumps({**summary, "name": name}, indent=2, sort_keys=True)
                      + "\n")
    atomic_write_bytes(layout.model, read_bytes(target))
    atomic_write_text(layout.processed.join("current_model.txt"), name + "\n")
    return target, previous


def current_model_name(data_dir: str) -> str | None:
    """The history name of classifier_model.zip, or None (no model, or one from before the history)."""
    marker = Layout.of(data_dir).processed.join("current_model.txt")
    try:
        if not exists(marker):
            return None
        return read_bytes(marker).decode("utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def model_summary(data_dir: str, name: str) -> dict[str, Any] | None:
    """The summary ``keep_model`` wrote beside a history model (None: missing or damaged)."""
    loc = _models(Layout.of(data_dir)).join(name + ".json")
    return _load(loc, "model summary") if exists(loc) else None


@dataclass(frozen=True)
class Saved:
    """One saved model or evaluation, as ``status`` lists it."""

    what: str  # "model" or "evaluation"
    name: str
    features: str
    classifier: str
    segment_s: float | None
    accuracy: float | None
    std: float | None  # across folds (evaluations); None for one validation split
    files: int

    def row(self, current: str | None) -> list[Any]:
        score = "-" if self.accuracy is None else (
            f"{self.accuracy:.3f}" + (f" ± {self.std:.3f}" if self.std is not None else " (val)"))
        mark = " *" if self.name == current else ""
        return [self.what + mark, self.name, self.features, self.classifier,
                f"{self.segment_s:g} s" if self.segment_s else "whole clip", score, self.files]


def _load(loc: Location, what: str) -> dict[str, Any] | None:
    try:
        return read_json(loc, what, "genreflow train / evaluate")
    except DataError:
        return None  # a damaged summary is left out of the table, never a traceback


def saved(data_dir: str) -> list[Saved]:
    """Every saved model and evaluation of a data folder, oldest first."""
    layout = Layout.of(data_dir)
    out: list[Saved] = []
    if exists(_models(layout)):
        for entry in sorted(list_files(_models(layout), recursive=False), key=lambda e: e.path):
            if entry.path.endswith(".json") and not posixpath.basename(entry.path).startswith("."):
                doc = _load(Location(layout.root.fs, entry.path), "model summary")
                if doc:
                    out.append(Saved("model", doc.get("name", ""), doc.get("features", "?"), doc.get("classifier", "?"),
                                     doc.get("segment_s"), doc.get("accuracy"), None,
                                     int(doc.get("n_train", 0)) + int(doc.get("n_val", 0))))
    if exists(_evaluations(layout)):
        for entry in sorted(list_files(_evaluations(layout), recursive=False), key=lambda e: e.path):
            if entry.is_dir:
                doc = _load(Location(layout.root.fs, entry.path).join("cv_metrics.json"), "evaluation")
                if doc:
                    settings = doc.get("settings", {})
                    out.append(Saved("evaluation", posixpath.basename(entry.path), settings.get("features", "?"),
                                     doc.get("classifier", "?"), settings.get("segment_s"), doc.get("accuracy_mean"),
                                     doc.get("accuracy_std"), int(doc.get("n_clips", 0))))
    return sorted(out, key=lambda s: s.name)


def evaluation_settings(data_dir: str, which: str) -> dict[str, Any]:
    """Config overrides (dotted keys) that reproduce an evaluation's setting: ``which`` is a
    folder name under reports/cv/, ``latest`` or ``best`` (highest mean accuracy)."""
    evaluations = [s for s in saved(data_dir) if s.what == "evaluation" and s.accuracy is not None]
    if not evaluations:
        raise DataError(f"No evaluation in {data_dir}: run `genreflow evaluate --data-dir {data_dir}` first.")
    if which == "best":
        chosen = max(evaluations, key=lambda s: (s.accuracy, s.name))
    elif which == "latest":
        chosen = evaluations[-1]
    else:
        found = [s for s in evaluations if s.name == which]
        if not found:
            names = ", ".join(s.name for s in evaluations[-5:])
            raise DataError(f"--from-evaluation {which!r}: no such evaluation in {data_dir} (latest: {names}); "
                            "use a folder name under reports/cv/, latest or best.")
        chosen = found[0]
    doc = read_json(_evaluations(Layout.of(data_dir)).join(chosen.name, "cv_metrics.json"), "evaluation",
                    "genreflow evaluate")
    settings = doc.get("settings", {})
    overrides: dict[str, Any] = {"train.features": settings.get("features"), "train.classifier": doc["classifier"],
                                 "train.segment_s": float(settings.get("segment_s") or 0.0),
                                 "train.tune": bool(settings.get("tune", False))}  # tuned per fold: tune again
    overrides.update({f"train.{doc['classifier']}.{key}": value for key, value in doc.get("params", {}).items()})
    return {"name": chosen.name, "accuracy": chosen.accuracy, "std": chosen.std, "overrides": overrides}
