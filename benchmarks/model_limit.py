"""The machine's limit: the same VGGish model on pre-decoded inputs, in large batches, no I/O.

The clips are decoded to 16 kHz first (untimed, with genreflow's own decoder so the inputs
equal the pipeline's), each cut to exactly the samples of its N examples (N = the rows VGGish
emits for the clip, 31 for 30 s), and ``batch`` of them are joined into one waveform: one model
call then computes exactly the examples of ``batch`` separate calls, without the per-call
overhead. Only the model calls are timed, after one warm-up call per input shape; TensorFlow
keeps its default thread pools (every core). No pipeline can beat this on the same machine.

Usage: python model_limit.py RAW_DIR MODEL SECONDS BATCH RESULT_JSON RELPATH_LIST
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def batches(waves: list, batch: int) -> list:
    """Join ``batch`` clips at a time into one waveform with exactly their examples."""
    import numpy as np

    from genreflow.vggish import _EXAMPLE_HOP_SAMPLES, _STFT_HOP, _STFT_WINDOW, expected_frames

    tail = np.zeros(_STFT_WINDOW - _STFT_HOP, np.float32)  # the last frame's window past its hop
    out = []
    for start in range(0, len(waves), batch):
        parts = [w[: expected_frames(len(w)) * _EXAMPLE_HOP_SAMPLES] for w in waves[start:start + batch]]
        rows = sum(expected_frames(len(w)) for w in waves[start:start + batch])
        out.append((np.concatenate(parts + [tail]), rows))
    return out


def main(raw: Path, model_handle: str, seconds: float, batch: int, relpaths: list[str]) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow_hub as hub

    from genreflow.audio import load_audio

    waves = [np.clip(load_audio(str(raw / rel), sample_rate=16000, duration_s=seconds).samples, -1.0, 1.0)
             for rel in relpaths]
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
            "model_s": elapsed, "model_cpu_s": cpu}


if __name__ == "__main__":
    raw_dir, handle, secs, size, result, listing = sys.argv[1:7]
    files = [f for f in Path(listing).read_text().split("\n") if f]
    Path(result).write_text(json.dumps(main(Path(raw_dir), handle, float(secs), int(size), files), indent=2))
