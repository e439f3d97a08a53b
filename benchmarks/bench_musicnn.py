"""Benchmark genreflow's musicnn features against a plain script and the model's limit (issue 22).

In one run, side by side, on N synthetic clips of S seconds (22.05 kHz mono WAV, written once
into a cache folder with genreflow.data.synth.genre_clip), alternating and repeated (medians):

- plain loop (bench_musicnn_plain.py, a fresh process): the user's own fp32 script, sequential:
  librosa.load at 16 kHz -> musicnn log-mel with the float32 fix -> the network, all patches of
  a clip in one call -> mean of max_pool + mean_pool per clip; "plain loop bf16" is the same
  script at bf16 (fast only where the CPU has amx_bf16 / avx512_bf16; run and labelled anyway);
- genreflow cold: ``python -m genreflow run --features musicnn --workers W --data-dir D --config T``
  on a fresh data folder (T sets [audio] duration_s = S; precision is genreflow's default,
  auto = bf16 where the CPU has the flags, read back from the feature store to be sure);
- genreflow warm: the same command again, everything cached;
- limit (bench_musicnn_limit.py): the network alone on real log-mel patches, repeated to the
  number of patches the N clips produce, 16 patches per call (genreflow's default), 2 TensorFlow threads, fp32 and bf16.

Each row gives wall s (median of --repeats; the limit times its model calls only, every other
row the whole process as a user waits for it), CPU-s per clip, peak RSS and PSS summed over the
command's whole process tree (driver, Ray's processes and workers; bench_support's sampler) and
clips/s. Then the ratios and issue 22's targets as PASS/FAIL lines:
  - cold >= 1.3x the plain loop where the CPU has bf16 flags (>= 1.0x elsewhere), against the fp32
    plain loop (the user's script) and against the plain loop of the precision cold used;
  - cold >= 70 % of the limit of the precision it used;
  - peak memory of genreflow's whole process tree < 2.5 GiB.

    python benchmarks/bench_musicnn.py                      # 200 x 30 s, 3 repeats (long on 2 cores)
    python benchmarks/bench_musicnn.py --clips 100 --repeats 1
    python benchmarks/bench_musicnn.py --smoke --out /tmp/m.json   # 6 x 4 s, 1 repeat: ~1-2 min
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_support as support  # noqa: E402
from bench_pipeline import measure  # noqa: E402  (the same measuring as the VGGish benchmark)

HERE = Path(__file__).resolve().parent
GIB = 2**30
SR = 22050
ORDER = ("plain-fp32", "plain-bf16", "cold", "warm", "limit-fp32", "limit-bf16")
NAMES = {"plain-fp32": "plain loop (fp32, user's script)", "plain-bf16": "plain loop bf16",
         "cold": "genreflow cold", "warm": "genreflow warm", "limit-fp32": "limit fp32 (model only)",
         "limit-bf16": "limit bf16 (model only)"}
SKIPPABLE = {"plain", "plain-fp32", "plain-bf16", "genreflow", "warm", "limit", "limit-fp32", "limit-bf16", "bf16"}
TARGET_SPEEDUP_BF16, TARGET_SPEEDUP_OTHER, TARGET_LIMIT, TARGET_MEMORY_GIB = 1.3, 1.0, 0.70, 2.5


# --- inputs -------------------------------------------------------------------------------------
def _write_wav(args: tuple[str, int, float]) -> str:
    import numpy as np

    from genreflow.data.synth import SYNTH_GENRES, genre_clip, noise, write_audio

    root, i, seconds = args
    genre = SYNTH_GENRES[i % len(SYNTH_GENRES)]  # genres cycle: any 4 consecutive clips cover all
    path = Path(root) / genre / f"clip-{i:05d}.wav"
    if not path.exists():
        mono = genre_clip(genre, seconds, SR, seed=i) + noise(seconds, SR, amp=0.003, seed=100_000 + i)
        tmp = path.with_name(f".{path.name}.tmp")
        write_audio(tmp, np.clip(mono, -0.99, 0.99).astype(np.float32), SR, fmt="wav")
        os.replace(tmp, path)  # a killed run never leaves half a clip under a visible name
    return str(path.relative_to(root))


def wav_clips(cache: Path, n: int, seconds: float) -> tuple[Path, list[str]]:
    """``n`` distinct 22.05 kHz mono WAV clips, written once into ``cache``: (raw_dir, relpaths)."""
    raw = cache / f"musicnn-wav-{seconds:g}s" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    jobs = [(str(raw), i, seconds) for i in range(n)]
    if n >= 8 and (os.cpu_count() or 1) > 1:
        with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
            rel = list(pool.map(_write_wav, jobs, chunksize=4))
    else:
        rel = [_write_wav(job) for job in jobs]
    return raw, sorted(rel)


def expected_patches(raw: Path, relpaths: list[str], seconds: float) -> int:
    """Patches musicnn makes of the clips (each cut at ``seconds``, decoded at 16 kHz)."""
    import soundfile as sf

    from genreflow.features import musicnn_net as mn

    total = 0
    for rel in relpaths:
        info = sf.info(str(raw / rel))
        samples = int(min(info.frames, round(seconds * info.samplerate)) * mn.SAMPLE_RATE / info.samplerate)
        total += len(mn.patch_starts(mn.frames_for(max(samples, 1))))
    return total


def cpu_header() -> dict[str, str]:
    """``lscpu``'s model name and the bf16 flags, exactly as the two shell commands print them."""
    model = ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=30).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        model = ""
    flags = subprocess.run("grep -o 'amx_bf16\\|avx512_bf16' /proc/cpuinfo | sort -u", shell=True,
                           capture_output=True, text=True).stdout.split()
    return {"lscpu_model_name": model or "unknown", "bf16_flags_grep": " ".join(flags)}


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"load average {support.load_average()}"


