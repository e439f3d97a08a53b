"""Benchmark genreflow against a plain sequential script and against the machine's limit.

Four ways of turning the same clips into MFCCs + VGGish embeddings, measured side by side in
one run, alternating and repeated (the report gives medians):

- plain: the loop a user writes without genreflow (plain_loop.py), as a fresh process; "plain
  loop bf16" is the same script with TensorFlow's one bf16 option added (the fair peer);
- genreflow cold: ``genreflow run --features mfcc+vggish`` (the plain loop computes both too) on a fresh data folder (empty store),
  ``--workers`` = the machine's CPUs (or each value of a ``--workers`` sweep);
- genreflow warm: the same command again, everything cached;
- limit: the same model on pre-decoded inputs in large batches, no I/O (model_limit.py), in
  fp32 and in bf16 ("limit bf16").

Every row records its precision. bf16 is fast only where the CPU multiplies bf16 in hardware
(amx_bf16 / avx512_bf16 flags, printed first and stored in the JSON); elsewhere TensorFlow
emulates it and the bf16 rows are slower than fp32. ``--genreflow-precision`` passes
``--precision`` to ``genreflow run`` (not passed by default: genreflow's own default applies).

Every wall time includes the process's start (Python, imports, Ray start-up, model load), as
a user would wait for it, except the limit, which times only the model calls. Peak memory is
the resident memory summed over the command's whole process tree (driver, Ray's own processes
and every Ray worker) sampled every 0.25 s; see bench_support.TreeMemorySampler.

    python benchmarks/bench_pipeline.py --clips 200            # the README table (~10 min on 2 cores)
    python benchmarks/bench_pipeline.py --clips 1000 --repeats 1 --skip plain
    python benchmarks/bench_pipeline.py --smoke --out /tmp/smoke.json   # seconds; for the tests

Writes the JSON (``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_support as support  # noqa: E402

HERE = Path(__file__).resolve().parent
GIB = 2**30
REPORT_LINE = re.compile(r"^(mfcc|vggish) \[\w+\]: (\d+) computed, (\d+) already cached, (\d+) failed")
ORDER = ("plain", "plain-bf16", "cold", "warm", "limit", "limit-bf16")  # kinds (and precisions) in table order


class BenchError(RuntimeError):
    """A measured command failed; the message carries the tail of its output."""


def measure(cmd: list[str], log_path: Path, cwd: Path, idle_wait: float = 0.0) -> dict[str, Any]:
    """Run ``cmd`` to completion: wall time, CPU time, peak tree memory, time-stamped output."""
    busy_before = support.wait_for_idle(idle_wait) if idle_wait > 0 else None
    marker = support.run_marker(log_path.name)
    env = {**os.environ, "GENREFLOW_BENCH_RUN": marker, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("RAY_ADDRESS", None)  # always a local Ray on this machine, never a cluster the shell points at
    load_before = support.load_average()
    busy0, steal0, own0 = support.cpu_counters()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                            env=env, cwd=cwd, bufsize=1)
    sampler = support.TreeMemorySampler(proc.pid, marker)
    sampler.start()
    lines = [(round(time.perf_counter() - t0, 3), line.rstrip("\n")) for line in proc.stdout]
    rc = proc.wait()
    wall = time.perf_counter() - t0
    peak = sampler.stop()
    busy1, steal1, own1 = support.cpu_counters()
    cpus = os.cpu_count() or 1
    # CPU the machine spent on anything but the measured tree and this script: other users' work
    foreign = max(0.0, (busy1 - busy0) - peak.cpu_s - (own1 - own0))
    log_path.write_text("".join(f"[{t:8.3f}] {text}\n" for t, text in lines))
    if rc != 0:
        tail = "\n".join(text for _, text in lines[-30:])
        raise BenchError(f"{' '.join(cmd[:4])} ... exited with {rc} (log: {log_path}):\n{tail}")
    return {
        "wall_s": round(wall, 3), "cpu_s": round(peak.cpu_s, 2),
        "cpu_utilisation": round(peak.cpu_s / (wall * cpus), 3),
        "bench_own_cpu_s": round(own1 - own0, 2),  # the sampler's overhead (and reading the output)
        "foreign_cpu_share": round(foreign / (wall * cpus), 3), "steal_s": round(steal1 - steal0, 2),
        "peak_rss_gib": round(peak.rss_bytes / GIB, 3), "peak_pss_gib": round(peak.pss_bytes / GIB, 3),
        "peak_processes": peak.processes, "memory_samples": peak.samples,
        "peak_rss_by_process_gib": {k: round(v / GIB, 3) for k, v in sorted(peak.by_name.items(),
                                                                         key=lambda kv: -kv[1])},
        "load_before": load_before, "machine_busy_before": busy_before, "load_after": support.load_average(),
        "lines": lines, "timeline": peak.timeline,
    }


def genreflow_counts(lines: list[tuple[float, str]]) -> dict[str, dict[str, int]]:
    """computed / cached / failed per kind, from the run's report lines."""
    counts: dict[str, dict[str, int]] = {}
    for _, text in lines:
        match = REPORT_LINE.match(text)
        if match:
            counts[match.group(1)] = dict(zip(("computed", "cached", "failed"), map(int, match.groups()[1:])))
    return counts


