"""Issue 7: bad input, crashes, concurrent runs, full disks and memory bounds lose nothing.

Every fault is injected for real: SIGKILL, two processes at once, a tmpfs that fills up, a
read-only mount, hostile audio bytes. (Files changed or deleted between `index` and feature
extraction are covered in test_features.py::test_failed_files_are_reported_and_skipped.)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from pipeline_support import config_for, feature_set_for, make_tree, mfcc_feature_set

from genreflow.cli.commands import run_features_command, run_index_command
from genreflow.store.featureset import read_table
from genreflow.data.synth import noise, tone, write_audio

CLI = [sys.executable, "-m", "genreflow"]


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, **kwargs)


def write_config(path: Path, duration_s: float, batch_size: int = 32) -> Path:
    path.write_text(f"batch_size = {batch_size}\n[audio]\nduration_s = {duration_s}\n")
    return path


def store_arrays(data_dir: Path, duration_s: float) -> dict[str, np.ndarray]:
    table = read_table(mfcc_feature_set(config_for(data_dir, duration_s)))
    return {k: np.asarray(v, dtype=np.float32) for k, v in
            zip(table.column("content_hash").to_pylist(), table.column("mfcc").to_pylist())}


def assert_store_readable(folder: Path) -> None:
    """Every visible shard parses; pandas reads the folder; no partial file has a visible name."""
    names = os.listdir(folder)
    assert all(n.startswith((".", "_", "part-")) for n in names), names
    for name in names:
        if name.startswith("part-"):
            pq.read_table(folder / name)
    frame = pd.read_parquet(folder)
    assert frame.content_hash.str.fullmatch(r"[0-9a-f]{64}").all()  # whole rows, real keys
    # a key on disk twice (two runs wrote it) must hold the same values in both shards
    values = frame.drop(columns="content_hash").map(lambda v: np.asarray(v).tobytes())
    copies = values[frame.content_hash.duplicated(keep=False)].groupby(frame.content_hash).nunique()
    assert (copies <= 1).all().all(), copies


def kill_session(leader: subprocess.Popen) -> None:
    """SIGKILL the CLI and every process of its session (its local Ray: raylet, workers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader.pid, signal.SIGKILL)
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(pid)) == leader.pid:
                    os.kill(int(pid), signal.SIGKILL)
    leader.wait(timeout=30)


@pytest.mark.slow
def test_kill_mid_run_then_resume_equals_uninterrupted(tmp_path, ray_local):
    data = tmp_path / "killed"
    make_tree(data, per_genre=30, seconds=2.0)
    toml = write_config(tmp_path / "g.toml", 2.0, batch_size=2)
    assert cli("index", "--data-dir", str(data), "--config", str(toml)).returncode == 0
    folder = Path(mfcc_feature_set(config_for(data, 2.0)).location.path)

    proc = subprocess.Popen([*CLI, "features", "--data-dir", str(data), "--config", str(toml), "--workers", "2"],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(folder.glob("part-*"))) < 3 and proc.poll() is None:
        time.sleep(0.02)
    kill_session(proc)
    survived = len(list(folder.glob("part-*")))
    assert survived >= 3, "the run ended before it could be killed mid-way"
    assert_store_readable(folder)
    stored_before = len(read_table(mfcc_feature_set(config_for(data, 2.0))))
    assert 0 < stored_before < 60

    config = config_for(data, 2.0, batch_size=2)
    (report,) = run_features_command(config, ["mfcc"])
    assert (report.cached, report.computed, report.failed) == (stored_before, 60 - stored_before, [])
    assert_store_readable(folder)
    assert not [n for n in os.listdir(folder) if n.startswith(".tmp-")]  # dead writers' temps reclaimed

    reference = tmp_path / "reference"
    shutil.copytree(data / "raw", reference / "raw")
    run_index_command(config_for(reference, 2.0))
    run_features_command(config_for(reference, 2.0), ["mfcc"])
    resumed, clean = store_arrays(data, 2.0), store_arrays(reference, 2.0)
    assert resumed.keys() == clean.keys() and len(clean) == 60
    assert all(np.array_equal(resumed[k], clean[k]) for k in clean)


