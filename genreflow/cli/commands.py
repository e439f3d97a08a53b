"""What each CLI command does, with its console output; the CLI module only parses options."""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

import click

from genreflow.config import Config, extractors_for
from genreflow.core.console import display_name
from genreflow.core.timing import Timings


def run_index_command(config: Config, *, rehash: bool = False) -> dict:
    """Index + split, then print the per-genre summary and where files went (``rehash``: read
    every file, see ``data.index.build_index``)."""
    from genreflow.stages.index import run_index
    from genreflow.core.layout import Layout
    from genreflow.core.tables import format_table
    from genreflow.cli.outputs import echo_index_files

    # on a cluster (--address or $RAY_ADDRESS) files are validated by Ray tasks near the data
    result = run_index(config.data_dir, config.n_workers, config.split, config.cluster_address or None, rehash=rehash)
    index, splits = result["index"], result["splits"]
    layout = Layout.of(config.data_dir)
    click.echo(format_table(["genre", "valid", "invalid", "duplicates", "train", "val"],
                            summary_rows(index, splits)))
    for warning in result["warnings"]:
        click.secho(f"warning: {display_name(warning)}", fg="yellow", err=True)
    echo_index_files(index, layout.index_json)
    click.echo(f"\nwrote {layout.index_json}, {layout.index_parquet} and {layout.splits_json}")
    return result


def run_features_command(config: Config, kinds: list[str], timings: Timings | None = None) -> list:
    """Compute every kind in ``kinds`` for the indexed files in one pass (on Ray or in this process),
    print the counts; exits non-zero (DataError) when every pending file failed. ``timings``
    receives the Ray start and shutdown (when the pass uses Ray), the pass and the workers'
    seconds per step."""
    import contextlib

    from genreflow.config import extractors_for
    from genreflow.data.index import read_index
    from genreflow.errors import DataError
    from genreflow.stages.extract import execute, plan
    from genreflow.stages.workers import kinds_of
    from genreflow.stages.session import pass_uses_ray, ray_session

    files = read_index(config.data_dir)["files"]
    extractors = extractors_for(config, "+".join(kinds))
    work = plan(config, extractors, files)
    pending = {kind for row in work.todo for kind in kinds_of(row["kinds"])}
    # a rerun with everything stored never starts Ray (its start-up and shutdown cost seconds),
    # and neither does a small machine (the pass runs in this process: stages/local.py)
    on_ray = bool(work.todo) and pass_uses_ray(config)
    for extractor in extractors:
        if extractor.name in pending:
            # before Ray starts, a bad model costs no start-up; in this process the model's own
            # load checks it, in a thread beside the first decode tasks
            extractor.check() if on_ray else extractor.check_quickly()
    from genreflow.core.console import Progress

    timings = timings or Timings()
    session = ray_session(config.address, config.n_workers) if on_ray else contextlib.nullcontext()
    with timings.stage("Ray start") if on_ray else contextlib.nullcontext():
        session.__enter__()
    try:
        with timings.stage("features pass"), Progress(len(work.todo), "features", "file") as progress:
            reports = execute(config, work, progress.update)
            progress.close(f"features: {len(work.todo):,} file(s) decoded for {', '.join(sorted(pending))}")
    finally:
        with timings.stage("Ray shutdown") if on_ray else contextlib.nullcontext():
            session.__exit__(*sys.exc_info())
    timings.worker_s.update(work.seconds)
    for report in reports:
        click.echo(report.line())
        for item in report.failed:
            click.echo(display_name(f"  failed {item['relpath']}: {item['reason']}"))
    if not files:
        raise DataError(f"The index of {config.data_dir} holds no valid audio files: add audio to "
                        f"raw/<genre>/ and run `genreflow index --data-dir {config.data_dir}`.")
    dead = [r for r in reports if r.pending and not r.computed and r.failed]
    if dead:
        raise DataError(f"Every pending file failed for {', '.join(r.kind for r in dead)} (see the reasons above): "
                        "fix the files or the feature parameters and run the command again.")
    return reports


def compute_missing_features(config: Config) -> None:
    """`train` and `evaluate` compute what the store lacks through the same pass as `run`
    (everything already stored is reused, so this costs one read of the stores' keys)."""
    from genreflow.data.index import read_index
    from genreflow.features import parse_kinds
    from genreflow.stages.extract import plan

    kinds = parse_kinds(config.train.features)
    work = plan(config, extractors_for(config, "+".join(kinds)), read_index(config.data_dir)["files"])
    if work.todo:
        click.secho(f"== features: {', '.join(kinds)} ({len(work.todo)} file(s) not in the store yet)", bold=True)
        run_features_command(config, kinds)


