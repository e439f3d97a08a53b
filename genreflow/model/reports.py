"""Evaluation reports: metrics.json, classification_report.txt, confusion_matrix.png, console text."""

from __future__ import annotations

import io
import json
from typing import Any, Mapping, Sequence

import numpy as np

from genreflow.core.fs import Location, atomic_write_bytes, atomic_write_text
from genreflow.core.tables import format_table
from genreflow.errors import DataError
from genreflow.model.crossval import CvResult


def per_genre_table(metrics: dict[str, Any]) -> str:
    rows = [[g, m["precision"], m["recall"], m["f1"], m["support"]] for g, m in metrics["per_genre"].items()]
    return format_table(["genre", "precision", "recall", "f1", "support"], rows)


def short_names(names: list[str], width: int) -> list[str]:
    """Genre names cut to ``width`` characters, kept distinct (a digit replaces the end of a clash)."""
    out: list[str] = []
    for name in names:
        short = name if len(name) <= width else name[:width - 1] + "."
        n = 1
        while short in out:
            short = f"{name[:max(1, width - len(str(n)))]}{n}"
            n += 1
        out.append(short)
    return out


def confusion_text(metrics: dict[str, Any], max_width: int = 100) -> str:
    """The confusion matrix as text: rows are true genres, columns the predicted genres by name
    (abbreviated when the full names would make the table wider than ``max_width``)."""
    labels = list(metrics["labels"])
    matrix = metrics["confusion_matrix"]
    digits = max([len(str(v)) for row in matrix for v in row] + [1])
    width = max(len(g) for g in labels) if labels else 1
    row_label = max(len("true \\ predicted"), width)
    while width > 3 and row_label + (len(labels)) * (max(width, digits) + 2) > max_width:
        width -= 1
    headers = ["true \\ predicted"] + short_names(labels, width)
    return format_table(headers, [[g] + list(row) for g, row in zip(labels, matrix)])


def report_text(metrics: dict[str, Any]) -> str:
    if metrics["accuracy"] is None:
        return f"No validation files (train={metrics['n_train']}): nothing to evaluate.\n"
    return (f"features: {metrics['features']}   train files: {metrics['n_train']}   val files: {metrics['n_val']}\n"
            f"accuracy: {metrics['accuracy']:.4f}\n\n{per_genre_table(metrics)}\n\n"
            f"confusion matrix (rows: true, columns: predicted)\n{confusion_text(metrics)}\n")


MAX_FIGURE_INCHES = 30.0  # 3000 x 3000 px at 100 dpi: ~36 MB to draw, whatever the genre count
MAX_CELL_TEXT_GENRES = 40  # above, cells carry no count text (G * G text objects); metrics.json has them


def confusion_png(metrics: dict[str, Any], title: str | None = None) -> bytes:
    """A labelled heat map with counts in cells; the figure grows with the number of genres up to
    MAX_FIGURE_INCHES a side, and above MAX_CELL_TEXT_GENRES genres the cells hold no counts
    (the figure would otherwise grow quadratically: 1.2 GB at 100 genres)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels, matrix = [str(g)[:40] for g in metrics["labels"]], np.asarray(metrics["confusion_matrix"])
    n = len(labels)
    size = min(MAX_FIGURE_INCHES, max(5.0, 0.55 * n + 2.5))
    tick_size = max(1.0, min(10.0, 0.6 * 72 * (size - 2.5) / max(n, 1)))
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=45 if n <= MAX_CELL_TEXT_GENRES else 90, ha="right", fontsize=tick_size)
    ax.set_yticks(range(n), labels, fontsize=tick_size)
    ax.set_xlabel("Predicted genre")
    ax.set_ylabel("True genre")
    note = "" if n <= MAX_CELL_TEXT_GENRES else f"; {n} genres: counts in metrics.json"
    ax.set_title(title or f"Confusion matrix ({metrics['features']}, accuracy {metrics['accuracy']:.3f}, "
                          f"n={metrics['n_val']}{note})")
    high = matrix.max() / 2 if matrix.size else 0
    if n <= MAX_CELL_TEXT_GENRES:
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=9,
                        color="white" if matrix[i, j] > high else "black")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def write_reports(metrics: dict[str, Any], reports: Location) -> list[Location]:
    """Write the three report files atomically; returns their locations."""
    targets = [reports.join("metrics.json"), reports.join("classification_report.txt")]
    atomic_write_text(targets[0], json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    atomic_write_text(targets[1], report_text(metrics))
    if metrics["accuracy"] is not None:
        targets.append(reports.join("confusion_matrix.png"))
        atomic_write_bytes(targets[2], confusion_png(metrics))
    return targets


def probability_column(genre: str) -> str:
    """Column name of a genre's probability in oof_predictions.csv (never clashes with the others)."""
    return f"p_{genre}"


