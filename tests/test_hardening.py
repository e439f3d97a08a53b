"""Issue 15: hostile input never hangs, broken files give one line, a damaged store heals,
model files cannot run code.

Every fault is injected for real: FIFOs and sockets made with os.mkfifo/bind, symlinks to /,
JSON files cut short on disk, Parquet shards truncated or overwritten with random bytes, a
joblib file whose ``__reduce__`` creates a marker file, Ray pointed at an address that fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import write_clip, write_genre_tree
from genreflow.data.splits import SplitConfig
from genreflow.features.mfcc import MfccExtractor
from genreflow.data.index import build_index, discover, pool_size, read_index, validate_file
from genreflow.stages.index import run_index
from genreflow.errors import DataError, ModelLoadError, RayStartError
from genreflow.core.fs import locate, not_regular_reason, remove_stale_temps_tree
from genreflow.core.host import usable_cpus
from genreflow.data.splits import read_splits

CLI = [sys.executable, "-m", "genreflow"]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real command line in a child process; a hang fails the test instead of blocking it,
    and kills the command's whole session (its pool workers too) so nothing stays blocked."""
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def warning_lines(stderr: str, needle: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning:") and needle in line]


# --- 1. FIFOs, sockets, devices ------------------------------------------------------------------
def test_not_regular_reason_names_each_kind_and_leaves_files_alone(tmp_path):
    os.mkfifo(tmp_path / "pipe.wav")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "sock.wav"))
    try:
        assert not_regular_reason(str(tmp_path / "pipe.wav")) == "not a regular file (a FIFO/named pipe)"
        assert not_regular_reason(locate(tmp_path / "sock.wav")) == "not a regular file (a socket)"
    finally:
        server.close()
    assert not_regular_reason("/dev/null") == "not a regular file (a character device)"
    os.symlink("/dev/zero", tmp_path / "zero.wav")  # a link is judged by its target
    assert not_regular_reason(tmp_path / "zero.wav") == "not a regular file (a character device)"
    write_clip(tmp_path / "real.wav")
    assert not_regular_reason(tmp_path / "real.wav") is None
    assert not_regular_reason(tmp_path) is None and not_regular_reason(tmp_path / "missing.wav") is None


def test_a_fifo_named_like_audio_never_hangs_index(data_dir):
    write_genre_tree(data_dir, {"rock": 3, "jazz": 3})
    os.mkfifo(data_dir / "raw" / "rock" / "x.wav")
    os.mkfifo(data_dir / "raw" / "jazz" / "stream.mp3")

    result = cli("index", "--data-dir", str(data_dir), "--workers", "2", timeout=90)

    assert result.returncode == 0, result.stderr[-2000:]
    assert "  rock/x.wav: not a regular file (a FIFO/named pipe)" in result.stdout.splitlines()
    assert "  jazz/stream.mp3: not a regular file (a FIFO/named pipe)" in result.stdout.splitlines()
    index = read_index(str(data_dir))
    assert len(index["files"]) == 6  # every real file still indexed
    assert (data_dir / "raw" / "rock" / "x.wav").is_fifo()  # left as it was