def genreflow_stages(data_dir: Path) -> dict[str, float]:
    """The run's own stage breakdown (processed/reports/run_timings.json, written by every
    `genreflow run`): wall and CPU seconds and the cores' busy share per stage, and the seconds
    Ray's workers spent in each step (decode, resample, each extractor, model load, shard writes)."""
    path = data_dir / "processed" / "reports" / "run_timings.json"
    if not path.is_file():
        return {}
    doc = json.loads(path.read_text())
    flat = {}
    for stage in doc["stages"]:
        flat[f"{stage['name']} | wall s"] = stage["wall_s"]
        flat[f"{stage['name']} | CPU s"] = stage["cpu_s"]
        flat[f"{stage['name']} | busy %"] = round(100 * stage["busy"], 1)
    flat.update({f"workers: {step} | s": seconds for step, seconds in doc["worker_s"].items()})
    return flat


def breakdown(summary: dict[str, Any]) -> str:
    """The stage breakdown of each genreflow cold run (medians), as a table."""
    from genreflow.core.tables import format_table

    out = []
    for key, entry in sorted(summary.items()):
        stages = entry.get("stages_s")
        if entry["kind"] != "cold" or not stages:
            continue
        names = list(dict.fromkeys(k.split(" | ")[0] for k in stages))
        rows = [[name, stages.get(f"{name} | wall s", ""), stages.get(f"{name} | CPU s", stages.get(f"{name} | s", "")),
                 f"{stages[f'{name} | busy %']:.0f} %" if f"{name} | busy %" in stages else ""] for name in names]
        out.append(f"stage breakdown of {key} (medians; CPU s of the process tree, workers: seconds in each step)\n"
                   + format_table(["stage", "wall s", "CPU s", "cores busy"], rows))
    return "\n\n".join(out)


def run_plain(ctx: dict[str, Any], tag: str, precision: str = "fp32") -> dict[str, Any]:
    tag = f"{tag}-{precision}"
    out_dir, result = ctx["work"] / f"plain-{tag}", ctx["work"] / f"plain-{tag}.json"
    cmd = [sys.executable, str(HERE / "plain_loop.py"), "--precision", precision, str(ctx["raw"]), str(ctx["model"]),
           str(out_dir), str(ctx["seconds"]), str(result), str(ctx["listing"])]
    row = measure(cmd, ctx["work"] / f"plain-{tag}.log", ctx["work"], ctx["idle_wait"])
    inner = json.loads(result.read_text())
    shutil.rmtree(out_dir, ignore_errors=True)
    row.update(kind="plain", precision=precision, detail=inner, ok=inner["files"] == ctx["n"])
    return row


