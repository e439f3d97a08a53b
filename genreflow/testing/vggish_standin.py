"""A SavedModel with VGGish's exact call signature, built locally for tests and benchmarks.

The real VGGish needs a download; tests and offline benchmarks need something that
`tensorflow_hub.load` and `genreflow.features.vggish_tf.load_model` accept the same way. The
stand-in copies VGGish's input contract and log-mel front end exactly, so row counts,
padding and shapes behave as with the real model, but its network has random weights:
its embeddings carry no VGGish-quality information and must never be used as features.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# The real VGGish front end (tensorflow/models research/audioset/vggish, via yamnet features).
_SAMPLE_RATE = 16000
_WINDOW = 400  # 25 ms
_HOP = 160  # 10 ms
_FFT = 512
_MEL_BANDS = 64
_MEL_LOW_HZ = 125.0
_MEL_HIGH_HZ = 7500.0
_LOG_OFFSET = 0.01
_EXAMPLE_FRAMES = 96
_EMBEDDING_DIM = 128

# VGGish's layer sizes: conv channels per block (each block ends in a 2x2 max-pool).
_FULL_BLOCKS = ((64,), (128,), (256, 256), (512, 512))
_FULL_FC = (4096, 4096)
# The tiny stand-in: one conv block, then straight to the embedding.
_SMALL_BLOCKS = ((8,),)
_SMALL_POOL = 4


def _weights(rng: np.random.Generator, full_size: bool) -> dict[str, list[np.ndarray]]:
    """He-initialised random weights, a pure function of the seed (hence reproducible builds)."""

    def he(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in)))

    blocks = _FULL_BLOCKS if full_size else _SMALL_BLOCKS
    pool = 2 if full_size else _SMALL_POOL
    convs, channels = [], 1
    height, width = _EXAMPLE_FRAMES, _MEL_BANDS
    for block in blocks:
        for out_ch in block:
            convs.append(he((3, 3, channels, out_ch), 9 * channels))
            channels = out_ch
        height, width = height // pool, width // pool
    dense, fan_in = [], height * width * channels
    for units in (_FULL_FC if full_size else ()) + (_EMBEDDING_DIM,):
        dense.append(he((fan_in, units), fan_in))
        fan_in = units
    return {"conv": convs, "dense": dense}


def _make_module(tf: Any, weights: dict[str, list[np.ndarray]], full_size: bool) -> Any:
    blocks = _FULL_BLOCKS if full_size else _SMALL_BLOCKS
    pool = 2 if full_size else _SMALL_POOL

    class VGGishStandin(tf.Module):
        """Waveform [n] float32 at 16 kHz -> embeddings [N, 128] float32 (random weights)."""

        def __init__(self) -> None:
            super().__init__(name="vggish_standin")
            self.conv = [tf.Variable(w, trainable=False) for w in weights["conv"]]
            self.conv_bias = [tf.Variable(tf.zeros([w.shape[-1]]), trainable=False) for w in weights["conv"]]
            self.dense = [tf.Variable(w, trainable=False) for w in weights["dense"]]
            self.dense_bias = [tf.Variable(tf.zeros([w.shape[-1]]), trainable=False) for w in weights["dense"]]
            self.mel = tf.constant(
                tf.signal.linear_to_mel_weight_matrix(
                    num_mel_bins=_MEL_BANDS,
                    num_spectrogram_bins=_FFT // 2 + 1,
                    sample_rate=_SAMPLE_RATE,
                    lower_edge_hertz=_MEL_LOW_HZ,
                    upper_edge_hertz=_MEL_HIGH_HZ,
                )
            )

        def features(self, waveform: Any) -> Any:
            """The VGGish front end: [n] -> log-mel examples [N, 96, 64]."""
            stft = tf.signal.stft(
                waveform, frame_length=_WINDOW, frame_step=_HOP, fft_length=_FFT,
                window_fn=tf.signal.hann_window,  # periodic Hann, as in VGGish
            )
            log_mel = tf.math.log(tf.matmul(tf.abs(stft), self.mel) + _LOG_OFFSET)
            return tf.signal.frame(log_mel, _EXAMPLE_FRAMES, _EXAMPLE_FRAMES, axis=0)

        @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.float32)])
        def __call__(self, waveform: Any) -> Any:
            net = self.features(waveform)[..., tf.newaxis]  # [N, 96, 64, 1]
            layer = 0
            for block in blocks:
                for _ in block:
                    net = tf.nn.conv2d(net, self.conv[layer], strides=1, padding="SAME")
                    net = tf.nn.relu(net + self.conv_bias[layer])
                    layer += 1
                net = tf.nn.max_pool2d(net, ksize=pool, strides=pool, padding="SAME")
            net = tf.reshape(net, [tf.shape(net)[0], -1])
            for i, (w, b) in enumerate(zip(self.dense, self.dense_bias)):
                net = tf.matmul(net, w) + b
                if i < len(self.dense) - 1:  # the real embedding layer (fc2) is linear
                    net = tf.nn.relu(net)
            return net

    return VGGishStandin()


def build_vggish_standin(path: str | Path, *, full_size: bool = False, seed: int = 0) -> Path:
    """Build and save a VGGish look-alike SavedModel at `path`; return the folder.

    Same signature as the TF Hub VGGish: `model(waveform)` with a float32 tensor of
    shape [n] (16 kHz mono) returns float32 [N, 128], one row per 0.96 s example, and
    the same log-mel front end (25 ms / 10 ms STFT, 64 mel bands 125-7500 Hz,
    log(mel + 0.01), 96-frame examples without overlap), so N matches VGGish exactly.

    The network has random weights drawn from `seed` (same seed, same model), so its
    outputs are NOT VGGish embeddings and carry no VGGish-quality information.
    `full_size=False` builds a tiny conv net in seconds for tests; `full_size=True`
    uses VGGish's real layer sizes (about 72 M parameters, ~290 MB on disk) so
    benchmarks time the same amount of work as the real model.
    """
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    out = Path(path)
    weights = _weights(np.random.default_rng(seed), full_size)
    module = _make_module(tf, weights, full_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(module, str(out))
    return out
