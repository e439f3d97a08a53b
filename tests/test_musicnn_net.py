"""musicnn in TensorFlow 2 (genreflow.features.musicnn_net) against the original musicnn 0.1.0.

The proof of equivalence builds the ORIGINAL TF1 graph with the installed package's own
model code (musicnn.models.define_model, restored with a tf.compat.v1 Saver, as its extractor
does) in a subprocess, because importing musicnn.extractor turns eager mode off for the whole
process; the subprocess and the module see the same log-mel patches. The log-mel itself is
checked against the original `batch_data` run on a wav file, with the NumPy 2 float16 overflow
fixed as the only change. All audio is made here with numpy (chords, noise, clicks) at 16 kHz.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genreflow.errors import ConfigError, ModelLoadError
from genreflow.features import musicnn_net as mn

SR = mn.SAMPLE_RATE
HAVE_MUSICNN = importlib.util.find_spec("musicnn") is not None
# CI installs the weights (.ci/run), so there a missing install fails instead of skipping silently
needs_musicnn = pytest.mark.skipif(not HAVE_MUSICNN and not os.environ.get("CI"),
                                   reason=f"musicnn weights not installed ({mn.INSTALL_HINT})")


# ---------------------------------------------------------------- audio made with numpy
def _t(seconds: float) -> np.ndarray:
    return np.arange(int(seconds * SR)) / SR


def chord(seconds: float, freqs: tuple[float, ...] = (220.0, 277.18, 329.63), amp: float = 0.6) -> np.ndarray:
    t = _t(seconds)
    y = sum(np.sin(2 * np.pi * f * t) * (0.9 ** k) for k, f in enumerate(freqs))
    return (amp * y / len(freqs)).astype(np.float32)


def noise(seconds: float, seed: int = 0, amp: float = 0.5) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-amp, amp, int(seconds * SR)).astype(np.float32)


def clicks(seconds: float, bpm: float = 128.0) -> np.ndarray:
    y = np.zeros(int(seconds * SR), np.float32)
    period = int(SR * 60 / bpm)
    for start in range(0, y.size, period):  # 5 ms decaying click
        n = min(80, y.size - start)
        y[start:start + n] = 0.9 * np.exp(-np.arange(n) / 15.0)
    return y


def long_mix(seconds: float) -> np.ndarray:
    """Over 30 s, changing every 4 s so the patches differ: chords, noise and clicks."""
    parts, k = [], 0
    while sum(p.size for p in parts) < seconds * SR:
        base = 110.0 * 2 ** (k / 5)
        parts.append(0.7 * chord(4.0, (base, base * 1.26, base * 1.5)) + 0.4 * clicks(4.0, 90 + 10 * k)
                     + noise(4.0, seed=k, amp=0.05 * k))
        k += 1
    return np.clip(np.concatenate(parts)[: int(seconds * SR)], -1, 1).astype(np.float32)


CLIPS = {
    "chord": lambda: chord(5.0),
    "noise": lambda: noise(4.0, seed=1),
    "clicks": lambda: clicks(4.5),
    "short": lambda: chord(2.0, (196.0, 246.9, 293.7)) + noise(2.0, seed=2, amp=0.05),  # < 3 s: tiled
    "long": lambda: long_mix(33.0),  # several patches
}


# ---------------------------------------------------------------- unit tests, no TensorFlow
@pytest.mark.filterwarnings("ignore:n_fft=512 is too large")
def test_frames_for_matches_librosa() -> None:
    for n in (1, 255, 256, 257, 48000, 16000 * 33 + 17):
        wav = np.random.default_rng(n).uniform(-0.5, 0.5, n).astype(np.float32)
        assert mn.frames_for(n) == mn.log_mel(wav).shape[0], n
    with pytest.raises(ValueError):
        mn.frames_for(0)


def test_patch_starts_rules() -> None:
    assert mn.patch_starts(187) == [0]
    assert mn.patch_starts(373) == [0]  # 186 trailing frames: partial patch dropped
    assert mn.patch_starts(374) == [0, 187]
    assert mn.patch_starts(100) == [0]  # shorter than a patch: one tiled patch
    assert mn.patch_starts(1) == [0]
    assert mn.patch_starts(400, hop_frames=93) == [0, 93, 186]  # 279 + 187 > 400
    assert mn.patch_starts(2063) == [187 * i for i in range(11)]  # 33 s
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError):
            mn.patch_starts(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        mn.patch_starts(400, hop_frames=0)


def _frame_coded(n_frames: int) -> np.ndarray:
    """Frame i holds the value i in every band, so a patch shows which frames it took."""
    return np.repeat(np.arange(n_frames, dtype=np.float32)[:, None], mn.N_MELS, axis=1)


def test_make_patches_takes_valid_frames_only() -> None:
    spec = _frame_coded(500)
    patches = mn.make_patches(spec, 400, hop_frames=93)
    assert patches.shape == (3, 187, 96) and patches.dtype == np.float32
    assert [int(p[0, 0]) for p in patches] == [0, 93, 186]
    np.testing.assert_array_equal(patches[2, :, 5], np.arange(186, 373))
    assert patches.max() < 400  # frames past n_valid (padding) never appear
    assert mn.make_patches(spec, 500).shape == (2, 187, 96)  # 374 used, 126 dropped
    with pytest.raises(ValueError):
        mn.make_patches(spec, 501)
    with pytest.raises(ValueError):
        mn.make_patches(spec[:, :40], 100)


def test_make_patches_tiles_a_short_clip() -> None:
    spec = _frame_coded(150)
    patch = mn.make_patches(spec, 100)
    assert patch.shape == (1, 187, 96)
    np.testing.assert_array_equal(patch[0, :100, 0], np.arange(100))
    np.testing.assert_array_equal(patch[0, 100:, 0], np.arange(87))  # repeated, not zeros or frames >= 100
    np.testing.assert_array_equal(mn.make_patches(spec, 1)[0], np.zeros((187, 96)))


def test_find_checkpoint_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelLoadError) as info:
        mn.find_checkpoint("MTT_musicnn", str(tmp_path))
    message = str(info.value)
    assert "pip install --no-deps musicnn==0.1.0" in message and "--musicnn-model" in message
    assert "\n" not in message and str(tmp_path) in message
    with pytest.raises(ConfigError, match="MSD_musicnn, MTT_musicnn"):
        mn.find_checkpoint("MTT_vgg")
    with pytest.raises(ConfigError):
        mn.tag_names("musicnn")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ModelLoadError, match="pip install --no-deps musicnn==0.1.0"):
        mn.find_checkpoint("MSD_musicnn")


def test_find_checkpoint_in_model_dir(tmp_path: Path) -> None:
    folder = tmp_path / "MSD_musicnn"
    folder.mkdir()
    for name in (".index", ".data-00000-of-00001"):
        (folder / name).write_bytes(b"x")
    assert mn.find_checkpoint("MSD_musicnn", str(folder)) == str(folder) + "/"
    assert mn.find_checkpoint("MSD_musicnn", str(tmp_path)) == str(folder) + "/"
    with pytest.raises(ModelLoadError):
        mn.find_checkpoint("MTT_musicnn", str(tmp_path))


def test_weights_identity_is_path_independent(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 256, (3 << 20) // 2, dtype=np.uint8).tobytes()  # > 1 chunk
    prefixes = []
    for where in ("a", "b/c"):
        folder = tmp_path / where
        folder.mkdir(parents=True)
        (folder / ".index").write_bytes(b"index bytes")
        (folder / ".data-00000-of-00001").write_bytes(data)
        prefixes.append(str(folder) + "/")
    first = mn.weights_identity(prefixes[0])
    assert first.startswith("sha256:") and len(first) == 7 + 64
    assert mn.weights_identity(prefixes[1]) == first
    changed = bytearray(data)
    changed[-1] ^= 1  # one byte, past the first read chunk
    Path(prefixes[1] + ".data-00000-of-00001").write_bytes(bytes(changed))
    assert mn.weights_identity(prefixes[1]) != first
    Path(prefixes[1] + ".data-00000-of-00001").write_bytes(data)
    Path(prefixes[1] + ".index").write_bytes(b"index bytez")
    assert mn.weights_identity(prefixes[1]) != first
    with pytest.raises(ModelLoadError):
        mn.weights_identity(str(tmp_path / "missing") + "/")


@needs_musicnn
def test_tag_names_from_the_installed_configuration() -> None:
    mtt, msd = mn.tag_names("MTT_musicnn"), mn.tag_names("MSD_musicnn")
    assert len(mtt) == len(msd) == 50
    assert mtt[:3] == ["guitar", "classical", "slow"] and "no vocals" in mtt
    assert msd[:3] == ["rock", "pop", "alternative"] and msd[-1] == "happy"
    assert "musicnn.extractor" not in sys.modules  # located as text, never imported


# ---------------------------------------------------------------- the original graph, in a subprocess
REFERENCE = r'''
import inspect, os, sys
import numpy as np
import tensorflow as tf
from musicnn import extractor, models  # turns eager mode off: this process only
from musicnn import configuration as config

folder = sys.argv[1]
# 1. the original preprocessing (batch_data), the NumPy 2 float16 overflow fixed as the only change
src = inspect.getsource(extractor.batch_data)
old = "audio_rep = audio_rep.astype(np.float16)\n"
assert src.count(old) == 1, "musicnn's batch_data changed"
namespace = dict(vars(extractor))
exec(src.replace(old, "audio_rep = audio_rep.astype(np.float16).astype(np.float32)\n"), namespace)
for name in sys.argv[2].split(","):
    batch, rep = namespace["batch_data"](os.path.join(folder, name + ".wav"), 187, 187)
    np.save(os.path.join(folder, name + "_ref_logmel.npy"), rep)
    np.save(os.path.join(folder, name + "_ref_batch.npy"), batch)

# 2. the original graph, exactly as musicnn.extractor.extractor builds and restores it
patches = np.load(os.path.join(folder, "patches.npy"))
for model in ("MSD_musicnn", "MTT_musicnn"):
    labels = config.MTT_LABELS if "MTT" in model else config.MSD_LABELS
    tf.compat.v1.reset_default_graph()
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, 187, config.N_MELS])
        is_training = tf.compat.v1.placeholder(tf.bool)
        y, timbral, temporal, cnn1, cnn2, cnn3, mean_pool, max_pool, penultimate = models.define_model(
            x, is_training, model, len(labels))
        normalized_y = tf.nn.sigmoid(y)
    sess = tf.compat.v1.Session()
    sess.run(tf.compat.v1.global_variables_initializer())
    tf.compat.v1.train.Saver().restore(sess, os.path.dirname(extractor.__file__) + "/" + model + "/")
    # all patches in one run: the graph is per patch (the 0.1.0 penultimate bug is in the
    # extractor's batch loop, not in the graph)
    out = sess.run([normalized_y, penultimate, max_pool, mean_pool], feed_dict={x: patches, is_training: False})
    layers = ("taggram", "penultimate", "max_pool", "mean_pool")
    np.savez(os.path.join(folder, model + ".npz"), **dict(zip(layers, out)))
    sess.close()
print("REFERENCE OK")
'''
LOGMEL_CLIPS = ("chord", "noise", "long")


@pytest.fixture(scope="module")
def clip_patches() -> dict[str, np.ndarray]:
    """Log-mel patches of every clip as the module makes them (the short clip tiled)."""
    out = {}
    for name, make in CLIPS.items():
        logmel = mn.log_mel(make())
        out[name] = mn.make_patches(logmel, logmel.shape[0])
    assert out["short"].shape[0] == 1 and out["long"].shape[0] == 11
    return out


@pytest.fixture(scope="module")
def reference(clip_patches: dict[str, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the original musicnn on the same patches (and its preprocessing on wav files)."""
    import soundfile

    folder = tmp_path_factory.mktemp("musicnn_ref")
    np.save(folder / "patches.npy", np.concatenate(list(clip_patches.values())))
    for name in LOGMEL_CLIPS:  # float wav at 16 kHz: librosa.load returns these exact samples
        soundfile.write(folder / f"{name}.wav", CLIPS[name](), SR, subtype="FLOAT")
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", REFERENCE, str(folder), ",".join(LOGMEL_CLIPS)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "REFERENCE OK" in proc.stdout, proc.stderr[-4000:]
    return folder