# --- the runs -----------------------------------------------------------------------------------
def _finish(row: dict[str, Any]) -> dict[str, Any]:
    row["log_tail"] = [text for _, text in row.pop("lines")[-8:]]
    return row


def run_plain(ctx: dict[str, Any], tag: str, precision: str) -> dict[str, Any]:
    name = f"plain-{precision}-{tag}"
    result, npy = ctx["work"] / f"{name}.json", ctx["work"] / f"{name}.npy"
    cmd = [sys.executable, str(HERE / "bench_musicnn_plain.py"), "--precision", precision, str(ctx["raw"]),
           str(ctx["seconds"]), str(result), str(ctx["listing"]), str(npy)]
    row = measure(cmd, ctx["work"] / f"{name}.log", ctx["work"], ctx["idle_wait"])
    inner = json.loads(result.read_text())
    npy.unlink(missing_ok=True)
    row.update(key=f"plain-{precision}", kind="plain", precision=precision, detail=inner,
               clips_computed=inner["files"], patches=inner["patches"],
               ok=inner["files"] == ctx["n"] and inner["finite"])
    return _finish(row)


def run_limit(ctx: dict[str, Any], tag: str, precision: str) -> dict[str, Any]:
    name = f"limit-{precision}-{tag}"
    result, listing = ctx["work"] / f"{name}.json", ctx["work"] / "limit-files.txt"
    listing.write_text("\n".join(ctx["relpaths"][: ctx["limit_sample"]]))
    cmd = [sys.executable, str(HERE / "bench_musicnn_limit.py"), "--precision", precision,
           "--per-call", str(ctx["per_call"]), "--threads", str(ctx["limit_threads"]), str(ctx["raw"]),
           str(ctx["seconds"]), str(ctx["patches"]), str(result), str(listing)]
    row = measure(cmd, ctx["work"] / f"{name}.log", ctx["work"], ctx["idle_wait"])
    inner = json.loads(result.read_text())
    # the limit times its model calls only (the same patch count as the N clips): walls compare directly
    row.update(key=f"limit-{precision}", kind="limit", precision=precision, detail=inner,
               process_wall_s=row["wall_s"], process_cpu_s=row["cpu_s"],
               wall_s=round(inner["model_s"], 3), cpu_s=round(inner["model_cpu_s"], 2),
               cpu_utilisation=round(inner["model_cpu_s"] / inner["model_s"] / (os.cpu_count() or 1), 3),
               clips_computed=ctx["n"], patches=inner["patches"], ok=inner["patches"] == ctx["patches"])
    return _finish(row)


