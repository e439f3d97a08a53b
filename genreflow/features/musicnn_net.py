"""musicnn (MSD_musicnn, MTT_musicnn) re-implemented in plain TensorFlow 2.

The published musicnn 0.1.0 builds a TF1 graph and turns eager mode off for the whole process,
which cannot live next to the rest of genreflow; this module rebuilds the same network from the
checkpoints that the `musicnn` wheel ships (its code is never imported, only its folder is
located) and is tested to match the original graph numerically (tests/test_musicnn_net.py).

Faithful to the original (jordipons/musicnn, models.py and extractor.py):
  - log-mel: librosa power mel (16 kHz, n_fft 512, hop 256, 96 bands, centred), rounded to
    float16 as the original stores it, then log10(10000 * S + 1) in float32 (the original's
    float16 multiply overflows to inf under NumPy 2).
  - front-end: input batch norm, then zero time padding: (3, 3) before the two timbral convs
    (7x38 and 7x67, "valid"), TF "same" for the temporal convs (128, 64, 32 frames: the extra zero
    goes at the end, (63, 64), (31, 32), (15, 16)); each conv -> ReLU -> batch norm -> max over
    frequency.
  - mid-end: three 7-frame convs over the concatenated features, (3, 3) zero padding, conv ->
    ReLU -> batch norm, the 2nd and 3rd with residual sums; all four outputs concatenated (753).
  - back-end: max and mean over time, flattened INTERLEAVED [max0, mean0, max1, ...] (the
    original concatenates (B, 753, 1) pairs on the last axis, then flattens), batch norm, dense
    200 + ReLU, batch norm (= penultimate), dense 50, sigmoid (= taggram).
  - every batch norm in inference mode: moving mean/variance, epsilon 1e-3 (the TF1 default).
TensorFlow is imported inside functions only, so importing this module stays instant.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ModelLoadError
from .tf_runtime import check_precision, configure_tf_threads, set_precision, short_reason, tf_module

MODELS = ("MSD_musicnn", "MTT_musicnn")
LAYERS = ("taggram", "penultimate", "max_pool", "mean_pool")
SAMPLE_RATE = 16000
N_FFT = 512
HOP_LENGTH = 256
N_MELS = 96
PATCH_FRAMES = 187  # librosa.time_to_frames(3 s) + 1, as the original extractor computes it
FRAME_SECONDS = HOP_LENGTH / SAMPLE_RATE
INSTALL_HINT = "pip install --no-deps musicnn==0.1.0"
BN_EPSILON = 1e-3  # tf.compat.v1.layers.batch_normalization default
LAYER_DIMS = {"penultimate": 200, "max_pool": 753, "mean_pool": 753}  # taggram: number of tags
_CKPT_FILES = (".index", ".data-00000-of-00001")
_LABELS = {"MSD_musicnn": "MSD_LABELS", "MTT_musicnn": "MTT_LABELS"}
# (name, shape) in the order TF1 created them: conv2d..conv2d_7, batch_normalization.._10, dense, dense_1.
_CONVS = [(7, 38, 1, 204), (7, 67, 1, 204), (128, 1, 1, 51), (64, 1, 1, 51), (32, 1, 1, 51),
          (7, 561, 1, 64), (7, 64, 1, 64), (7, 64, 1, 64)]
_BNS = [1, 204, 204, 51, 51, 51, 64, 64, 64, 1506, 200]


def _check_model(model: str) -> None:
    if model not in MODELS:
        raise ConfigError(f"musicnn model {model!r} is unknown; choose one of {', '.join(MODELS)}")


def log_mel(waveform: np.ndarray) -> np.ndarray:
    """(frames, 96) float32 log-mel of a 16 kHz mono waveform, exactly as musicnn was trained."""
    import librosa

    wav = np.asarray(waveform)
    if wav.ndim != 1 or wav.size == 0:
        raise ValueError(f"waveform must be non-empty 1-D mono samples at 16 kHz; got shape={wav.shape}")
    wav = wav.astype(np.float32, copy=False)
    if not np.all(np.isfinite(wav)):
        raise ValueError("waveform has non-finite samples (NaN or inf)")
    spec = librosa.feature.melspectrogram(y=wav, sr=SAMPLE_RATE, hop_length=HOP_LENGTH,
                                          n_fft=N_FFT, n_mels=N_MELS).T
    return np.log10(10000 * spec.astype(np.float16).astype(np.float32) + 1).astype(np.float32)


def frames_for(n_samples: int) -> int:
    """Mel frames librosa makes of `n_samples` samples (centred STFT: 1 + n // hop)."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples={n_samples!r} must be a positive integer")
    return 1 + int(n_samples) // HOP_LENGTH


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return int(value)


def patch_starts(n_valid_frames: int, hop_frames: int = PATCH_FRAMES) -> list[int]:
    """First frame of each patch: full patches over real audio only (a trailing partial patch is
    dropped, as the original does); a clip shorter than one patch gets one (tiled) patch at 0."""
    n = _check_count("n_valid_frames", n_valid_frames)
    hop = _check_count("hop_frames", hop_frames)
    if n < PATCH_FRAMES:
        return [0]
    return list(range(0, n - PATCH_FRAMES + 1, hop))


def make_patches(logmel: np.ndarray, n_valid_frames: int, hop_frames: int = PATCH_FRAMES) -> np.ndarray:
    """(n_patches, 187, 96) float32 from the first `n_valid_frames` frames (padding after them is
    never seen); a shorter clip is repeat-padded to one patch, as musicnn was trained."""
    spec = np.asarray(logmel, dtype=np.float32)
    if spec.ndim != 2 or spec.shape[1] != N_MELS:
        raise ValueError(f"logmel must have shape (frames, {N_MELS}); got {spec.shape}")
    n = _check_count("n_valid_frames", n_valid_frames)
    if n > spec.shape[0]:
        raise ValueError(f"n_valid_frames={n} exceeds the {spec.shape[0]} frames of logmel")
    if n < PATCH_FRAMES:
        return spec[np.arange(PATCH_FRAMES) % n][None]
    return np.stack([spec[s:s + PATCH_FRAMES] for s in patch_starts(n, hop_frames)])


def _package_dir() -> Path | None:
    """The installed musicnn package folder, found without running its code (it would turn
    TensorFlow's eager mode off for the whole process)."""
    try:
        spec = importlib.util.find_spec("musicnn")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or [])
    if not locations and spec.origin:
        locations = [os.path.dirname(spec.origin)]
    return Path(locations[0]) if locations else None


