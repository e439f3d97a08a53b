"""Frozen VGGish from TensorFlow Hub: load it once per worker, embed 16 kHz waveforms.

VGGish maps a mono 16 kHz waveform to one 128-d embedding per 0.96 s example
(96 log-mel frames of 10 ms, no overlap). The model is never trained here; the
pipeline only needs `load_model` once per actor and `embed_waveform` per clip (or
`embed_batch` for several clips in one model call).

Precision: "bf16" turns on TensorFlow's oneDNN auto-mixed-precision graph rewrite
(convolutions and matmuls in bfloat16, fp32 in and out). That option is global to the
TensorFlow runtime of a process and is read when a model is *called*, not when it is
loaded, so one process (one Ray actor) should use one precision; `load_model` returns a
`VggishModel` that re-asserts its own precision before every call, so two models of
different precisions in one process still compute as asked (from one thread at a time).

TensorFlow is imported inside the functions that need it, so importing this
module (and `genreflow --help`) stays instant.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from genreflow.errors import ModelLoadError
from genreflow.features.tf_runtime import (
    check_precision,
    savedmodel_ops_problem,
    configure_tf_threads,
    set_precision,
    short_reason as _short_reason,
    tf_module as _tf,
)

# tensorflow_hub 0.16.1 has no Kaggle-specific resolver: an http(s) handle goes to
# HttpCompressedFileResolver, which GETs `<handle>?tf-hub-format=compressed`, follows
# redirects and unpacks the tarball into $TFHUB_CACHE_DIR/<sha1(handle)>. Since
# 2023-11-15 tfhub.dev redirects to Kaggle Models; the tensorflow/hub README says
# tfhub.dev handles keep working but recommends the Kaggle counterparts, and the
# Kaggle URL below is the form used with `hub.load` in current public code.
# "https://tfhub.dev/google/vggish/1" is the legacy alias of the same model; note that
# the cache folder name is a hash of the handle string, so the two never share a cache.
DEFAULT_HANDLE = "https://www.kaggle.com/models/google/vggish/TensorFlow2/vggish/1"
MODEL_ENV_VAR = "GENREFLOW_VGGISH_MODEL"

SAMPLE_RATE = 16000
FRAME_SECONDS = 0.96
MIN_SAMPLES = 15600  # 400 + 95 * 160: the first full 96-frame example (0.975 s)
EMBEDDING_DIM = 128

_STFT_WINDOW = 400  # 25 ms
_STFT_HOP = 160  # 10 ms
_EXAMPLE_FRAMES = 96  # frames per example, and the hop between examples
_EXAMPLE_HOP_SAMPLES = _EXAMPLE_FRAMES * _STFT_HOP  # 15360 samples = 0.96 s

_log = logging.getLogger(__name__)


def _is_remote(handle: str) -> bool:
    """True for URLs (http, https, gs...): they are resolved by tensorflow_hub, not checked here."""
    return "://" in handle


def _fix_hint() -> str:
    return (
        "To fix: download the model once on a machine with network access and point "
        "TFHUB_CACHE_DIR at that cache folder, or pass a local SavedModel folder with "
        f"--vggish-model PATH (or the environment variable {MODEL_ENV_VAR}); or use features that need "
        "no download: --features musicnn (pretrained, its weights ship with `pip install --no-deps "
        "musicnn==0.1.0`), mfcc or spectral."
    )


def _load_error(handle: str, reason: str) -> ModelLoadError:
    return ModelLoadError(
        f"Could not load the VGGish model from handle {handle!r}: {reason}. {_fix_hint()}"
    )


def _check_local(handle: str) -> Path:
    """Validate a local SavedModel folder early, so the error says exactly what is wrong."""
    path = Path(handle).expanduser()
    if not path.exists():
        raise _load_error(handle, "the folder does not exist")
    if not path.is_dir():
        raise _load_error(handle, "it is a file, not a SavedModel folder")
    if not (path / "saved_model.pb").is_file() and not (path / "saved_model.pbtxt").is_file():
        if not any(path.iterdir()):
            raise _load_error(handle, "the folder is empty (an interrupted download?)")
        raise _load_error(handle, "the folder has no saved_model.pb, so it is not a SavedModel")
    return path


def hub_cache_dir() -> str:
    """TFHUB_CACHE_DIR, defaulting to a folder of this user's (``$XDG_CACHE_HOME`` or ~/.cache,
    then ``genreflow/tfhub``) rather than tensorflow_hub's ``/tmp/tfhub_modules``, where any
    local user of a shared host could plant a model under the official handle's name. Set in
    the environment, so tensorflow_hub (in this process and in Ray's workers) uses it too."""
    if not os.environ.get("TFHUB_CACHE_DIR"):
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        os.environ["TFHUB_CACHE_DIR"] = os.path.join(base, "genreflow", "tfhub")
    return os.environ["TFHUB_CACHE_DIR"]


def _cache_entry(handle: str) -> str:
    """Where tensorflow_hub keeps (or would keep) the unpacked model of a URL handle."""
    return os.path.join(hub_cache_dir(), hashlib.sha1(handle.encode("utf8")).hexdigest())


def _cache_hint(handle: str) -> str:
    """Name the tensorflow_hub cache entry for a URL handle when one exists (it may be corrupt)."""
    entry = _cache_entry(handle)
    if os.path.isdir(entry):
        return f" (a cached copy at {entry} could not be used; delete it and download again)"
    return ""


class VggishModel:
    """A loaded VGGish SavedModel and the precision it computes in.

    TensorFlow reads the bf16 rewrite option at call time (a model loaded under bf16 and
    called after the option was turned off computes in fp32), so `__call__` sets this model's
    precision first; a dictionary lookup when nothing changed. Other attributes are those of
    the underlying `tensorflow_hub.load` object.
    """

    def __init__(self, model: Any, precision: str) -> None:
        self.model = model
        self.precision = precision

    def __call__(self, waveform: Any) -> Any:
        set_precision(self.precision)
        return self.model(waveform)

    def __getattr__(self, name: str) -> Any:  # only reached for names not set in __init__
        if name == "model":  # half-built (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.model, name)

    def __repr__(self) -> str:
        return f"VggishModel({self.model!r}, precision={self.precision!r})"


def load_model(handle: str, threads: int | None = None, precision: str = "fp32") -> VggishModel:
    """Load VGGish (or any SavedModel with its signature) as `tensorflow_hub.load` does.

    `handle` is a URL (downloaded once into TFHUB_CACHE_DIR by tensorflow_hub) or a local
    SavedModel folder. Every failure becomes one `ModelLoadError` that names the handle,
    gives the short cause and says how to fix it; a run without network then fails with
    advice instead of a 40-line traceback.

    `precision` is "fp32" or "bf16" (already resolved; see `genreflow.core.host`). bf16 is
    TensorFlow's oneDNN bfloat16 rewrite, set before loading and re-asserted on every call.
    It needs TensorFlow's oneDNN passes: with them off the rewrite would silently compute
    fp32, and a feature set labelled bf16 would hold fp32 rows, so that is an error here.
    """
    check_precision(precision)
    if not isinstance(handle, str) or not handle.strip():
        raise ModelLoadError(f"The VGGish model handle must be a non-empty string; got {handle!r}. {_fix_hint()}")
    if threads is not None:
        configure_tf_threads(threads)
    target = handle if _is_remote(handle) else str(_check_local(handle))
    try:
        tf = _tf()
    except Exception as exc:  # a broken install: one line with the cause, as for a bad model
        raise _load_error(handle, _short_reason(exc)) from exc
    set_precision(precision)
    hub_cache_dir()
    folder = check_handle(handle, ops=False) if _is_remote(handle) else target  # the cache entry of a URL
    check_ops(folder, handle)  # before anything from it is loaded (or could run)
    try:
        return VggishModel(_load_savedmodel(tf, folder), precision)
    except Exception as exc:  # corrupt cache, bad SavedModel...
        reason = _short_reason(exc) + (_cache_hint(handle) if _is_remote(handle) else "")
        raise _load_error(handle, reason) from exc


def _load_savedmodel(tf: Any, folder: str) -> Any:
    """What ``tensorflow_hub.load`` does with a local folder (a URL's cache entry included):
    ``tf.saved_model.load``, with no tags for a TF1 Hub module; called directly because
    importing tensorflow_hub imports Keras (1.5 s of one core, see ``tf_runtime.tf_module``).
    URLs are still resolved and downloaded by tensorflow_hub (``check_handle``)."""
    v1_module = os.path.exists(os.path.join(folder, "tfhub_module.pb"))
    return tf.saved_model.load(folder, tags=[] if v1_module else None)


def check_ops(folder: str, handle: str) -> None:
    """Refuse a SavedModel that could do more than compute: every op its loader or a call can
    run must be a pure tensor op (``tf_runtime.SAFE_OPS``), so a model folder, a TF Hub cache
    entry or a URL never reads or writes files, runs Python or prints."""
    try:
        problem = savedmodel_ops_problem(str(folder))
    except ValueError as exc:  # not a readable SavedModel: damaged, as hub.load would say
        raise _load_error(handle, str(exc) + (_cache_hint(handle) if _is_remote(handle) else "")) from exc
    if problem:
        raise ModelLoadError(
            f"Refusing the VGGish SavedModel at {folder}: {problem}; a feature model may only compute "
            f"(delete that folder, or pass a trusted VGGish with --vggish-model PATH or {MODEL_ENV_VAR})"
        )


def expected_frames(n_samples: int) -> int:
    """Rows VGGish emits for `n_samples` samples, after padding to MIN_SAMPLES.

    STFT frames = 1 + (n - 400) // 160; examples = 1 + (frames - 96) // 96.
    30 s -> 31 rows, 10 s -> 10 rows, anything up to 0.975 s -> 1 row.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 0:
        raise ValueError(f"n_samples={n_samples!r} must be a non-negative integer")
    n = max(int(n_samples), MIN_SAMPLES)
    frames = 1 + (n - _STFT_WINDOW) // _STFT_HOP
    return 1 + (frames - _EXAMPLE_FRAMES) // _EXAMPLE_FRAMES


def _check_waveform(waveform: np.ndarray, n_valid_samples: int | None) -> tuple[np.ndarray, int]:
    wav = np.asarray(waveform)
    if wav.ndim != 1:
        raise ValueError(f"waveform must be 1-D mono samples at 16 kHz; got shape={wav.shape}")
    if wav.size == 0:
        raise ValueError("waveform has 0 samples; there is nothing to embed")
    if not np.issubdtype(wav.dtype, np.number) or np.iscomplexobj(wav):
        raise ValueError(f"waveform must hold real numbers; got dtype={wav.dtype}")
    wav = wav.astype(np.float32, copy=False)
    bad = int(np.count_nonzero(~np.isfinite(wav)))
    if bad:
        raise ValueError(f"waveform has {bad} non-finite samples (NaN or inf); got size={wav.size}")
    if n_valid_samples is None:
        return wav, wav.size
    if (
        isinstance(n_valid_samples, bool)
        or not isinstance(n_valid_samples, (int, np.integer))
        or not 1 <= n_valid_samples <= wav.size
    ):
        raise ValueError(
            f"n_valid_samples={n_valid_samples!r} must be an integer in [1, len(waveform)={wav.size}]"
        )
    return wav, int(n_valid_samples)


def _model_input(wav: np.ndarray) -> np.ndarray:
    """Zero-pad a checked waveform to MIN_SAMPLES, so even a short clip gets one row."""
    return np.pad(wav, (0, MIN_SAMPLES - wav.size)) if wav.size < MIN_SAMPLES else wav


def _run_model(model: Any, wav: np.ndarray) -> np.ndarray:
    """One model call, its output checked to be (N >= 1, 128): a wrong handle fails here."""
    out = model(wav)
    shape = tuple(getattr(out, "shape", ())) if hasattr(out, "numpy") else f"a {type(out).__name__}"
    if not hasattr(out, "numpy") or len(shape) != 2 or shape[1] != EMBEDDING_DIM or shape[0] < 1:
        raise ModelLoadError(
            f"The VGGish model returned {shape}, expected a tensor of shape (N, {EMBEDDING_DIM}) "
            f"with N >= 1, so the handle does not point at VGGish. {_fix_hint()}"
        )
    return np.asarray(out.numpy(), dtype=np.float32)


def _valid_rows(n_valid: int, rows: int) -> int:
    """Rows whose example starts inside the first `n_valid` samples, in [1, rows]."""
    starts_inside = (n_valid - 1) // _EXAMPLE_HOP_SAMPLES + 1
    return int(min(max(starts_inside, 1), rows))


def embed_waveform(
    model: Any, waveform: np.ndarray, n_valid_samples: int | None = None
) -> tuple[np.ndarray, int]:
    """Embed one clip with a loaded VGGish model.

    Parameters
    ----------
    model : callable returned by `load_model`
    waveform : np.ndarray [shape=(n,)], float, 16 kHz mono in [-1, 1]
        Zero-padded to MIN_SAMPLES so even a short clip gets one row.
    n_valid_samples : int, optional
        How many leading samples are real audio (the rest was padded by the caller);
        defaults to len(waveform).

    Returns
    -------
    embeddings : np.ndarray [shape=(N, 128), dtype=float32]
        One row per 0.96 s example; N == expected_frames(len(waveform)).
    valid_frames : int
        Rows whose example starts inside the real audio, in [1, N]; rows after it
        describe only padding, and poolers should drop them.
    """
    wav, n_valid = _check_waveform(waveform, n_valid_samples)
    emb = _run_model(model, _model_input(wav))
    return emb, _valid_rows(n_valid, emb.shape[0])


def embed_batch(
    model: Any, waveforms: list[np.ndarray], n_valid: list[int | None]
) -> list[tuple[np.ndarray, int]]:
    """Embed several clips in ONE model call; each result equals `embed_waveform` of that clip.

    Per-call overhead dominates short clips and bf16, so clips share a call. VGGish's rows
    depend only on each 0.96 s example's own samples (frame k covers [160k, 160k + 400), an
    example 96 frames), so each clip is laid out at an example boundary: its first
    rows * 15360 + 240 samples (all its own rows read, the last frame's window reaching 240
    samples past its hop), then zeros up to the next boundary. That gap makes one extra
    example per boundary, which straddles two clips and is dropped: k clips cost k - 1 rows
    more than k calls. Values match per-clip calls up to float round-off (oneDNN may block a
    larger batch differently); the result is a list of (embeddings, valid_frames) as
    `embed_waveform` returns them.
    """
    if len(waveforms) != len(n_valid):
        raise ValueError(f"{len(waveforms)} waveforms but {len(n_valid)} n_valid values; give one per clip")
    checked = [_check_waveform(w, n) for w, n in zip(waveforms, n_valid)]
    if not checked:
        return []
    parts, spans, offset = [], [], 0
    for i, (wav, _) in enumerate(checked):
        wav = _model_input(wav)
        rows = expected_frames(wav.size)
        used = rows * _EXAMPLE_HOP_SAMPLES + (_STFT_WINDOW - _STFT_HOP)  # every sample its rows read
        span = used if i == len(checked) - 1 else (rows + 1) * _EXAMPLE_HOP_SAMPLES
        parts.append(np.pad(wav[:used], (0, span - used)))
        spans.append((offset, rows))
        offset += rows + 1
    emb = _run_model(model, np.concatenate(parts))
    expected = offset - 1
    if emb.shape[0] != expected:
        raise ModelLoadError(
            f"The VGGish model returned {emb.shape[0]} rows for a batch laid out for {expected}; its "
            f"framing is not VGGish's (0.96 s examples of 96 x 10 ms frames). {_fix_hint()}"
        )
    return [(emb[start:start + rows], _valid_rows(n, rows)) for (start, rows), (_, n) in zip(spans, checked)]


def check_handle(handle: str, ops: bool = True) -> str:
    """Fail fast, in the driver, before any actor starts: a local folder must be a SavedModel,
    a URL must resolve (tensorflow_hub downloads it into TFHUB_CACHE_DIR once), and the folder
    either names must pass the op check (``check_ops``; this imports TensorFlow in the driver,
    a few CPU-seconds, so a hostile model is refused with one line rather than by every actor).
    ``ops=False`` skips the op check (``load_model`` makes it again before loading anything).
    Returns the local folder the model was resolved to."""
    if not _is_remote(handle):
        folder = str(_check_local(handle))
    else:
        cached = _cache_entry(handle)
        if os.path.isdir(cached) and os.listdir(cached):  # tensorflow_hub's own test
            folder = cached
        else:
            try:
                _tf()
                import tensorflow_hub as hub

                folder = hub.resolve(handle)
            except Exception as exc:
                raise _load_error(handle, _short_reason(exc) + _cache_hint(handle)) from exc
    if ops:
        check_ops(folder, handle)
    return folder
