"""Check genreflow's TF2 musicnn on the two reference clips of the musicnn README, then time it.

    python benchmarks/musicnn_tags.py [../shared/reference/musicnn]

1. Tags: each mp3 is decoded at 16 kHz mono (librosa.load), cut into 3 s patches with a 3 s
   hop (musicnn's defaults), run through MTT_musicnn; the taggram is averaged over patches and
   the top 10 tags are printed next to the tags the musicnn README documents (OK / MISMATCH).
2. Speed: the model-only forward pass on random patches, fp32 vs bf16, batch 1/4/16/64, two
   TensorFlow threads, median of 5 calls after a warm-up; patches/s per row.
Exit status 1 when a tag check fails. Not part of the test suite (it needs the reference clips).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from genreflow.features import musicnn_net as mn
from genreflow.features.tf_runtime import configure_tf_threads

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference" / "musicnn"
# (clip, documented top tags in order): from the musicnn README (and the README next to the clips)
EXPECTED = {
    "joram-moments_of_clarity-08-solipsism-59-88.mp3": ["techno", "electronic", "synth", "fast", "beat", "drums",
                                                        "no vocals", "no vocal", "dance", "ambient"],
    "TRWJAZW128F42760DD_test.mp3": ["guitar", "piano", "fast"],
}
BATCHES = (1, 4, 16, 64)
THREADS = 2


def check_tags(folder: Path, model: mn.MusicnnModel) -> bool:
    import librosa

    names = mn.tag_names(model.model)
    ok_all = True
    for clip, expected in EXPECTED.items():
        wav, _ = librosa.load(folder / clip, sr=mn.SAMPLE_RATE, mono=True)
        logmel = mn.log_mel(wav)
        patches = mn.make_patches(logmel, logmel.shape[0], hop_frames=mn.PATCH_FRAMES)
        mean = model(patches)["taggram"].mean(axis=0)
        top = [names[i] for i in np.argsort(-mean, kind="stable")[:10]]
        ok = top[: len(expected)] == expected
        ok_all &= ok
        print(f"{'OK' if ok else 'MISMATCH'}  {clip}  ({len(patches)} patches)")
        print(f"    ours:       {', '.join(f'{t} {mean[names.index(t)]:.3f}' for t in top)}")
        print(f"    documented: {', '.join(expected)}")
    return ok_all


def shell(command: str) -> str:
    """Output of a shell pipeline (the same lines a reader would type), '(none)' when empty."""
    out = subprocess.run(command, shell=True, capture_output=True, text=True, check=False).stdout.strip()
    return " ".join(out.split("\n")) if out else "(none)"


def time_models(prefix: str) -> None:
    rng = np.random.default_rng(0)
    models = {p: mn.MusicnnModel(prefix, "MTT_musicnn", precision=p) for p in ("fp32", "bf16")}
    print(f"\n{'precision':>9} {'batch':>5} {'median ms':>10} {'patches/s':>10}")
    for batch in BATCHES:
        x = rng.uniform(0, 3, (batch, mn.PATCH_FRAMES, mn.N_MELS)).astype(np.float32)
        for precision, model in models.items():
            model(x)  # warm-up: tracing and the grappler rewrite for this precision
            model(x)
            times = []
            for _ in range(5):
                start = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - start)
            med = statistics.median(times)
            print(f"{precision:>9} {batch:>5} {med * 1e3:>10.1f} {batch / med:>10.1f}")


def main() -> int:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    configure_tf_threads(THREADS)  # before TensorFlow runs anything
    prefix = mn.find_checkpoint("MTT_musicnn")
    print(f"MTT_musicnn {prefix} {mn.weights_identity(prefix)[:19]}")
    ok = check_tags(folder, mn.MusicnnModel(prefix, "MTT_musicnn", precision="fp32"))
    print("\n" + shell("lscpu | grep 'Model name'"))
    print("bf16 flags: " + shell("grep -o 'amx_bf16\\|avx512_bf16' /proc/cpuinfo | sort -u"))
    print(f"TensorFlow threads: {THREADS}")
    time_models(prefix)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
