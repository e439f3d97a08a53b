"""One prediction row schema for every output (csv, jsonl, parquet, --format csv|json, the API's
DataFrame): genres named like a fixed column cannot overwrite it, any file name is written."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner
from pipeline_support import config_for, extract_in_process, make_tree, write_toml

from genreflow.cli import main
from genreflow.cli.commands import run_index_command
from genreflow.data.synth import SYNTH_GENRES

FIXED = ["path", "genre", "probability", "p_error", "p_path", "error", "cached"]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """An MFCC model whose genres are called 'path' and 'error', and an inbox with a file whose
    name is not UTF-8 next to ordinary ones."""
    root = tmp_path_factory.mktemp("names")
    make_tree(root, per_genre=5, seconds=1.0, genres=SYNTH_GENRES[:2])
    for old, new in zip(SYNTH_GENRES[:2], ("path", "error")):
        (root / "raw" / old).rename(root / "raw" / new)
    toml = write_toml(root / "genreflow.toml", duration_s=1.0)
    run_index_command(config_for(root, 1.0))
    extract_in_process(config_for(root, 1.0))
    result = CliRunner().invoke(main, ["train", "--data-dir", str(root), "--config", str(toml), "--features", "mfcc"])
    assert result.exit_code == 0, result.output
    inbox = root.parent / f"{root.name}-inbox"
    inbox.mkdir()
    sources = sorted((root / "raw" / "path").glob("*.wav")) + sorted((root / "raw" / "error").glob("*.flac"))
    for i, src in enumerate(sources[:3]):
        shutil.copy(src, inbox / f"a{i}.{src.suffix[1:]}")
    odd = inbox.as_posix().encode() + b"/a1_\xff.wav"
    shutil.copy(sources[0], odd)
    return root, inbox


def _predict(root, inbox, *args):
    return CliRunner().invoke(main, ["predict", str(inbox), "--model", str(root / "processed" / "classifier_model.zip"),
                                     "--data-dir", str(root / "nowhere"), *args], catch_exceptions=False)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_every_row_is_written_and_genre_columns_cannot_collide(hostile, tmp_path, suffix):
    root, inbox = hostile
    out = tmp_path / f"out{suffix}"
    result = _predict(root, inbox, "--out", str(out))
    assert result.exit_code == 0, result.output
    frame = {".csv": lambda: pd.read_csv(out, keep_default_na=False), ".jsonl": lambda: pd.read_json(out, lines=True),
             ".parquet": lambda: pd.read_parquet(out)}[suffix]()
    assert sorted(frame.columns) == sorted(FIXED) and list(frame.columns[:3]) == ["path", "genre", "probability"]
    assert len(frame) == 4 and (frame.error == "").all()
    assert set(frame.genre) <= {"path", "error"}
    paths = set(frame.path)
    assert str(inbox / "a1_\\xff.wav") in paths and str(inbox / "a0.wav") in paths
    assert ((frame.p_path.astype(float) + frame.p_error.astype(float)) - 1).abs().max() < 1e-5


def test_stdout_formats_hold_the_same_rows_in_input_order(hostile, tmp_path):
    root, inbox = hostile
    as_csv = _predict(root, inbox, "--format", "csv")
    as_json = _predict(root, inbox, "--format", "json")
    streamed = tmp_path / "out.csv"
    _predict(root, inbox, "--out", str(streamed))
    csv_rows = as_csv.stdout.splitlines()
    assert csv_rows[0] == ",".join(FIXED[:3] + ["p_path", "p_error"] + FIXED[5:]) or \
        csv_rows[0] == ",".join(FIXED[:3] + ["p_error", "p_path"] + FIXED[5:])
    assert csv_rows == streamed.read_text().splitlines()[:1] + csv_rows[1:]  # same header, LF endings
    rows = json.loads(as_json.stdout)
    assert [r["path"] for r in rows] == [line.split(",")[0] for line in csv_rows[1:]]
    assert [r["path"].rsplit("/", 1)[1] for r in rows] == ["a0.wav", "a1.wav", "a1_\\xff.wav", "a2.flac"]
    assert "\r" not in streamed.read_text()


def test_a_model_file_cannot_choose_where_its_model_is_loaded_from(tmp_path):
    """A recipe naming a SavedModel folder is matched, never followed: unless the user names that
    folder (flag, config, environment), predict refuses before anything is loaded."""
    from types import SimpleNamespace

    from genreflow.config import build_extractor, load_config
    from genreflow.errors import ConfigError
    from genreflow.stages.predict import model_extractors

    planted = tmp_path / "planted_model"
    (planted / "variables").mkdir(parents=True)
    (planted / "saved_model.pb").write_bytes(b"\x08\x01 not a real graph, never loaded")
    recipe = build_extractor("vggish", load_config(None, {"vggish.handle": str(planted), "vggish.precision": "fp32"})
                             ).recipe()
    bundle = SimpleNamespace(extractors=[recipe])
    with pytest.raises(ConfigError, match="--vggish-model"):
        model_extractors(bundle, None, load_config(None, {}))
    (chosen,) = model_extractors(bundle, {"vggish": {"handle": str(planted)}}, load_config(None, {}))
    assert chosen.config.handle == str(planted) and chosen.fingerprint() == recipe["fingerprint"]


def test_predict_with_a_store_never_opens_a_fifo_or_a_device(hostile, tmp_path):
    """H3: with a store in --data-dir, every input is hashed first; a FIFO or a link to /dev/zero
    must be skipped unopened (it used to hang for ever), with its reason in its row."""
    import os
    import subprocess
    import sys

    root, inbox = hostile
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(inbox / "a0.wav", mixed / "good.wav")
    os.mkfifo(mixed / "pipe.wav")
    os.symlink("/dev/zero", mixed / "zero.wav")
    out = tmp_path / "rows.csv"
    done = subprocess.run([sys.executable, "-m", "genreflow", "predict", str(mixed), "--data-dir", str(root),
                           "--model", str(root / "processed" / "classifier_model.zip"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr  # two inputs are not audio files
    rows = pd.read_csv(out, keep_default_na=False).set_index("path")
    assert rows.loc[str(mixed / "good.wav"), "error"] == "" and rows.loc[str(mixed / "good.wav"), "cached"]
    assert rows.loc[str(mixed / "pipe.wav"), "error"].startswith("not a regular file (a FIFO")
    assert rows.loc[str(mixed / "zero.wav"), "error"].startswith("not a regular file (a character device")


@pytest.mark.parametrize("with_store", [False, True])
def test_a_truncated_wav_is_refused_by_predict_as_by_index(hostile, tmp_path, with_store):
    """L7: a WAV whose header declares more audio than the file holds gets index's reason in its
    row (with and without a store, i.e. through both readers), never a confident genre."""
    root, inbox = hostile
    folder = tmp_path / "cut"
    folder.mkdir()
    whole = sorted((root / "raw" / "path").glob("*.wav"))[0].read_bytes()
    (folder / "cut.wav").write_bytes(whole[: len(whole) // 3])  # header still says the full length
    shutil.copy(sorted((root / "raw" / "path").glob("*.wav"))[1], folder / "fine.wav")
    store_dir = root if with_store else root / "nowhere"
    result = CliRunner().invoke(main, ["predict", str(folder), "--model", str(root / "processed" / "classifier_model.zip"),
                                       "--data-dir", str(store_dir), "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    rows = {r["path"]: r for r in json.loads(result.stdout)}
    assert rows[str(folder / "cut.wav")]["error"].startswith("truncated: header declares")
    assert rows[str(folder / "cut.wav")]["genre"] == "" and rows[str(folder / "fine.wav")]["error"] == ""


def test_out_to_an_object_store_is_one_line(hostile, tmp_path):
    """L9: --out s3://... is not a missing local folder; it says that only local files are written."""
    root, inbox = hostile
    result = _predict(root, inbox, "--out", "s3://bucket/predictions.csv")
    assert result.exit_code == 2
    assert "only" in result.output and "local file" in result.output and "s3:/bucket" not in result.output
    assert "Traceback" not in result.output


def test_a_full_disk_names_the_file_it_could_not_write(tmp_path, monkeypatch):
    """L9: an OSError from a write carries no file name; the atomic writer adds it."""
    import errno
    import os

    from genreflow.core.fs import atomic_write_bytes, locate

    def full(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    target = tmp_path / "model.zip"
    with pytest.raises(OSError) as info:
        atomic_write_bytes(locate(str(target)), b"x" * 100)
    assert info.value.filename == str(target) and info.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == []  # no temp file left


def test_workers_capped_from_the_configuration_is_not_called_a_flag(hostile, tmp_path):
    """L9: a TOML `workers` beyond the CPUs is named as the configuration's, not as --workers."""
    root, _ = hostile
    toml = tmp_path / "many.toml"
    toml.write_text("workers = 4096\n" + (root / "genreflow.toml").read_text())  # a top-level key
    result = CliRunner().invoke(main, ["status", "--data-dir", str(root), "--config", str(toml)])
    assert "workers = 4096 (from the configuration) capped" in result.output and "--workers 4096" not in result.output