def run_limit(ctx: dict[str, Any], tag: str, precision: str = "fp32") -> dict[str, Any]:
    tag = f"{tag}-{precision}"
    result, listing = ctx["work"] / f"limit-{tag}.json", ctx["work"] / "limit-files.txt"
    listing.write_text("\n".join(ctx["relpaths"][: ctx["limit_clips"]]))
    cmd = [sys.executable, str(HERE / "model_limit.py"), "--precision", precision, str(ctx["raw"]), str(ctx["model"]),
           str(ctx["seconds"]), str(ctx["limit_batch"]), str(result), str(listing)]
    row = measure(cmd, ctx["work"] / f"limit-{tag}.log", ctx["work"], ctx["idle_wait"])
    inner = json.loads(result.read_text())
    # the limit is a rate: scale its model time to the full clip count so walls compare directly
    scale = ctx["n"] / inner["clips"]
    row.update(kind="limit", precision=precision, detail=inner,
               process_wall_s=row["wall_s"], process_cpu_s=row["cpu_s"],
               wall_s=round(inner["model_s"] * scale, 3), cpu_s=round(inner["model_cpu_s"] * scale, 2),
               cpu_utilisation=round(inner["model_cpu_s"] / inner["model_s"] / (os.cpu_count() or 1), 3),
               ok=inner["clips"] > 0)
    return row


def run_genreflow(ctx: dict[str, Any], tag: str, workers: int) -> list[dict[str, Any]]:
    """Cold (fresh folder, empty store) then warm (same command again)."""
    data_dir = ctx["work"] / f"gf-w{workers}-{tag}"
    shutil.rmtree(data_dir, ignore_errors=True)
    support.mirror_raw(ctx["raw"], ctx["relpaths"], data_dir)
    toml = data_dir / "genreflow.toml"
    toml.write_text(f"[audio]\nduration_s = {float(ctx['seconds'])}\n")
    cmd = [sys.executable, "-m", "genreflow", "run", "--config", str(toml), "--data-dir", str(data_dir),
           "--workers", str(workers), "--vggish-model", str(ctx["model"]), "--features", "mfcc+vggish"]
    if ctx["genreflow_precision"]:  # only when asked: older genreflow has no --precision
        cmd += ["--precision", ctx["genreflow_precision"]]
    rows = []
    for kind in ("cold", "warm"):
        row = measure(cmd, ctx["work"] / f"{kind}-w{workers}-{tag}.log", ctx["work"], ctx["idle_wait"])
        stages, counts = genreflow_stages(data_dir), genreflow_counts(row["lines"])
        vggish = counts.get("vggish", {})
        expect = {"computed": ctx["unique"], "cached": 0} if kind == "cold" else \
            {"computed": 0, "cached": ctx["unique"]}
        row.update(kind=kind, workers=workers, stages=stages, counts=counts, precision=ctx["genreflow_row_precision"],
                   ok=all(vggish.get(k) == v for k, v in expect.items()) and not vggish.get("failed"))
        rows.append(row)
    if not ctx["keep"]:
        shutil.rmtree(data_dir, ignore_errors=True)
    return rows


def run_round(ctx: dict[str, Any], repeat: int) -> list[dict[str, Any]]:
    """One round: plain, genreflow (cold+warm per worker count) and limit (plain and limit once per
    precision of ``--precisions``), in a rotating order."""
    units = [(u, p) for u in ("plain", "genreflow", "limit") if u not in ctx["skip"]
             for p in (ctx["precisions"] if u != "genreflow" else ("",))]

    def run_unit(unit: str, precision: str) -> list[dict[str, Any]]:
        tag = f"n{ctx['n']}-r{repeat}"
        rows = ([run_plain(ctx, tag, precision)] if unit == "plain" else
                [run_limit(ctx, tag, precision)] if unit == "limit" else
                [row for w in ctx["workers"] for row in run_genreflow(ctx, tag, w)])
        return [dict(row, clips=ctx["n"]) for row in rows]

    return support.run_round(units, repeat, run_unit,
                             lambda row: row_key(row).replace("@", " w=").replace("-", " "), f"{ctx['n']} clips, ")


def row_key(row: dict[str, Any]) -> str:
    """"plain", "plain-bf16", "cold@2", "limit-bf16"...: the summary key of a run."""
    if "workers" in row:
        return f"{row['kind']}@{row['workers']}"
    return row["kind"] + ("-bf16" if row.get("precision") == "bf16" else "")


