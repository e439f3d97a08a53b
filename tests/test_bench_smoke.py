"""A short run of benchmarks/bench_pipeline.py, so the benchmark cannot rot.

It checks the shape and sanity of the JSON the script writes, never the timings (those
depend on the machine and on whatever else runs on it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_pipeline.py"


@pytest.mark.slow
def test_smoke_run_writes_complete_results(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--workers", "2", "--out", str(out),
         "--cache-dir", str(tmp_path / "cache"), "--work-dir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "genreflow cold (workers=2)" in proc.stdout  # the readable table was printed

    results = json.loads(out.read_text())
    machine = results["machine"]
    assert machine["logical_cpus"] >= 1 and machine["cpu_model"] and machine["memory_gib"] > 0
    assert results["small_model"] is True and results["seconds"] == 5.0

    (block,) = results["results"]
    assert block["clips"] == 8 and block["audio_s"] == pytest.approx(40.0)
    summary = block["summary"]
    assert set(summary) == {"plain", "cold@2", "warm@2", "limit"}
    for entry in summary.values():
        assert entry["repeats"] == 1 and entry["all_checks_ok"], entry
        assert entry["wall_s"] > 0 and entry["clips_per_s"] > 0 and entry["audio_s_per_s"] > 0
        assert entry["clips_per_s"] == pytest.approx(8 / entry["wall_s"], rel=0.01)
    for key in ("plain", "cold@2", "warm@2"):
        # a whole Python process with TensorFlow or Ray resides in more than 50 MiB, and in less than 16 GiB
        assert 0.05 < summary[key]["peak_rss_gib"] < 16, summary[key]
        assert 0 < summary[key]["peak_pss_gib"] <= summary[key]["peak_rss_gib"] * 1.01
    cold, warm = summary["cold@2"], summary["warm@2"]
    assert {"speedup_vs_plain", "fraction_of_limit"} <= cold.keys()
    assert warm["pct_of_cold"] == pytest.approx(100 * warm["wall_s"] / cold["wall_s"], rel=0.01)
    stages = {key.split(" | ")[0] for key in cold["stages_s"]}
    assert {"process start + imports", "index (listing, hashing, probing)", "features pass",
            "train + evaluate + save", "workers: read + decode", "workers: mfcc", "workers: vggish",
            "workers: model load vggish", "workers: shard writes"} <= stages
    assert "Ray start" not in stages  # 2 workers on one machine: the pass runs without Ray
    assert all(value >= 0 for value in cold["stages_s"].values())
    assert "stage breakdown of cold@2" in proc.stdout
    assert set(summary["plain"]["steps_s"]) == {"load", "mfcc", "resample", "vggish", "save"}

    runs = {run["kind"]: run for run in block["runs"]}
    assert runs["cold"]["counts"]["vggish"] == {"computed": 8, "cached": 0, "failed": 0}
    assert runs["warm"]["counts"]["vggish"] == {"computed": 0, "cached": 8, "failed": 0}
    assert 1 <= runs["cold"]["peak_processes"] <= 3  # the CLI and index's validators at most: no Ray on 2 workers
    assert runs["limit"]["detail"]["examples"] == 8 * 5  # 5 s at 16 kHz -> 5 VGGish rows per clip

    targets = block["targets"]
    assert targets["workers"] == 2 and isinstance(targets["peak_rss_below_2_5gib"], bool)
    assert {"warm_pct_of_cold", "warm_at_most_2pct", "pass_busy_pct", "pass_at_least_90pct_busy"} <= targets.keys()
    if targets["precision"] == "fp32":  # the smoke run measures fp32 rows only; bf16 machines lack their pair
        assert {"cold_fraction_of_limit", "cold_speedup_vs_plain"} <= targets.keys()


@pytest.mark.slow
def test_import_benchmark_prints_every_case_and_the_ratio() -> None:
    """benchmarks/bench_imports.py runs each case in a fresh interpreter; one round must print
    all four rows with their times and the librosa / genreflow ratio (timings not judged)."""
    script = BENCH.parent / "bench_imports.py"
    proc = subprocess.run([sys.executable, str(script), "--repeats", "1"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()
            if line.split() and line.split()[0] in ("librosa_mfcc", "genreflow_mfcc", "tensorflow", "ml_dtypes")}
    assert set(rows) == {"librosa_mfcc", "genreflow_mfcc", "tensorflow", "ml_dtypes"}, proc.stdout
    for name, cells in rows.items():
        wall, cpu = float(cells[-4]), float(cells[-3])
        # ml_dtypes alone may take under a millisecond; the other three import modules for seconds
        assert wall >= 0 and cpu >= 0 and (name == "ml_dtypes" or (wall > 0 and cpu > 0)), (name, cells)
    assert "first MFCC: librosa / genreflow = " in proc.stdout
