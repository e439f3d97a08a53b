"""The machine's limit for musicnn: the network alone, no decoding, no log-mel, no I/O.

The inputs are real log-mel patches (a few clips decoded at 16 kHz and turned into patches
with genreflow's own ``log_mel``/``make_patches``, untimed), repeated until there are as many
patches as the benchmark's N clips produce. They are fed as genreflow's actors feed them:
``patches_per_call`` (default 16, genreflow's ``[musicnn] patches_per_call``) patches per call,
TensorFlow pinned to ``threads`` threads (default 2), every layer brought back to NumPy. Only
the model calls are timed, after a warm-up call of each batch size. No pipeline can beat this
on the same machine at the same precision.

Usage: python bench_musicnn_limit.py [--precision fp32|bf16] [--per-call 16] [--threads 2]
           RAW_DIR SECONDS PATCHES RESULT_JSON LISTING
(LISTING: the few clips whose patches are repeated.)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main(raw: Path, seconds: float, total: int, relpaths: list[str], precision: str = "fp32",
         per_call: int = 16, threads: int = 2) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import librosa
    import numpy as np

    from genreflow.features import musicnn_net as mn

    model = mn.load_model("MSD_musicnn", None, precision, threads)
    pool = []
    for rel in relpaths:
        y, _ = librosa.load(str(raw / rel), sr=mn.SAMPLE_RATE, mono=True, duration=seconds)
        logmel = mn.log_mel(y)
        pool.append(mn.make_patches(logmel, len(logmel)))
    pool = np.concatenate(pool)
    calls = [(start, min(per_call, total - start)) for start in range(0, total, per_call)]

    def batch(start: int, size: int) -> np.ndarray:
        return pool[np.arange(start, start + size) % len(pool)]

    for size in sorted({size for _, size in calls}):  # oneDNN builds its kernels once per shape
        model(batch(0, size))
    rows = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for start, size in calls:
        rows += len(model(batch(start, size))["max_pool"])
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    if rows != total:
        raise SystemExit(f"the model returned {rows} rows for {total} patches")
    return {"patches": total, "distinct_patches": len(pool), "sample_clips": len(relpaths), "per_call": per_call,
            "threads": threads, "calls": len(calls), "precision": precision, "model_s": elapsed,
            "model_cpu_s": cpu, "patches_per_s": total / elapsed if elapsed > 0 else None}


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    cli.add_argument("--per-call", type=int, default=16)
    cli.add_argument("--threads", type=int, default=2)
    for name in ("raw_dir", "seconds", "patches", "result", "listing"):
        cli.add_argument(name)
    a = cli.parse_args()
    files = [f for f in Path(a.listing).read_text().split("\n") if f]
    summary = main(Path(a.raw_dir), float(a.seconds), int(a.patches), files, a.precision, a.per_call, a.threads)
    Path(a.result).write_text(json.dumps(summary, indent=2))