def test_validate_file_skips_a_fifo_without_opening_it(tmp_path):
    (tmp_path / "g").mkdir()
    os.mkfifo(tmp_path / "g" / "p.flac")
    done: list[dict] = []
    worker = threading.Thread(target=lambda: done.append(validate_file(locate(tmp_path), "g/p.flac")), daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # it opened the FIFO and blocks: give it a writer so the thread ends
        os.close(os.open(tmp_path / "g" / "p.flac", os.O_WRONLY | os.O_NONBLOCK))
    assert done == [{"relpath": "g/p.flac", "reason": "not a regular file (a FIFO/named pipe)"}]


# --- 2. symlinked genre folders ------------------------------------------------------------------
def test_a_genre_folder_linked_to_root_is_refused_with_one_warning(data_dir):
    write_genre_tree(data_dir, {"rock": 3, "jazz": 3})
    os.symlink("/", data_dir / "raw" / "evil")

    result = cli("index", "--data-dir", str(data_dir), timeout=60)  # a walk of / would run past the timeout

    assert result.returncode == 0, result.stderr[-2000:]
    lines = warning_lines(result.stderr, "evil")
    assert len(lines) == 1 and "is a symbolic link to / (the filesystem root): not followed" in lines[0], result.stderr
    index = read_index(str(data_dir))
    assert index["params"]["genre_folders"] == ["jazz", "rock"]
    assert len(index["files"]) == 6


def test_genre_folders_linked_elsewhere_work_but_links_out_of_them_are_not_followed(tmp_path):
    data = tmp_path / "data"
    write_genre_tree(data, {"rock": 2})
    elsewhere = tmp_path / "library" / "jazz"
    write_clip(elsewhere / "a.wav", seed=40)
    write_clip(elsewhere / "live" / "b.flac", seed=41)
    os.symlink(elsewhere, data / "raw" / "jazz")  # allowed: a genre folder may live anywhere
    os.symlink(elsewhere / "live", data / "raw" / "jazz" / "again")  # inside the genre's target: followed
    outside = tmp_path / "secrets"
    write_clip(outside / "c.wav", seed=42)
    os.symlink(outside, data / "raw" / "rock" / "escape")  # out of raw/ and its genre: not followed
    os.symlink("..", data / "raw" / "rock" / "loop")  # a loop back to raw/

    found = discover(locate(data / "raw"))

    relpaths = {rel for rel, _ in found.candidates}
    assert {"jazz/a.wav", "rock/clip_000.wav", "rock/clip_001.flac"} <= relpaths
    assert {"jazz/live/b.flac", "jazz/again/b.flac"} & relpaths  # once, under one of its two names
    assert not [rel for rel in relpaths if "escape" in rel or "c.wav" in rel]
    assert [n for n in found.notes if "rock/escape links to" in n and "not followed" in n]
    assert found.genres == ["jazz", "rock"]


def test_a_genre_folder_containing_raw_or_too_big_is_left_out(tmp_path):
    data = tmp_path / "data"
    write_genre_tree(data, {"rock": 2, "jazz": 12})
    os.symlink(tmp_path, data / "raw" / "up")  # contains raw/ itself
    found = discover(locate(data / "raw"), max_entries=10)
    assert found.genres == ["rock"]
    assert [n for n in found.notes if "/raw/up is a symbolic link" in n and "contains raw/ itself" in n]
    assert [n for n in found.notes if "/raw/jazz holds more than 10 files and folders" in n]


# --- 3 and 4. empty genres, label conflicts ------------------------------------------------------
def test_empty_genres_and_label_conflicts_are_reported_and_kept_out_of_training(data_dir):
    raw = data_dir / "raw"
    write_genre_tree(data_dir, {"rock": 4, "jazz": 4})
    (raw / "empty").mkdir()
    (raw / "broken").mkdir()
    (raw / "broken" / "x.wav").write_bytes(b"RIFF")
    shutil.copy(raw / "rock" / "clip_000.wav", raw / "jazz" / "misfiled.wav")  # same audio, two genres
    shutil.copy(raw / "rock" / "clip_001.flac", raw / "rock" / "again.flac")  # same audio, one genre

    result = cli("index", "--data-dir", str(data_dir), timeout=90)

    assert result.returncode == 0, result.stderr[-2000:]
    empty = warning_lines(result.stderr, f"{raw / 'empty'} ")
    assert len(empty) == 1 and f"genre folder {raw / 'empty'} holds no audio files" in empty[0]
    assert len(warning_lines(result.stderr, f"genre folder {raw / 'broken'} has no usable audio")) == 1
    conflict = warning_lines(result.stderr, "label conflict")
    assert len(conflict) == 1
    assert "genres jazz, rock (jazz/misfiled.wav, rock/clip_000.wav)" in conflict[0]
    index = read_index(str(data_dir))
    reasons = {r["relpath"]: r["reason"] for r in index["invalid"]}
    assert reasons["jazz/misfiled.wav"] == ("same audio as rock/clip_000.wav in genre rock (label conflict): "
                                            "keep it in one genre folder")
    assert reasons["rock/clip_000.wav"].startswith("same audio as jazz/misfiled.wav in genre jazz")
    splits = read_splits(str(data_dir))
    assert not {"jazz/misfiled.wav", "rock/clip_000.wav"} & set(splits["train"] + splits["val"])
    valid = {f["relpath"] for f in index["files"]}
    assert {"rock/clip_001.flac", "rock/again.flac"} <= valid  # duplicates in one genre stay
    assert index["genres"] == {"jazz": 0, "rock": 1}


# --- 5. broken JSON ------------------------------------------------------------------------------
@pytest.fixture
def indexed(data_dir) -> Path:
    write_genre_tree(data_dir, {"rock": 3, "jazz": 3})
    run_index(str(data_dir), workers=1, split_config=SplitConfig())
    return data_dir


@pytest.mark.parametrize("damage, detail", [
    (lambda text: text[: text.index('"train"') + 12], "cut short at line"),
    (lambda text: "", "empty file"),
    (lambda text: "[1, 2]", "holds a JSON list, not an object"),
    (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "val"}), "missing 'val'"),
    (lambda text: json.dumps({**json.loads(text), "val": "a.wav"}), "'val' is not a list of file paths"),
    (lambda text: json.dumps({**json.loads(text), "seed": "42"}), "'seed' is not an integer"),
], ids=["cut-short", "empty", "a-list", "missing-key", "val-not-a-list", "seed-not-an-int"])
def test_damaged_splits_json_is_one_line_naming_the_rebuild_command(indexed, damage, detail):
    splits = indexed / "processed" / "splits.json"
    good = splits.read_bytes()
    splits.write_text(damage(good.decode()))
    with pytest.raises(DataError) as caught:
        read_splits(str(indexed))
    message = str(caught.value)
    assert message.startswith(f"{splits} is damaged ({detail}") and "\n" not in message
    assert message.endswith(f"run `genreflow index --data-dir {indexed}` to rebuild it.")
    assert cli("index", "--data-dir", str(indexed)).returncode == 0  # the named command repairs it
    assert splits.read_bytes() == good


