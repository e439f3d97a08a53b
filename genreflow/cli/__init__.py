"""The ``genreflow`` command line. Heavy imports (ray, tensorflow) stay inside commands so
``genreflow --help`` answers instantly."""

from __future__ import annotations

import errno
import functools
import sys
from typing import Any, Callable

import click

from genreflow.errors import GenreflowError


class _Group(click.Group):
    """Turn every GenreflowError into one clear line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # `genreflow status | head -1`: the reader is gone, so are we
            _quiet_pipe_exit()
        except GenreflowError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:  # read-only folder, disk full, ... outside a pipeline stage
            if exc.errno == errno.EPIPE:
                _quiet_pipe_exit()
            where = f" {exc.filename}" if exc.filename else ""
            click.secho(f"error: cannot access{where}: {exc.strerror or exc}. Check the path, its permissions "
                        "and free space, then run the command again (finished work is kept).", fg="red", err=True)
            sys.exit(4)


def console_main() -> None:
    """The ``genreflow`` command (and ``python -m genreflow``). After the command, Python's
    shutdown would walk every object of TensorFlow, librosa and scikit-learn through the garbage
    collector: 1.3 s measured on 2 cores after a musicnn run, 0.1 s once the collector is
    stopped and the heap frozen. Files are closed and flushed by then (every write is atomic)."""
    import gc

    try:
        main(prog_name="genreflow")
    finally:
        gc.disable()
        gc.freeze()


def _quiet_pipe_exit() -> None:
    """Exit quietly when stdout was closed by the reader (Python would complain at shutdown)."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)


def _options(*extra: Callable, data_dir_default: str | None = None) -> Callable:
    """The options every command shares, plus ``extra`` ones; builds ``config`` for the command."""

    def decorate(func: Callable) -> Callable:
        @click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                      help="genreflow.toml to read (default: ./genreflow.toml if present).")
        @click.option("--data-dir", default=None, help="Data folder or URI holding raw/ (default: data).")
        @click.option("--workers", type=int, default=None, help="Parallel workers (default: all CPUs).")
        @click.option("-q", "--quiet", is_flag=True, default=False, help="No progress bars or stage summaries.")
        @click.option("-v", "--verbose", is_flag=True, default=False,
                      help="Also show TensorFlow's and Ray's own log lines.")
        @functools.wraps(func)
        def wrapper(config_path: str | None, data_dir: str | None, workers: int | None, quiet: bool,
                    verbose: bool, **kwargs: Any) -> Any:
            from genreflow.config import load_config
            from genreflow.core.console import configure

            configure(0 if quiet else 2 if verbose else 1)

            overrides = {"data_dir": data_dir or data_dir_default, "workers": workers}
            precision = kwargs.pop("precision_all", None)
            if precision:  # --precision applies to every model kind that has one
                overrides.update({f"{name}.precision": precision for name in _precision_kinds()})
            for key in list(kwargs):
                if "__" in key or key == "address":  # option names like split__seed map to the section key split.seed
                    overrides[key.replace("__", ".")] = kwargs.pop(key)
            _classifier_overrides(overrides, kwargs, config_path)
            config = load_config(config_path, overrides)
            if config.workers > config.n_workers:
                origin = f"--workers {config.workers}" if workers is not None else \
                    f"workers = {config.workers} (from the configuration)"
                click.secho(f"note: {origin} capped at the {config.n_workers} CPUs this machine gives genreflow.",
                            fg="yellow", err=True)
            return func(config=config, **kwargs)

        for option in reversed(extra):
            wrapper = option(wrapper)
        return wrapper

    return decorate


_VAL_FRACTION = click.option("--val-fraction", "split__val_fraction", type=float, default=None,
                             help="Validation share per genre, in (0, 1) (default 0.2).")
_SEED = click.option("--seed", "split__seed", type=int, default=None, help="Split seed (default 42).")
_ADDRESS = click.option("--address", "address", default=None,
                        help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray, or none: see --executor).")
_VGGISH = click.option("--vggish-model", "vggish__handle", default=None,
                       help="VGGish TF Hub handle: URL or local SavedModel folder ($GENREFLOW_VGGISH_MODEL).")
