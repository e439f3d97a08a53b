"""Issue 11: extractors as plug-ins, one read per file, models that carry their own recipe."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from pipeline_support import config_for, feature_set_for, make_tree, write_toml

from genreflow import features
from genreflow.errors import ConfigError
from genreflow.config import build_extractor
from genreflow.data.audio import load_audio
from genreflow.cli import main
from genreflow.features import check
from genreflow.features.base import Extractor
from genreflow.features.spectral import SpectralConfig, compute_spectral
from genreflow.core.fingerprint import fingerprint
from genreflow.api import read_features
from genreflow.store.featureset import Kind, read_table
from genreflow.data.synth import SYNTH_GENRES, chord, noise, write_audio


@dataclass(frozen=True)
class LoudnessConfig:
    """A test-only kind: frame RMS in dB and its frame index, (frames, 2) time-major."""

    frame: int = 1024

    def __post_init__(self) -> None:
        check(self.frame >= 64, "loudness.frame", self.frame, "an integer >= 64")


class LoudnessExtractor(Extractor):
    name = "loudness"
    version = 1
    config_class = LoudnessConfig
    kind = Kind("loudness", "loudness", ("n_frames", "n_values"), time_axis=0)

    @property
    def sample_rate(self) -> int:
        return 8000  # a rate no other kind uses: the pipeline must resample for it

    @property
    def frame_seconds(self) -> float:
        return self.config.frame / self.sample_rate

    def compute(self, state, waveform, n_valid):
        n = len(waveform) // self.config.frame
        frames = waveform[:n * self.config.frame].reshape(n, self.config.frame)
        db = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-10)
        return np.stack([db, np.arange(n)], axis=1).astype(np.float32), max(1, min(n, n_valid // self.config.frame))


@pytest.fixture
def loudness():
    # Ray workers cannot import this test module: ship the class by value, as a plug-in
    # installed on every node would be imported by name
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    features.register(LoudnessExtractor)
    yield LoudnessExtractor
    features.unregister("loudness")


def test_registry_drives_choices_and_rejects_unknown_kinds():
    assert {"mfcc", "spectral", "vggish"} <= set(features.names())
    assert features.parse_kinds("vggish+mfcc") == ["mfcc", "vggish"]
    with pytest.raises(ConfigError, match="nope"):
        features.parse_kinds("mfcc+nope")
    with pytest.raises(ConfigError, match=r"train.features.*Did you mean 'vggish'\?"):
        config_for(Path("."), **{"train.features": "mfcc+vgish"})


def test_mfcc_fingerprint_and_layout_are_unchanged():
    """The MFCC fingerprint is the one earlier versions wrote (same name, version, params)."""
    config = config_for(Path("."), 30.0)
    legacy = fingerprint("mfcc", 1, {"sample_rate": 22050, "duration_s": 30.0, "n_mfcc": 20, "n_fft": 2048,
                                     "hop_length": 512, "n_mels": 128, "fmin": 0.0, "fmax": 0.0})
    assert feature_set_for(config, "mfcc").fingerprint == legacy == "674e7200e66a2ab7"
    kind = features.registered()["mfcc"].kind
    assert (kind.value_column, kind.shape_columns, kind.time_axis) == ("mfcc", ("n_mfcc", "n_frames"), 1)


def test_spectral_equals_a_direct_librosa_computation():
    import librosa

    sr = 22050
    y = (chord([196.0, 247.0, 294.0], 2.0, sr) + noise(2.0, sr, amp=0.05, seed=1)).astype(np.float32)
    ours = compute_spectral(y=y, sr=sr, config=SpectralConfig())
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20, n_fft=2048, hop_length=512, n_mels=128)
    direct = np.concatenate([
        librosa.feature.delta(mfcc),
        librosa.feature.chroma_stft(y=y, sr=sr, n_fft=2048, hop_length=512, tuning=0.0),
        librosa.feature.spectral_contrast(y=y, sr=sr, n_fft=2048, hop_length=512),
        librosa.feature.spectral_centroid(y=y, sr=sr, n_fft=2048, hop_length=512),
        librosa.feature.spectral_bandwidth(y=y, sr=sr, n_fft=2048, hop_length=512),
        librosa.feature.spectral_rolloff(y=y, sr=sr, n_fft=2048, hop_length=512),
        librosa.feature.zero_crossing_rate(y, frame_length=2048, hop_length=512),
        librosa.feature.rms(y=y, frame_length=2048, hop_length=512),
    ])
    assert ours.shape == direct.shape == (len(SpectralConfig().rows()), 1 + len(y) // 512)
    assert np.allclose(ours, direct, rtol=1e-4, atol=1e-4)


def test_one_read_per_file_feeds_every_kind(tmp_path, monkeypatch, loudness):
    """decode_batch opens each file once, however many kinds it computes, and what it stores
    equals each kind computed on its own from a fresh decode at the kind's rate."""
    from genreflow.data import decode as readonce
    from genreflow.cli.commands import run_index_command
    from genreflow.stages.extract import plan
    from genreflow.stages.workers import decode_batch

    make_tree(tmp_path, per_genre=2, seconds=2.0)
    config = config_for(tmp_path, 2.0)
    run_index_command(config)
    from genreflow.data.index import read_index

    files = read_index(str(tmp_path))["files"]
    extractors = [build_extractor(k, config) for k in ("loudness", "mfcc", "spectral")]
    work = plan(config, extractors, files)
    opened = []
    real = readonce.HashingReader.__init__
    monkeypatch.setattr(readonce.HashingReader, "__init__", lambda self, *a: (opened.append(1), real(self, *a))[1])
    batch = {k: np.array([row[k] for row in work.todo], dtype=object) for k in ("content_hash", "relpath", "kinds")}
    batch["kinds"] = np.array([k + ",vggish" for k in batch["kinds"]], dtype=object)  # a model kind waits too
    out = decode_batch(batch, data_dir=str(tmp_path), duration_s=2.0, cpu=extractors,
                       cpu_sets=work.fsets, model_rates=[16000])
    assert list(out["model_status"]) == ["todo"] * 4
    assert len(opened) == len(files) == 4
    assert all(set(out[f"status:{e.name}"]) == {"ok"} for e in extractors)
    for i, rel in enumerate(batch["relpath"]):
        assert np.allclose(out["samples:16000"][i], load_audio(str(tmp_path / "raw" / rel), sample_rate=16000,
                                                               duration_s=2.0).samples, atol=1e-6)
    loud = read_features(str(tmp_path), "loudness", with_index=True)
    for row in loud.itertuples():
        wave = load_audio(str(tmp_path / "raw" / row.relpath), sample_rate=8000, duration_s=2.0)
        expected, valid = LoudnessExtractor(LoudnessConfig(), config.audio).compute(None, wave.samples, wave.n_valid)
        assert np.allclose(np.asarray(row.loudness).reshape(row.n_frames, row.n_values), expected, atol=1e-4)
        assert row.valid_frames == valid
    # stored for every kind now: nothing is pending, so a rerun would decode nothing
    assert plan(config, extractors, files).todo == []
    # a new kind is pending alone: only it is listed for decoding
    more = extractors + [build_extractor("loudness", config.with_section("loudness", frame=2048))]
    assert {row["kinds"] for row in plan(config, more[1:], files).todo} == {"loudness"}


