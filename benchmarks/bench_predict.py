"""Prediction at scale (issue 13): `genreflow predict` on N files with an MFCC model, today's
Ray path at each `--workers` against the baseline commit's sequential in-process loop, side by
side in one run (alternating order each round), medians; plus the time to the first result row.

    python benchmarks/bench_predict.py --clips 1000 --repeats 3 --workers 1,2

Both sides train their own model on the same 40 clips first (the baseline cannot read today's
model files), then predict the same N files from a folder with no feature store, so every file
is decoded and its features computed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_support as support  # noqa: E402
from bench_onepass import BASELINE  # noqa: E402



def genreflow(args: list[str], src: Path | None, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    if src is not None:
        env["PYTHONPATH"] = str(src) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.Popen([sys.executable, "-m", "genreflow", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def train_model(label: str, src: Path | None, ctx: dict[str, Any]) -> Path:
    data = ctx["work"] / f"train-{label}"
    step = max(1, len(ctx["relpaths"]) // 40)  # 40 clips spread over every genre (relpaths are sorted)
    support.mirror_raw(ctx["raw"], ctx["relpaths"][::step][:40], data)
    (data / "genreflow.toml").write_text(f"[audio]\nduration_s = {ctx['seconds']:g}\n")
    proc = genreflow(["run", "--data-dir", str(data), "--config", str(data / "genreflow.toml"), "--features", "mfcc",
                      "--workers", str(ctx["cpus"])], src, ctx["work"])
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"training the {label} model failed:\n{err[-3000:]}")
    found = sorted((data / "processed").glob("classifier_model.*"))
    return found[0]


def predict_once(label: str, src: Path | None, model: Path, workers: int, ctx: dict[str, Any], tag: str
                 ) -> dict[str, Any]:
    out = ctx["work"] / f"{label}-w{workers}-{tag}.csv"
    if src is None:  # today's: streamed to --out
        args = ["predict", str(ctx["inputs"]), "--model", str(model), "--workers", str(workers), "--out", str(out)]
    else:  # the baseline prints its csv at the end, and needs the training config (issue 11)
        args = ["predict", str(ctx["inputs"]), "--model", str(model), "--format", "csv", "--config",
                str(ctx["work"] / "train-baseline" / "genreflow.toml")]
    cpu0 = support.cpu_counters()[0]
    t0 = time.perf_counter()
    proc = genreflow(args, src, ctx["work"])
    first = None
    if src is None:
        while proc.poll() is None and first is None:
            if out.exists() and out.read_text().count("\n") >= 2:
                first = time.perf_counter() - t0
            time.sleep(0.05)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{label} predict failed:\n{stderr[-3000:]}")
    rows = out.read_text().count("\n") - 1 if src is None else stdout.count("\n")
    if first is None:
        first = wall  # the baseline shows nothing until the end
    return {"label": label, "workers": workers, "wall_s": round(wall, 2), "first_result_s": round(first, 2),
            "rows": rows, "machine_cpu_s": round(support.cpu_counters()[0] - cpu0, 1),
            "path": next((line for line in stderr.splitlines() if line.startswith("predict:")), "")}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", default="1,2", help="today's --workers values to sweep")
    p.add_argument("--baseline", default=BASELINE)
    p.add_argument("--cache-dir", type=Path, default=support.DEFAULT_CACHE)
    p.add_argument("--out", type=Path, default=Path("bench_predict.json"))
    args = p.parse_args(argv)
    machine = support.machine_info()
    print(support.bf16_note(machine), flush=True)
    with support.baseline_checkout(args.baseline, "gf-predict-") as (work, baseline_src):
        cpus = machine["usable_cpus"] or 1
        raw, relpaths = support.synthetic_clips(args.cache_dir, args.clips, args.seconds, cpus)
        inputs = work / "inputs"
        support.mirror_raw(raw, relpaths, inputs)  # inputs/raw/<genre>/...: a folder with no store
        ctx = {"work": work, "raw": raw, "relpaths": relpaths, "seconds": args.seconds, "cpus": cpus,
               "inputs": inputs / "raw"}
        models = {"baseline": train_model("baseline", baseline_src, ctx), "today": train_model("today", None, ctx)}
        sweep = [int(w) for w in args.workers.split(",")]
        rows = []
        for r in range(args.repeats):
            units = [("baseline", baseline_src, 1)] + [("today", None, w) for w in sweep]
            for label, src, workers in (units if r % 2 == 0 else units[::-1]):
                row = predict_once(label, src, models[label], workers, ctx, f"r{r}")
                rows.append(row)
                print(f"  round {r + 1} {label:8s} w={workers}  {row['wall_s']:7.1f} s  first row after "
                      f"{row['first_result_s']:6.1f} s  {row['rows']} rows  {row['path']}", flush=True)
        summary = {}
        for label, _, workers in units:
            mine = [r for r in rows if r["label"] == label and r["workers"] == workers]
            summary[f"{label}@{workers}"] = {k: statistics.median(r[k] for r in mine)
                                             for k in ("wall_s", "first_result_s")}
        base = summary["baseline@1"]["wall_s"]
        print(f"\n{args.clips} files x {args.seconds:g} s, MFCC model, medians of {args.repeats}")
        print("| run | wall s | first result s | speed-up vs baseline |\n|---|---:|---:|---:|")
        for key, s in summary.items():
            label, workers = key.split("@")
            name = f"before ({args.baseline}): sequential, in-process" if label == "baseline" else \
                f"today, --workers {workers}"
            print(f"| {name} | {s['wall_s']:.1f} | {s['first_result_s']:.1f} | {base / s['wall_s']:.2f}x |")
        return support.save_results(args.out, machine, args, rows, summary)


if __name__ == "__main__":
    main()