def test_damaged_or_missing_index_is_one_line(indexed):
    index_json = indexed / "processed" / "dataset_index.json"
    text = index_json.read_text()
    index_json.write_text(text[: len(text) // 2])
    with pytest.raises(DataError, match=r"dataset_index.json is damaged \(cut short at line \d+\): run `genreflow "
                                        r"index --data-dir .*` to rebuild it\.$"):
        read_index(str(indexed))
    doc = json.loads(text)
    del doc["files"][0]["content_hash"]
    index_json.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"\('files' is not a list of complete file records\)"):
        read_index(str(indexed))
    index_json.unlink()
    with pytest.raises(DataError, match=r"^No dataset index at .*: run `genreflow index --data-dir .*` first\.$"):
        read_index(str(indexed))


# --- 6. --workers larger than the machine --------------------------------------------------------
def _descendants(root: int) -> set[int]:
    """Every live process below ``root`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def test_workers_beyond_the_cpus_never_start_more_processes(data_dir):
    assert pool_size(64, 12) == min(12, usable_cpus()) and pool_size(64, 1) == 1 and pool_size(0, 5) == 1
    write_genre_tree(data_dir, {"a": 6, "b": 6})
    peak, stop = [0], threading.Event()
    already = set(_descendants(os.getpid()))  # e.g. a Ray another test of the session started

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], len(set(_descendants(os.getpid())) - already))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        index = build_index(str(data_dir), workers=64)
    finally:
        stop.set()
        sampler.join()
    assert len(index["files"]) == 12
    # the pool's workers, plus the forkserver and multiprocessing's resource tracker
    assert peak[0] <= usable_cpus() + 2, f"{peak[0]} processes for {usable_cpus()} CPUs"


# --- 7. Ray start failures -----------------------------------------------------------------------
RAY_PROBE = """
import sys
from genreflow.stages.session import ray_session
from genreflow.errors import RayStartError
try:
    with ray_session(sys.argv[1] or None, 1):
        print("started")
except RayStartError as exc:
    print(f"{exc.exit_code}|{exc}")
"""


def test_a_bad_ray_address_is_one_line_with_exit_code_5():
    assert RayStartError.exit_code == 5
    done = subprocess.run([sys.executable, "-c", RAY_PROBE, "nohost:abc"], capture_output=True, text=True,
                          timeout=120)
    code, _, message = done.stdout.strip().partition("|")
    assert code == "5" and "\n" not in message, done.stdout + done.stderr[-2000:]
    assert message.startswith("Could not join the Ray cluster at 'nohost:abc' (ValueError: ")
    assert "session_latest/logs" in message and "Traceback" not in done.stderr


def test_a_local_ray_that_cannot_start_names_its_log_folder(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("Ray cannot make its temp folder below a file")
    env = {**os.environ, "RAY_TMPDIR": str(blocker)}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-c", RAY_PROBE, ""], capture_output=True, text=True, timeout=120, env=env)
    code, _, message = done.stdout.strip().partition("|")
    assert code == "5", done.stdout + done.stderr[-2000:]
    assert message.startswith("Could not start a local Ray (NotADirectoryError")
    assert f"Its logs are in {blocker}/ray/session_latest/logs." in message and "`ray stop`" in message


# --- 8. temp files of killed writers -------------------------------------------------------------
def test_stale_temps_are_swept_in_every_folder_genreflow_writes(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    processed = tmp_path / "processed"
    folders = [processed, processed / "reports", processed / "store" / "mfcc" / "0123456789abcdef"]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f".tmp-{host}-{dead.pid}-abc123-classifier_model.zip").write_bytes(b"half")
        (folder / f".tmp-{host}-{os.getpid()}-def456-metrics.json").write_bytes(b"being written")
        (folder / "kept.json").write_text("{}")
    assert remove_stale_temps_tree(locate(processed)) == 3
    for folder in folders:
        assert sorted(p.name for p in folder.iterdir() if p.is_file()) == [
            f".tmp-{host}-{os.getpid()}-def456-metrics.json", "kept.json"]


# --- 9. model files ------------------------------------------------------------------------------
def _clip_features(n_per_genre: int = 8, genres=("ambient", "chiptune", "techno")) -> tuple[np.ndarray, np.ndarray]:
    """Log band energies of real synthetic clips: a tiny, real training set."""
    from genreflow.data.synth import genre_clip

    rows, labels = [], []
    for label, genre in enumerate(genres):
        for seed in range(n_per_genre):
            clip = genre_clip(genre, 1.0, 8000, seed=seed)
            spectrum = np.abs(np.fft.rfft(clip)) ** 2
            rows.append(np.log1p([band.sum() for band in np.array_split(spectrum, 16)]))
            labels.append(label)
    return np.asarray(rows, np.float32), np.asarray(labels)


META = {"genres": ["ambient", "chiptune", "techno"], "features": "mfcc", "fingerprints": {"mfcc": "0" * 16}}


@pytest.mark.parametrize("name", ["logreg", "svm", "mlp", "hgb"])
@pytest.mark.parametrize("n_genres", [2, 3])
def test_every_classifier_round_trips_through_a_model_file(tmp_path, name, n_genres):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from genreflow.model.classifiers import CLASSIFIERS
    from genreflow.model.modelfile import load_model_file, save_model_file

    X, y = _clip_features(genres=("ambient", "chiptune", "techno")[:n_genres])
    spec = CLASSIFIERS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence notes on 24 rows
        model = make_pipeline(StandardScaler(), spec.build(spec.params(), 0)).fit(X, y)
    meta = {**META, "genres": META["genres"][:n_genres]}
    path = tmp_path / "model.zip"
    save_model_file(locate(path), model, meta)
    assert zipfile.ZipFile(path).namelist() == ["genreflow-model.json", "meta.json", "pipeline.skops"]
    loaded, loaded_meta = load_model_file(str(path))
    assert loaded_meta == meta
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


class _Payload:
    """What an attacker pickles: unpickling it calls open(marker, 'w'), i.e. runs code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_malicious_pickle_model_never_runs_without_trust_pickle(tmp_path, data_dir):
    import joblib

    from genreflow.model.modelfile import PickleModelWarning, load_model_file

    marker = tmp_path / "pwned"
    evil = tmp_path / "classifier_model.pkl"
    joblib.dump({"pipeline": _Payload(str(marker)), **META}, evil)
    with pytest.raises(ModelLoadError) as caught:
        load_model_file(str(evil))
    assert not marker.exists()
    assert "pickle (joblib) format, which can run code" in str(caught.value)
    assert "pass --trust-pickle only for a file from a trusted source, or retrain" in str(caught.value)

    write_clip(data_dir / "song.wav")
    result = cli("predict", "--data-dir", str(data_dir), "--model", str(evil), str(data_dir / "song.wav"))
    assert result.returncode == 3 and not marker.exists(), result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and "--trust-pickle" in result.stderr

    with pytest.warns(PickleModelWarning, match="pickle model files can run code"), \
            pytest.raises(ModelLoadError, match="not a classifier"):
        load_model_file(str(evil), trust_pickle=True)
    assert marker.exists()  # what trust means: the file's code ran


def test_an_old_joblib_model_loads_only_when_trusted(tmp_path):
    import joblib
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from genreflow.model.modelfile import PickleModelWarning, load_model_file

    X, y = _clip_features()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    old = tmp_path / "classifier_model.pkl"
    joblib.dump({"pipeline": model, **META, "audio": {"sample_rate": 22050}}, old)
    with pytest.raises(ModelLoadError, match="pickle"):
        load_model_file(str(old))
    with pytest.warns(PickleModelWarning):
        loaded, meta = load_model_file(str(old), trust_pickle=True)
    assert meta["genres"] == META["genres"] and meta["audio"] == {"sample_rate": 22050}
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_files_that_are_not_genreflow_models_are_one_clear_error(tmp_path):
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    from genreflow.model.modelfile import load_model_file, save_model_file

    X, y = _clip_features()
    good = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    marker = json.dumps({"format": "genreflow-model", "version": 1}).encode()
    sneaky = make_pipeline(FunctionTransformer(np.log1p), LogisticRegression(max_iter=500)).fit(X, y)
    save_model_file(locate(tmp_path / "whole.zip"), good, META)
    whole = (tmp_path / "whole.zip").read_bytes()
    (tmp_path / "cut.zip").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "text.txt").write_text("hello")
    cases = {
        tmp_path / "text.txt": "is not a genreflow model file (neither a zip nor a pickle",
        _zip(tmp_path / "plain.skops", {"schema.json": b"{}"}): "is not a genreflow model file (a zip archive without",
        _zip(tmp_path / "nometa.zip", {"genreflow-model.json": marker, "meta.json": json.dumps({"genres": ["a"]}),
                                       "pipeline.skops": sio.dumps(good)}): "its metadata lacks features, fingerprints",
        _zip(tmp_path / "labels.zip", {"genreflow-model.json": marker, "meta.json": json.dumps({**META, "genres": ["a"]}),
                                       "pipeline.skops": sio.dumps(good)}): "predicts labels up to 2 for 1 genres",
        _zip(tmp_path / "nopipe.zip", {"genreflow-model.json": marker, "meta.json": json.dumps(META)}):
            "damaged genreflow model (no pipeline.skops inside)",
        _zip(tmp_path / "sneaky.zip", {"genreflow-model.json": marker, "meta.json": json.dumps(META),
                                       "pipeline.skops": sio.dumps(sneaky)}):
            "holds types a genreflow classifier never contains (",
        tmp_path / "cut.zip": "is a damaged genreflow model file",
        tmp_path / "missing.zip": "No classifier at",
    }
    for path, expected in cases.items():
        with pytest.raises(ModelLoadError) as caught:
            load_model_file(str(path))
        assert expected in str(caught.value) and "\n" not in str(caught.value), (path.name, str(caught.value))


