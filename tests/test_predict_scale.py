"""Issue 13: constant-memory training, prediction at scale (streamed output, store reuse, Ray)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from pipeline_support import config_for, extract_in_process, make_tree, trained_mfcc_model

from genreflow.cli import main
from genreflow.cli.commands import run_index_command
from genreflow.data.synth import SYNTH_GENRES, genre_clip, write_audio


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An MFCC model over 2 genres x 6 clips of 2 s (store filled without Ray)."""
    root = tmp_path_factory.mktemp("scale")
    return root, trained_mfcc_model(root, per_genre=6, seconds=2.0)


def new_clips(folder: Path, n: int, seconds: float = 2.0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_audio(folder / f"new_{i:03d}.wav", genre_clip(SYNTH_GENRES[i % 2], seconds, 22050, seed=500 + i),
                        22050) for i in range(n)]


def test_training_on_many_shards_equals_training_on_one(tmp_path):
    from genreflow.stages.train import fit, load_dataset

    import shutil

    make_tree(tmp_path / "source", per_genre=5, seconds=1.0, genres=SYNTH_GENRES[:3])
    models = []
    for rows_per_shard in (1000, 2):
        root = tmp_path / f"r{rows_per_shard}"
        shutil.copytree(tmp_path / "source", root)  # the same bytes (Ogg serial numbers are random)
        config = config_for(root, 1.0, **{"train.features": "mfcc"})
        run_index_command(config)
        extract_in_process(config, rows_per_shard=rows_per_shard)
        shards = list((root / "processed" / "store" / "mfcc").glob("*/part-*.parquet"))
        assert len(shards) == (1 if rows_per_shard == 1000 else 8)
        data = load_dataset(config)
        assert data.X.dtype == np.float32
        models.append((data, fit(data, config)[0]))
    (a, ma), (b, mb) = models
    assert a.relpaths == b.relpaths and np.array_equal(a.X, b.X) and np.array_equal(a.is_val, b.is_val)
    assert np.array_equal(ma[-1].coef_, mb[-1].coef_)


def test_predict_streams_one_row_per_input_with_errors_and_reuses_the_store(trained, tmp_path):
    root, toml = trained
    stored = sorted((root / "raw" / SYNTH_GENRES[0]).glob("clip_*"))[:3]  # indexed: features in the store
    fresh = new_clips(tmp_path / "new", 2)
    garbage = tmp_path / "new" / "garbage.wav"
    garbage.write_bytes(b"this is not audio" * 100)
    missing = tmp_path / "new" / "missing.flac"
    out = tmp_path / "predictions.csv"
    result = CliRunner().invoke(main, ["predict", *map(str, stored + fresh + [garbage, missing]), "--data-dir",
                                       str(root), "--config", str(toml), "--out", str(out)])
    assert result.exit_code == 1  # some inputs could not be read
    assert "7 files, 2 computed, 3 from the store, 2 failed" in result.output
    frame = pd.read_csv(out, keep_default_na=False)
    assert len(frame) == 7 and list(frame.columns[:3]) == ["path", "genre", "probability"]
    assert {f"p_{g}" for g in SYNTH_GENRES[:2]} <= set(frame.columns)
    errors = dict(zip(frame.path, frame.error))
    assert "not a decodable audio file" in errors[str(garbage)] and errors[str(missing)] == "no such file"
    assert all(frame[frame.path == str(p)].cached.iloc[0] in (True, "True") for p in stored)
    ok = frame[frame.error == ""]
    assert len(ok) == 5 and np.allclose(ok[[f"p_{g}" for g in SYNTH_GENRES[:2]]].astype(float).sum(axis=1), 1.0, atol=1e-5)


