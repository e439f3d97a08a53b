"""Issue 3: preprocessing, MFCC, the content-keyed store and the Ray Data pipeline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from pipeline_support import config_for, make_tree, mfcc_feature_set

from genreflow.data.audio import load_audio
from genreflow.cli.commands import run_features_command, run_index_command
from genreflow.features.mfcc import compute_mfcc, valid_frames
from genreflow.api import feature_array, read_features
from genreflow.store.featureset import read_table
from genreflow.data.synth import tone, write_audio


def index_and_extract(config):
    run_index_command(config)
    (report,) = run_features_command(config, ["mfcc"])
    return report


def test_stored_mfcc_equals_librosa_on_the_same_waveform(tmp_path, ray_local):
    paths = make_tree(tmp_path, per_genre=2, seconds=2.0)
    config = config_for(tmp_path, duration_s=3.0)
    report = index_and_extract(config)
    assert (report.computed, report.cached, report.failed) == (4, 0, [])
    frame = read_features(str(tmp_path), "mfcc", with_index=True)
    assert len(frame) == 4
    for path in paths:
        row = frame[frame.relpath == path.relative_to(tmp_path / "raw").as_posix()].iloc[0]
        wave = load_audio(str(path), sample_rate=22050, duration_s=3.0)
        import librosa

        expected = librosa.feature.mfcc(y=wave.samples, sr=22050, n_mfcc=20, n_fft=2048, hop_length=512)
        stored = feature_array(row)
        assert stored.shape == (20, 1 + (3 * 22050) // 512) == expected.shape
        assert np.allclose(stored, expected, atol=1e-3)
        # 2 s of audio padded to 3 s: only frames centred on real audio count
        assert row.valid_frames == int(np.ceil(wave.n_valid / 512)) < stored.shape[1]
        assert row.split in ("train", "val") and row.genre == path.parent.name


def test_incremental_by_content(tmp_path, ray_local):
    paths = make_tree(tmp_path, per_genre=3, seconds=1.0)
    config = config_for(tmp_path, duration_s=1.0)
    assert index_and_extract(config).computed == 6
    fset = mfcc_feature_set(config)
    shards_before = set(fset.shard_paths())

    second = index_and_extract(config)
    assert (second.computed, second.cached) == (0, 6)

    # rename + move into a sub-folder: same bytes, nothing to compute
    moved = paths[0].parent / "deeper" / "renamed.wav"
    moved.parent.mkdir()
    shutil.move(paths[0], moved.with_suffix(paths[0].suffix))
    assert index_and_extract(config).computed == 0

    # the same audio under two names is computed once
    shutil.copy(paths[1], paths[1].parent / "copy_of_clip.flac")
    dup = index_and_extract(config)
    assert (dup.computed, dup.files, dup.unique) == (0, 7, 6)

    # editing one file computes that file only
    write_audio(paths[2], tone(330, 1.0, 22050), 22050)
    edited = index_and_extract(config)
    assert (edited.computed, edited.cached, edited.unique) == (1, 5, 6)
    assert shards_before <= set(fset.shard_paths())

    # a changed MFCC parameter writes a new fingerprint folder beside the old one
    changed = config.with_section("mfcc", n_mfcc=13)
    (other,) = run_features_command(changed, ["mfcc"])
    assert other.computed == 6 and other.fingerprint != fset.fingerprint
    assert shards_before <= set(fset.shard_paths())
    wide = read_features(str(tmp_path), "mfcc", fingerprint=other.fingerprint)
    assert set(wide.n_mfcc) == {13}
    # the old set keeps all it had: 6 current contents + the edited file's former content
    assert len(read_features(str(tmp_path), "mfcc", fingerprint=fset.fingerprint)) == 7


def test_shards_are_content_named_atomic_and_carry_provenance(tmp_path, ray_local):
    make_tree(tmp_path, per_genre=3, seconds=1.0)
    config = config_for(tmp_path, duration_s=1.0, batch_size=2)
    index_and_extract(config)
    fset = mfcc_feature_set(config)
    folder = Path(fset.location.path)
    names = sorted(os.listdir(folder))
    assert "_params.json" in names and not [n for n in names if n.startswith(".")]
    shards = [n for n in names if n.startswith("part-")]
    assert 1 < len(shards) <= 3  # batches of many rows, not one file per clip
    meta = pq.read_schema(folder / shards[0]).metadata
    assert b"genreflow.params" in meta and b"genreflow.versions" in meta
    # a key present in two shards (two concurrent runs) is read once
    shutil.copy(folder / shards[0], folder / "part-duplicate.parquet")
    keys = read_table(fset).column("content_hash").to_pylist()
    assert len(keys) == len(set(keys)) == 6


def test_pandas_only_read_back(tmp_path, ray_local):
    make_tree(tmp_path, per_genre=2, seconds=1.0)
    config = config_for(tmp_path, duration_s=1.0)
    index_and_extract(config)
    folder = mfcc_feature_set(config).location.path
    code = (
        "import sys, pandas as pd, numpy as np\n"
        "assert 'genreflow' not in sys.modules\n"
        f"df = pd.read_parquet({folder!r})\n"
        "index = pd.read_parquet(" + repr(str(tmp_path / "processed" / "index.parquet")) + ")\n"
        "df = df.merge(index, on='content_hash')\n"
        "row = df.iloc[0]\n"
        "m = np.asarray(row['mfcc'], dtype=np.float32).reshape(row['n_mfcc'], row['n_frames'])\n"
        "print(len(df), m.shape, row['genre'], float(m[0, 0]))\n"
        "assert 'genreflow' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path).stdout.split()
    assert out[0] == "4" and out[1:3] == ["(20,", "44)"]
    ours = read_features(str(tmp_path), "mfcc", with_index=True)
    row = ours[ours.relpath == ours.relpath.min()].iloc[0]
    assert np.isfinite(feature_array(row)).all()


def test_failed_files_are_reported_and_skipped(tmp_path, ray_local):
    paths = make_tree(tmp_path, per_genre=2, seconds=1.0)
    config = config_for(tmp_path, duration_s=1.0)
    run_index_command(config)
    paths[0].write_bytes(b"not audio any more")  # changed after indexing
    paths[1].unlink()  # deleted after indexing
    (report,) = run_features_command(config, ["mfcc"])
    reasons = {item["relpath"].split("/")[-1]: item["reason"] for item in report.failed}
    assert report.computed == 2 and len(reasons) == 2
    assert "changed since" in reasons[paths[0].name] and "deleted since" in reasons[paths[1].name]
    assert len(read_features(str(tmp_path), "mfcc")) == 2


def test_padding_and_trimming():
    sr = 8000
    short = load_audio_from(tone(440, 0.5, sr), sr, duration_s=2.0)
    assert short.samples.shape == (2 * 22050,) and short.n_valid == 22050 // 2
    assert not short.samples[short.n_valid:].any()
    long = load_audio_from(tone(440, 5.0, sr), sr, duration_s=2.0)
    assert long.samples.shape == (2 * 22050,) and long.n_valid == 2 * 22050
    mfcc = compute_mfcc(y=short.samples, sr=22050, config=config_for(Path("."), 2.0).mfcc)
    assert valid_frames(short.n_valid, hop_length=512, n_frames=mfcc.shape[1]) == 22
    assert np.isfinite(mfcc).all()


def load_audio_from(samples, sr, duration_s, _dir=[]):
    import tempfile

    path = Path(tempfile.mkdtemp()) / "x.wav"
    write_audio(path, samples, sr)
    return load_audio(str(path), sample_rate=22050, duration_s=duration_s)


def test_one_hour_sparse_file_decodes_in_bounded_memory(tmp_path):
    """A one-hour 44.1 kHz stereo WAV (635 MB, sparse on disk): only 30 s are ever decoded."""
    import soundfile as sf

    path = tmp_path / "hour.wav"
    with sf.SoundFile(path, "w", samplerate=44100, channels=2, subtype="PCM_16") as handle:
        handle.write(np.zeros((44100, 2), dtype=np.int16))
    frames = 3600 * 44100
    data_bytes = frames * 4
    with open(path, "r+b") as handle:
        header = bytearray(handle.read(44))
        header[4:8] = (36 + data_bytes).to_bytes(4, "little")
        header[40:44] = data_bytes.to_bytes(4, "little")
        handle.seek(0)
        handle.write(header)
        handle.truncate(44 + data_bytes)
    assert sf.info(str(path)).duration == pytest.approx(3600)
    tracemalloc.start()
    wave = load_audio(str(path), sample_rate=22050, duration_s=30.0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert wave.samples.shape == (30 * 22050,)
    assert peak < 40 * 2**20, f"decoding 30 s of a one-hour file peaked at {peak / 2**20:.0f} MiB"
