"""The baseline: what a user writes without genreflow.

One Python loop over the files: ``librosa.load`` (mono, 22.05 kHz, soxr), MFCC with genreflow's
default parameters, resample to 16 kHz, ``hub.load`` once then one VGGish call per file,
``np.save`` of both arrays per file. Written straightforwardly, not sandbagged: the file is
decoded once (the 16 kHz input is resampled from the 22.05 kHz signal already in memory) and
TensorFlow keeps its default thread pools (every core).

Usage: python plain_loop.py RAW_DIR MODEL OUT_DIR SECONDS RESULT_JSON [RELPATH_LIST]
The per-step times it writes to RESULT_JSON are for the report; they cost a few
``perf_counter`` calls.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main(raw: Path, model_handle: str, out_dir: Path, seconds: float, relpaths: list[str]) -> dict:
    t_start = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import librosa
    import numpy as np
    import tensorflow_hub as hub

    steps = dict.fromkeys(("load", "mfcc", "resample", "vggish", "save"), 0.0)
    t0 = time.perf_counter()
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
    return {"files": len(relpaths), "model_load_s": t_model, "loop_s": sum(steps.values()),
            "steps_s": steps, "inner_total_s": time.perf_counter() - t_start}


if __name__ == "__main__":
    raw_dir, handle, out, secs, result = sys.argv[1:6]
    if len(sys.argv) > 6:
        files = Path(sys.argv[6]).read_text().split("\n")
    else:
        files = sorted(str(p.relative_to(raw_dir)) for p in Path(raw_dir).rglob("*") if p.is_file())
    summary = main(Path(raw_dir), handle, Path(out), float(secs), [f for f in files if f])
    Path(result).write_text(json.dumps(summary, indent=2))