# --- 10. store integrity -------------------------------------------------------------------------
def _feature_set(data_dir: Path, n_mfcc: int = 20):
    from genreflow.store.featureset import FeatureSet

    params = {"sample_rate": 22050, "duration_s": 3.0, "n_mfcc": n_mfcc}
    return FeatureSet.create(str(data_dir), MfccExtractor.kind, 1, params)


def _write_shards(fset, n_shards: int = 3, rows: int = 8, seed: int = 0,
                  only: set[int] | None = None) -> dict[str, list[str]]:
    """Shards of real audio frames (n_mfcc x 400 float32 per row); returns shard path -> keys.
    ``only`` writes just those shard numbers again (what a rerun recomputes)."""
    from genreflow.store.featureset import shard_table, write_shard
    from genreflow.data.synth import noise

    rows_of = fset.kind.shape_columns
    assert rows_of[0].startswith("n_")  # mfcc: (n_mfcc, n_frames)
    n_coef = fset.params["params"]["n_mfcc"]
    written = {}
    for shard in range(n_shards):
        if only is not None and shard not in only:
            continue
        keys, arrays = [], []
        for row in range(rows):
            signal = noise(n_coef * 400 / 22050, 22050, seed=seed * 1000 + shard * 100 + row)
            arrays.append(signal[: n_coef * 400].reshape(n_coef, 400))
            keys.append(f"{seed:02d}{shard:02d}{row:02d}".ljust(64, "a"))
        name = write_shard(fset, shard_table(fset.kind, keys, arrays, [400] * rows))
        written[str(Path(fset.location.path) / name)] = keys
    return written