def _has_checkpoint(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _CKPT_FILES)


def find_checkpoint(model: str, model_dir: str | None = None) -> str:
    """Checkpoint prefix ("<folder>/", the files are <folder>/.index and .data-...) of `model`:
    in `model_dir` (the model folder itself or its parent) or else in the installed musicnn wheel."""
    _check_model(model)
    if model_dir is not None:
        base = Path(model_dir).expanduser()
        for folder in (base, base / model):
            if _has_checkpoint(folder):
                return str(folder) + "/"
        raise ModelLoadError(
            f"no musicnn checkpoint for {model} in {base} (looked for {base}/.index and "
            f"{base / model}/.index with their .data-00000-of-00001); point --musicnn-model DIR at the "
            f"folder holding {model}/, or install the weights with: {INSTALL_HINT}")
    package = _package_dir()
    if package is None:
        raise ModelLoadError(f"the musicnn package (checkpoint {model}) is not installed; install the "
                             f"weights with: {INSTALL_HINT} (or pass --musicnn-model DIR)")
    folder = package / model
    if not _has_checkpoint(folder):
        raise ModelLoadError(f"no musicnn checkpoint at {folder}/ (.index, .data-00000-of-00001); "
                             f"reinstall the weights with: {INSTALL_HINT} (or pass --musicnn-model DIR)")
    return str(folder) + "/"


def weights_identity(prefix: str, chunk: int = 1 << 20) -> str:
    """"sha256:<hex>" of the checkpoint bytes (not its path): features made with equal weights
    match wherever the files lie."""
    digest = hashlib.sha256()
    for name in _CKPT_FILES:
        path = prefix + name
        try:
            digest.update(f"{name}:{os.path.getsize(path)}\n".encode())
            with open(path, "rb") as fh:
                while block := fh.read(chunk):
                    digest.update(block)
        except OSError as exc:
            raise ModelLoadError(f"cannot read musicnn checkpoint file {path}: {short_reason(exc)}; "
                                 f"reinstall with: {INSTALL_HINT}") from exc
    return "sha256:" + digest.hexdigest()


