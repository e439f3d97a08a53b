"""A short run of benchmarks/bench_musicnn.py (issue 22's benchmark), so it cannot rot.

Checks the shape and sanity of the JSON it writes, never the timings (they depend on the
machine and on whatever else runs on it). About 1-2 minutes on an idle 2-core machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_musicnn.py"
ROWS = {"plain-fp32", "plain-bf16", "cold", "warm", "limit-fp32", "limit-bf16"}


@pytest.mark.slow
def test_musicnn_smoke_run_writes_complete_results(tmp_path: Path) -> None:
    pytest.importorskip("musicnn", reason="the musicnn weights are not installed (pip install --no-deps musicnn==0.1.0)")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
         "--work-dir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=1200,  # a loaded shared machine; ~2 min when idle
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "lscpu model name:" in proc.stdout and "issue 22 targets" in proc.stdout
    assert "genreflow cold" in proc.stdout and "limit bf16 (model only)" in proc.stdout

    results = json.loads(out.read_text())
    assert results["clips"] == 6 and results["seconds"] == 4.0 and results["patches"] == 6  # one patch per 4-s clip
    assert results["lscpu_model_name"] and "bf16_flags_grep" in results

    summary = results["summary"]
    assert set(summary) == ROWS
    for key, entry in summary.items():
        assert entry["repeats"] == 1 and entry["all_checks_ok"], (key, entry)
        assert entry["wall_s"] > 0 and entry["clips_per_s"] > 0, (key, entry)
        assert entry["clips"] == 6 and entry["patches"] == 6, (key, entry)
        assert entry["clips_per_s"] == pytest.approx(6 / entry["wall_s"], rel=0.01)
        assert 0.05 < entry["peak_rss_gib"] < 16 and 0 < entry["peak_pss_gib"] <= entry["peak_rss_gib"] * 1.01
    for key in ("plain-fp32", "plain-bf16", "cold", "limit-fp32", "limit-bf16"):
        assert summary[key]["clips_computed"] == [6], key  # the same clips everywhere
    assert summary["warm"]["clips_computed"] == [6]

    runs = {run["key"]: run for run in results["runs"]}
    assert set(runs) == ROWS
    # cold and the plain loop computed the same clips, and the same patches
    assert runs["cold"]["counts"] == {"computed": 6, "cached": 0, "failed": 0}
    assert runs["warm"]["counts"] == {"computed": 0, "cached": 6, "failed": 0}
    assert runs["plain-fp32"]["detail"]["files"] == runs["cold"]["counts"]["computed"] == 6
    assert runs["plain-fp32"]["detail"]["patches"] == runs["cold"]["stored"]["patches"] == 6
    assert runs["cold"]["precision"] in ("fp32", "bf16") \
        and 1 <= runs["cold"]["peak_processes"] <= 3  # the CLI and index's validators at most: no Ray on 2 workers
    assert runs["limit-bf16"]["detail"]["per_call"] == 16 and runs["limit-bf16"]["detail"]["threads"] == 2

    ratios, targets = results["ratios"], results["targets"]
    assert {"cold_vs_plain_fp32", "cold_vs_plain_same_precision", "cold_fraction_of_limit",
            "warm_pct_of_cold"} <= ratios.keys()
    assert ratios["warm_pct_of_cold"] == pytest.approx(100 * summary["warm"]["wall_s"] / summary["cold"]["wall_s"],
                                                       rel=0.01)
    for key in ("cold_vs_plain_fp32_pass", "cold_vs_plain_same_precision_pass", "cold_fraction_of_limit_pass",
                "peak_memory_below_2_5gib_pass"):
        assert isinstance(targets[key], bool), key
