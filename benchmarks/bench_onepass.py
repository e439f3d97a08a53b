"""One read per file (issue 11): CPU-seconds per clip of `genreflow run --no-train --features
vggish+mfcc` with today's code against a baseline commit (default: the last one before the
one-pass pipeline, which read each file 4 times: index, MFCC pass, VGGish pass), side by side
in one run, alternating which goes first each round; medians.

    python benchmarks/bench_onepass.py --clips 100 --repeats 3
    python benchmarks/bench_onepass.py --baseline 3879a7e --clips 200

The baseline is checked out with `git worktree` into the scratch folder and run with
PYTHONPATH pointing at it (its Ray workers inherit it), with the same clips, model and config.
The model is the full-size VGGish stand-in (timing only, never quality).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_pipeline as bench  # noqa: E402  (measure(), the same sampler and CPU accounting)
import bench_support as support  # noqa: E402

BASELINE = "3879a7e"  # main before the extractor registry and the one-pass pipeline


def run_once(label: str, src: Path | None, ctx: dict[str, Any], tag: str) -> dict[str, Any]:
    data_dir = ctx["work"] / f"{label}-{tag}"
    shutil.rmtree(data_dir, ignore_errors=True)
    support.mirror_raw(ctx["raw"], ctx["relpaths"], data_dir)
    toml = data_dir / "genreflow.toml"
    toml.write_text(f"[audio]\nduration_s = {float(ctx['seconds'])}\n")
    cmd = [sys.executable, "-m", "genreflow", "run", "--no-train", "--config", str(toml), "--data-dir",
           str(data_dir), "--workers", str(ctx["workers"]), "--vggish-model", str(ctx["model"]),
           "--features", "vggish+mfcc"]
    if ctx["precision"] and src is None:
        cmd += ["--precision", ctx["precision"]]
    old = os.environ.get("PYTHONPATH")
    if src is not None:
        os.environ["PYTHONPATH"] = str(src) + (os.pathsep + old if old else "")
    try:
        row = bench.measure(cmd, ctx["work"] / f"{label}-{tag}.log", ctx["work"])
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    computed = [text for _, text in row["lines"] if " computed, " in text]
    row.update(label=label, cpu_s_per_clip=round(row["cpu_s"] / ctx["n"], 4), counts=computed)
    row.pop("timeline", None)
    shutil.rmtree(data_dir, ignore_errors=True)
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=100)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--baseline", default=BASELINE, help="git commit to compare against")
    p.add_argument("--precision", default="fp32", help="today's --precision (the baseline has only fp32)")
    p.add_argument("--small-model", action="store_true", help="the tiny stand-in (smoke runs only)")
    p.add_argument("--cache-dir", type=Path, default=support.DEFAULT_CACHE)
    p.add_argument("--out", type=Path, default=Path("bench_onepass.json"))
    args = p.parse_args(argv)

    machine = support.machine_info()
    print(f"CPU: {machine.get('cpu_model')}; bf16 flags: {', '.join(machine.get('bf16_flags') or []) or 'none'}; "
          f"{machine.get('usable_cpus')} CPUs", flush=True)
    with support.baseline_checkout(args.baseline, "gf-onepass-") as (work, baseline_src):
        raw, relpaths = support.synthetic_clips(args.cache_dir, args.clips, args.seconds, args.workers)
        ctx = {"work": work, "raw": raw, "relpaths": relpaths, "n": args.clips, "seconds": args.seconds,
               "workers": args.workers, "model": support.vggish_model(args.cache_dir, args.small_model),
               "precision": args.precision}
        rows = []
        for r in range(args.repeats):
            order = [("baseline", baseline_src), ("one-pass", None)]
            for label, src in (order if r % 2 == 0 else order[::-1]):
                row = run_once(label, src, ctx, f"r{r}")
                rows.append(row)
                print(f"  round {r + 1} {label:9s} {row['wall_s']:8.2f} s  {row['cpu_s_per_clip']:.3f} CPU-s/clip  "
                      f"others {100 * row['foreign_cpu_share']:.0f}%", flush=True)
        summary = {}
        for label in ("baseline", "one-pass"):
            mine = [r for r in rows if r["label"] == label]
            summary[label] = {k: statistics.median(r[k] for r in mine)
                              for k in ("wall_s", "cpu_s", "cpu_s_per_clip", "peak_rss_gib", "foreign_cpu_share")}
        ratio = summary["baseline"]["cpu_s_per_clip"] / summary["one-pass"]["cpu_s_per_clip"]
        print(f"\n{args.clips} clips x {args.seconds:g} s, --features vggish+mfcc, workers={args.workers}, "
              f"medians of {args.repeats}")
        print("| run | wall s | CPU-s/clip | peak RSS GiB |\n|---|---:|---:|---:|")
        for label, name in (("baseline", f"before ({args.baseline}: 4 reads, 3 decodes per file)"),
                            ("one-pass", "after (one read, one decode per file)")):
            s = summary[label]
            print(f"| {name} | {s['wall_s']:.1f} | {s['cpu_s_per_clip']:.3f} | {s['peak_rss_gib']:.2f} |")
        print(f"CPU-s per clip, before / after: {ratio:.2f}x; wall before / after: "
              f"{summary['baseline']['wall_s'] / summary['one-pass']['wall_s']:.2f}x")
        return support.save_results(args.out, machine, args, rows, summary, cpu_ratio=ratio)


if __name__ == "__main__":
    main()
