"""`genreflow index` end to end, exit codes, and fast --help."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from conftest import write_clip, write_genre_tree
from genreflow.cli import main

HEAVY_MODULES = ("ray", "tensorflow", "tensorflow_hub", "sklearn", "librosa", "pandas", "pyarrow")


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_index_writes_outputs_and_prints_the_summary(data_dir):
    write_genre_tree(data_dir, {"rock": 5, "jazz": 5})
    raw = data_dir / "raw"
    (raw / "rock" / "copy.wav").write_bytes((raw / "rock" / "clip_000.wav").read_bytes())
    (raw / "jazz" / "broken.ogg").write_text("not audio")
    (raw / "jazz" / "liner_notes.pdf").write_bytes(b"%PDF")
    write_clip(raw / "lonely" / "one.flac", seed=50)

    result = invoke("index", "--data-dir", str(data_dir), "--workers", "2")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["genre", "valid", "invalid", "duplicates", "train", "val"]
    table = {line.split()[0]: line.split()[1:] for line in lines[2:6]}
    assert table == {"jazz": ["5", "1", "0", "4", "1"], "lonely": ["1", "0", "0", "1", "0"],
                     "rock": ["6", "0", "1", "5", "1"], "total": ["12", "1", "1", "10", "2"]}
    assert "  jazz/broken.ogg: not a decodable audio file (format not recognised)" in lines
    assert "1 ignored file(s)" in result.stdout
    assert "warning: Genre 'lonely' has 1 valid file(s): kept in train" in result.stderr
    processed = data_dir / "processed"
    assert f"wrote {processed / 'dataset_index.json'}" in result.stdout
    for name in ("dataset_index.json", "index.parquet", "splits.json"):
        assert (processed / name).is_file()


def test_missing_raw_folder_or_no_genre_folders_exit_2_with_the_layout(data_dir):
    result = invoke("index", "--data-dir", str(data_dir))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: No raw audio folder at {data_dir / 'raw'}.\nExpected layout:")
    assert "<genre>/ <file>.{wav,mp3,flac,ogg}" in result.stderr
    write_clip(data_dir / "raw" / "stray.wav")
    result = invoke("index", "--data-dir", str(data_dir))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: No genre folders in {data_dir / 'raw'}.\nExpected layout:")
    assert not (data_dir / "processed").exists()


def test_cli_precedence_defaults_toml_in_cwd_config_flag_and_flags(tmp_path, monkeypatch):
    data = tmp_path / "data"
    write_genre_tree(data, {"a": 6, "b": 6}, seconds=0.2)
    monkeypatch.chdir(tmp_path)

    def splits_after(*args: str) -> dict:
        result = invoke("index", "--workers", "1", *args)
        assert result.exit_code == 0, result.output
        return json.loads((data / "processed" / "splits.json").read_text())

    assert (splits_after()["seed"], splits_after()["val_fraction"]) == (42, 0.2)  # defaults, --data-dir default "data"
    (tmp_path / "genreflow.toml").write_text("[split]\nseed = 3\nval_fraction = 0.5\n")
    found = splits_after()
    assert (found["seed"], found["val_fraction"], len(found["val"])) == (3, 0.5, 6)
    assert splits_after("--seed", "4")["seed"] == 4
    assert splits_after("--seed", "4")["val_fraction"] == 0.5  # the flag changes only its own key
    (tmp_path / "other.toml").write_text("[split]\nseed = 5\n")
    assert splits_after("--config", "other.toml")["val_fraction"] == 0.2  # --config replaces ./genreflow.toml
    assert splits_after("--config", "other.toml", "--val-fraction", "0.25")["seed"] == 5


def run_module(*args: str, cwd: Path | None = None) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "genreflow", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=60)
    return proc, time.perf_counter() - start


def test_python_dash_m_exit_codes(tmp_path):
    proc, _ = run_module("index", "--data-dir", str(tmp_path / "nothing_here"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: No raw audio folder") and "Traceback" not in proc.stderr
    proc, _ = run_module("index", "--data-dir", str(tmp_path), "--val-fraction", "1.5")
    assert proc.returncode == 2
    assert proc.stderr == "error: split.val_fraction=1.5 is invalid: must be in the open range (0, 1).\n"
    proc, _ = run_module("index", "--no-such-flag")
    assert proc.returncode == 2 and "No such option" in proc.stderr


def test_help_answers_fast_without_heavy_imports():
    commands = sorted(main.commands)
    assert "index" in commands
    script = Path(sys.executable).with_name("genreflow")
    launcher = [str(script)] if script.exists() else [sys.executable, "-m", "genreflow"]
    for args in ([], *([name] for name in commands)):  # fast because nothing heavy is imported (checked below)
        proc = subprocess.run([*launcher, *args, "--help"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("Usage: genreflow")
    proc, _ = run_module("--help")
    assert proc.returncode == 0 and "index" in proc.stdout
    probe = ("import sys\nfrom genreflow.cli import main\n"
             f"for name in {commands!r}:\n"
             "    try:\n        main([name, '--help'], standalone_mode=False)\n    except SystemExit:\n        pass\n"
             f"print([m for m in {HEAVY_MODULES!r} if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "[]"
