"""The baseline for musicnn: the script a user writes without genreflow (issue 22).

One sequential Python loop over the files, in one fresh process:
``librosa.load(path, sr=16000, mono=True)`` -> musicnn log-mel with the float32 fix
(``musicnn_net.log_mel``: log10(10000 * S + 1) in float32 on the float16-rounded power, i.e. the
original's preprocessing minus its NumPy 2 overflow) -> 3 s patches (``make_patches``: 187
frames, hop 187) -> the MSD_musicnn network, one call per clip with all its patches -> the clip's
embedding = mean over its patches of ``max_pool`` + ``mean_pool`` (753 + 753) -> collected, and
saved as one .npy at the end. TensorFlow keeps its default thread pools (every core), as a user's
script would.

``--precision bf16`` is the same script with the network loaded in bf16 (TensorFlow's oneDNN
bfloat16 rewrite, the one option genreflow's bf16 uses); meaningful only on CPUs with
amx_bf16 / avx512_bf16, elsewhere TensorFlow emulates bf16 and it is slower.

Usage: python bench_musicnn_plain.py [--precision fp32|bf16] RAW_DIR SECONDS RESULT_JSON LISTING [OUT_NPY]
The per-step times written to RESULT_JSON cost a few ``perf_counter`` calls.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main(raw: Path, seconds: float, relpaths: list[str], precision: str = "fp32",
         out_npy: Path | None = None) -> dict:
    t_start = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import librosa
    import numpy as np

    from genreflow.features import musicnn_net as mn

    t0 = time.perf_counter()
    model = mn.load_model("MSD_musicnn", None, precision)  # threads=None: TensorFlow's defaults
    t_model = time.perf_counter() - t0
    steps = dict.fromkeys(("load", "logmel", "model", "pool"), 0.0)
    embeddings, patches_total = [], 0
    for rel in relpaths:
        t0 = time.perf_counter()
        y, _ = librosa.load(str(raw / rel), sr=mn.SAMPLE_RATE, mono=True, duration=seconds)
        t1 = time.perf_counter()
        logmel = mn.log_mel(y)
        patches = mn.make_patches(logmel, len(logmel))
        t2 = time.perf_counter()
        out = model(patches)  # batch = every patch of the clip
        t3 = time.perf_counter()
        embeddings.append(np.concatenate([out["max_pool"], out["mean_pool"]], axis=1).mean(axis=0))
        patches_total += len(patches)
        t4 = time.perf_counter()
        for name, dt in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            steps[name] += dt
    features = np.stack(embeddings) if embeddings else np.zeros((0, 1506), np.float32)
    if out_npy is not None:
        np.save(out_npy, features)
    return {"files": len(relpaths), "patches": patches_total, "precision": precision,
            "feature_shape": list(features.shape), "finite": bool(np.all(np.isfinite(features))),
            "model_load_s": t_model, "loop_s": sum(steps.values()), "steps_s": steps,
            "inner_total_s": time.perf_counter() - t_start}


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    for name in ("raw_dir", "seconds", "result", "listing"):
        cli.add_argument(name)
    cli.add_argument("out_npy", nargs="?")
    a = cli.parse_args()
    files = [f for f in Path(a.listing).read_text().split("\n") if f]
    summary = main(Path(a.raw_dir), float(a.seconds), files, a.precision, Path(a.out_npy) if a.out_npy else None)
    Path(a.result).write_text(json.dumps(summary, indent=2))