@pytest.mark.slow
def test_two_runs_at_once_on_one_data_dir(tmp_path):
    make_tree(tmp_path, per_genre=8, seconds=2.0)
    toml = write_config(tmp_path / "g.toml", 2.0, batch_size=4)
    args = [*CLI, "run", "--data-dir", str(tmp_path), "--config", str(toml), "--features", "mfcc", "--workers", "1"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outputs]
    folder = Path(mfcc_feature_set(config_for(tmp_path, 2.0)).location.path)
    assert_store_readable(folder)
    raw_keys = pd.read_parquet(folder).content_hash
    index = json.loads((tmp_path / "processed" / "dataset_index.json").read_text())
    expected = {f["content_hash"] for f in index["files"]}
    assert set(raw_keys) == expected  # every key at least once on disk...
    table = read_table(mfcc_feature_set(config_for(tmp_path, 2.0)))
    assert sorted(table.column("content_hash").to_pylist()) == sorted(expected)  # ...exactly once when read
    from genreflow.data.splits import read_splits

    splits = read_splits(str(tmp_path))  # whole, and covering every indexed file exactly once
    assert sorted(splits["train"] + splits["val"]) == sorted(f["relpath"] for f in index["files"])
    assert splits["val"] and not set(splits["train"]) & set(splits["val"])
    from genreflow.model.bundle import load_model_bundle

    assert load_model_bundle(str(tmp_path / "processed" / "classifier_model.zip")).features == "mfcc"
    assert not [n for n in os.listdir(tmp_path / "processed") if n.startswith(".tmp-")]