def run_train_command(config: Config) -> dict:
    """Train on the train split, evaluate on val, keep the model (history + classifier_model.zip)
    and reports, print the results."""
    import json
    import time

    from genreflow.errors import DataError
    from genreflow.model.reports import most_confused, report_text, write_reports
    from genreflow.model.training import evaluate
    from genreflow.core.fs import atomic_write_text, remove_stale_temps_tree
    from genreflow.core.layout import Layout
    from genreflow.stages.evaluate import write_val_predictions
    from genreflow.stages.history import keep_model
    from genreflow.stages.train import fit, load_dataset, make_bundle, model_writer
    from genreflow.stages.uptodate import training_key

    layout = Layout.of(config.data_dir)
    remove_stale_temps_tree(layout.processed)
    compute_missing_features(config)
    extractors = extractors_for(config)
    data = load_dataset(config, extractors)
    if data.missing:
        click.secho(f"warning: {data.missing} indexed file(s) have no {config.train.features} features (they "
                    "failed to decode) and are left out.", fg="yellow", err=True)
    if not data.is_val.any() and not config.train.allow_no_val:
        raise DataError(f"No validation file of {layout.splits_json} has features: the split does not match the "
                        f"index. Run `genreflow index --data-dir {config.data_dir}` to rebuild it (the model and "
                        "reports were left as they were), or pass --allow-no-val to train without validation.")
    segment = f"{config.train.segments:g} s segments" if config.train.segments else "whole clips"
    click.echo(f"features {config.train.features}, classifier {config.train.classifier}, {segment}")
    key = training_key(config, extractors)  # before the fit: what it was trained from
    model, params = fit(data, config)
    evaluation = evaluate(model, data)
    proba = evaluation.pop("val_proba")
    metrics = {**evaluation, "features": config.train.features, "fingerprints": data.fingerprints,
               "classifier": config.train.classifier, "segment_s": config.train.segments, "training_key": key}
    bundle = make_bundle(model, params, data, config, extractors)
    summary = {"features": config.train.features, "classifier": config.train.classifier,
               "segment_s": config.train.segments, "accuracy": metrics["accuracy"], "n_train": metrics["n_train"],
               "n_val": metrics["n_val"], "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
               "params": bundle.classifier.get("params"), "training_key": key}
    kept, replaced = keep_model(config, model_writer(bundle), summary)
    atomic_write_text(layout.processed.join("model_meta.json"), json.dumps(bundle.meta(), indent=2, sort_keys=True)
                      + "\n")
    written = write_reports(metrics, layout.reports)
    if len(proba):
        written.append(write_val_predictions(data, proba, layout.reports))
    click.echo(report_text(metrics))
    pairs = most_confused(metrics["confusion_matrix"], data.genres) if metrics["confusion_matrix"] else []
    if pairs:
        click.echo("most confused: " + ", ".join(f"{a} -> {b} ({n})" for a, b, n in pairs))
    if config.train.tune:
        click.echo(f"tuned {config.train.classifier}: {bundle.classifier['params']}")
    click.echo(f"model: {layout.model} (kept as {kept}); reports in {layout.reports}/")
    if replaced:
        click.secho(f"note: it replaces {replaced} as the current model; that one stays in "
                    f"{layout.processed.join('models')}/ (`genreflow status` lists them).", fg="yellow", err=True)
    return metrics


def run_evaluate_command(config: Config) -> dict:
    """K-fold cross-validation of the configured features and classifier; writes its own
    reports/cv/<time>-<setting>/ (earlier evaluations stay)."""
    from genreflow.core.console import Progress
    from genreflow.model.reports import cv_report_text
    from genreflow.stages.evaluate import run_cross_validation

    compute_missing_features(config)
    total = config.evaluate.folds * config.evaluate.repeats
    with Progress(total, "evaluate", "fold") as bar:
        out = run_cross_validation(config, lambda repeat, fold, accuracy: bar.update(1))
        bar.close(f"evaluate: {total} fold(s)")
    if out["missing"]:
        click.secho(f"warning: {out['missing']} indexed file(s) have no {config.train.features} features and are "
                    "left out.", fg="yellow", err=True)
    click.echo(cv_report_text(out["metrics"]))
    click.echo(f"reports in {out['written'][0].parent}/ (`genreflow train --from-evaluation best` trains the best "
               "setting evaluated so far)")
    return out["metrics"]