_GPUS = click.option("--gpus-per-actor", "run__gpus_per_model_actor", type=float, default=None,
                     help="GPUs each model actor asks Ray for when the cluster has GPUs (default 1; "
                          "fractions share a GPU; 0 keeps the models on CPUs).")
_EXECUTOR = click.option("--executor", "run__executor", type=click.Choice(["auto", "ray", "local"]), default=None,
                         help="Where the features pass runs: ray, or local (this process, no Ray start-up); "
                              "default auto: local on 1-2 workers without --address or a GPU, else Ray.")
_MUSICNN = click.option("--musicnn-model", "musicnn__model_dir", default=None,
                        help="Folder holding the musicnn checkpoint (default: the installed musicnn package; "
                             "$GENREFLOW_MUSICNN_MODEL).")


def _registered_names() -> list[str]:
    from genreflow.features import registered

    return list(registered())


def _precision_kinds() -> list[str]:
    from dataclasses import fields

    from genreflow.features import registered

    return [name for name, cls in registered().items() if "precision" in {f.name for f in fields(cls.config_class)}]


def _classifier_names() -> list[str]:
    from genreflow.model.classifiers import CLASSIFIERS

    return list(CLASSIFIERS)


def _precision_choices() -> list[str]:
    from genreflow.core.host import PRECISIONS

    return list(PRECISIONS)


def _kinds_help() -> str:
    return f"Feature kinds joined with '+', from: {', '.join(_registered_names())}."


_FEATURES = click.option("--features", "train__features", default=None,
                         help="Features the classifier uses (default musicnn). " + _kinds_help())
_PRECISION = click.option("--precision", "precision_all", type=click.Choice(_precision_choices()),
                          default=None, help="Compute precision of the model kinds (default auto: bf16 where the "
                                             "CPU has AMX-BF16 or AVX512-BF16, else fp32).")


_CLASSIFIER = [
    click.option("--classifier", "train__classifier", type=click.Choice(_classifier_names()),
                 default=None, help="Classifier (default logreg); its settings live in [train.<name>]."),
    click.option("--C", "clf_C", type=float, default=None, help="C of logreg or svm."),
    click.option("--gamma", "clf_gamma", default=None, help="gamma of svm: scale, auto or a number."),
    click.option("--alpha", "clf_alpha", type=float, default=None, help="alpha (L2) of mlp."),
    click.option("--learning-rate", "clf_learning_rate", type=float, default=None,
                 help="learning_rate of hgb, learning_rate_init of mlp."),
    click.option("--tune/--no-tune", "train__tune", default=None,
                 help="Pick the main hyperparameters by a small inner cross-validated grid."),
    click.option("--segment-s", "train__segment_s", type=float, default=None,
                 help="Pool frames in windows of S seconds (50 % overlap); a clip = mean of its segments."),
]
_CLASSIFIER_KEYS = {"logreg": {"C": "C"}, "svm": {"C": "C", "gamma": "gamma"}, "mlp": {"alpha": "alpha",
                    "learning_rate": "learning_rate_init"}, "hgb": {"learning_rate": "learning_rate"}}


def _classifier_overrides(overrides: dict[str, Any], kwargs: dict[str, Any], config_path: str | None) -> None:
    """--C/--gamma/--alpha/--learning-rate go to the chosen classifier's section; one that does
    not apply to it is one clear error."""
    flags = {k[4:]: kwargs.pop(k) for k in list(kwargs) if k.startswith("clf_")}
    given = {k: v for k, v in flags.items() if v is not None}
    if not given:
        return
    from genreflow.config import load_config

    name = overrides.get("train.classifier") or load_config(config_path, {}).train.classifier
    for flag, value in given.items():
        key = _CLASSIFIER_KEYS[name].get(flag)
        if key is None:
            from genreflow.errors import ConfigError

            raise ConfigError(f"--{flag.replace('_', '-')} does not apply to --classifier {name}: it takes "
                              + (", ".join("--" + f.replace("_", "-") for f in _CLASSIFIER_KEYS[name]) or "none"))
        overrides[f"train.{name}.{key}"] = value


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="genreflow")
def main() -> None:
    """Music-genre recognition at scale: index audio, extract features (pretrained musicnn,
    MFCC, spectral, VGGish) into a Parquet store with Ray, train and evaluate a classifier,
    predict."""
    import warnings

    # genreflow's own warnings (a quarantined shard, an old pickle model) as one line each
    warnings.showwarning = lambda message, category, *args, **kwargs: click.secho(
        f"warning: {message}", fg="yellow", err=True)