def summarize(rows: list[dict[str, Any]], n: int, audio_s: float) -> dict[str, Any]:
    """Medians per (kind, workers, precision), throughputs, ratios and the issue's targets."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row_key(row), []).append(row)
    out: dict[str, Any] = {}
    for key, group in groups.items():
        wall = statistics.median(r["wall_s"] for r in group)
        entry = {
            "kind": group[0]["kind"], "workers": group[0].get("workers"), "precision": group[0].get("precision"),
            "repeats": len(group),
            "wall_s": round(wall, 3), "wall_s_all": [r["wall_s"] for r in group],
            "clips_per_s": round(n / wall, 3), "audio_s_per_s": round(audio_s / wall, 2),
            "peak_rss_gib": round(statistics.median(r["peak_rss_gib"] for r in group), 3),
            "peak_pss_gib": round(statistics.median(r["peak_pss_gib"] for r in group), 3),
            "cpu_s": round(statistics.median(r["cpu_s"] for r in group), 1),
            "cpu_s_per_clip": round(statistics.median(r["cpu_s"] for r in group) / n, 3),
            "cpu_utilisation": round(statistics.median(r["cpu_utilisation"] for r in group), 3),
            "foreign_cpu_share": round(statistics.median(r["foreign_cpu_share"] for r in group), 3),
            "all_checks_ok": all(r["ok"] for r in group),
        }
        entry.update(support.median_breakdown(group))
        out[key] = entry
    plain, plain_bf16 = out.get("plain"), out.get("plain-bf16")
    for key, entry in out.items():
        if entry["kind"] != "cold":
            continue
        warm = out.get(f"warm@{entry['workers']}")
        # the limit of genreflow's own precision when known to be bf16, else fp32's
        limit = out.get("limit-bf16" if entry.get("precision") == "bf16" else "limit")
        if plain:
            entry["speedup_vs_plain"] = round(plain["wall_s"] / entry["wall_s"], 3)
        if plain_bf16:
            entry["speedup_vs_plain_bf16"] = round(plain_bf16["wall_s"] / entry["wall_s"], 3)
        if limit:
            entry["fraction_of_limit"] = round(limit["wall_s"] / entry["wall_s"], 3)
        if warm:
            warm["pct_of_cold"] = round(100 * warm["wall_s"] / entry["wall_s"], 2)
    return out


def check_targets(summary: dict[str, Any], n: int, precision: str) -> dict[str, Any]:
    """Issue 21's targets for the run with the most workers (the machine's CPUs by default),
    against the plain loop and the limit of ``precision``, the one genreflow computed in."""
    colds = [e for e in summary.values() if e["kind"] == "cold"]
    if not colds:
        return {}
    cold = max(colds, key=lambda e: e["workers"])
    warm = summary.get(f"warm@{cold['workers']}", {})
    peak = max(e["peak_rss_gib"] for e in summary.values() if e["kind"] in ("cold", "warm"))
    suffix = "-bf16" if precision == "bf16" else ""
    plain, limit = summary.get("plain" + suffix), summary.get("limit" + suffix)
    targets: dict[str, Any] = {"clips": n, "workers": cold["workers"], "precision": precision,
                               "peak_rss_gib": peak, "peak_rss_below_2_5gib": peak < 2.5}
    if plain:
        ratio = round(plain["wall_s"] / cold["wall_s"], 3)
        targets.update(cold_speedup_vs_plain=ratio, cold_at_least_1_3x_plain=ratio >= 1.3)
    if limit:
        share = round(limit["wall_s"] / cold["wall_s"], 3)
        targets.update(cold_fraction_of_limit=share, cold_at_least_50pct_of_limit=share >= 0.5)
    busy = cold.get("stages_s", {}).get("features pass | busy %")
    if busy is not None:
        targets.update(pass_busy_pct=busy, pass_at_least_90pct_busy=busy >= 90)
    if "pct_of_cold" in warm:
        targets.update(warm_pct_of_cold=warm["pct_of_cold"], warm_at_most_2pct=warm["pct_of_cold"] <= 2.0)
    return targets


def bf16_targets(summary: dict[str, Any]) -> dict[str, Any]:
    """Issue 12's model-only target: limit bf16 / limit fp32 >= 3.5x (on a CPU with AMX-BF16)."""
    fp32, bf16 = summary.get("limit"), summary.get("limit-bf16")
    if not (fp32 and bf16):
        return {}
    ratio = round(fp32["wall_s"] / bf16["wall_s"], 3)
    return {"limit_bf16_speedup": ratio, "limit_bf16_at_least_3_5x": ratio >= 3.5}


