"""What each CLI command does, with its console output; the CLI module only parses options."""

from __future__ import annotations

import click

from .config import Config


def run_index_command(config: Config) -> dict:
    """Index + split, then print the per-genre summary and where files went."""
    from .dataset import run_index, summary_rows
    from .layout import Layout
    from .tables import format_table

    result = run_index(config.data_dir, config.n_workers, config.split)
    index, splits = result["index"], result["splits"]
    layout = Layout.of(config.data_dir)
    click.echo(format_table(["genre", "valid", "invalid", "duplicates", "train", "val"],
                            summary_rows(index, splits)))
    for warning in result["warnings"]:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    if index["invalid"]:
        click.echo(f"\n{len(index['invalid'])} invalid file(s) skipped:")
        for item in index["invalid"]:
            click.echo(f"  {item['relpath']}: {item['reason']}")
    if index["ignored"]:
        click.echo(f"{len(index['ignored'])} ignored file(s) (not .wav/.mp3/.flac/.ogg or outside a genre folder):")
        for relpath in index["ignored"][:20]:
            click.echo(f"  {relpath}")
        if len(index["ignored"]) > 20:
            click.echo(f"  ... and {len(index['ignored']) - 20} more (see 'ignored' in {layout.index_json})")
    click.echo(f"\nwrote {layout.index_json}, {layout.index_parquet} and {layout.splits_json}")
    return result


def run_features_command(config: Config, kinds: list[str]) -> list:
    """Extract each kind of feature for the indexed files (one Ray session), print the counts."""
    import contextlib

    from .dataset import read_index
    from .featuresets import feature_set
    from .pipeline import extract, needs_compute
    from .raysession import ray_session

    files = read_index(config.data_dir)["files"]
    if "vggish" in kinds:
        from .vggish import check_handle

        check_handle(config.vggish.handle)  # before Ray starts: a bad handle costs no start-up
    fsets = [feature_set(config, kind) for kind in kinds]
    reports = []
    # a rerun with everything stored never starts Ray (its start-up and shutdown cost seconds)
    needed = any(needs_compute(fset, files) for fset in fsets)
    with ray_session(config.address, config.n_workers) if needed else contextlib.nullcontext():
        for fset in fsets:
            report = extract(config, fset, files)
            reports.append(report)
            click.echo(report.line())
            for item in report.failed:
                click.echo(f"  failed {item['relpath']}: {item['reason']}")
    return reports


def run_train_command(config: Config) -> dict:
    """Train on the train split, evaluate on val, save the model and reports, print the results."""
    import json

    from .classifier import evaluate, fit, load_dataset, save_model
    from .fs import atomic_write_text
    from .layout import Layout
    from .reports import report_text, write_reports

    data = load_dataset(config)
    if data.missing:
        click.secho(f"warning: {data.missing} indexed file(s) have no features (they failed to decode) "
                    "and are left out.", fg="yellow", err=True)
    model = fit(data, config)
    metrics = {**evaluate(model, data), "features": config.train.features, "fingerprints": data.fingerprints}
    meta = save_model(model, data, config)
    layout = Layout.of(config.data_dir)
    atomic_write_text(layout.processed.join("model_meta.json"), json.dumps(meta, indent=2, sort_keys=True) + "\n")
    written = write_reports(metrics, layout.reports)
    click.echo(report_text(metrics))
    click.echo(f"wrote {layout.model}, " + ", ".join(str(t) for t in written))
    return metrics


def format_predictions(results: list, genres: list[str], fmt: str) -> str:
    """table (top genre), csv (one probability column per genre) or json (a list of objects)."""
    import csv
    import io
    import json
    from dataclasses import asdict

    from .tables import format_table

    if fmt == "json":
        return json.dumps([asdict(r) for r in results], indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["path", "genre", "probability", *genres, "error"])
        for r in results:
            writer.writerow([r.path, r.genre, f"{r.probability:.6f}" if not r.error else "",
                             *(f"{r.probabilities[g]:.6f}" if not r.error else "" for g in genres), r.error])
        return out.getvalue().rstrip("\n")
    rows = [[r.path, r.genre or "-", r.probability if not r.error else "-", r.error] for r in results]
    return format_table(["file", "genre", "probability", "error"], rows)


def run_predict_command(config: Config, paths: list[str], model_path: str | None, fmt: str) -> list:
    """Predict every file; print them; exit status 1 if any file could not be read."""
    from .classifier import load_model_bundle
    from .layout import Layout
    from .predict import predict_files

    bundle = load_model_bundle(model_path or str(Layout.of(config.data_dir).model.path))
    results = predict_files(paths, bundle, config)
    click.echo(format_predictions(results, bundle["genres"], fmt))
    if not results:
        click.secho("warning: no audio files found in the given paths.", fg="yellow", err=True)
    return results


