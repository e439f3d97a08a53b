"""The baseline: what a user writes without genreflow.

One Python loop over the files: ``librosa.load`` (mono, 22.05 kHz, soxr), MFCC with genreflow's
default parameters, resample to 16 kHz, ``hub.load`` once then one VGGish call per file,
``np.save`` of both arrays per file. Written straightforwardly, not sandbagged: the file is
decoded once (the 16 kHz input is resampled from the 22.05 kHz signal already in memory) and
TensorFlow keeps its default thread pools (every core).

``--precision bf16`` adds the one line a user would add for bf16 inference, TensorFlow's oneDNN
bfloat16 rewrite set before ``hub.load`` (the fair peer of genreflow's bf16); nothing else changes.

Usage: python plain_loop.py [--precision fp32|bf16] RAW_DIR MODEL OUT_DIR SECONDS RESULT_JSON [RELPATH_LIST]
The per-step times it writes to RESULT_JSON are for the report; they cost a few
``perf_counter`` calls.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main(raw: Path, model_handle: str, out_dir: Path, seconds: float, relpaths: list[str],
         precision: str = "fp32") -> dict:
    t_start = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import librosa
    import numpy as np
    import tensorflow as tf
    import tensorflow_hub as hub

    steps = dict.fromkeys(("load", "mfcc", "resample", "vggish", "save"), 0.0)
    t0 = time.perf_counter()
    if precision == "bf16":
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
    model = hub.load(model_handle)
    t_model = time.perf_counter() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    sr = 22050
    for rel in relpaths:
        t0 = time.perf_counter()
        y, _ = librosa.load(str(raw / rel), sr=sr, mono=True, duration=seconds)
        y = librosa.util.fix_length(y, size=int(round(sr * seconds)))
        t1 = time.perf_counter()
        mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20, n_fft=2048, hop_length=512, n_mels=128)
        t2 = time.perf_counter()
        y16 = librosa.resample(y, orig_sr=sr, target_sr=16000)
        t3 = time.perf_counter()
        embedding = model(np.clip(y16, -1.0, 1.0)).numpy()
        t4 = time.perf_counter()
        stem = rel.replace("/", "__")
        np.save(out_dir / f"{stem}.mfcc.npy", mfcc)
        np.save(out_dir / f"{stem}.vggish.npy", embedding)
        t5 = time.perf_counter()
        for name, dt in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            steps[name] += dt
    return {"files": len(relpaths), "precision": precision, "model_load_s": t_model,
            "loop_s": sum(steps.values()), "steps_s": steps, "inner_total_s": time.perf_counter() - t_start}


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    for name in ("raw_dir", "model", "out_dir", "seconds", "result"):
        cli.add_argument(name)
    cli.add_argument("listing", nargs="?")
    a = cli.parse_args()
    if a.listing:
        files = Path(a.listing).read_text().split("\n")
    else:
        files = sorted(str(p.relative_to(a.raw_dir)) for p in Path(a.raw_dir).rglob("*") if p.is_file())
    summary = main(Path(a.raw_dir), a.model, Path(a.out_dir), float(a.seconds), [f for f in files if f], a.precision)
    Path(a.result).write_text(json.dumps(summary, indent=2))