def memory_growth(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """Peak memory of genreflow at the fewest vs the most clips of one run (should be flat)."""
    sized = [b for b in blocks if b["targets"].get("peak_rss_gib")]
    if len(sized) < 2:
        return {}
    small, large = min(sized, key=lambda b: b["clips"]), max(sized, key=lambda b: b["clips"])
    ratio = large["targets"]["peak_rss_gib"] / small["targets"]["peak_rss_gib"]
    return {"memory_growth": {"clips": [small["clips"], large["clips"]],
                              "peak_rss_gib": [small["targets"]["peak_rss_gib"], large["targets"]["peak_rss_gib"]],
                              "ratio": round(ratio, 3), "flat_within_10pct": ratio <= 1.10}}


RUN_NAMES = {"plain": "plain loop", "cold": "genreflow cold", "warm": "genreflow warm", "limit": "limit (model only)"}


def _order(entry: dict[str, Any]) -> tuple[int, int]:
    key = entry["kind"] + ("-bf16" if entry["kind"] in ("plain", "limit") and entry.get("precision") == "bf16" else "")
    return ORDER.index(key), entry["workers"] or 0


def _label_and_note(entry: dict[str, Any], md: bool) -> tuple[str, str]:
    """A run's row label and its comparison note, for the console (md=False) or Markdown."""
    workers = entry["workers"]
    name = RUN_NAMES[entry["kind"]]
    if entry["kind"] in ("plain", "limit") and entry.get("precision") == "bf16":  # "plain loop bf16", "limit bf16"
        name = name.replace("loop", "loop bf16") if entry["kind"] == "plain" else name.replace("limit", "limit bf16")
    label = name + ((f", workers={workers}" if md else f" (workers={workers})") if workers else "")
    times, pct = ("×", " %") if md else ("x", "%")
    if "speedup_vs_plain" in entry or "fraction_of_limit" in entry:
        bf16 = (f"{entry['speedup_vs_plain_bf16']:.2f}{times} plain bf16, "
                if "speedup_vs_plain_bf16" in entry else "")
        return label, (f"{entry.get('speedup_vs_plain', float('nan')):.2f}{times} plain, {bf16}"
                       f"{100 * entry.get('fraction_of_limit', float('nan')):.0f}{pct} of limit")
    if "pct_of_cold" in entry:
        return label, f"{entry['pct_of_cold']:.1f}{pct} of cold"
    return label, ""


def table(summary: dict[str, Any], n: int, audio_s: float, machine: dict[str, Any]) -> str:
    from genreflow.core.tables import format_table

    rows = []
    for entry in sorted(summary.values(), key=_order):
        label, note = _label_and_note(entry, md=False)
        mem = "-" if entry["kind"] == "limit" else f"{entry['peak_rss_gib']:.2f} / {entry['peak_pss_gib']:.2f}"
        cpu = f"{entry['cpu_s_per_clip']:.2f} ({100 * entry['cpu_utilisation']:.0f}%)"
        rows.append([label, entry.get("precision") or "-", f"{entry['wall_s']:.1f}", f"{entry['clips_per_s']:.2f}",
                     f"{entry['audio_s_per_s']:.0f}", mem, cpu, note])
    head = (f"{n} clips, {audio_s:.0f} s of audio; {machine['cpu_model']}, {machine['usable_cpus']} CPUs, "
            f"bf16 flags: {' '.join(machine.get('bf16_flags') or []) or 'none'}; "
            f"medians of {max(e['repeats'] for e in summary.values())} repeat(s)")
    # runs of a few seconds also see the previous run's Ray processes exiting: judge the long ones
    disturbed = max([e["foreign_cpu_share"] for e in summary.values() if e["wall_s"] >= 10] or [0.0])
    if disturbed > 0.05:
        head += f"\nWARNING: other processes used {100 * disturbed:.0f}% of the CPUs during a run (median)"
    headers = ["run", "precision", "wall s", "clips/s", "audio-s/s", "peak RSS / PSS GiB", "CPU s/clip (busy)", "vs"]
    return head + "\n" + format_table(headers, rows) + "\n\n" + breakdown(summary)


def markdown(block: dict[str, Any], machine: dict[str, Any]) -> str:
    """The README's table for one clip count (medians)."""
    summary = block["summary"]
    lines = [f"{block['clips']} clips × {block.get('seconds', 30.0):g} s ({block['audio_s']:.0f} s of audio), "
             f"{machine['cpu_model']}, {machine['usable_cpus']} CPUs, "
             f"bf16 flags: {' '.join(machine.get('bf16_flags') or []) or 'none'}, "
             f"medians of {max(e['repeats'] for e in summary.values())}:", "",
             "| run | precision | wall s | clips/s | audio-s/s | peak RSS (PSS) GiB | CPU-s/clip | compared |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for entry in sorted(summary.values(), key=_order):
        label, note = _label_and_note(entry, md=True)
        mem = "–" if entry["kind"] == "limit" else f"{entry['peak_rss_gib']:.2f} ({entry['peak_pss_gib']:.2f})"
        lines.append(f"| {label} | {entry.get('precision') or '–'} | {entry['wall_s']:.1f} "
                     f"| {entry['clips_per_s']:.2f} | {entry['audio_s_per_s']:.0f} "
                     f"| {mem} | {entry['cpu_s_per_clip']:.2f} | {note} |")
    return "\n".join(lines)


def render(path: Path) -> None:
    """Print the tables of a saved results file again (text and Markdown)."""
    results = json.loads(path.read_text())
    for block in results["results"]:
        print(table(block["summary"], block["clips"], block["audio_s"], results["machine"]) + "\n")
        print(markdown(block, results["machine"]) + "\n")
        print(f"targets: {json.dumps(block['targets'])}\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    def int_list(text: str) -> list[int]:
        return [int(x) for x in text.split(",") if x]

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clips", type=int_list, default=[200], help="synthetic clips; a list (200,1000) runs each")
    p.add_argument("--seconds", type=float, default=30.0, help="clip length (synthetic) and genreflow's duration_s")
    p.add_argument("--data-dir", type=Path, help="real audio instead: DIR/raw/<genre>/<files> (first --clips files)")
    p.add_argument("--vggish-model", help="VGGish SavedModel folder or handle (default: full-size stand-in)")
    p.add_argument("--small-model", action="store_true", help="the tiny stand-in instead (smoke runs only)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int_list, default=[os.cpu_count() or 1], help="genreflow --workers; a list sweeps")
    p.add_argument("--skip", default="", help="comma list of plain,genreflow,limit to leave out")
    p.add_argument("--precisions", default=None,
                   help="precisions of the plain and limit rows (default fp32,bf16; --smoke: fp32)")
    p.add_argument("--genreflow-precision", choices=("auto", "fp32", "bf16"),
                   help="pass --precision to genreflow run (default: not passed, genreflow's default applies)")
    p.add_argument("--limit-clips", type=int, default=200, help="clips the limit is measured on (it is a rate)")
    p.add_argument("--limit-batch", type=int, default=32, help="clips per model call for the limit")
    p.add_argument("--cache-dir", type=Path, default=support.DEFAULT_CACHE, help="where clips and models are kept")
    p.add_argument("--work-dir", type=Path, help="scratch folder (default: a new temp folder, removed after)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder and genreflow's data folders")
    p.add_argument("--out", type=Path, default=Path("bench_pipeline.json"), help="JSON results file")
    p.add_argument("--idle-wait", type=float, default=0.0,
                   help="on a shared machine, wait up to this many seconds for idle CPUs before each run")
    p.add_argument("--render", type=Path, help="only print the tables of a saved results JSON, then exit")
    p.add_argument("--smoke", action="store_true", help="8 clips of 5 s, 1 repeat, tiny model: checks the script runs")
    args = p.parse_args(argv)
    if args.smoke:
        args.clips, args.seconds, args.repeats, args.small_model = [8], 5.0, 1, True
        args.limit_clips, args.limit_batch = 8, 8
    args.skip = {s for s in args.skip.split(",") if s}
    args.precisions = [x for x in (args.precisions or ("fp32" if args.smoke else "fp32,bf16")).split(",") if x]
    if not args.precisions or set(args.precisions) - {"fp32", "bf16"}:
        p.error(f"--precisions={','.join(args.precisions)}: use fp32 and/or bf16")
    if args.skip - {"plain", "genreflow", "limit"}:
        p.error(f"--skip={','.join(sorted(args.skip))}: use plain, genreflow and/or limit")
    if args.repeats < 1 or min(args.clips) < 1 or min(args.workers) < 1:
        p.error("--repeats, --clips and --workers must be positive")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.render:
        render(args.render)
        return {}
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="genreflow-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    machine = support.machine_info()
    print(support.bf16_note(machine), flush=True)  # first: bf16 figures mean little without it
    model = Path(args.vggish_model).resolve() if args.vggish_model and "://" not in args.vggish_model \
        else args.vggish_model or support.vggish_model(args.cache_dir, small=args.small_model)
    print(f"machine: {machine['cpu_model']}, {machine['usable_cpus']} CPUs, {machine['memory_gib']} GiB; "
          f"load {support.load_average()}; model {model}", flush=True)
    from genreflow.core.host import resolve_precision

    # what genreflow computes in: known when passed (auto resolves on this machine as in genreflow's driver)
    gf_precision = resolve_precision(args.genreflow_precision) if args.genreflow_precision else "default"
    target_precision = resolve_precision(args.genreflow_precision or "auto")  # genreflow's default is auto
    results: dict[str, Any] = {"machine": machine, "model": str(model), "small_model": args.small_model,
                               "seconds": args.seconds, "repeats": args.repeats, "workers": args.workers,
                               "precisions": args.precisions, "genreflow_precision": args.genreflow_precision,
                               "load_at_start": support.load_average(), "results": []}
    try:
        for n in args.clips:
            if args.data_dir:
                raw, relpaths = support.user_clips(args.data_dir.resolve())
                relpaths = relpaths[:n]
            else:
                raw, relpaths = support.synthetic_clips(args.cache_dir, n, args.seconds, os.cpu_count() or 1)
            (work / "files.txt").write_text("\n".join(relpaths))
            audio_s = support.audio_seconds(raw, relpaths, args.seconds)
            unique = support.unique_contents(raw, relpaths) if args.data_dir else len(relpaths)
            ctx = {"work": work, "raw": raw, "relpaths": relpaths, "n": len(relpaths), "unique": unique,
                   "listing": work / "files.txt", "model": model, "seconds": args.seconds, "workers": args.workers,
                   "skip": args.skip, "limit_clips": min(args.limit_clips, len(relpaths)),
                   "limit_batch": args.limit_batch, "keep": args.keep, "idle_wait": args.idle_wait,
                   "precisions": args.precisions, "genreflow_precision": args.genreflow_precision,
                   "genreflow_row_precision": gf_precision}
            print(f"{len(relpaths)} clips ({audio_s:.0f} s of audio) from {raw}", flush=True)
            rows = [row for r in range(args.repeats) for row in run_round(ctx, r)]
            summary = summarize(rows, len(relpaths), audio_s)
            for row in rows:
                row["log_tail"] = [text for _, text in row.pop("lines")[-8:]]
            results["results"].append({"clips": len(relpaths), "seconds": args.seconds, "audio_s": round(audio_s, 1),
                                       "summary": summary,
                                       "targets": {**check_targets(summary, len(relpaths), target_precision),
                                                   **bf16_targets(summary)},
                                       "runs": rows})
            print("\n" + table(summary, len(relpaths), audio_s, machine) + "\n", flush=True)
            print(markdown(results["results"][-1], machine) + "\n", flush=True)
        results.update(memory_growth(results["results"]))
    finally:
        results["load_at_end"] = support.load_average()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        if not args.keep and not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    for block in results["results"]:
        print(f"targets at {block['clips']} clips: {json.dumps(block['targets'])}")
    if "memory_growth" in results:
        print(f"peak memory, fewest vs most clips: {json.dumps(results['memory_growth'])}")
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