def tag_names(model: str) -> list[str]:
    """Tag names of `model`'s taggram columns, parsed as text from the installed musicnn
    configuration.py (importing the package is avoided, see _package_dir)."""
    _check_model(model)
    package = _package_dir()
    path = package / "configuration.py" if package else None
    want = _LABELS[model]
    try:
        if path is None:
            raise FileNotFoundError("the musicnn package is not installed")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == want for t in node.targets):
                return [str(name) for name in ast.literal_eval(node.value)]
        raise ValueError(f"{want} not found in {path}")
    except (OSError, SyntaxError, ValueError) as exc:
        raise ModelLoadError(f"cannot read musicnn tag names ({want}): {short_reason(exc)}; "
                             f"install with: {INSTALL_HINT}") from exc


def _load_weights(tf: Any, prefix: str) -> dict[str, np.ndarray]:
    """The inference variables of the checkpoint, shapes checked (Adam slots are skipped)."""
    expected: dict[str, tuple[int, ...]] = {}
    for i, shape in enumerate(_CONVS):
        name = "conv2d" + (f"_{i}" if i else "")
        expected[name + "/kernel"], expected[name + "/bias"] = shape, (shape[-1],)
    for i, width in enumerate(_BNS):
        name = "batch_normalization" + (f"_{i}" if i else "")
        for part in ("gamma", "beta", "moving_mean", "moving_variance"):
            expected[f"{name}/{part}"] = (width,)
    expected.update({"dense/kernel": (1506, 200), "dense/bias": (200,), "dense_1/kernel": (200, None),
                     "dense_1/bias": (None,)})
    names = list(expected)
    try:
        # RestoreV2 reads the TF1 name-based checkpoint eagerly; tf.train.load_checkpoint cannot
        # be used: a prefix ending in "/" is a folder, and it follows the folder's `checkpoint`
        # file, which names the author's machine.
        values = tf.raw_ops.RestoreV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                                      dtypes=[tf.float32] * len(names))
    except Exception as exc:
        raise ModelLoadError(f"cannot read musicnn checkpoint {prefix}: {short_reason(exc)}; "
                             f"reinstall with: {INSTALL_HINT}") from exc
    weights = {name: value.numpy() for name, value in zip(names, values)}
    n_tags = weights["dense_1/bias"].shape[0] if weights["dense_1/bias"].ndim == 1 else -1
    for name, shape in expected.items():
        want = tuple(n_tags if d is None else d for d in shape)
        if weights[name].shape != want:
            raise ModelLoadError(f"musicnn checkpoint {prefix} is not a musicnn model: {name} has shape "
                                 f"{weights[name].shape}, expected {want}; reinstall with: {INSTALL_HINT}")
    return weights


def _bn_affine(weights: dict[str, np.ndarray], index: int) -> tuple[np.ndarray, np.ndarray]:
    """Inference batch norm as scale and shift (computed in float64, used in float32)."""
    name = "batch_normalization" + (f"_{index}" if index else "")
    gamma, beta, mean, var = (weights[f"{name}/{p}"].astype(np.float64)
                              for p in ("gamma", "beta", "moving_mean", "moving_variance"))
    scale = gamma / np.sqrt(var + BN_EPSILON)
    return scale.astype(np.float32), (beta - mean * scale).astype(np.float32)


