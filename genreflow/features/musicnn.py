"""musicnn embeddings: a pretrained music-tagging CNN, 16 kHz audio in, one row per 3 s patch.

The weights ship inside the ``musicnn`` wheel (``pip install --no-deps musicnn==0.1.0``), so
this is the pretrained model that works offline. The network is ``musicnn_net`` (TensorFlow 2,
proven equal to the original graph); it runs in Ray actors like VGGish (``uses_model``).

What is stored: one row per patch of 187 log-mel frames (~2.99 s), patches every
``hop_frames`` frames over the real audio only (never the zero padding of a short clip; a clip
shorter than one patch is tiled to one patch, as musicnn was trained; a last partial patch is
dropped when there is a full one). A row holds the chosen ``layer`` outputs, by default
``max_pool`` then ``mean_pool`` (753 + 753 values). The model name, layer, patch hop,
resolved precision and a hash of the checkpoint's bytes (not its path) make the fingerprint.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from genreflow.core.host import resolve_precision
from genreflow.core.sections import check
from genreflow.features import musicnn_net as net
from genreflow.features.base import Extractor
from genreflow.store.kind import Kind

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class MusicnnConfig:
    """The ``[musicnn]`` section: which checkpoint, which layers, how patches are laid out."""

    model: str = "MSD_musicnn"
    model_dir: str = ""  # "" = the installed musicnn package; else a folder holding <model>/ or the model
    layer: str = "max_pool+mean_pool"
    hop_frames: int = net.PATCH_FRAMES  # patch hop in log-mel frames (187 = no overlap)
    precision: str = "auto"
    patches_per_call: int = 16  # measured on 2 cores: 16 per call ~5 % faster per patch than 4 (bf16, model alone)

    def __post_init__(self) -> None:
        check(self.model in net.MODELS, "musicnn.model", self.model, "one of " + ", ".join(net.MODELS))
        layers = self.layer.split("+")
        check(bool(self.layer) and all(name in net.LAYERS for name in layers) and len(set(layers)) == len(layers),
              "musicnn.layer", self.layer, "one or more of " + ", ".join(net.LAYERS) + " joined with '+'")
        check(1 <= self.hop_frames <= 10 * net.PATCH_FRAMES, "musicnn.hop_frames", self.hop_frames,
              f"an integer in [1, {10 * net.PATCH_FRAMES}] (log-mel frames of 16 ms)")
        check(self.precision in PRECISIONS, "musicnn.precision", self.precision, "one of auto, fp32, bf16")
        check(1 <= self.patches_per_call <= 256, "musicnn.patches_per_call", self.patches_per_call, "in [1, 256]")


@functools.lru_cache(maxsize=8)
def _identity(prefix: str, stamp: tuple[int, ...]) -> str:
    """The weights' hash, computed once per checkpoint state (size and mtime in ``stamp``)."""
    return net.weights_identity(prefix)


def weights_identity(model: str, model_dir: str) -> str:
    """sha256 of the checkpoint that ``model``/``model_dir`` resolve to (not its path)."""
    prefix = net.find_checkpoint(model, model_dir or None)
    stamp = tuple(int(v) for suffix in (".index", ".data-00000-of-00001")
                  for st in [os.stat(prefix + suffix)] for v in (st.st_size, st.st_mtime_ns))
    return _identity(prefix, stamp)


class MusicnnExtractor(Extractor):
    name = "musicnn"
    version = 1
    config_class = MusicnnConfig
    kind = Kind("musicnn", "musicnn", ("n_patches", "musicnn_dim"), time_axis=0)
    uses_model = True
    model_env: ClassVar[tuple[str, str]] = ("model_dir", "GENREFLOW_MUSICNN_MODEL")

    @property
    def sample_rate(self) -> int:
        return net.SAMPLE_RATE

    @property
    def frame_seconds(self) -> float:
        """Seconds between two stored rows (patch starts)."""
        return self.config.hop_frames * net.HOP_LENGTH / net.SAMPLE_RATE

    @property
    def precision(self) -> str:
        return resolve_precision(self.config.precision)

    def params(self) -> dict[str, Any]:
        return {"sample_rate": net.SAMPLE_RATE, "duration_s": self.audio.duration_s, "model": self.config.model,
                "weights": weights_identity(self.config.model, self.config.model_dir), "layer": self.config.layer,
                "hop_frames": self.config.hop_frames, "precision": self.precision}

    def resolved(self) -> "MusicnnExtractor":
        return type(self)(dataclasses.replace(self.config, precision=self.precision), self.audio)

    def on_accelerator(self) -> "MusicnnExtractor":
        """A GPU takes many patches per call (4 is only the fastest on 2 CPU cores)."""
        return type(self)(dataclasses.replace(self.config, patches_per_call=max(self.config.patches_per_call, 64)),
                          self.audio)

    def check(self) -> None:
        net.find_checkpoint(self.config.model, self.config.model_dir or None)

    def load(self, threads: int) -> Any:
        return net.load_model(self.config.model, self.config.model_dir or None, self.precision, threads)

    def compute(self, state: Any, waveform: np.ndarray, n_valid: int) -> tuple[np.ndarray, int]:
        return self.compute_many(state, [waveform], [n_valid])[0]

    def compute_many(self, state: Any, waveforms: list[np.ndarray], n_valid: list[int]) -> list[tuple[np.ndarray, int]]:
        """Patches of several clips share model calls of ``patches_per_call`` patches."""
        patches = []
        for wave, valid in zip(waveforms, n_valid):
            real = np.asarray(wave[:max(int(valid), 1)], dtype=np.float32)  # not clipped: as musicnn's librosa.load
            logmel = net.log_mel(real)  # the real audio only: padding never enters a patch
            patches.append(net.make_patches(logmel, len(logmel), self.config.hop_frames))
        stacked = np.concatenate(patches) if patches else np.zeros((0, net.PATCH_FRAMES, net.N_MELS), np.float32)
        layers = self.config.layer.split("+")
        step = self.config.patches_per_call
        rows = [np.concatenate([out[name] for name in layers], axis=1)
                for start in range(0, len(stacked), step) for out in [state(stacked[start:start + step])]]
        table = np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)
        result, start = [], 0
        for clip in patches:
            array = table[start:start + len(clip)].astype(np.float32, copy=False)
            result.append((array, len(clip)))
            start += len(clip)
        return result
