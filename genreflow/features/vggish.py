"""VGGish embeddings: frozen TensorFlow Hub model, 16 kHz waveform in, one 128-d row per 0.96 s.

The model runs in Ray actors (``uses_model``), loaded once per actor; ``genreflow.features.vggish_tf``
holds the TensorFlow side (loading, the call, batching). Precision ``auto`` resolves once,
in the driver, from the CPU's bf16 flags, and the resolved value enters the fingerprint, so
one feature set never mixes fp32 and bf16 rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from genreflow.core.sections import check
from genreflow.store.kind import Kind
from genreflow.features.vggish_tf import DEFAULT_HANDLE, FRAME_SECONDS, MODEL_ENV_VAR, SAMPLE_RATE
from genreflow.features.base import Extractor

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class VggishConfig:
    """The ``[vggish]`` section: which model (URL or local SavedModel folder), which precision,
    and how many clips share one model call (values are identical either way)."""

    handle: str = DEFAULT_HANDLE
    precision: str = "auto"
    clips_per_call: int = 4  # 8 saved no time on 2 cores and took ~0.5 GiB more (TF activations)

    def __post_init__(self) -> None:
        check(bool(self.handle.strip()), "vggish.handle", self.handle, "a TF Hub URL or a local SavedModel folder")
        check(self.precision in PRECISIONS, "vggish.precision", self.precision, "one of auto, fp32, bf16")
        check(1 <= self.clips_per_call <= 256, "vggish.clips_per_call", self.clips_per_call, "in [1, 256]")


def model_identity(handle: str) -> str:
    """What names the model in fingerprints: a URL names a published, immutable version; a local
    folder is named by a sha256 of its graph and weights index (so moving or copying it keeps
    the identity, and new weights in place change it)."""
    from genreflow.features.vggish_tf import _check_local, _is_remote

    if _is_remote(handle):
        return handle
    path = _check_local(handle)
    digest = hashlib.sha256()
    for name in ("saved_model.pb", "saved_model.pbtxt", "variables/variables.index"):
        part = path / name
        if part.is_file():
            digest.update(name.encode() + b"\0")
            with open(part, "rb") as fh:  # in chunks: a graph file may be larger than memory
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


class VggishExtractor(Extractor):
    name = "vggish"
    version = 2  # 2: the precision and a path-free local model identity enter the fingerprint
    config_class = VggishConfig
    kind = Kind("vggish", "embedding", ("n_frames", "embedding_dim"), time_axis=0)
    uses_model = True
    model_env = ("handle", MODEL_ENV_VAR)

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    @property
    def frame_seconds(self) -> float:
        return FRAME_SECONDS

    def params(self) -> dict[str, Any]:
        return {"sample_rate": SAMPLE_RATE, "frame_seconds": FRAME_SECONDS, "duration_s": self.audio.duration_s,
                "model": model_identity(self.config.handle), "precision": self.precision}

    @property
    def precision(self) -> str:
        """The resolved precision (``auto`` is resolved here if ``resolved()`` was not called)."""
        from genreflow.core.host import resolve_precision

        return resolve_precision(self.config.precision)

    def resolved(self) -> "VggishExtractor":
        return type(self)(dataclasses.replace(self.config, precision=self.precision), self.audio)

    def on_accelerator(self) -> "VggishExtractor":
        """A GPU actor joins more clips per model call (the values are identical either way)."""
        return type(self)(dataclasses.replace(self.config, clips_per_call=max(self.config.clips_per_call, 32)),
                          self.audio)

    def check(self) -> None:
        from genreflow.features.vggish_tf import check_handle

        check_handle(self.config.handle)

    def check_quickly(self) -> None:
        """The handle resolves to a SavedModel folder; its ops are checked by ``check`` and again
        by ``load`` (both import TensorFlow, seconds a warm run does not need)."""
        from genreflow.features.vggish_tf import check_handle

        check_handle(self.config.handle, ops=False)

    def load(self, threads: int) -> Any:
        from genreflow.features.vggish_tf import load_model

        return load_model(self.config.handle, threads=threads, precision=self.precision)

    def compute(self, state: Any, waveform: np.ndarray, n_valid: int) -> tuple[np.ndarray, int]:
        from genreflow.features.vggish_tf import embed_waveform

        return embed_waveform(state, np.clip(waveform, -1.0, 1.0), n_valid)

    def compute_many(self, state: Any, waveforms: list[np.ndarray], n_valid: list[int]) -> list[tuple[np.ndarray, int]]:
        """Several clips per model call (each padded so its rows equal a call of its own)."""
        from genreflow.features.vggish_tf import embed_batch

        out: list[tuple[np.ndarray, int]] = []
        step = self.config.clips_per_call
        for start in range(0, len(waveforms), step):
            clips = [np.clip(w, -1.0, 1.0) for w in waveforms[start:start + step]]
            out.extend(embed_batch(state, clips, list(n_valid[start:start + step])))
        return out