@main.command()
@click.option("--rehash", is_flag=True, help="Read and hash every file again, also those whose size, times and "
                                             "inode say they are unchanged since the last index.")
@_options(_VAL_FRACTION, _SEED, _ADDRESS)
def index(config, rehash) -> None:
    """Discover genres under DATA_DIR/raw, validate every file, write the index and splits."""
    from genreflow.cli.commands import run_index_command

    run_index_command(config, rehash=rehash)


@main.command()
@click.option("--features", "kinds", default="mfcc", show_default=True, help=_kinds_help())
@_options(_VGGISH, _MUSICNN, _PRECISION, _GPUS, _EXECUTOR, _ADDRESS)
def features(config, kinds) -> None:
    """Compute features of every indexed file not yet in the store, one read per file."""
    from genreflow.cli.commands import run_features_command
    from genreflow.features import parse_kinds

    run_features_command(config, parse_kinds(kinds))


@main.command()
@_options(_VGGISH, _MUSICNN, _PRECISION, _GPUS, _EXECUTOR, _ADDRESS)
def embed(config) -> None:
    """Compute VGGish embeddings of every indexed file not yet in the store (= features --features vggish)."""
    from genreflow.cli.commands import run_features_command

    run_features_command(config, ["vggish"])


_NO_VAL = click.option("--allow-no-val", "train__allow_no_val", is_flag=True, default=None,
                       help="Train even when no validation file has features (no evaluation).")


@main.command()
@click.option("--from-evaluation", "from_evaluation", default=None, metavar="NAME|best|latest",
              help="Train the setting (features, classifier and its settings, segments) that an earlier "
                   "`evaluate` measured: a folder name under reports/cv/, latest, or best (highest accuracy).")
@_options(_FEATURES, *_CLASSIFIER, _NO_VAL, _VGGISH, _MUSICNN, _PRECISION, _GPUS, _EXECUTOR)
def train(config, from_evaluation) -> None:
    """Train and evaluate the genre classifier (computes missing features first)."""
    from genreflow.cli.commands import run_train_command

    if from_evaluation:
        from genreflow.config import with_overrides
        from genreflow.stages.history import evaluation_settings

        chosen = evaluation_settings(config.data_dir, from_evaluation)
        config = with_overrides(config, chosen["overrides"])
        click.echo(f"setting of evaluation {chosen['name']} (accuracy {chosen['accuracy']:.3f} ± {chosen['std']:.3f})")
    run_train_command(config)


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--model", "model_path", default=None, help="Model file (default DATA_DIR/processed/classifier_model.zip).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--vggish-model", "handle", default=None,
              help="Where to load the model's VGGish from, if not where it was trained (must be the same model).")
@click.option("--musicnn-model", "musicnn_dir", default=None,
              help="Where to load the model's musicnn checkpoint from (must hold the same weights).")
@click.option("--precision", type=click.Choice(_precision_choices()), default=None,
              help="Precision of the model kinds (default: the one the model was trained with).")
@click.option("--trust-pickle", is_flag=True, default=False,
              help="Also load old pickle/joblib model files. Pickles can run code: only for files you trust.")
@click.option("--out", "out", default=None,
              help="Stream results to FILE.csv, FILE.jsonl or FILE.parquet as they come (instead of printing).")