def test_predict_with_a_store_reads_each_file_once(trained, tmp_path, monkeypatch):
    """Issue 23: one read per file. The reader hashes it; a stored file is predicted from the
    store undecoded, any other is decoded from the bytes just hashed (no second open)."""
    import builtins
    import shutil

    from genreflow.data import audio
    from genreflow.model.bundle import load_model_bundle
    from genreflow.stages.predict import model_extractors, predict_stream

    root, _ = trained
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    indexed = sorted((root / "raw" / SYNTH_GENRES[0]).glob("clip_*"))[:3]  # features in the store
    stored = [Path(shutil.copy(p, inbox / f"stored_{i}{p.suffix}")) for i, p in enumerate(indexed)]
    fresh = new_clips(inbox, 2)
    files = [str(p) for p in [*stored, *fresh]]
    opened: dict[str, int] = {}
    bytes_read: dict[str, int] = {}
    real_open = builtins.open

    class Counted:
        def __init__(self, handle, name):
            self._handle, self._name = handle, name

        def read(self, n=-1):
            data = self._handle.read(n)
            bytes_read[self._name] = bytes_read.get(self._name, 0) + len(data)
            return data

        def __getattr__(self, attr):
            return getattr(self._handle, attr)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self._handle.__exit__(*exc)

    def counting_open(file, *args, **kwargs):
        handle = real_open(file, *args, **kwargs)
        if str(file) in files:
            opened[str(file)] = opened.get(str(file), 0) + 1
            return Counted(handle, str(file))
        return handle

    decodes = []
    real_decode = audio.decode_mono
    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(audio, "decode_mono", lambda *a, **k: decodes.append(1) or real_decode(*a, **k))
    import genreflow.data.decode as decode

    monkeypatch.setattr(decode, "decode_mono", audio.decode_mono)
    bundle = load_model_bundle(str(root / "processed" / "classifier_model.zip"))
    rows = []
    summary = predict_stream(files, bundle, model_extractors(bundle), rows.extend, data_dir=str(root))
    assert (summary.cached, summary.computed, summary.failed) == (3, 2, 0)
    assert {r.path for r in rows if r.cached} == set(map(str, stored)) and all(not r.error for r in rows)
    assert opened == {f: 1 for f in files}  # one open each
    assert bytes_read == {f: os.path.getsize(f) for f in files}  # every byte read once, none twice
    assert len(decodes) == 2  # only the two files the store lacks were decoded


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_killed_predict_leaves_a_readable_prefix(trained, tmp_path, suffix):
    root, toml = trained
    folder = tmp_path / "many"
    new_clips(folder, 40, seconds=2.0)
    out = tmp_path / f"out{suffix}"
    proc = subprocess.Popen([sys.executable, "-m", "genreflow", "predict", str(folder), "--model",
                             str(root / "processed" / "classifier_model.zip"), "--workers", "1", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_text().count("\n") >= 4:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    frame = pd.read_csv(out) if suffix == ".csv" else pd.read_json(out, lines=True)
    assert 3 <= len(frame) < 40 and frame.path.str.endswith(".wav").all() and frame.genre.notna().all()


@pytest.mark.slow
def test_predict_through_ray_and_the_local_pass_equals_the_in_process_path(trained, tmp_path, ray_local, monkeypatch):
    from genreflow.stages import predict as predict

    import shutil

    monkeypatch.setitem(predict.IN_PROCESS_MAX, "cpu", 4)  # 15 files take the pass (256 by default)
    root, toml = trained
    folder = tmp_path / "batch"
    new_clips(folder, 12)
    for i, clip in enumerate(sorted((root / "raw" / SYNTH_GENRES[1]).glob("clip_*"))[:3]):  # in the store
        shutil.copy(clip, folder / f"stored_{i}{clip.suffix}")
    runner = CliRunner()
    outputs = {}
    routes = {"in-process": ["--workers", "1"], "ray": ["--workers", "2", "--executor", "ray"],
              "local pass": ["--workers", "2", "--executor", "local"]}
    for route, flags in routes.items():
        result = runner.invoke(main, ["predict", str(folder), "--data-dir", str(root), "--config", str(toml),
                                      *flags, "--format", "json"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert f"({route})" in result.output
        assert "15 files, 12 computed, 3 from the store, 0 failed" in result.output  # the workers hashed them
        outputs[route] = {r["path"]: r for r in json.loads(result.stdout)}
    reference = outputs["in-process"]
    assert len(reference) == 15
    for route in ("ray", "local pass"):
        assert outputs[route].keys() == reference.keys()
        for path, row in reference.items():
            other = outputs[route][path]
            assert row["genre"] == other["genre"] and row["cached"] == other["cached"] == ("stored_" in path)
            for genre in SYNTH_GENRES[:2]:
                assert row[f"p_{genre}"] == pytest.approx(other[f"p_{genre}"], abs=1e-5)


@pytest.mark.parametrize("segment_s", [None, 0.5])
def test_a_clip_gets_bit_identical_vectors_from_training_and_both_predict_paths(trained, segment_s):
    """Training (store -> clip_rows), in-process predict (combine_kinds) and the Ray predict
    worker (Results.finish) pool the same frames with one implementation: the same bits.
    (The frames themselves come from the same extractor code; BLAS threading in another process
    may change their last bit, which is why the routes are compared on the same frames.)"""
    from genreflow.model.bundle import load_model_bundle
    from genreflow.model.pooling import KindFrames, clip_frames, clip_rows, combine_kinds
    from genreflow.stages.workers import Results
    from genreflow.stages.predict import model_extractors
    from genreflow.store.featureset import iter_batches

    root, _ = trained
    (extractor,) = model_extractors(load_model_bundle(str(root / "processed" / "classifier_model.zip")))
    fset = extractor.feature_set(str(root))
    training = clip_rows([(fset, extractor.frame_seconds)], None, segment_s)
    checked = 0
    for batch in iter_batches(fset):
        keys = batch.column("content_hash").to_pylist()
        worker = Results(extractor.name, len(keys), None)
        stored = []
        for i, (key, (frames, valid)) in enumerate(zip(keys, clip_frames(fset.kind, batch))):
            stored.append((key, frames, valid))
            worker.add(i, key, np.ascontiguousarray(frames.T if fset.kind.time_axis == 1 else frames), valid)
        out: dict = {}
        worker.finish(fset.kind, out)
        for i, (key, frames, valid) in enumerate(stored):
            local = combine_kinds([KindFrames(frames, valid, extractor.frame_seconds)], segment_s)
            np.testing.assert_array_equal(training[key], local)
            if segment_s is None:  # the Ray pass pools whole clips (segment models predict in-process)
                np.testing.assert_array_equal(out[f"pooled:{extractor.name}"][i], local[0])
            checked += 1
    assert checked == 12
