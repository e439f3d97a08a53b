"""The machine's limit: the same VGGish model on pre-decoded inputs, in large batches, no I/O.

The clips are decoded to 16 kHz first (untimed, with genreflow's own decoder so the inputs
equal the pipeline's), each cut to exactly the samples of its N examples (N = the rows VGGish
emits for the clip, 31 for 30 s), and ``batch`` of them are joined into one waveform: one model
call then computes exactly the examples of ``batch`` separate calls, without the per-call
overhead. Only the model calls are timed, after one warm-up call per input shape; TensorFlow
keeps its default thread pools (every core). No pipeline can beat this on the same machine.

``--precision bf16`` sets TensorFlow's oneDNN bfloat16 rewrite before the model is loaded (the
one option genreflow's bf16 uses); fp32 (the default) leaves TensorFlow as it is.

Usage: python model_limit.py [--precision fp32|bf16] RAW_DIR MODEL SECONDS BATCH RESULT_JSON RELPATH_LIST
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def batches(waves: list, batch: int) -> list:
    """Join ``batch`` clips at a time into one waveform with exactly their examples."""
    import numpy as np

    from genreflow.features.vggish_tf import _EXAMPLE_HOP_SAMPLES, _STFT_HOP, _STFT_WINDOW, expected_frames

    tail = np.zeros(_STFT_WINDOW - _STFT_HOP, np.float32)  # the last frame's window past its hop
    out = []
    for start in range(0, len(waves), batch):
        parts = [w[: expected_frames(len(w)) * _EXAMPLE_HOP_SAMPLES] for w in waves[start:start + batch]]
        rows = sum(expected_frames(len(w)) for w in waves[start:start + batch])
        out.append((np.concatenate(parts + [tail]), rows))
    return out


def main(raw: Path, model_handle: str, seconds: float, batch: int, relpaths: list[str],
         precision: str = "fp32") -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    import tensorflow_hub as hub

    from genreflow.data.audio import load_audio

    waves = [np.clip(load_audio(str(raw / rel), sample_rate=16000, duration_s=seconds).samples, -1.0, 1.0)
             for rel in relpaths]
    if precision == "bf16":
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
    model = hub.load(model_handle)
    work = batches(waves, batch)
    for shape in {len(w) for w, _ in work}:  # oneDNN builds its kernels once per input shape
        model(next(w for w, _ in work if len(w) == shape))
    t0, c0 = time.perf_counter(), time.process_time()
    for wave, rows in work:
        emb = model(wave).numpy()
        if emb.shape[0] != rows:
            raise SystemExit(f"model returned {emb.shape[0]} rows for a batch of {rows} examples")
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"clips": len(waves), "batch": batch, "calls": len(work), "examples": sum(r for _, r in work),
            "precision": precision, "model_s": elapsed, "model_cpu_s": cpu}


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    for name in ("raw_dir", "model", "seconds", "batch", "result", "listing"):
        cli.add_argument(name)
    a = cli.parse_args()
    files = [f for f in Path(a.listing).read_text().split("\n") if f]
    summary = main(Path(a.raw_dir), a.model, float(a.seconds), int(a.batch), files, a.precision)
    Path(a.result).write_text(json.dumps(summary, indent=2))
