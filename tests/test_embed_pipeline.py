"""Issue 4: VGGish embeddings through Ray actors into the store (small stand-in model)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from pipeline_support import config_for, feature_set_for

from genreflow.data.audio import load_audio
from genreflow.cli.commands import run_features_command, run_index_command
from genreflow.api import feature_array, read_features
from genreflow.data.synth import chord, clicks, noise, write_audio
from genreflow.testing import build_vggish_standin


def write_clips(root, seconds_by_name):
    sr = 44100
    for name, seconds in seconds_by_name.items():
        genre = "a" if len(name) % 2 else "b"
        signal = chord([220, 277, 330], seconds, sr) + noise(seconds, sr, 0.05, seed=len(name)) + \
            clicks(120, seconds, sr, amp=0.3)
        write_audio(root / "raw" / genre / name, np.stack([signal, 0.5 * signal], axis=1), sr)


@pytest.mark.slow
def test_embeddings_match_direct_model_call_and_row_counts(tmp_path, standin_model, ray_local):
    write_clips(tmp_path, {"long.wav": 31.0, "mid.flac": 12.0, "short.ogg": 0.5, "tiny.mp3": 0.3})
    for duration, rows in ((30.0, 31), (10.0, 10)):
        # compared with a direct fp32 call below, so the stored rows are pinned to fp32 (auto is bf16 on
        # CPUs with bf16 flags)
        config = config_for(tmp_path, duration_s=duration, **{"vggish.handle": standin_model,
                                                              "vggish.precision": "fp32"})
        run_index_command(config)
        (report,) = run_features_command(config, ["vggish"])
        assert (report.computed, report.failed) == (4, [])
        frame = read_features(str(tmp_path), "vggish", fingerprint=report.fingerprint, with_index=True)
        assert set(frame.n_frames) == {rows} and set(frame.embedding_dim) == {128}
        valid = {rel.split("/")[-1]: v for rel, v in zip(frame.relpath, frame.valid_frames)}
        assert valid["short.ogg"] == valid["tiny.mp3"] == 1
        assert valid["long.wav"] == rows
        assert valid["mid.flac"] == min(rows, 13)

    import tensorflow_hub as hub

    model = hub.load(standin_model)
    row = frame[frame.relpath.str.endswith("mid.flac")].iloc[0]
    wave = load_audio(str(tmp_path / "raw" / row.relpath), sample_rate=16000, duration_s=10.0)
    direct = model(np.clip(wave.samples, -1, 1)).numpy()
    assert np.allclose(feature_array(row), direct, atol=1e-5)


@pytest.mark.slow
def test_embed_is_incremental_and_keyed_by_model(tmp_path, standin_model, ray_local, tmp_path_factory):
    write_clips(tmp_path, {"x.wav": 2.0, "yy.wav": 2.0})
    config = config_for(tmp_path, duration_s=2.0, **{"vggish.handle": standin_model})
    run_index_command(config)
    (first,) = run_features_command(config, ["vggish"])
    (second,) = run_features_command(config, ["vggish"])
    assert (first.computed, second.computed, second.cached) == (2, 0, 2)
    other_model = str(build_vggish_standin(tmp_path_factory.mktemp("other") / "model", seed=4))
    other = config.with_section("vggish", handle=other_model)
    assert feature_set_for(other, "vggish").fingerprint != feature_set_for(config, "vggish").fingerprint
    (third,) = run_features_command(other, ["vggish"])
    assert third.computed == 2
    assert len(read_features(str(tmp_path), "vggish", fingerprint=first.fingerprint)) == 2


def test_embed_cli_bad_handle_is_one_clear_line(tmp_path):
    write_clips(tmp_path, {"x.wav": 1.0})
    env = {**__import__("os").environ, "TFHUB_CACHE_DIR": str(tmp_path / "cache")}
    index = subprocess.run([sys.executable, "-m", "genreflow", "index", "--data-dir", str(tmp_path)],
                           capture_output=True, text=True, env=env)
    assert index.returncode == 0, index.stderr
    missing = tmp_path / "no-such-model"
    result = subprocess.run([sys.executable, "-m", "genreflow", "embed", "--data-dir", str(tmp_path),
                             "--vggish-model", str(missing), "--workers", "1"], capture_output=True, text=True, env=env)
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    assert str(missing) in result.stderr and "--vggish-model" in result.stderr