def _hostile_tree(root: Path) -> dict[str, str]:
    """Write every kind of hostile input; returns relpath -> 'valid' or a reason fragment."""
    raw, sr = root / "raw", 22050
    good = raw / "good"
    good.mkdir(parents=True)
    expect: dict[str, str] = {}

    def wav(name: str, data: np.ndarray, rate: int = sr, subtype: str = "PCM_16", verdict: str = "valid") -> None:
        sf.write(str(good / name), data, rate, subtype=subtype)
        expect[f"good/{name}"] = verdict

    wav("eight channels.wav", np.stack([tone(110 * (c + 1), 1.0, sr) for c in range(8)], axis=1))
    wav("hi-rate 192k.wav", tone(1000, 1.0, 192000), rate=192000, subtype="PCM_24")
    wav("8bit.wav", tone(300, 1.0, sr), subtype="PCM_U8")
    wav("float32.wav", 1.5 * tone(300, 1.0, sr) / 0.3, subtype="FLOAT")  # beyond full scale
    wav("silence.wav", np.zeros(sr, dtype=np.float32))
    wav("clipped.wav", np.sign(tone(200, 1.0, sr)).astype(np.float32))
    write_audio(good / "ünïcødé name with spaces.ogg", noise(1.0, sr, seed=5), sr)
    expect["good/ünïcødé name with spaces.ogg"] = "valid"
    bad = raw / "bad"
    bad.mkdir()
    (bad / "zero.wav").write_bytes(b"")
    expect["bad/zero.wav"] = "empty"
    sf.write(str(bad / "header_only.wav"), np.zeros((0,), np.float32), sr)
    expect["bad/header_only.wav"] = "no audio frames"
    write_audio(bad / "cut.flac", noise(2.0, sr, seed=1), sr)
    data = (bad / "cut.flac").read_bytes()
    (bad / "cut.flac").write_bytes(data[: len(data) // 2])
    expect["bad/cut.flac"] = "corrupt or truncated"
    (bad / "random.mp3").write_bytes(np.random.default_rng(0).bytes(5000))
    expect["bad/random.mp3"] = "not a decodable audio file"
    os.symlink("loop.wav", bad / "loop.wav")
    expect["bad/loop.wav"] = "symbolic link loop"
    (bad / "x.wav").mkdir()
    write_audio(bad / "x.wav" / "inside.wav", tone(500, 1.0, sr), sr)
    expect["bad/x.wav"] = "is a folder"
    expect["bad/x.wav/inside.wav"] = "valid"
    os.close(os.open(os.fsencode(str(bad)) + b"/latin1-\xe9t\xe9.wav", os.O_CREAT | os.O_WRONLY))
    expect["bad/latin1-\ufffdt\ufffd.wav"] = "not valid UTF-8"
    # one hour of 44.1 kHz stereo (635 MB, sparse on disk): only the configured duration is decoded
    hour = good / "one hour.wav"
    with sf.SoundFile(str(hour), "w", samplerate=44100, channels=2, subtype="PCM_16") as handle:
        handle.write(np.zeros((1, 2), dtype=np.int16))
    data_bytes = 3600 * 44100 * 4
    with open(hour, "r+b") as handle:
        header = bytearray(handle.read(44))
        header[4:8], header[40:44] = (36 + data_bytes).to_bytes(4, "little"), data_bytes.to_bytes(4, "little")
        handle.seek(0)
        handle.write(header)
        handle.truncate(44 + data_bytes)
    expect["good/one hour.wav"] = "valid"
    return expect


@pytest.mark.slow
def test_hostile_inputs_are_processed_or_skipped_with_a_reason(tmp_path, ray_local, standin_model):
    expect = _hostile_tree(tmp_path)
    config = config_for(tmp_path, 2.0, **{"vggish.handle": standin_model})
    result = run_index_command(config)
    index = result["index"]
    valid = {f["relpath"]: f for f in index["files"]}
    reasons = {r["relpath"]: r["reason"] for r in index["invalid"]}
    for relpath, verdict in expect.items():
        if verdict == "valid":
            assert relpath in valid, (relpath, reasons.get(relpath))
        else:
            assert verdict in reasons.get(relpath, ""), (relpath, reasons.get(relpath))
    assert valid["good/eight channels.wav"]["channels"] == 8
    assert valid["good/hi-rate 192k.wav"]["sample_rate"] == 192000
    assert valid["good/one hour.wav"]["duration_s"] == pytest.approx(3600)

    mfcc, vggish = run_features_command(config, ["mfcc", "vggish"])
    n_valid = len({f["content_hash"] for f in index["files"]})
    assert (mfcc.computed, mfcc.failed) == (n_valid, []) and (vggish.computed, vggish.failed) == (n_valid, [])
    for fset_kind in ("mfcc", "vggish"):
        table = read_table(feature_set_for(config, fset_kind))
        column = "mfcc" if fset_kind == "mfcc" else "embedding"
        flat = table.column(column).combine_chunks().flatten().to_numpy()
        assert np.isfinite(flat).all(), f"{fset_kind} holds NaN or inf (silence, clipping, 8-bit, float WAV)"


def _mount_tmpfs(target: Path, options: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")


@pytest.mark.slow
def test_disk_full_while_writing_shards_then_resume(tmp_path):
    make_tree(tmp_path, per_genre=20, seconds=3.0)
    toml = write_config(tmp_path / "g.toml", 3.0, batch_size=2)
    assert cli("index", "--data-dir", str(tmp_path), "--config", str(toml)).returncode == 0
    store = tmp_path / "processed" / "store"
    _mount_tmpfs(store, "size=96k")
    try:
        full = cli("features", "--data-dir", str(tmp_path), "--config", str(toml), "--workers", "2")
        assert full.returncode == 4, full.stderr[-2000:]
        message = full.stderr.strip().splitlines()[-1]
        assert message.startswith("error: Could not write a mfcc shard") and "No space left on device" in message
        folder = Path(mfcc_feature_set(config_for(tmp_path, 3.0)).location.path)
        assert_store_readable(folder)
        kept = len(read_table(mfcc_feature_set(config_for(tmp_path, 3.0))))
        assert 0 < kept < 40
        subprocess.run(["mount", "-o", "remount,size=16m", str(store)], check=True)
        again = cli("features", "--data-dir", str(tmp_path), "--config", str(toml), "--workers", "2")
        assert again.returncode == 0, again.stderr[-2000:]
        assert f"{40 - kept} computed, {kept} already cached, 0 failed" in again.stdout
    finally:
        subprocess.run(["umount", "-l", str(store)], capture_output=True)


def test_read_only_processed_dir_is_one_clear_error(tmp_path):
    make_tree(tmp_path, per_genre=2, seconds=1.0)
    processed = tmp_path / "processed"
    _mount_tmpfs(processed, "ro,size=1m")
    try:
        result = cli("index", "--data-dir", str(tmp_path))
        assert result.returncode == 4 and "Traceback" not in result.stderr
        assert "Read-only file system" in result.stderr and str(processed) in result.stderr
    finally:
        subprocess.run(["umount", "-l", str(processed)], capture_output=True)


def _driver_peak(data: Path, clips: int) -> int:
    for i in range(clips):
        write_audio(data / "raw" / ("a" if i % 2 else "b") / f"c{i:04d}.wav", tone(200 + i, 0.2, 8000), 8000)
    config = config_for(data, 0.2)
    run_index_command(config)
    tracemalloc.start()
    (report,) = run_features_command(config, ["mfcc"])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert report.computed == clips
    return peak


@pytest.mark.slow
def test_driver_memory_stays_flat_over_500_clips(tmp_path, ray_local):
    small = _driver_peak(tmp_path / "small", 100)
    large = _driver_peak(tmp_path / "large", 500)
    # the driver only sees small per-file summaries: 5x the clips must not mean 5x the memory
    assert large < small + 8 * 2**20, f"driver peak grew from {small / 2**20:.1f} to {large / 2**20:.1f} MiB"