def _all_keys(shards: dict[str, list[str]]) -> set[str]:
    return {k for keys in shards.values() for k in keys}


def test_a_truncated_shard_is_quarantined_and_its_keys_count_as_missing(tmp_path):
    from genreflow.store.integrity import QuarantineWarning
    from genreflow.store.featureset import read_table, stored_keys

    fset = _feature_set(tmp_path)
    shards = _write_shards(fset)
    bad = sorted(shards)[1]
    assert os.path.getsize(bad) > 60000
    subprocess.run(["truncate", "-s", "60000", bad], check=True)

    with pytest.warns(QuarantineWarning) as caught:
        keys = stored_keys(fset)
    assert len(caught) == 1 and Path(bad).name in str(caught[0].message)
    assert "Parquet magic bytes not found" in str(caught[0].message)
    assert keys == _all_keys(shards) - set(shards[bad])
    moved = Path(fset.location.path) / "_quarantine" / Path(bad).name
    assert moved.stat().st_size == 60000 and not Path(bad).exists()  # moved, not deleted
    assert "magic bytes" in Path(str(moved) + ".reason.txt").read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing left to warn about
        assert read_table(fset).num_rows == 16
    import pandas as pd

    assert len(pd.read_parquet(fset.location.path)) == 16  # plain readers skip _quarantine/ too