def run_all_command(config: Config, *, train: bool = True) -> dict:
    """index -> MFCC -> VGGish (when the feature set needs it) -> train -> evaluate, one Ray session.

    ``train=False`` stops after the features: the cluster's pipeline job (jobs/pipeline.py), whose
    training runs later as its own job (jobs/train.py = `genreflow train`).
    """
    from .featuresets import kinds_for

    kinds = sorted(set(["mfcc"] + kinds_for(config.train.features)))
    if "vggish" in kinds:
        from .vggish import check_handle

        check_handle(config.vggish.handle)  # fail before any work, never switch features silently
    click.secho("== index", bold=True)
    run_index_command(config)
    click.secho("\n== features: " + ", ".join(kinds), bold=True)
    reports = run_features_command(config, kinds)
    if not train:
        return {"features": reports, "metrics": None}
    click.secho("\n== train + evaluate", bold=True)
    metrics = run_train_command(config)
    return {"features": reports, "metrics": metrics}


def run_demo_command(config: Config, clips_per_genre: int, clip_seconds: float) -> dict:
    """Write the built-in synthetic set (if absent) and run the whole pipeline on it.

    Without a loadable VGGish model the demo says so loudly and uses MFCC features instead.
    """
    import dataclasses

    from .demo import write_demo_set
    from .errors import ModelLoadError

    written = write_demo_set(config.data_dir, clips_per_genre=clips_per_genre, seconds=clip_seconds)
    click.echo(f"demo set: {written['total']} clips in {written['raw']} ({written['new']} written now)")
    if "vggish" in config.train.features:
        from .vggish import check_handle

        try:
            check_handle(config.vggish.handle)
        except ModelLoadError as exc:
            banner = "!" * 78
            click.secho(f"{banner}\nVGGish is not available, so this demo uses MFCC features instead.\n{exc}\n"
                        f"{banner}", fg="red", bold=True, err=True)
            config = dataclasses.replace(config, train=dataclasses.replace(config.train, features="mfcc"))
    return run_all_command(config)


def run_status_command(config: Config) -> dict:
    """What a data folder holds: index, splits, every feature set (current or not), model, accuracy."""
    import json

    from .dataset import read_index
    from .featuresets import feature_set
    from .fs import exists, read_text
    from .layout import Layout
    from .store import list_feature_sets, open_feature_set, stored_keys
    from .tables import format_table

    layout = Layout.of(config.data_dir)
    index = read_index(config.data_dir)
    keys = {f["content_hash"] for f in index["files"]}
    click.echo(f"data: {layout.root}")
    click.echo(f"index: {len(index['files'])} valid files ({len(keys)} unique), {len(index['invalid'])} invalid, "
               f"{len(index['genres'])} genres: {', '.join(index['genres'])}")
    if exists(layout.splits_json):
        splits = json.loads(read_text(layout.splits_json))
        click.echo(f"splits: {len(splits['train'])} train / {len(splits['val'])} val (seed {splits['seed']})")
    rows = []
    for kind in ("mfcc", "vggish"):
        current = feature_set(config, kind).fingerprint
        for entry in list_feature_sets(config.data_dir, kind):
            stored = stored_keys(open_feature_set(config.data_dir, kind, entry["fingerprint"]))
            rows.append([kind, entry["fingerprint"], "yes" if entry["fingerprint"] == current else "",
                         f"{len(stored & keys)}/{len(keys)}", len(stored - keys)])
    if rows:
        click.echo("\n" + format_table(["kind", "fingerprint", "current", "indexed stored", "other rows"], rows))
    else:
        click.echo("\nfeature store: empty (run `genreflow features` / `genreflow embed`)")
    metrics_file = layout.reports.join("metrics.json")
    if exists(layout.model) and exists(metrics_file):
        metrics = json.loads(read_text(metrics_file))
        accuracy = "n/a" if metrics["accuracy"] is None else f"{metrics['accuracy']:.4f}"
        click.echo(f"\nmodel: {layout.model} ({metrics['features']}, val accuracy {accuracy}, "
                   f"{metrics['n_train']} train / {metrics['n_val']} val)")
    else:
        click.echo("\nmodel: none yet (run `genreflow train` or `genreflow run`)")
    return {"feature_sets": rows}