def prediction_rows(relpaths: Sequence[str], labels: np.ndarray, proba: np.ndarray,
                    genres: Sequence[str]) -> list[dict[str, Any]]:
    """relpath, genre, predicted, p_<genre>... per clip; proba [shape=(n, n_genres)].

    Shared by oof_predictions.csv and `train`'s val_predictions.csv, so both read alike.
    """
    predicted = np.argmax(proba, axis=1)
    return [{"relpath": rel, "genre": genres[int(labels[i])], "predicted": genres[int(predicted[i])],
             **{probability_column(g): float(proba[i, j]) for j, g in enumerate(genres)}}
            for i, rel in enumerate(relpaths)]


def oof_rows(result: CvResult, relpaths: Sequence[str], genres: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """``prediction_rows`` of the out-of-fold probabilities plus fold; one row per clip, or
    per clip and repeat (with a ``repeat`` column) when R > 1."""
    genres = list(genres if genres is not None else result.genres)
    if len(relpaths) != len(result.y):
        raise DataError(f"{len(relpaths)} relpaths for {len(result.y)} clips.")
    rows = []
    for r in range(result.n_repeats):
        for i, row in enumerate(prediction_rows(relpaths, result.y, result.oof_proba[r], genres)):
            row["fold"] = int(result.folds[r, i])
            if result.n_repeats > 1:
                row["repeat"] = r
            rows.append(row)
    return rows


def most_confused(confusion: np.ndarray, genres: Sequence[str], top: int = 3) -> list[tuple[str, str, int]]:
    """The ``top`` largest off-diagonal cells as (true genre, predicted genre, count)."""
    matrix = np.asarray(confusion).copy()
    np.fill_diagonal(matrix, 0)
    order = np.argsort(-matrix, axis=None, kind="stable")[:top]
    cells = [np.unravel_index(i, matrix.shape) for i in order]
    return [(genres[a], genres[b], int(matrix[a, b])) for a, b in cells if matrix[a, b] > 0]


def cv_report_text(metrics: Mapping[str, Any]) -> str:
    """Console summary of ``cv_metrics_json``: mean ± std, per-genre table, confusion, top confusions."""
    def pm(mean: float | None, std: float | None) -> str:
        return "-" if mean is None else f"{mean:.3f} ± {std:.3f}"

    rows = [[g, pm(m["precision_mean"], m["precision_std"]), pm(m["recall_mean"], m["recall_std"]),
             pm(m["f1_mean"], m["f1_std"]), m["support"]] for g, m in metrics["per_genre"].items()]
    pairs = most_confused(np.array(metrics["confusion_matrix"]), metrics["labels"])
    repeats = f" x {metrics['repeats']} repeats" if metrics["repeats"] > 1 else ""
    settings = metrics.get("settings", {})
    segment = f"{settings['segment_s']:g} s segments" if settings.get("segment_s") else "whole clips"
    return (f"{metrics['folds']}-fold cross-validation{repeats}, {metrics['n_clips']} files, features "
            f"{settings.get('features', '?')}, classifier {metrics['classifier']}, {segment}\n"
            f"accuracy: {pm(metrics['accuracy_mean'], metrics['accuracy_std'])}   "
            f"macro-F1: {pm(metrics['f1_macro_mean'], metrics['f1_macro_std'])}\n\n"
            f"{format_table(['genre', 'precision', 'recall', 'f1', 'support'], rows)}\n\n"
            f"out-of-fold confusion matrix (rows: true, columns: predicted)\n{confusion_text(metrics)}\n"
            + (f"\nmost confused: {', '.join(f'{a} -> {b} ({n})' for a, b, n in pairs)}\n" if pairs else ""))