def genreflow_stages(lines: list[tuple[float, str]], wall: float) -> dict[str, float]:
    """Split a ``genreflow run`` into stages from the times its headers and report line appeared."""
    marks: dict[str, float] = {}
    for t, text in lines:
        for key, header in (("index", "== index"), ("features", "== features"), ("train", "== train")):
            if text.startswith(header):
                marks.setdefault(key, t)
        if text.startswith("musicnn [") and " computed, " in text:
            marks["musicnn"] = t
    end = lines[-1][0] if lines else 0.0
    if not {"index", "features", "musicnn"} <= marks.keys():
        return {}
    stages = {"startup_s": marks["index"], "index_s": marks["features"] - marks["index"],
              "features_s": marks["musicnn"] - marks["features"]}  # Ray start, decode, log-mel, model, write
    if "train" in marks:
        stages.update(to_train_s=marks["train"] - marks["musicnn"], train_and_reports_s=end - marks["train"])
    stages["exit_s"] = wall - end  # after the last line: Ray's shutdown, interpreter exit
    return {k: round(v, 3) for k, v in stages.items()}


def musicnn_counts(lines: list[tuple[float, str]]) -> dict[str, int]:
    import re

    for _, text in lines:
        match = re.match(r"^musicnn \[\w+\]: (\d+) computed, (\d+) already cached, (\d+) failed", text)
        if match:
            return dict(zip(("computed", "cached", "failed"), map(int, match.groups())))
    return {}


def stored_musicnn(data_dir: Path) -> dict[str, Any]:
    """What the cold run stored: the precision in its fingerprint's params and the patch rows."""
    import pyarrow.parquet as pq

    out: dict[str, Any] = {"precision": None, "patches": 0, "rows": 0}
    for params in sorted((data_dir / "processed" / "store" / "musicnn").glob("*/_params.json")):
        out["precision"] = json.loads(params.read_text())["params"].get("precision")
        for part in params.parent.glob("*.parquet"):
            table = pq.read_table(part, columns=["n_patches"])
            out["rows"] += table.num_rows
            out["patches"] += int(sum(table.column("n_patches").to_pylist()))
    return out


