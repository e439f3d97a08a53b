"""Prediction results as they come: CSV, JSON Lines or Parquet files, and console formats;
the capped lists of invalid and ignored files ``index`` prints; the report of a model ``run``
keeps.

CSV and JSON Lines are appended and flushed row batch by row batch, so a killed ``predict``
leaves a readable prefix. Parquet cannot be read without its footer, so its rows stream into
``<out>.partial.jsonl`` first and become the Parquet file (atomically) when the run ends.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import click

from genreflow.errors import ConfigError
from genreflow.stages.predict import prediction_columns, prediction_row, printable_path

if TYPE_CHECKING:
    from genreflow.config import Config
    from genreflow.stages.uptodate import CurrentModel

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}
LIST_LIMIT = 20  # file names printed per list; the index file holds them all


class ResultWriter:
    """Streams prediction rows to ``path`` (format from its extension)."""

    def __init__(self, path: str, genres: Sequence[str]) -> None:
        fmt = FORMATS.get(os.path.splitext(path)[1].lower())
        if fmt is None:
            raise ConfigError(f"--out={path!r} is invalid: must end in .csv, .jsonl or .parquet.")
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", path):
            raise ConfigError(f"--out={path!r} is invalid: predictions are written to a local file only; write one "
                              "here and copy it to the object store (e.g. `aws s3 cp`).")
        self.path, self.fmt, self.genres = path, fmt, list(genres)
        self.stream_path = path + ".partial.jsonl" if fmt == "parquet" else path
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise ConfigError(f"--out={path!r} is invalid: the folder {parent} does not exist.")
        if os.path.exists(path):
            import click

            click.secho(f"note: --out {path} exists; it is replaced.", fg="yellow", err=True)
        self._handle = open(self.stream_path, "w", newline="", encoding="utf-8")
        self._csv = None
        if fmt == "csv":
            self._csv = csv.DictWriter(self._handle, fieldnames=prediction_columns(self.genres), lineterminator="\n")
            self._csv.writeheader()
        self.rows = 0

    def write(self, predictions: Iterable) -> None:
        try:
            for p in predictions:
                row = prediction_row(p, self.genres)
                if self._csv is not None:
                    self._csv.writerow(row)
                else:
                    self._handle.write(json.dumps(row) + "\n")
                self.rows += 1
            self._handle.flush()
        except OSError as exc:  # a full disk: name the file (the OSError of a write names none)
            raise OSError(exc.errno, exc.strerror, exc.filename or self.stream_path) from None

    def close(self) -> None:
        try:
            self._finish()
        except OSError as exc:
            if self.fmt == "parquet" and os.path.exists(self.stream_path):
                import click

                click.secho(f"note: the {self.rows} rows predicted are kept in {self.stream_path}.", fg="yellow",
                            err=True)
            raise OSError(exc.errno, exc.strerror, exc.filename or self.path) from None

    def _finish(self) -> None:
        self._handle.close()
        if self.fmt == "parquet":
            import pandas as pd

            from genreflow.core.fs import atomic_write_bytes, locate

            frame = pd.read_json(self.stream_path, lines=True, dtype=False) if self.rows else \
                pd.DataFrame(columns=prediction_columns(self.genres))
            buffer = io.BytesIO()
            frame.to_parquet(buffer, index=False)
            atomic_write_bytes(locate(self.path), buffer.getvalue())
            os.unlink(self.stream_path)


def format_predictions(results: list, genres: list[str], fmt: str) -> str:
    """table (top genre), csv or json: csv and json hold the rows ``--out`` writes."""
    from genreflow.core.tables import format_table

    if fmt == "json":
        return json.dumps([prediction_row(r, genres) for r in results], indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=prediction_columns(genres), lineterminator="\n")
        writer.writeheader()
        writer.writerows(prediction_row(r, genres) for r in results)
        return out.getvalue().rstrip("\n")
    rows = [[printable_path(r.path), r.genre or "-", r.probability if not r.error else "-", r.error]
            for r in results]
    return format_table(["file", "genre", "probability", "error"], rows)


def capped_lines(items: Sequence[str], what: str, key: str, index_json: object, limit: int = LIST_LIMIT) -> list[str]:
    """The first ``limit`` items, indented and escaped (``display_name``), then one line for the
    rest: 50,000 bad files must not become 50,000 lines; dataset_index.json holds every one."""
    from genreflow.core.console import display_name

    lines = [f"  {display_name(item)}" for item in items[:limit]]
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit:,} more {what}: see '{key}' in {index_json}")
    return lines


def index_file_lines(index: dict[str, Any], index_json: object, limit: int = LIST_LIMIT) -> list[str]:
    """What ``index`` prints below its table about invalid and ignored files, each list capped."""
    lines: list[str] = []
    invalid, ignored = index["invalid"], index["ignored"]
    if invalid:
        lines.append(f"\n{len(invalid)} invalid file(s) skipped:")
        lines += capped_lines([f"{r['relpath']}: {r['reason']}" for r in invalid], "invalid files", "invalid",
                              index_json, limit)
    if ignored:
        lines.append(f"{len(ignored)} ignored file(s) (not .wav/.mp3/.flac/.ogg or outside a genre folder):")
        lines += capped_lines(ignored, "ignored files", "ignored", index_json, limit)
    return lines


def echo_index_files(index: dict[str, Any], index_json: object) -> None:
    """Print ``index_file_lines`` (the call ``run_index_command`` makes after its warnings)."""
    import click

    for line in index_file_lines(index, index_json):
        click.echo(line)


def show_current_model(config: Config, current: "CurrentModel") -> dict:
    """What `run` prints for a model that is up to date: its saved report, and why it stands."""
    from genreflow.core.layout import Layout
    from genreflow.model.reports import report_text

    layout = Layout.of(config.data_dir)
    click.echo(f"model up to date: {layout.model} ({current.name}, trained {current.summary.get('date', '?')}) was "
               "trained on the same index, split, features and settings; its report:")
    click.echo(report_text(current.metrics))
    click.echo(f"model: {layout.model}; reports in {layout.reports}/ (`genreflow run --retrain` trains it again)")
    return current.metrics
