"""What the first seconds of a features pass pay for imports, side by side, in fresh interpreters.

Each case runs in a new Python process (nothing cached in memory; the page cache is warm after
the first of ``--repeats``), alternating the cases round by round, and reports the median wall
and CPU seconds:

- first MFCC of a 30 s clip: ``librosa.feature.mfcc`` (imports scipy.signal, scipy.stats, numba)
  vs genreflow's ``compute_mfcc`` (NumPy + scipy.fft), same samples;
- TensorFlow as genreflow imports it (``tf_runtime.tf_module``), and inside it the ml_dtypes
  extension; ``--alt-site DIR`` adds the same measurements with DIR first on ``sys.path``
  (e.g. ``pip install --target DIR --no-deps ml_dtypes==0.7.0`` to compare a version);
- how long the importing thread holds the interpreter lock in one stretch (> 30 ms), which is
  what stalls the pass's decode threads meanwhile.

Usage: python benchmarks/bench_imports.py [--repeats 5] [--alt-site DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import bench_support as support  # noqa: E402

PROBE = r"""
import json, resource, sys, threading, time
gaps, stop = [], False
def probe():
    last = time.perf_counter()
    while not stop:
        time.sleep(0.001)
        now = time.perf_counter()
        if now - last > 0.03:
            gaps.append(now - last)
        last = now
case = sys.argv[1]
import numpy as np
y = (0.1 * np.random.default_rng(0).standard_normal(22050 * 30)).astype(np.float32)
thread = threading.Thread(target=probe); thread.start()
t0, c0 = time.perf_counter(), time.process_time()
if case == "librosa_mfcc":
    import librosa
    librosa.feature.mfcc(y=y, sr=22050, n_mfcc=20, n_fft=2048, hop_length=512, n_mels=128)
elif case == "genreflow_mfcc":
    from genreflow.features.mfcc import MfccConfig, compute_mfcc
    compute_mfcc(y=y, sr=22050, config=MfccConfig())
elif case == "tensorflow":
    from genreflow.features.tf_runtime import tf_module
    tf_module()
elif case == "ml_dtypes":
    import ml_dtypes
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
stop = True; thread.join()
import importlib.metadata as md
print(json.dumps({"wall": wall, "cpu": cpu, "held": sum(gaps), "longest": max(gaps, default=0.0),
                  "ml_dtypes": md.version("ml_dtypes")}))
"""

CASES = ("librosa_mfcc", "genreflow_mfcc", "tensorflow", "ml_dtypes")


def run_case(case: str, site: str | None) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if site:
        env["PYTHONPATH"] = site + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", PROBE, case], capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"{case} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--alt-site", help="a folder put first on sys.path for a second set of the TF/ml_dtypes rows")
    args = parser.parse_args()
    machine = support.machine_info()
    print(support.bf16_note(machine))
    print(f"machine: {machine['cpu_model']}, {os.cpu_count()} CPUs; medians of {args.repeats} fresh interpreters")
    variants = [(case, None) for case in CASES]
    if args.alt_site:
        variants += [(case, args.alt_site) for case in ("tensorflow", "ml_dtypes")]
    runs: dict[tuple[str, str | None], list[dict]] = {v: [] for v in variants}
    for _ in range(args.repeats):  # round by round, so a machine that drifts drifts for all cases
        for case, site in variants:
            runs[(case, site)].append(run_case(case, site))
    medians = {}
    print(f"{'case':<34} {'wall s':>7} {'CPU s':>7} {'lock held s':>12} {'longest s':>10}")
    for (case, site), rows in runs.items():
        med = {k: statistics.median(r[k] for r in rows) for k in ("wall", "cpu", "held", "longest")}
        label = f"{case} (ml_dtypes {rows[0]['ml_dtypes']}{', alt' if site else ''})" \
            if case in ("tensorflow", "ml_dtypes") else case
        medians[label] = med
        print(f"{label:<34} {med['wall']:7.3f} {med['cpu']:7.3f} {med['held']:12.3f} {med['longest']:10.3f}")
    lib, ours = runs[("librosa_mfcc", None)], runs[("genreflow_mfcc", None)]
    ratio = statistics.median(r["wall"] for r in lib) / statistics.median(r["wall"] for r in ours)
    print(f"first MFCC: librosa / genreflow = {ratio:.1f}x wall")
    if args.alt_site:
        base, alt = runs[("tensorflow", None)], runs[("tensorflow", args.alt_site)]
        print(f"TensorFlow import: alt / installed = "
              f"{statistics.median(r['wall'] for r in alt) / statistics.median(r['wall'] for r in base):.2f}x wall, "
              f"lock held {statistics.median(r['held'] for r in alt):.2f} s vs {statistics.median(r['held'] for r in base):.2f} s")


if __name__ == "__main__":
    main()