class MusicnnModel:
    """A loaded musicnn network and the precision it computes in.

    TensorFlow reads the bf16 rewrite option at call time, so every call first sets this
    model's precision (the option is process-global); call it from one thread at a time.
    """

    def __init__(self, prefix: str, model: str, precision: str = "fp32", threads: int | None = None) -> None:
        _check_model(model)
        check_precision(precision)
        if threads is not None:
            configure_tf_threads(threads)  # before TensorFlow runs anything, or it is ignored
        tf = tf_module()
        self.prefix, self.model, self.precision = prefix, model, precision
        w = _load_weights(tf, prefix)
        self.n_tags = int(w["dense_1/bias"].shape[0])
        c = {name: tf.constant(value) for name, value in w.items()}
        bn = [tuple(tf.constant(a) for a in _bn_affine(w, i)) for i in range(len(_BNS))]

        def conv(x: Any, i: int, pad: tuple[int, int]) -> Any:
            """Zero time padding, 'valid' conv, ReLU, batch norm i+1 (the original's order)."""
            name = "conv2d" + (f"_{i}" if i else "")
            x = tf.pad(x, [[0, 0], list(pad), [0, 0], [0, 0]])
            y = tf.nn.relu(tf.nn.conv2d(x, c[name + "/kernel"], 1, "VALID") + c[name + "/bias"])
            return y * bn[i + 1][0] + bn[i + 1][1]

        def forward(patches: Any) -> dict[str, Any]:
            x = patches[..., None] * bn[0][0] + bn[0][1]  # input batch norm (one channel), then padding
            front = [tf.reduce_max(conv(x, 0, (3, 3)), axis=2),  # timbral 7x38
                     tf.reduce_max(conv(x, 1, (3, 3)), axis=2),  # timbral 7x67
                     tf.reduce_max(conv(x, 2, (63, 64)), axis=2),  # temporal 128: TF "same"
                     tf.reduce_max(conv(x, 3, (31, 32)), axis=2),  # temporal 64
                     tf.reduce_max(conv(x, 4, (15, 16)), axis=2)]  # temporal 32
            front = tf.concat(front, axis=2)  # (B, 187, 561)
            # mid-end: the original convolves (B, T, C, 1) with a (7, C) kernel = a 1-D conv over time
            m1 = conv(front[..., None], 5, (3, 3))[:, :, 0, :]
            m2 = conv(m1[..., None], 6, (3, 3))[:, :, 0, :] + m1
            m3 = conv(m2[..., None], 7, (3, 3))[:, :, 0, :] + m2
            feats = tf.concat([front, m1, m2, m3], axis=2)  # (B, 187, 753)
            max_pool = tf.reduce_max(feats, axis=1)
            mean_pool = tf.reduce_mean(feats, axis=1)
            flat = tf.reshape(tf.stack([max_pool, mean_pool], axis=2), [-1, 2 * 753])  # interleaved
            flat = flat * bn[9][0] + bn[9][1]
            dense = tf.nn.relu(tf.matmul(flat, c["dense/kernel"]) + c["dense/bias"])
            penultimate = dense * bn[10][0] + bn[10][1]
            logits = tf.matmul(penultimate, c["dense_1/kernel"]) + c["dense_1/bias"]
            return {"taggram": tf.sigmoid(logits), "penultimate": penultimate,
                    "max_pool": max_pool, "mean_pool": mean_pool}

        spec = tf.TensorSpec([None, PATCH_FRAMES, N_MELS], tf.float32)
        self._forward = tf.function(forward, input_signature=[spec])

    def __call__(self, patches: np.ndarray) -> dict[str, np.ndarray]:
        """(B, 187, 96) log-mel patches -> {layer: (B, dim) float32} for every name in LAYERS."""
        x = np.asarray(patches, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != (PATCH_FRAMES, N_MELS):
            raise ValueError(f"patches must have shape (B, {PATCH_FRAMES}, {N_MELS}); got {x.shape}")
        if x.shape[0] == 0:
            dims = {**LAYER_DIMS, "taggram": self.n_tags}
            return {name: np.zeros((0, dims[name]), np.float32) for name in LAYERS}
        set_precision(self.precision)
        out = self._forward(x)
        return {name: out[name].numpy() for name in LAYERS}

    def __repr__(self) -> str:
        return f"MusicnnModel({self.prefix!r}, {self.model!r}, precision={self.precision!r})"


def load_model(model: str = "MSD_musicnn", model_dir: str | None = None, precision: str = "fp32",
               threads: int | None = None) -> MusicnnModel:
    """Find the checkpoint of `model` (see find_checkpoint) and load it once for many calls."""
    _check_model(model)
    check_precision(precision)
    return MusicnnModel(find_checkpoint(model, model_dir), model, precision, threads)
