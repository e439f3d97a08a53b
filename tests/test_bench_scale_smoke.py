"""A short run of benchmarks/bench_scale.py, so the scale benchmark cannot rot.

Two tiny synthetic MFCC stores (100 and 200 clips); checks the table and the JSON hold the
expected rows, that train's figures are there and that the warm run computed nothing without
starting Ray. Never checks timings (they depend on the machine and whatever else runs on it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_scale.py"


def test_smoke_run_writes_table_and_json(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--clips", "100,200", "--kinds", "mfcc", "--build-workers", "1",
         "--keep-free-gib", "0", "--cache-dir", str(tmp_path / "cache"), "--work-dir", str(tmp_path / "work"),
         "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # the printed table: machine line first, one row per (clips, command), growth, targets
    text = proc.stdout
    assert "CPU: " in text and "bf16 flags: " in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("kind ") and "peak RSS GiB" in line)
    end = next(i for i in range(header, len(lines)) if not lines[i].strip())
    table_rows = [line.split() for line in lines[header + 2:end] if line.startswith("mfcc ")]
    assert {(row[1], row[2]) for row in table_rows} == {(n, c) for n in ("100", "200")
                                                       for c in ("train", "status", "features")}
    assert "growth: " in text and "100->200 = 2x clips" in text
    assert "targets (issue 13):" in text and "train mfcc peak RSS < 2 GiB" in text

    results = json.loads(out.read_text())
    machine = results["machine"]
    assert machine["cpu_model"] and isinstance(machine["bf16_flags"], list)
    assert [(s["kind"], s["clips"]) for s in results["stores"]] == [("mfcc", 100), ("mfcc", 200)]
    assert results["stores"][0]["shape"] == [20, results["stores"][0]["frames"]]

    runs = {(r["clips"], r["command"]): r for r in results["runs"]}
    assert set(runs) == {(n, c) for n in (100, 200) for c in ("train", "status", "features")}
    for run in runs.values():
        assert run["ok"], run
        assert run["wall_s"] > 0 and 0.01 < run["peak_rss_gib"] < 16
        assert run["ray_started"] is False
    for n in (100, 200):
        train = runs[(n, "train")]["checks"]
        assert train["n_train"] + train["n_val"] == n and train["accuracy"] is not None
        assert runs[(n, "features")]["checks"] == {"computed": 0, "cached": n, "failed": 0, "ok": True}
        assert f"{n}/{n}" in runs[(n, "status")]["checks"]["stored_line"]

    growth = {g["command"]: g for g in results["growth"]}
    assert set(growth) == {"train", "status", "features"}
    assert all(g["clips_ratio"] == 2 and g["wall_ratio"] > 0 and g["memory_ratio"] > 0 for g in growth.values())
    targets = {t["target"]: t for t in results["targets"]}
    assert any(t.startswith("train mfcc peak RSS") for t in targets)
    assert any(t.startswith("train mfcc wall 100->200") for t in targets)
    assert all(t["at_target_size"] is False and isinstance(t["met"], bool) for t in targets.values())

    # the cached stores are reused by a second run (nothing rebuilt)
    again = subprocess.run(
        [sys.executable, str(BENCH), "--clips", "100", "--kinds", "mfcc", "--commands", "features",
         "--keep-free-gib", "0", "--cache-dir", str(tmp_path / "cache"), "--work-dir", str(tmp_path / "work"),
         "--out", str(tmp_path / "again.json")],
        capture_output=True, text=True, timeout=300,
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert json.loads((tmp_path / "again.json").read_text())["stores"][0]["reused"] is True
