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
        click.echo(f"{len(index['ignored'])} ignored file(s) (not .wav/.mp3/.flac/.ogg or outside a genre folder)")
    click.echo(f"\nwrote {layout.index_json}, {layout.index_parquet} and {layout.splits_json}")
    return result


def run_features_command(config: Config, kinds: list[str]) -> list:
    """Extract each kind of feature for the indexed files (one Ray session), print the counts."""
    from .dataset import read_index
    from .featuresets import feature_set
    from .pipeline import extract
    from .raysession import ray_session

    files = read_index(config.data_dir)["files"]
    reports = []
    with ray_session(config.address, config.n_workers):
        for kind in kinds:
            report = extract(config, feature_set(config, kind), files)
            reports.append(report)
            click.echo(report.line())
            for item in report.failed:
                click.echo(f"  failed {item['relpath']}: {item['reason']}")
    return reports