@pytest.fixture(scope="module")
def fp32_models() -> dict[str, mn.MusicnnModel]:
    return {model: mn.load_model(model, precision="fp32") for model in mn.MODELS}


def _max_rel_diff(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


@pytest.mark.slow
@needs_musicnn
def test_log_mel_and_patches_equal_the_original_preprocessing(reference: Path) -> None:
    for name in LOGMEL_CLIPS:
        ref_logmel = np.load(reference / f"{name}_ref_logmel.npy")
        ref_batch = np.load(reference / f"{name}_ref_batch.npy")
        ours = mn.log_mel(CLIPS[name]())
        assert ours.dtype == np.float32 and ours.shape == ref_logmel.shape, name
        assert np.all(np.isfinite(ref_logmel)), name  # the float16 overflow is really fixed there
        np.testing.assert_allclose(ours, ref_logmel, rtol=0, atol=1e-5, err_msg=name)
        patches = mn.make_patches(ours, ours.shape[0])
        assert patches.shape == ref_batch.shape, name  # same starts, same dropped tail
        np.testing.assert_allclose(patches, ref_batch, rtol=0, atol=1e-5, err_msg=name)


@pytest.mark.slow
@needs_musicnn
@pytest.mark.parametrize("model", mn.MODELS)
def test_outputs_equal_the_original_graph(model: str, reference: Path, clip_patches: dict[str, np.ndarray],
                                          fp32_models: dict[str, mn.MusicnnModel]) -> None:
    ref = np.load(reference / f"{model}.npz")
    patches = np.concatenate(list(clip_patches.values()))
    ours = fp32_models[model](patches)
    dims = {"taggram": 50, "penultimate": 200, "max_pool": 753, "mean_pool": 753}
    report = {}
    for layer in mn.LAYERS:
        assert ours[layer].shape == ref[layer].shape == (len(patches), dims[layer]), layer
        assert ours[layer].dtype == np.float32
        report[layer] = _max_rel_diff(ours[layer], ref[layer])
    assert all(v <= 1e-3 for v in report.values()), report
    # per clip as well, so a clip with small values is not hidden by a loud one
    start = 0
    for name, clip in clip_patches.items():
        rows = slice(start, start + len(clip))
        for layer in mn.LAYERS:
            assert _max_rel_diff(ours[layer][rows], ref[layer][rows]) <= 1e-3, (name, layer)
        start += len(clip)
    # patches must give distinct outputs (a constant network would pass a loose comparison)
    assert np.ptp(ref["taggram"], axis=0).max() > 0.05


@pytest.mark.slow
@needs_musicnn
def test_bf16_agrees_with_fp32(clip_patches: dict[str, np.ndarray], fp32_models: dict[str, mn.MusicnnModel]) -> None:
    patches = np.concatenate(list(clip_patches.values()))
    for model in mn.MODELS:
        bf16 = mn.load_model(model, precision="bf16")
        low = bf16(patches)
        high = fp32_models[model](patches)  # re-asserts fp32 after the bf16 call
        again = bf16(patches)
        for layers in (("max_pool", "mean_pool"), ("taggram",)):
            a = np.concatenate([high[k] for k in layers], axis=1)
            b = np.concatenate([low[k] for k in layers], axis=1)
            cos = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            assert cos.min() >= 0.999, (model, layers, cos.min())
        assert not np.array_equal(low["max_pool"], high["max_pool"]), "bf16 rewrite silently not applied"
        np.testing.assert_array_equal(again["taggram"], low["taggram"])
        np.testing.assert_array_equal(fp32_models[model](patches)["taggram"], high["taggram"])


@pytest.mark.slow
@needs_musicnn
def test_bad_checkpoints_fail_in_one_line(tmp_path: Path) -> None:
    import tensorflow as tf

    prefix = mn.find_checkpoint("MTT_musicnn")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / ".index").write_bytes(Path(prefix + ".index").read_bytes())
    (broken / ".data-00000-of-00001").write_bytes(Path(prefix + ".data-00000-of-00001").read_bytes()[:1000])
    with pytest.raises(ModelLoadError) as info:
        mn.MusicnnModel(str(broken) + "/", "MTT_musicnn")
    assert "\n" not in str(info.value) and mn.INSTALL_HINT in str(info.value)

    weights = mn._load_weights(tf, prefix)
    weights["conv2d_5/kernel"] = weights["conv2d_5/kernel"][:, :500]  # a different front-end width
    wrong = str(tmp_path / "wrong") + "/"
    os.makedirs(wrong)
    tf.raw_ops.SaveV2(prefix=wrong, tensor_names=list(weights), shape_and_slices=[""] * len(weights),
                      tensors=[tf.constant(v) for v in weights.values()])
    with pytest.raises(ModelLoadError, match="conv2d_5/kernel has shape"):
        mn.MusicnnModel(wrong, "MTT_musicnn")
    with pytest.raises(ValueError, match="patches must have shape"):
        mn.load_model("MTT_musicnn")(np.zeros((2, 100, 96), np.float32))