def run_genreflow(ctx: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    """Cold (fresh folder, empty store) then warm (the same command again)."""
    data_dir = ctx["work"] / f"gf-{tag}"
    shutil.rmtree(data_dir, ignore_errors=True)
    support.mirror_raw(ctx["raw"], ctx["relpaths"], data_dir)
    toml = data_dir / "genreflow.toml"
    toml.write_text(f"[audio]\nduration_s = {float(ctx['seconds'])}\n")
    cmd = [sys.executable, "-m", "genreflow", "run", "--features", "musicnn", "--workers", str(ctx["workers"]),
           "--data-dir", str(data_dir), "--config", str(toml)]
    if ctx["genreflow_precision"]:  # only when asked: by default genreflow's own default (auto) applies
        cmd += ["--precision", ctx["genreflow_precision"]]
    rows = []
    for kind in ("cold", "warm"):
        if kind == "warm" and ctx["skip_warm"]:
            break
        row = measure(cmd, ctx["work"] / f"{kind}-{tag}.log", ctx["work"], ctx["idle_wait"])
        counts = musicnn_counts(row["lines"])
        expect = {"computed": ctx["n"], "cached": 0} if kind == "cold" else {"computed": 0, "cached": ctx["n"]}
        row.update(key=kind, kind=kind, workers=ctx["workers"], stages=genreflow_stages(row["lines"], row["wall_s"]), counts=counts,
                   clips_computed=counts.get("computed", 0) + counts.get("cached", 0),
                   ok=all(counts.get(k) == v for k, v in expect.items()) and not counts.get("failed"))
        if kind == "cold":
            stored = stored_musicnn(data_dir)
            row.update(stored=stored, patches=stored["patches"], precision=stored["precision"] or ctx["gf_precision"])
            row["ok"] = row["ok"] and stored["patches"] == ctx["patches"]
        else:
            row.update(patches=ctx["patches"], precision=rows[0]["precision"])
        rows.append(_finish(row))
    if not ctx["keep"]:
        shutil.rmtree(data_dir, ignore_errors=True)
    return rows


def units(ctx: dict[str, Any]) -> list[tuple[str, str]]:
    skip = ctx["skip"]
    out = []
    for unit, precision in (("plain", "fp32"), ("plain", "bf16"), ("genreflow", ""), ("limit", "fp32"),
                            ("limit", "bf16")):
        if unit in skip or f"{unit}-{precision}" in skip or (precision == "bf16" and "bf16" in skip):
            continue
        out.append((unit, precision))
    return out


def run_round(ctx: dict[str, Any], repeat: int) -> list[dict[str, Any]]:
    """One of each run, in an order rotated per round."""
    def run_unit(unit: str, precision: str) -> list[dict[str, Any]]:
        tag = f"n{ctx['n']}-r{repeat}"
        rows = ([run_plain(ctx, tag, precision)] if unit == "plain" else
                [run_limit(ctx, tag, precision)] if unit == "limit" else run_genreflow(ctx, tag))
        return [dict(row, clips=ctx["n"]) for row in rows]

    return support.run_round(units(ctx), repeat, run_unit, lambda row: NAMES[row["key"]], "",
                             lambda row: f"  load {row['load_after']}")


# --- the report ---------------------------------------------------------------------------------
def summarize(rows: list[dict[str, Any]], n: int, audio_s: float) -> dict[str, Any]:
    """Medians per row kind, then ratios."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["key"], []).append(row)
    out: dict[str, Any] = {}
    for key in sorted(groups, key=ORDER.index):
        group = groups[key]
        wall = statistics.median(r["wall_s"] for r in group)
        cpu = statistics.median(r["cpu_s"] for r in group)
        entry = {
            "kind": group[0]["kind"], "precision": group[0].get("precision"), "repeats": len(group),
            "clips": n, "clips_computed": [r["clips_computed"] for r in group], "patches": group[0].get("patches"),
            "wall_s": round(wall, 3), "wall_s_all": [r["wall_s"] for r in group],
            "clips_per_s": round(n / wall, 3), "audio_s_per_s": round(audio_s / wall, 2),
            "patches_per_s": round(group[0]["patches"] / wall, 2) if group[0].get("patches") else None,
            "cpu_s": round(cpu, 1), "cpu_s_per_clip": round(cpu / n, 3),
            "cpu_utilisation": round(statistics.median(r["cpu_utilisation"] for r in group), 3),
            "peak_rss_gib": round(statistics.median(r["peak_rss_gib"] for r in group), 3),
            "peak_pss_gib": round(statistics.median(r["peak_pss_gib"] for r in group), 3),
            "peak_rss_gib_max": round(max(r["peak_rss_gib"] for r in group), 3),
            "foreign_cpu_share": round(statistics.median(r["foreign_cpu_share"] for r in group), 3),
            "all_checks_ok": all(r["ok"] for r in group),
        }
        if group[0]["kind"] == "limit":
            entry["process_wall_s"] = round(statistics.median(r["process_wall_s"] for r in group), 3)
        entry.update(support.median_breakdown(group))
        out[key] = entry
    return out


# (name, numerator row, denominator row, scale): ratio = scale * wall(numerator) / wall(denominator);
# "{p}" is the precision the cold run used
RATIOS = (("cold_vs_plain_fp32", "plain-fp32", "cold", 1), ("cold_vs_plain_same_precision", "plain-{p}", "cold", 1),
          ("cold_fraction_of_limit", "limit-{p}", "cold", 1), ("warm_pct_of_cold", "warm", "cold", 100),
          ("limit_bf16_vs_fp32", "limit-fp32", "limit-bf16", 1), ("plain_bf16_vs_fp32", "plain-fp32", "plain-bf16", 1))


def ratios(summary: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each ratio of the medians, and (``<name>_paired``) the median of the ratios within each round:
    on a shared machine whose load drifts, the runs of one round saw the most similar load."""
    cold = summary.get("cold")
    if not cold:
        return {}
    precision = cold.get("precision") or "fp32"
    rounds: dict[int, dict[str, float]] = {}
    for row in rows:
        rounds.setdefault(row["repeat"], {})[row["key"]] = row["wall_s"]
    out: dict[str, Any] = {"cold_precision": precision}
    for name, num, den, scale in RATIOS:
        num = num.format(p=precision)
        if num in summary and den in summary:
            out[name] = round(scale * summary[num]["wall_s"] / summary[den]["wall_s"], 3)
            paired = [scale * walls[num] / walls[den] for walls in rounds.values() if num in walls and den in walls]
            out[name + "_paired"] = round(statistics.median(paired), 3)
            out[name + "_per_round"] = [round(x, 3) for x in paired]
    return out


def targets(summary: dict[str, Any], rat: dict[str, Any], has_bf16: bool) -> dict[str, Any]:
    """Issue 22's targets, judged on the ratios of the medians (``*_paired_pass``: on the median of
    the per-round ratios); a target whose rows were skipped is left out."""
    need = TARGET_SPEEDUP_BF16 if has_bf16 else TARGET_SPEEDUP_OTHER
    out: dict[str, Any] = {"speedup_needed": need}
    for name, threshold in (("cold_vs_plain_fp32", need), ("cold_vs_plain_same_precision", need),
                            ("cold_fraction_of_limit", TARGET_LIMIT)):
        if name in rat:
            out[name + "_pass"] = rat[name] >= threshold
            out[name + "_paired_pass"] = rat[name + "_paired"] >= threshold
    gf = [summary[k] for k in ("cold", "warm") if k in summary]
    if gf:
        out["peak_rss_gib"] = max(e["peak_rss_gib_max"] for e in gf)
        out["peak_pss_gib"] = max(e["peak_pss_gib"] for e in gf)
        out["peak_memory_below_2_5gib_pass"] = out["peak_rss_gib"] < TARGET_MEMORY_GIB  # RSS: the strict reading
        out["peak_pss_below_2_5gib_pass"] = out["peak_pss_gib"] < TARGET_MEMORY_GIB
    return out


def table(summary: dict[str, Any], n: int, seconds: float, audio_s: float, patches: int) -> str:
    from genreflow.core.tables import format_table

    rows = []
    for key, e in summary.items():
        wall = f"{e['wall_s']:.1f}" + (f" ({e['process_wall_s']:.0f})" if "process_wall_s" in e else "")
        rows.append([NAMES[key], e.get("precision") or "-", wall, f"{e['clips_per_s']:.3f}",
                     f"{e['patches_per_s']:.2f}" if e.get("patches_per_s") else "-",
                     f"{e['cpu_s_per_clip']:.2f}", f"{e['peak_rss_gib']:.2f} / {e['peak_pss_gib']:.2f}",
                     f"{100 * e['foreign_cpu_share']:.0f}%", "ok" if e["all_checks_ok"] else "CHECK FAILED"])
    head = (f"{n} clips x {seconds:g} s ({audio_s:.0f} s of audio, {patches} patches); medians of "
            f"{max(e['repeats'] for e in summary.values())} repeat(s); limit wall = its model calls only "
            "(whole process in brackets)")
    headers = ["run", "precision", "wall s", "clips/s", "patches/s", "CPU-s/clip", "peak RSS / PSS GiB",
               "others' CPU", "check"]
    return head + "\n" + format_table(headers, rows)


def verdict_lines(rat: dict[str, Any], tg: dict[str, Any], flags: str, requested: str | None) -> list[str]:
    def mark(key: str) -> str:
        return "n/a " if key not in tg else ("PASS" if tg[key] else "FAIL")

    def show(key: str, pct: bool = False, unit: str = "x") -> str:
        if key not in rat:
            return "n/a"
        digits = 1 if unit == "%" else 2
        value, paired = (f"{100 * rat[k]:.0f}%" if pct else f"{rat[k]:.{digits}f}{unit}" for k in (key, key + "_paired"))
        return f"{value:>7s}  [{paired}]"

    precision = rat.get("cold_precision", "?")
    need = tg["speedup_needed"]
    how = f"CPU has bf16 flags ({flags}): {need}x" if flags else f"no bf16 flags: {need}x"
    asked = requested or "auto (genreflow's default)"
    lines = [f"ratios of the medians  [median of the per-round ratios]; genreflow precision {asked} -> {precision} "
             "(read from its feature store):"]
    for label, key, pct, unit in (("cold vs plain loop fp32 (the user's script)", "cold_vs_plain_fp32", False, "x"),
                                  (f"cold vs plain loop {precision} (the precision cold used)",
                                   "cold_vs_plain_same_precision", False, "x"),
                                  (f"cold as % of the limit {precision} (its precision)", "cold_fraction_of_limit",
                                   True, ""),
                                  ("warm as % of cold", "warm_pct_of_cold", False, "%"),
                                  ("limit bf16 vs limit fp32", "limit_bf16_vs_fp32", False, "x"),
                                  ("plain bf16 vs plain fp32", "plain_bf16_vs_fp32", False, "x")):
        if key in rat:
            lines.append(f"  {label:58s} {show(key, pct, unit)}")
    lines.append(f"issue 22 targets (judged on the medians; {how}):")
    for key, text in (("cold_vs_plain_fp32", f"cold >= {need}x plain loop fp32 (the user's script)"),
                      ("cold_vs_plain_same_precision", f"cold >= {need}x plain loop {precision} (same precision)"),
                      ("cold_fraction_of_limit", f"cold >= 70% of the limit {precision}")):
        lines.append(f"  {mark(key + '_pass')} {text + ':':50s} {show(key, key == 'cold_fraction_of_limit')}"
                     + (f" paired {mark(key + '_paired_pass')}" if key + "_paired_pass" in tg else ""))
    lines.append(f"  {mark('peak_memory_below_2_5gib_pass')} peak memory of genreflow's whole process tree "
                 f"< {TARGET_MEMORY_GIB} GiB: RSS {tg.get('peak_rss_gib', float('nan')):.2f} GiB "
                 f"(PSS {tg.get('peak_pss_gib', float('nan')):.2f} GiB: {mark('peak_pss_below_2_5gib_pass')} by PSS)")
    return lines


# --- main ---------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clips", type=int, default=200, help="synthetic clips (default 200)")
    p.add_argument("--seconds", type=float, default=30.0, help="clip length and genreflow's duration_s (default 30)")
    p.add_argument("--repeats", type=int, default=3, help="rounds; the table gives medians (default 3)")
    p.add_argument("--workers", type=int, default=2, help="genreflow run --workers (default 2)")
    p.add_argument("--skip", default="",
                   help="comma list to leave out: plain, plain-fp32, plain-bf16, genreflow, warm, limit,\n"
                        "limit-fp32, limit-bf16, bf16 (both bf16 rows)")
    p.add_argument("--genreflow-precision", choices=("auto", "fp32", "bf16"),
                   help="pass --precision to genreflow run (default: not passed; genreflow's auto applies)")
    p.add_argument("--per-call", type=int, default=16, help="patches per model call of the limit (genreflow's default, 16)")
    p.add_argument("--limit-threads", type=int, default=2, help="TensorFlow threads of the limit (default 2)")
    p.add_argument("--limit-sample-clips", type=int, default=4, help="clips whose real patches the limit repeats")
    p.add_argument("--cache-dir", type=Path, default=support.DEFAULT_CACHE, help="where the clips are kept")
    p.add_argument("--work-dir", type=Path, help="scratch folder (default: a new temp folder, removed after)")
    p.add_argument("--keep", action="store_true", help="keep genreflow's data folders")
    p.add_argument("--idle-wait", type=float, default=0.0, help="wait up to this many s for idle CPUs before each run")
    p.add_argument("--out", type=Path, default=Path("bench_musicnn.json"), help="JSON results file")
    p.add_argument("--render", type=Path, help="only print the report of a saved results JSON again, then exit")
    p.add_argument("--smoke", action="store_true", help="6 clips x 4 s, 1 repeat: checks the script runs (~1-2 min)")
    args = p.parse_args(argv)
    if args.smoke:
        args.clips, args.seconds, args.repeats = 6, 4.0, 1
    args.skip = {s for s in args.skip.split(",") if s}
    if args.skip - SKIPPABLE:
        p.error(f"--skip={','.join(sorted(args.skip - SKIPPABLE))}: use {', '.join(sorted(SKIPPABLE))}")
    if min(args.clips, args.repeats, args.workers, args.per_call, args.limit_threads, args.limit_sample_clips) < 1 \
            or args.seconds <= 0:
        p.error("--clips, --seconds, --repeats, --workers, --per-call, --limit-threads and --limit-sample-clips "
                "must be positive")
    return args


def analyse(results: dict[str, Any]) -> None:
    """Medians, ratios and targets of ``results["runs"]`` (also used to re-render a saved JSON)."""
    summary = summarize(results["runs"], results["clips"], results["audio_s"])
    rat = ratios(summary, results["runs"])
    results.update(summary=summary, ratios=rat, targets=targets(summary, rat, bool(results["bf16_flags_grep"])))


def report(results: dict[str, Any]) -> None:
    summary, rat, tg = results["summary"], results["ratios"], results["targets"]
    print(f"lscpu model name: {results['lscpu_model_name']}; bf16 flags: {results['bf16_flags_grep'] or 'none'}")
    print(table(summary, results["clips"], results["seconds"], results["audio_s"], results["patches"]))
    print()
    print("\n".join(verdict_lines(rat, tg, results["bf16_flags_grep"], results["args"].get("genreflow_precision"))))
    if "cold" in summary and summary["cold"].get("stages_s"):
        print("genreflow cold stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in summary["cold"]["stages_s"].items()))
    if "plain-fp32" in summary:
        print("plain fp32 steps (s): " + ", ".join(f"{k} {v:.1f}" for k, v in summary["plain-fp32"]["steps_s"].items())
              + f", model load {summary['plain-fp32']['model_load_s']:.1f}")
    print(f"uptime at start: {results['uptime_start']}\nuptime at end:   {results.get('uptime_end')}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.render:
        results = json.loads(args.render.read_text())
        analyse(results)
        report(results)
        return results
    cpu = cpu_header()
    print(f"lscpu model name: {cpu['lscpu_model_name']}")
    print(f"grep -o 'amx_bf16\\|avx512_bf16' /proc/cpuinfo | sort -u: {cpu['bf16_flags_grep'] or '(nothing)'}")
    machine = support.machine_info()
    print(support.bf16_note(machine))
    load_start = uptime()
    print(f"uptime at start: {load_start}", flush=True)
    from genreflow.core.host import resolve_precision

    gf_precision = resolve_precision(args.genreflow_precision or "auto")
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="genreflow-bench-musicnn-"))
    work.mkdir(parents=True, exist_ok=True)
    raw, relpaths = wav_clips(args.cache_dir, args.clips, args.seconds)
    (work / "files.txt").write_text("\n".join(relpaths))
    audio_s = support.audio_seconds(raw, relpaths, args.seconds)
    patches = expected_patches(raw, relpaths, args.seconds)
    print(f"{len(relpaths)} clips x {args.seconds:g} s ({audio_s:.0f} s of audio, {patches} musicnn patches) "
          f"from {raw}; genreflow --workers {args.workers}, precision {args.genreflow_precision or 'auto'} -> "
          f"{gf_precision}", flush=True)
    ctx = {"work": work, "raw": raw, "relpaths": relpaths, "n": len(relpaths), "listing": work / "files.txt",
           "seconds": args.seconds, "workers": args.workers, "skip": args.skip, "skip_warm": "warm" in args.skip,
           "patches": patches, "per_call": args.per_call, "limit_threads": args.limit_threads,
           "limit_sample": min(args.limit_sample_clips, len(relpaths)), "keep": args.keep,
           "idle_wait": args.idle_wait, "genreflow_precision": args.genreflow_precision, "gf_precision": gf_precision}
    results: dict[str, Any] = {"benchmark": "musicnn (issue 22)", "machine": machine, **cpu,
                               "args": {k: sorted(v) if isinstance(v, set) else str(v) if isinstance(v, Path) else v
                                        for k, v in vars(args).items()},
                               "clips": len(relpaths), "seconds": args.seconds, "audio_s": round(audio_s, 1),
                               "patches": patches, "uptime_start": load_start, "runs": []}
    try:
        for repeat in range(args.repeats):
            results["runs"].extend(run_round(ctx, repeat))
        analyse(results)
    finally:
        results["uptime_end"] = uptime()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
        if not args.work_dir and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print()
    report(results)
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