def run_predict_command(config: Config, paths: list[str], model_path: str | None, fmt: str,
                        overrides: dict | None = None, trust_pickle: bool = False, out: str | None = None):
    """Predict every file with the model's own extractors; print them, or stream them to ``out``
    (CSV/JSONL/Parquet) as they come, keeping none in memory. Returns the PredictSummary (the CLI
    exits 1 when a file could not be read)."""
    from genreflow.model.bundle import load_model_bundle
    from genreflow.core.layout import Layout
    from genreflow.cli.outputs import ResultWriter, format_predictions
    from genreflow.stages.predict import model_extractors, predict_stream

    bundle = load_model_bundle(model_path or Layout.model_uri(config.data_dir), trust_pickle=trust_pickle)
    extractors = model_extractors(bundle, overrides, config)
    from genreflow.core.console import Progress
    from genreflow.stages.predict import collect_paths

    files = collect_paths(paths)  # listed once (on object stores, one request per prefix or file)
    if not files:
        from genreflow.errors import DataError

        raise DataError(f"No audio files (.wav, .mp3, .flac, .ogg) in {', '.join(paths)}: give files or folders "
                        "that hold audio.")
    results: list = []
    writer = ResultWriter(out, bundle.genres) if out else None
    progress = Progress(len(files), "predict", "file")

    def emit(batch: list) -> None:
        progress.update(len(batch))
        if writer is not None:
            writer.write(batch)
        else:
            results.extend(batch)

    try:
        with progress:
            summary = predict_stream(files, bundle, extractors, emit, data_dir=config.data_dir, config=config)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:  # on stdout in the order of the inputs (a file streams as results come)
        order = {path: i for i, path in enumerate(files)}
        results.sort(key=lambda p: order.get(p.path, len(order)))
        click.echo(format_predictions(results, bundle.genres, fmt))
    click.echo(summary.line() + (f"; wrote {out}" if out else ""), err=True)
    return summary


def run_all_command(config: Config, *, train: bool = True, retrain: bool = False) -> dict:
    """index -> the feature kinds the model needs (one pass) -> train -> evaluate.

    ``train=False`` stops after the features: the cluster's pipeline job (jobs/pipeline.py), whose
    training runs later as its own job (jobs/train.py = `genreflow train`). When nothing
    training reads has changed since the current model was trained (``stages.uptodate``), its
    saved report is shown instead of an identical retraining, unless ``retrain``.
    """
    import json

    from genreflow.core.console import VERBOSITY
    from genreflow.core.fs import atomic_write_text
    from genreflow.core.layout import Layout
    from genreflow.core.tables import format_table
    from genreflow.features import parse_kinds
    from genreflow.cli.outputs import show_current_model
    from genreflow.stages.uptodate import up_to_date_model

    timings = Timings()
    timings.add_startup()
    kinds = parse_kinds(config.train.features)
    with timings.stage("model check"):
        for extractor in extractors_for(config, "+".join(kinds)):
            extractor.check_quickly()  # fail before any work, never switch features silently
    click.secho("== index", bold=True)
    with timings.stage("index (listing, hashing, probing)"):
        run_index_command(config)
    click.secho("\n== features: " + ", ".join(kinds), bold=True)
    reports = run_features_command(config, kinds, timings)
    metrics = None
    if train:
        click.secho("\n== train + evaluate", bold=True)
        current = None if retrain or any(r.computed for r in reports) else \
            up_to_date_model(config, extractors_for(config))
        with timings.stage("model up to date (not retrained)" if current else "train + evaluate + save"):
            metrics = show_current_model(config, current) if current else run_train_command(config)
    target = Layout.of(config.data_dir).reports.join("run_timings.json")
    atomic_write_text(target, json.dumps(timings.as_dict(), indent=2) + "\n")
    if VERBOSITY.verbose:
        click.echo("\n" + format_table(["stage", "wall s", "CPU s", "cores busy"], timings.rows()))
        click.echo(f"(CPU s of the whole process tree on {timings.as_dict()['cores']} cores; workers: seconds "
                   f"the pass's workers (Ray's or this process's threads) spent in each step, summed over "
                   f"workers; also in {target})")
    return {"features": reports, "metrics": metrics}


def run_demo_command(config: Config, clips_per_genre: int, clip_seconds: float) -> dict:
    """Write the built-in synthetic set (if absent) and run the whole pipeline on it.

    When a model the features need cannot be loaded (VGGish offline, musicnn weights not
    installed), the demo says so in one note and uses the best download-free kinds it can load.
    """
    import dataclasses

    from genreflow.data.demo import write_demo_set
    from genreflow.errors import ModelLoadError

    written = write_demo_set(config.data_dir, clips_per_genre=clips_per_genre, seconds=clip_seconds)
    click.echo(f"demo set: {written['total']} clips in {written['raw']} ({written['new']} written now)")
    from genreflow.config import extractors_for

    try:
        for extractor in extractors_for(config):
            extractor.check()
    except ModelLoadError as exc:
        fallback = offline_features(config)
        click.secho(f"note: the {extractor.name} model is not available here ({_first_sentence(str(exc))}), so "
                    f"this demo uses --features {fallback} instead.", fg="yellow", err=True)
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, features=fallback))
    result = run_all_command(config)
    click.secho("\nNext: put your music in data/raw/<genre>/ and run `genreflow run`; "
                f"try the model on a file with `genreflow predict FILE --data-dir {config.data_dir}`.", bold=True)
    return result