@_options(_EXECUTOR, _ADDRESS)
def predict(config, paths, model_path, fmt, handle, musicnn_dir, precision, trust_pickle, out) -> None:
    """Predict the genre of audio files and/or folders (PATHS) with the model's own recipe."""
    import os

    from genreflow.cli.commands import run_predict_command
    from genreflow.features import registered

    given = {"vggish": {"handle": handle}, "musicnn": {"model_dir": musicnn_dir}}
    overrides: dict[str, dict[str, Any]] = {}
    for name, cls in registered().items():
        changes = {k: v for k, v in given.get(name, {}).items() if v}
        if cls.model_env and not changes.get(cls.model_env[0]) and os.environ.get(cls.model_env[1]):
            changes[cls.model_env[0]] = os.environ[cls.model_env[1]]
        if precision and name in _precision_kinds():
            changes["precision"] = precision
        if changes:
            overrides[name] = changes
    summary = run_predict_command(config, list(paths), model_path, fmt, overrides or None,
                                  trust_pickle=trust_pickle, out=out)
    if summary.failed:
        sys.exit(1)


@main.command()
@click.option("--train/--no-train", "train", default=True, show_default=True,
              help="Train and evaluate after the features; --no-train stops after them (jobs/pipeline.py).")
@click.option("--retrain", is_flag=True, help="Train again even when the current model was trained on the same "
                                              "index, split, features and settings (then its report is shown).")
@_options(_FEATURES, *_CLASSIFIER, _NO_VAL, _VGGISH, _MUSICNN, _PRECISION, _GPUS, _EXECUTOR, _ADDRESS, _VAL_FRACTION, _SEED)
def run(config, train, retrain) -> None:
    """Index, extract features, train and evaluate in one go (reuses everything already stored,
    the model too when nothing it was trained on has changed)."""
    from genreflow.cli.commands import run_all_command

    run_all_command(config, train=train, retrain=retrain)


@main.command()
@click.option("--folds", "evaluate__folds", type=int, default=None, help="K of stratified K-fold (default 5).")
@click.option("--repeats", "evaluate__repeats", type=int, default=None,
              help="Repeat with R different fold assignments (default 1).")
@click.option("--groups", "evaluate__groups", default=None, type=click.Path(dir_okay=False),
              help="CSV with columns relpath,group: files of one group stay in one fold (e.g. artists).")
@click.option("--group-pattern", "evaluate__group_pattern", default=None,
              help="Regex whose first capture group on the relpath is the group, e.g. '^[^/]+/([^_]+)_'.")
@click.option("--seed", "split__seed", type=int, default=None, help="Fold seed (default 42).")
@_options(_FEATURES, *_CLASSIFIER, _VGGISH, _MUSICNN, _PRECISION, _GPUS, _EXECUTOR)
def evaluate(config) -> None:
    """Cross-validate features + classifier (stratified, grouped K-fold); saves no model."""
    from genreflow.cli.commands import run_evaluate_command

    run_evaluate_command(config)


@main.command()
@_options()
def verify(config) -> None:
    """Read every shard of the store fully; move damaged ones to _quarantine/ (they are recomputed)."""
    from genreflow.core.fs import remove_stale_temps_tree
    from genreflow.features import registered
    from genreflow.store.verify import verify_store
    from genreflow.core.layout import Layout

    remove_stale_temps_tree(Layout.of(config.data_dir).processed)
    report = verify_store(config.data_dir, {name: cls.kind for name, cls in registered().items()})
    click.echo(str(report))
    sys.exit(0 if report.ok else 1)


@main.command()
@_options(_VGGISH, _MUSICNN, _PRECISION, _GPUS)
def status(config) -> None:
    """Show what DATA_DIR holds: index, splits, feature sets (current or not) and the model."""
    from genreflow.cli.commands import run_status_command

    run_status_command(config)


@main.command()
@click.option("--clips-per-genre", type=click.IntRange(2, 1000), default=20, show_default=True)
@click.option("--clip-seconds", type=click.FloatRange(1.0, 300.0), default=10.0, show_default=True)
@_options(_FEATURES, _VGGISH, _MUSICNN, _PRECISION, _GPUS, _EXECUTOR, _ADDRESS, data_dir_default="data/demo")
def demo(config, clips_per_genre, clip_seconds) -> None:
    """Write a small synthetic labelled set (default data dir: data/demo) and run everything on it."""
    from genreflow.cli.commands import run_demo_command

    run_demo_command(config, clips_per_genre, clip_seconds)


if __name__ == "__main__":  # pragma: no cover
    main()
