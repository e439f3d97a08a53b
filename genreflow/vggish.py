"""Frozen VGGish from TensorFlow Hub: load it once per worker, embed 16 kHz waveforms.

VGGish maps a mono 16 kHz waveform to one 128-d embedding per 0.96 s example
(96 log-mel frames of 10 ms, no overlap). The model is never trained here; the
pipeline only needs `load_model` once per actor and `embed_waveform` per clip.

TensorFlow is imported inside the functions that need it, so importing this
module (and `genreflow --help`) stays instant.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from genreflow.errors import ModelLoadError

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


def _tf() -> Any:
    """Import TensorFlow with its C++ chatter turned down (only if the user has not chosen)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def _is_remote(handle: str) -> bool:
    """True for URLs (http, https, gs...): they are resolved by tensorflow_hub, not checked here."""
    return "://" in handle


def configure_tf_threads(n: int) -> None:
    """Pin TensorFlow's intra- and inter-op pools to `n` threads.

    Ray actors each get a few CPUs; without this every actor spawns a pool the size of
    the machine and they oversubscribe the cores. TensorFlow accepts the setting only
    before it executes anything; a later call is ignored (logged at debug level).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"threads={n!r} must be a positive integer")
    tf = _tf()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(n))
        tf.config.threading.set_inter_op_parallelism_threads(int(n))
    except RuntimeError as exc:  # context already initialised
        _log.debug("TensorFlow threads already fixed; threads=%d ignored (%s)", n, exc)


def _fix_hint() -> str:
    return (
        "To fix: download the model once on a machine with network access and point "
        "TFHUB_CACHE_DIR at that cache folder, or pass a local SavedModel folder with "
        f"--vggish-model PATH (or the environment variable {MODEL_ENV_VAR})."
    )


def _load_error(handle: str, reason: str) -> ModelLoadError:
    return ModelLoadError(
        f"Could not load the VGGish model from handle {handle!r}: {reason}. {_fix_hint()}"
    )


def _short_reason(exc: BaseException) -> str:
    """First line of an exception, bounded: the user needs the cause, not the stack."""
    text = str(exc).strip()
    line = text.splitlines()[0].strip() if text else ""
    line = line.rstrip(".")
    if len(line) > 300:
        line = line[:297] + "..."
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


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


def _cache_hint(handle: str) -> str:
    """Name the tensorflow_hub cache entry for a URL handle when one exists (it may be corrupt)."""
    cache = os.environ.get("TFHUB_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "tfhub_modules")
    entry = os.path.join(cache, hashlib.sha1(handle.encode("utf8")).hexdigest())
    if os.path.isdir(entry):
        return f" (a cached copy at {entry} could not be used; delete it and download again)"
    return ""


def load_model(handle: str, threads: int | None = None) -> Any:
    """Load VGGish (or any SavedModel with its signature) through `tensorflow_hub.load`.

    `handle` is a URL (downloaded once into TFHUB_CACHE_DIR by tensorflow_hub) or a local
    SavedModel folder. Every failure becomes one `ModelLoadError` that names the handle,
    gives the short cause and says how to fix it; a run without network then fails with
    advice instead of a 40-line traceback.
    """
    if not isinstance(handle, str) or not handle.strip():
        raise ModelLoadError(f"The VGGish model handle must be a non-empty string; got {handle!r}. {_fix_hint()}")
    if threads is not None:
        configure_tf_threads(threads)
    target = handle if _is_remote(handle) else str(_check_local(handle))
    try:
        _tf()
        import tensorflow_hub as hub

        return hub.load(target)
    except Exception as exc:  # offline, HTTP error, corrupt cache, bad SavedModel...
        reason = _short_reason(exc) + (_cache_hint(handle) if _is_remote(handle) else "")
        raise _load_error(handle, reason) from exc


def model_identity(handle: str) -> str:
    """A string that changes when the model changes, for feature-store fingerprints.

    A URL names a published, immutable model version, so the URL is its identity. A local
    folder can be overwritten in place, so its identity is the absolute path plus a sha256
    of saved_model.pb (the graph) and variables/variables.index (which carries a checksum
    of every weight tensor, so new weights in the same graph change it too).
    """
    if _is_remote(handle):
        return handle
    path = _check_local(handle).resolve()
    digest = hashlib.sha256()
    for name in ("saved_model.pb", "saved_model.pbtxt", "variables/variables.index"):
        part = path / name
        if part.is_file():
            digest.update(name.encode() + b"\0" + part.read_bytes())
    return f"{path}#sha256={digest.hexdigest()}"


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
    if wav.size < MIN_SAMPLES:
        wav = np.pad(wav, (0, MIN_SAMPLES - wav.size))
    out = model(wav)
    shape = tuple(getattr(out, "shape", ())) if hasattr(out, "numpy") else f"a {type(out).__name__}"
    if not hasattr(out, "numpy") or len(shape) != 2 or shape[1] != EMBEDDING_DIM or shape[0] < 1:
        raise ModelLoadError(
            f"The VGGish model returned {shape}, expected a tensor of shape (N, {EMBEDDING_DIM}) "
            f"with N >= 1, so the handle does not point at VGGish. {_fix_hint()}"
        )
    emb = np.asarray(out.numpy(), dtype=np.float32)
    starts_inside = (n_valid - 1) // _EXAMPLE_HOP_SAMPLES + 1
    return emb, int(min(max(starts_inside, 1), emb.shape[0]))


def check_handle(handle: str) -> str:
    """Fail fast, in the driver, before any actor starts: a local folder must be a SavedModel,
    a URL must resolve (tensorflow_hub downloads it into TFHUB_CACHE_DIR once). Returns the
    local folder the model was resolved to."""
    if not _is_remote(handle):
        return str(_check_local(handle))
    try:
        _tf()
        import tensorflow_hub as hub

        return hub.resolve(handle)
    except Exception as exc:
        raise _load_error(handle, _short_reason(exc) + _cache_hint(handle)) from exc