def _sparse_wav(path: Path, seconds: float, sr: int = 22050, megabytes: int = 80) -> None:
    """A real WAV whose data chunk is declared and sized for ``megabytes`` but mostly sparse zeros."""
    import soundfile as sf

    samples = (chord([220.0, 330.0], seconds, sr) * 0.5).astype(np.float32)
    sf.write(path, samples, sr, subtype="PCM_16")
    assert path.read_bytes()[36:40] == b"data"  # the plain 44-byte header
    size = megabytes << 20
    with open(path, "r+b") as handle:
        handle.seek(4)
        handle.write((36 + size).to_bytes(4, "little"))
        handle.seek(40)
        handle.write(size.to_bytes(4, "little"))
        handle.truncate(44 + size)  # sparse tail of zeros


@pytest.mark.parametrize("size", ["small", "sparse-80MiB"])
def test_file_rewritten_during_extraction_is_never_stored_under_its_old_key(tmp_path, monkeypatch, size):
    """The file is overwritten after the decoder has read its first bytes: either the rest of
    what is hashed no longer matches (refused), or what was decoded is the old audio."""
    from genreflow.data import decode as readonce
    from genreflow.cli.commands import run_index_command
    from genreflow.data.index import read_index
    from genreflow.stages.extract import plan
    from genreflow.stages.workers import decode_batch

    make_tree(tmp_path, per_genre=2, seconds=1.0)
    victim = tmp_path / "raw" / SYNTH_GENRES[0] / "victim.wav"
    if size == "small":
        write_audio(victim, chord([220.0, 330.0], 2.0, 22050), 22050)
    else:
        _sparse_wav(victim, 2.0)
        assert victim.stat().st_size > 64 << 20 and victim.stat().st_blocks * 512 < 16 << 20
    original = victim.read_bytes() if size == "small" else b""
    config = config_for(tmp_path, 2.0)
    run_index_command(config)
    files = read_index(str(tmp_path))["files"]
    extractors = [build_extractor("mfcc", config)]
    work = plan(config, extractors, files)
    real_read, done = readonce.HashingReader.read, []

    def read_then_rewrite(self, n=-1):
        data = real_read(self, n)
        if not done and self.tell() > 4096:  # the decoder is past the header: rewrite the whole file
            done.append(1)
            with open(victim, "r+b") as handle:
                handle.seek(44)
                handle.write(np.full(1 << 16, 0.9, np.float32).tobytes())
                handle.seek(-4096, os.SEEK_END)
                handle.write(b"\x01" * 4096)
        return data

    monkeypatch.setattr(readonce.HashingReader, "read", read_then_rewrite)
    batch = {k: np.array([r[k] for r in work.todo], dtype=object) for k in ("content_hash", "relpath", "kinds")}
    out = decode_batch(batch, data_dir=str(tmp_path), duration_s=2.0, cpu=extractors, cpu_sets=work.fsets,
                       model_rates=[])
    assert done, "the rewrite was not injected"
    status = dict(zip(out["relpath"], out["status:mfcc"]))
    rel = str(victim.relative_to(tmp_path / "raw"))
    old_key = next(f["content_hash"] for f in files if f["relpath"] == rel)
    table = read_table(work.fsets["mfcc"])
    stored = dict(zip(table.column("content_hash").to_pylist(), table.column("mfcc").to_pylist()))
    if size != "small":  # the tail was hashed after the rewrite: refused
        assert "changed since `genreflow index`" in status[rel] and old_key not in stored
    if old_key in stored:  # small files are hashed whole by the first read: the old bytes were decoded
        assert status[rel] == "ok"
        wave = load_audio(io.BytesIO(original), sample_rate=22050, duration_s=2.0)
        expected = extractors[0].compute(None, wave.samples, wave.n_valid)[0]
        assert np.allclose(np.asarray(stored[old_key]).reshape(expected.shape), expected, atol=1e-4)
    else:
        assert "changed since `genreflow index`" in status[rel]
    assert len(stored) >= len(files) - 1


