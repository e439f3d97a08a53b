"""The ``genreflow`` command line. Heavy imports (ray, tensorflow) stay inside commands so
``genreflow --help`` answers instantly."""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable

import click

from .errors import GenreflowError


class _Group(click.Group):
    """Turn every GenreflowError into one clear line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GenreflowError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:  # read-only folder, disk full, ... outside a pipeline stage
            where = f" {exc.filename}" if exc.filename else ""
            click.secho(f"error: cannot access{where}: {exc.strerror or exc}. Check the path, its permissions "
                        "and free space, then run the command again (finished work is kept).", fg="red", err=True)
            sys.exit(4)


def _options(*extra: Callable, data_dir_default: str | None = None) -> Callable:
    """The options every command shares, plus ``extra`` ones; builds ``config`` for the command."""

    def decorate(func: Callable) -> Callable:
        @click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                      help="genreflow.toml to read (default: ./genreflow.toml if present).")
        @click.option("--data-dir", default=None, help="Data folder or URI holding raw/ (default: data).")
        @click.option("--workers", type=int, default=None, help="Parallel workers (default: all CPUs).")
        @functools.wraps(func)
        def wrapper(config_path: str | None, data_dir: str | None, workers: int | None, **kwargs: Any) -> Any:
            from .config import load_config

            overrides = {"data_dir": data_dir or data_dir_default, "workers": workers}
            for key in list(kwargs):
                if "__" in key or key == "address":  # option names like split__seed map to the section key split.seed
                    overrides[key.replace("__", ".")] = kwargs.pop(key)
            config = load_config(config_path, overrides)
            return func(config=config, **kwargs)

        for option in reversed(extra):
            wrapper = option(wrapper)
        return wrapper

    return decorate


_VAL_FRACTION = click.option("--val-fraction", "split__val_fraction", type=float, default=None,
                             help="Validation share per genre, in (0, 1) (default 0.2).")
_SEED = click.option("--seed", "split__seed", type=int, default=None, help="Split seed (default 42).")
_ADDRESS = click.option("--address", "address", default=None,
                        help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray).")
_VGGISH = click.option("--vggish-model", "vggish__handle", default=None,
                       help="VGGish TF Hub handle: URL or local SavedModel folder ($GENREFLOW_VGGISH_MODEL).")
_FEATURES = click.option("--features", "train__features", type=click.Choice(["vggish", "mfcc", "vggish+mfcc"]),
                         default=None, help="Features the classifier uses (default vggish).")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="genreflow")
def main() -> None:
    """Music-genre recognition at scale: index audio, extract MFCC and VGGish features into a
    Parquet store with Ray, train and evaluate a classifier, predict."""


@main.command()
@_options(_VAL_FRACTION, _SEED)
def index(config) -> None:
    """Discover genres under DATA_DIR/raw, validate every file, write the index and splits."""
    from .commands import run_index_command

    run_index_command(config)


@main.command()
@_options(_ADDRESS)
def features(config) -> None:
    """Compute MFCCs of every indexed file not yet in the store (Ray Data)."""
    from .commands import run_features_command

    run_features_command(config, ["mfcc"])


@main.command()
@_options(_VGGISH, _ADDRESS)
def embed(config) -> None:
    """Compute VGGish embeddings of every indexed file not yet in the store (Ray actors)."""
    from .commands import run_features_command

    run_features_command(config, ["vggish"])


@main.command()
@_options(_FEATURES, _VGGISH)
def train(config) -> None:
    """Train and evaluate the genre classifier from the feature store."""
    from .commands import run_train_command

    run_train_command(config)


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--model", "model_path", default=None, help="Classifier file (default DATA_DIR/processed/classifier_model.pkl).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@_options(_VGGISH)
def predict(config, paths, model_path, fmt) -> None:
    """Predict the genre of audio files and/or folders (PATHS)."""
    from .commands import run_predict_command

    results = run_predict_command(config, list(paths), model_path, fmt)
    if any(r.error for r in results):
        sys.exit(1)


@main.command()
@click.option("--train/--no-train", "train", default=True, show_default=True,
              help="Train and evaluate after the features; --no-train stops after them (jobs/pipeline.py).")
@_options(_FEATURES, _VGGISH, _ADDRESS, _VAL_FRACTION, _SEED)
def run(config, train) -> None:
    """Index, extract features, train and evaluate in one go (reuses everything already stored)."""
    from .commands import run_all_command

    run_all_command(config, train=train)


@main.command()
@_options(_VGGISH)
def status(config) -> None:
    """Show what DATA_DIR holds: index, splits, feature sets (current or not) and the model."""
    from .commands import run_status_command

    run_status_command(config)


@main.command()
@click.option("--clips-per-genre", type=click.IntRange(2, 1000), default=20, show_default=True)
@click.option("--clip-seconds", type=click.FloatRange(1.0, 300.0), default=10.0, show_default=True)
@_options(_FEATURES, _VGGISH, _ADDRESS, data_dir_default="data/demo")
def demo(config, clips_per_genre, clip_seconds) -> None:
    """Write a small synthetic labelled set (default data dir: data/demo) and run everything on it."""
    from .commands import run_demo_command

    run_demo_command(config, clips_per_genre, clip_seconds)


if __name__ == "__main__":  # pragma: no cover
    main()