def offline_features(config: Config) -> str:
    """The best feature set that needs no download: musicnn when its weights load, else
    mfcc+spectral (measured on the dev set, README "Feature kinds")."""
    from genreflow.errors import ModelLoadError

    try:
        extractors_for(config, "musicnn")[0].check()
        return "musicnn"
    except ModelLoadError:
        return "mfcc+spectral"


def _first_sentence(text: str) -> str:
    return text.split(". ")[0].rstrip(".")


def run_status_command(config: Config) -> dict:
    """What a data folder holds: index, splits, every feature set (current or not), model, accuracy."""
    from genreflow.data.index import read_index
    from genreflow.config import build_extractor
    from genreflow.features import registered
    from genreflow.core.fs import exists
    from genreflow.core.layout import Layout
    from genreflow.data.splits import read_splits
    from genreflow.store.featureset import list_feature_sets, open_feature_set, stored_keys
    from genreflow.core.tables import format_table

    layout = Layout.of(config.data_dir)
    index = read_index(config.data_dir)
    keys = {f["content_hash"] for f in index["files"]}
    click.echo(f"data: {layout.root}")
    click.echo(f"index: {len(index['files'])} valid files ({len(keys)} unique), {len(index['invalid'])} invalid, "
               f"{len(index['genres'])} genres: {', '.join(display_name(g) for g in index['genres'])}")
    if exists(layout.splits_json):
        splits = read_splits(config.data_dir)
        click.echo(f"splits: {len(splits['train'])} train / {len(splits['val'])} val (seed {splits['seed']})")
    rows = []
    for name, cls in registered().items():
        try:
            current = build_extractor(name, config).resolved().fingerprint()
        except Exception:  # noqa: BLE001 - e.g. a model folder that is not here: no current set
            current = None
        for entry in list_feature_sets(config.data_dir, name):
            stored = stored_keys(open_feature_set(config.data_dir, cls.kind, entry["fingerprint"]))
            params = entry.get("params", {})
            note = f"precision {params['precision']}" if "precision" in params else ""
            rows.append([name, entry["fingerprint"], "yes" if entry["fingerprint"] == current else "",
                         f"{len(stored & keys)}/{len(keys)}", len(stored - keys), note])
    if rows:
        click.echo("\n" + format_table(["kind", "fingerprint", "current", "indexed stored", "other rows", "notes"],
                                        rows))
    else:
        click.echo("\nfeature store: empty (run `genreflow features --features KINDS`)")
    from genreflow.stages.history import current_model_name, saved

    history = saved(config.data_dir)
    if history:
        current = current_model_name(config.data_dir)
        click.echo("\n" + format_table(["saved", "name", "features", "classifier", "segments", "accuracy", "files"],
                                        [s.row(current) for s in history]))
        click.echo(f"(* = the current model, {layout.model}; accuracy: models on the validation split, "
                   "evaluations mean ± std over folds)")
    elif exists(layout.model):
        click.echo(f"\nmodel: {layout.model} (saved before genreflow kept a history; the next `train` keeps it)")
    else:
        click.echo("\nmodel: none yet (run `genreflow train` or `genreflow run`)")
    return {"feature_sets": rows}


def summary_rows(index: dict[str, Any], splits: dict[str, Any]) -> list[list[Any]]:
    """Per-genre counts: valid, invalid, duplicates, train, val."""
    genres = index["params"]["genre_folders"]
    valid = Counter(f["genre"] for f in index["files"])
    invalid = Counter(r["relpath"].split("/")[0] for r in index["invalid"])
    seen: set[str] = set()
    dupes: Counter = Counter()
    for record in index["files"]:
        if record["content_hash"] in seen:
            dupes[record["genre"]] += 1
        seen.add(record["content_hash"])
    val = set(splits["val"])
    n_val = Counter(f["genre"] for f in index["files"] if f["relpath"] in val)
    rows = [[g, valid[g], invalid[g], dupes[g], valid[g] - n_val[g], n_val[g]] for g in genres]
    rows.append(["total", sum(valid.values()), len(index["invalid"]), sum(dupes.values()),
                 len(splits["train"]), len(splits["val"])])
    return rows