def _random_bytes_in_the_middle(path: str, seed: int, n: int = 2000) -> None:
    """Overwrite ``n`` bytes in the middle of a file (inside a value column of a shard)."""
    with open(path, "r+b") as handle:
        handle.seek(os.path.getsize(path) // 2)
        handle.write(np.random.default_rng(seed).bytes(n))


def test_random_bytes_inside_a_value_column_are_caught_by_the_first_full_read(tmp_path):
    from genreflow.store.integrity import QuarantineWarning
    from genreflow.store.featureset import read_table, stored_keys

    fset = _feature_set(tmp_path)
    shards = _write_shards(fset)
    bad = sorted(shards)[0]
    _random_bytes_in_the_middle(bad, seed=7)

    assert stored_keys(fset) == _all_keys(shards)  # documented: the key column alone cannot see it
    with pytest.warns(QuarantineWarning, match=r"CRC checksum verification failed") as caught:
        table = read_table(fset)
    assert len(caught) == 1 and Path(bad).name in str(caught[0].message)
    assert table.num_rows == 16
    assert stored_keys(fset) == _all_keys(shards) - set(shards[bad])
    assert (Path(fset.location.path) / "_quarantine" / Path(bad).name).exists()

    number = int(shards[bad][0][2:4])  # the shard number is in its keys
    assert _write_shards(fset, only={number}) == {bad: shards[bad]}  # the next extraction recomputes it
    assert stored_keys(fset) == _all_keys(shards)
    assert read_table(fset).num_rows == 24


def test_a_shard_from_another_feature_set_is_quarantined(tmp_path):
    from genreflow.store.integrity import QuarantineWarning
    from genreflow.store.featureset import read_table, stored_keys

    mine, other = _feature_set(tmp_path, n_mfcc=20), _feature_set(tmp_path, n_mfcc=13)
    shards = _write_shards(mine, n_shards=2)
    foreign = _write_shards(other, n_shards=1, seed=5)
    copied = Path(mine.location.path) / "part-00000000000000000000.parquet"
    shutil.copy(next(iter(foreign)), copied)

    with pytest.warns(QuarantineWarning, match=f"records fingerprint {other.fingerprint}, not this folder's "
                                               f"{mine.fingerprint}"):
        assert stored_keys(mine) == _all_keys(shards)
    assert read_table(mine).num_rows == 16
    assert (Path(mine.location.path) / "_quarantine" / copied.name).exists()
    assert stored_keys(other) == _all_keys(foreign)  # the original is untouched


def test_verify_store_reads_everything_and_reports(tmp_path):
    from genreflow.features import registered
    from genreflow.store.verify import verify_store

    fset = _feature_set(tmp_path)
    shards = _write_shards(fset)
    bad = sorted(shards)[2]
    _random_bytes_in_the_middle(bad, seed=3)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the report carries the news, not warnings
        report = verify_store(str(tmp_path), {n: c.kind for n, c in registered().items()})
    assert not report.ok and [issue.shard for issue in report.quarantined] == [bad]
    check = report.feature_sets[0]
    assert (check.kind, check.shards, check.rows) == ("mfcc", 3, 16)
    text = str(report)
    assert f"moved {bad} -> " in text and "1 damaged shard(s) quarantined: run `genreflow features" in text
    again = verify_store(str(tmp_path), {n: c.kind for n, c in registered().items()})
    assert again.ok and again.feature_sets[0].already_quarantined == 1 and str(again).endswith("store OK")


def test_shards_written_before_checksums_still_read(tmp_path):
    import pyarrow.parquet as pq

    from genreflow.store.featureset import read_table

    fset = _feature_set(tmp_path)
    shards = _write_shards(fset, n_shards=1)
    path = next(iter(shards))
    pq.write_table(pq.read_table(path), path, compression="zstd")  # no page checksums, as older versions wrote
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_table(fset).num_rows == 8


@pytest.mark.slow
def test_the_next_features_run_recomputes_a_damaged_shard(tmp_path):
    """End to end with the real pipeline: cut a shard short, rerun `features`: it is quarantined
    with one warning and exactly its rows are computed again."""
    import pyarrow.parquet as pq
    from pipeline_support import make_tree

    make_tree(tmp_path, per_genre=4, seconds=1.0)
    toml = tmp_path / "g.toml"
    toml.write_text("batch_size = 2\n[audio]\nduration_s = 1.0\n")
    common = ("--data-dir", str(tmp_path), "--config", str(toml), "--workers", "1")
    assert cli("index", *common).returncode == 0
    first = cli("features", *common, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    (folder,) = (tmp_path / "processed" / "store" / "mfcc").iterdir()
    shards = sorted(folder.glob("part-*.parquet"))
    assert len(shards) >= 2
    bad = shards[0]
    n_bad = pq.read_metadata(bad).num_rows
    os.truncate(bad, bad.stat().st_size // 2)

    again = cli("features", *common, timeout=300)

    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{n_bad} computed, {8 - n_bad} already cached, 0 failed" in again.stdout, again.stdout
    assert len([line for line in again.stderr.splitlines() if "moved damaged shard" in line]) == 1, again.stderr
    assert (folder / "_quarantine" / bad.name).exists() and bad.exists()  # kept aside, and rewritten whole
    assert pq.read_metadata(bad).num_rows == n_bad