@pytest.mark.slow
def test_a_registered_kind_works_everywhere_without_edits(tmp_path, ray_local, loudness):
    """CLI (features, run/train, status, predict) with a kind registered only by this test."""
    make_tree(tmp_path, per_genre=4, seconds=2.0, genres=SYNTH_GENRES[:2])
    toml = write_toml(tmp_path / "g.toml", duration_s=2.0, loudness={"frame": 512})
    runner = CliRunner()
    args = ["--data-dir", str(tmp_path), "--config", str(toml), "--workers", "2"]
    assert runner.invoke(main, ["index", *args]).exit_code == 0
    result = runner.invoke(main, ["features", "--features", "loudness+mfcc", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "loudness [" in result.output and "8 computed" in result.output
    result = runner.invoke(main, ["train", "--features", "loudness", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    status = runner.invoke(main, ["status", *args])
    assert status.exit_code == 0 and "loudness" in status.output and "8/8" in status.output
    clip = tmp_path / "raw" / SYNTH_GENRES[0] / "clip_0.wav"
    result = runner.invoke(main, ["predict", str(clip), "--format", "json", *args])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["genre"] in SYNTH_GENRES[:2] and not row["error"]
    features.unregister("loudness")
    result = runner.invoke(main, ["predict", str(clip), *args])
    assert result.exit_code == 2 and "loudness" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_a_model_predicts_from_another_folder_without_its_config(tmp_path, ray_local):
    """Trained with duration 2 s and n_mfcc 13 in a genreflow.toml; predicted from a folder
    that has no config, in a fresh process: the model's recipe decides."""
    data = tmp_path / "data"
    make_tree(data, per_genre=4, seconds=2.0, genres=SYNTH_GENRES[:3])
    toml = write_toml(tmp_path / "genreflow.toml", duration_s=2.0, mfcc={"n_mfcc": 13})
    result = CliRunner().invoke(main, ["run", "--data-dir", str(data), "--config", str(toml), "--features", "mfcc",
                                       "--workers", "2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "genreflow.toml").write_text("[audio]\nduration_s = 7.0\n[mfcc]\nn_mfcc = 40\n")  # must not matter
    model = data / "processed" / "classifier_model.zip"
    clips = sorted(str(p) for p in (data / "raw").rglob("clip_1.*"))
    done = subprocess.run([sys.executable, "-m", "genreflow", "predict", *clips, "--model", str(model),
                           "--format", "json"], cwd=elsewhere, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [Path(r["path"]).parent.name for r in rows] == [r["genre"] for r in rows]
