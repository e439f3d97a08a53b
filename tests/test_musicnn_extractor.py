"""The musicnn extractor (genreflow.features.musicnn) through the registry, config and pipeline.

Audio is made here (chords, noise, clicks); the network itself is proven equal to the original
graph in test_musicnn_net.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genreflow.config import build_extractor, load_config
from genreflow.data.synth import chord, clicks, noise, write_audio
from genreflow.features import musicnn_net as net
from genreflow.features.musicnn import MusicnnConfig
from genreflow.errors import ConfigError

from test_musicnn_net import needs_musicnn


def _clip(seconds: float, seed: int = 0) -> np.ndarray:
    sr = net.SAMPLE_RATE
    return (chord([196.0 + 20 * seed, 247.0, 294.0], seconds, sr) + noise(seconds, sr, 0.05, seed=seed)
            + clicks(100 + 10 * seed, seconds, sr, amp=0.3)).astype(np.float32)


def _copy_checkpoint(dest: Path) -> Path:
    prefix = net.find_checkpoint("MSD_musicnn")
    dest.mkdir(parents=True)
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copy(prefix + suffix, dest / suffix)
    return dest


def test_config_section_refuses_unknown_layers_and_models():
    assert MusicnnConfig().layer == "max_pool+mean_pool"
    with pytest.raises(ConfigError, match=r"musicnn\.layer='max_pool\+fc9' is invalid"):
        MusicnnConfig(layer="max_pool+fc9")
    with pytest.raises(ConfigError, match=r"musicnn\.model='MSD_vgg' is invalid"):
        MusicnnConfig(model="MSD_vgg")
    with pytest.raises(ConfigError, match=r"musicnn\.hop_frames=0"):
        MusicnnConfig(hop_frames=0)


@needs_musicnn
def test_fingerprint_names_the_weights_not_their_folder(tmp_path, monkeypatch):
    base = build_extractor("musicnn", load_config(None, {"musicnn.precision": "fp32"}))
    copy = _copy_checkpoint(tmp_path / "elsewhere")
    moved = build_extractor("musicnn", load_config(None, {"musicnn.precision": "fp32", "musicnn.model_dir": str(copy)}))
    assert moved.fingerprint() == base.fingerprint()
    assert base.params()["weights"].startswith("sha256:")
    data = copy / ".data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[100] ^= 0xFF
    data.write_bytes(bytes(raw))
    os.utime(data, ns=(1, 1))  # a new stamp, as a real rewrite would give
    changed = build_extractor("musicnn", load_config(None, {"musicnn.precision": "fp32",
                                                            "musicnn.model_dir": str(copy)}))
    assert changed.fingerprint() != base.fingerprint()
    for key, value in (("layer", "taggram"), ("model", "MTT_musicnn"), ("hop_frames", 93)):
        other = build_extractor("musicnn", load_config(None, {"musicnn.precision": "fp32", f"musicnn.{key}": value}))
        assert other.fingerprint() != base.fingerprint(), key
    monkeypatch.setenv("GENREFLOW_MUSICNN_MODEL", str(tmp_path / "elsewhere"))
    assert load_config(None, {}).section("musicnn").model_dir == str(tmp_path / "elsewhere")


def test_missing_weights_are_one_line_with_the_install_command(tmp_path):
    data = tmp_path / "data"
    write_audio(data / "raw" / "a" / "x.wav", _clip(1.0), net.SAMPLE_RATE)
    write_audio(data / "raw" / "b" / "y.wav", _clip(1.0, 1), net.SAMPLE_RATE)
    env = {**os.environ, "GENREFLOW_MUSICNN_MODEL": str(tmp_path / "empty")}
    (tmp_path / "empty").mkdir()
    subprocess.run([sys.executable, "-m", "genreflow", "index", "--data-dir", str(data)], capture_output=True,
                   check=True, env=env, timeout=300)
    done = subprocess.run([sys.executable, "-m", "genreflow", "features", "--features", "musicnn",
                           "--data-dir", str(data)], capture_output=True, text=True, env=env, timeout=300)
    err = done.stderr.strip().splitlines()
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr and len([line for line in err if line.startswith("error")]) == 1
    assert "pip install --no-deps musicnn==0.1.0" in done.stderr


@pytest.mark.slow
@needs_musicnn
def test_rows_are_patches_of_the_real_audio_and_batching_changes_nothing():
    extractor = build_extractor("musicnn", load_config(None, {"musicnn.precision": "fp32",
                                                              "audio.duration_s": 12.0})).resolved()
    model = extractor.load(2)
    sr = net.SAMPLE_RATE
    clips = {10.0: _clip(10.0), 2.0: _clip(2.0, 1), 11.9: noise(11.9, sr, 0.3, seed=2)}
    padded = [np.pad(c, (0, 12 * sr - len(c))) for c in clips.values()]  # as the decoder pads to duration_s
    together = extractor.compute_many(model, padded, [len(c) for c in clips.values()])
    for (seconds, wave), (array, valid) in zip(clips.items(), together):
        frames = net.frames_for(len(wave))
        expected = max(1, len(net.patch_starts(frames)))
        assert array.shape == (expected, 753 + 753) and valid == expected, seconds
        alone, _ = extractor.compute(model, np.pad(wave, (0, 12 * sr - len(wave))), len(wave))
        np.testing.assert_allclose(alone, array, rtol=1e-4, atol=1e-4 * np.abs(array).max())
        direct = model(net.make_patches(net.log_mel(wave), frames))
        np.testing.assert_allclose(array, np.concatenate([direct["max_pool"], direct["mean_pool"]], axis=1),
                                   rtol=1e-4, atol=1e-4 * np.abs(array).max())
    assert together[0][0].shape[0] == 3 and together[1][0].shape[0] == 1  # 10 s: 3 full patches; 2 s: tiled


@pytest.mark.slow
@needs_musicnn
def test_pipeline_stores_one_row_per_patch_of_the_real_audio(tmp_path, ray_local):
    from genreflow.api import read_features
    from genreflow.cli.commands import run_features_command, run_index_command

    data = tmp_path / "data"
    for i, seconds in enumerate((4.0, 7.0, 2.0, 9.0)):
        write_audio(data / "raw" / ("a" if i % 2 else "b") / f"c{i}.flac", _clip(seconds, i), net.SAMPLE_RATE)
    config = load_config(None, {"data_dir": str(data), "workers": 2, "audio.duration_s": 10.0,
                                "musicnn.precision": "fp32"})
    run_index_command(config)
    (report,) = run_features_command(config, ["musicnn"])
    assert (report.computed, report.failed) == (4, [])
    frame = read_features(str(data), "musicnn", with_index=True)
    rows = {r.split("/")[-1]: n for r, n in zip(frame.relpath, frame.n_patches)}
    assert rows == {"c0.flac": 1, "c1.flac": 2, "c2.flac": 1, "c3.flac": 3}
    assert set(frame.musicnn_dim) == {1506} and (frame.valid_frames == frame.n_patches).all()
