"""TensorFlow in a worker: quiet import, thread pools sized to the actor, one precision switch.

Every model extractor (VGGish, musicnn) runs through these, so they agree on how threads and
bf16 are set. TensorFlow is imported inside the functions, so importing this module (and
`genreflow --help`) stays instant.

Precision: "bf16" turns on TensorFlow's oneDNN auto-mixed-precision graph rewrite
(convolutions and matmuls in bfloat16, fp32 in and out). The option is global to the
TensorFlow runtime of a process and is read when a function is *called*, so a model object
re-asserts its own precision before every call (`set_precision`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from genreflow.errors import ConfigError, ModelLoadError

PRECISIONS = ("fp32", "bf16")
_BF16_OPTION = "auto_mixed_precision_onednn_bfloat16"

_log = logging.getLogger(__name__)


def tf_module() -> Any:
    """Import TensorFlow with its C++ chatter turned down (only if the user has not chosen)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from genreflow.core.console import quiet_import

    return quiet_import("tensorflow")


def configure_tf_threads(n: int) -> None:
    """Pin TensorFlow's intra- and inter-op pools to `n` threads.

    Ray actors each get a few CPUs; without this every actor spawns a pool the size of
    the machine and they oversubscribe the cores. TensorFlow accepts the setting only
    before it executes anything; a later call is ignored (logged at debug level).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"threads={n!r} must be a positive integer")
    tf = tf_module()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(n))
        tf.config.threading.set_inter_op_parallelism_threads(int(n))
    except RuntimeError as exc:  # context already initialised
        _log.debug("TensorFlow threads already fixed; threads=%d ignored (%s)", n, exc)


def onednn_enabled(tf: Any) -> bool:
    """Whether TensorFlow runs its oneDNN (MKL) passes; without them the bf16 rewrite is
    silently skipped (measured: TF_ENABLE_ONEDNN_OPTS=0 gives bit-identical fp32 output)."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except Exception:  # private module moved: fall back to the switch users flip
        return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip().lower() not in ("0", "false")


def check_precision(precision: str) -> None:
    """Refuse an unresolved or unknown precision, and bf16 where the rewrite would silently not
    run (a feature set labelled bf16 must not hold fp32 rows)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} is not valid for the model; use fp32 or bf16 "
                          "(resolve 'auto' with genreflow.core.host.resolve_precision first)")
    if precision == "bf16" and not onednn_enabled(tf_module()):
        raise ModelLoadError(
            "precision bf16 needs TensorFlow's oneDNN optimizations, which are off in this process "
            f"(TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', '<unset>')}, or a TensorFlow "
            "build without oneDNN); unset TF_ENABLE_ONEDNN_OPTS or use precision fp32"
        )


def set_precision(precision: str) -> None:
    """Switch this process's TensorFlow to `precision` ("fp32" or "bf16").

    The grappler option is written only when it differs from the current value, because
    writing it resets TensorFlow's cached function-call options (about 2 ms per switch).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} is not valid for the model; use fp32 or bf16 "
                          "(resolve 'auto' with genreflow.core.host.resolve_precision first)")
    tf = tf_module()
    want = precision == "bf16"
    if bool(tf.config.optimizer.get_experimental_options().get(_BF16_OPTION, False)) != want:
        tf.config.optimizer.set_experimental_options({_BF16_OPTION: want})


def short_reason(exc: BaseException) -> str:
    """First line of an exception, bounded: the user needs the cause, not the stack."""
    text = str(exc).strip()
    line = text.splitlines()[0].strip() if text else ""
    line = line.rstrip(".")
    if len(line) > 300:
        line = line[:297] + "..."
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__
