"""How `train`, `status` and a warm `features` run grow with the number of clips (issue 13).

No audio and no Ray: for each feature kind and clip count the script writes a synthetic data
folder straight through the store's documented layout, with the package's own writers:

- ``processed/dataset_index.json`` + ``index.parquet`` (``dataset.write_index``): well-formed
  records (relpath ``<genre>/clip-NNNNNN.wav``, genre, label, ``content_hash`` = sha256 hex of a
  counter, duration, sample rate, channels, format, bytes), ten genres cycling clip by clip;
- ``processed/splits.json`` (``splits.make_splits`` / ``splits_json``);
- ``processed/store/<kind>/<current fingerprint>/``: shards of ``batch_size`` rows
  (``store.shard_table`` / ``write_shard``) of seeded random float32 frames in the kind's
  stored shape (mfcc (20, 1292), vggish (31, 128), spectral (44, 1292) per 30 s clip: what the
  extractors return for exactly 30 s at 22.05 kHz, hop 512; GTZAN's 30.013 s files give 1293), with a
  small per-genre offset so the classifier has something to find (its accuracy shows that
  labels and features were joined right) and 10 % of the clips padded (``valid_frames`` < T).

The extractors come from ``load_config(None, {"data_dir": ..., "vggish.handle":
"https://example.org/vggish/1", "vggish.precision": "fp32"})``, so no model folder is needed;
``genreflow features --features vggish`` still resolves the handle in its model check, which a
TF Hub cache entry made here (``TFHUB_CACHE_DIR``) answers without network.

Folders are cached under ``~/.cache/genreflow-bench-scale/<kind>-<clips>`` and reused (a marker
file records what they hold; a killed build resumes, shards are named by their keys). Then each
command runs in a fresh process (``python -m genreflow ...``), timed from start to exit, with
its peak memory summed over its whole process tree (``bench_support.TreeMemorySampler``):

- ``genreflow train --features KIND`` (writes a model and reports into the cached folder);
- ``genreflow status``;
- ``genreflow features --features KIND`` with everything stored: the bookkeeping of a warm run
  (index read, stored-keys reads, pending computation). It must compute nothing and never
  start Ray (each run gets its own ``RAY_TMPDIR``, which must stay empty).

    python benchmarks/bench_scale.py                                  # mfcc, vggish, spectral at 10k and 100k
    python benchmarks/bench_scale.py --kinds mfcc                     # the issue's training target
    python benchmarks/bench_scale.py --clips 1000,10000               # quick
    python benchmarks/bench_scale.py --clips 100,200 --kinds mfcc --cache-dir /tmp/x --out /tmp/x.json  # smoke
    python benchmarks/bench_scale.py --render bench_scale.json        # print a saved run's table again

Disk: random float32 does not compress, so a store takes about clips x (values x 4 + 8 KiB) bytes
(100k clips: mfcc 11.2 GB, vggish 2.2 GB, spectral about 23 GB). Before building, the script checks the free
space of the cache's filesystem and never leaves less than ``--keep-free-gib`` (default 40,
the disk is shared): a kind that does not fit is stored with fewer frames per clip (the same
count at every clip count, so the growth ratios stay comparable; said in the output), or,
below 64 frames, left out at the sizes that do not fit, with the reason printed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_support as support  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GIB = 2**30
DEFAULT_CACHE = Path(os.environ.get("GENREFLOW_BENCH_SCALE_CACHE",
                                    Path.home() / ".cache" / "genreflow-bench-scale"))
VGGISH_HANDLE = "https://example.org/vggish/1"
OVERRIDES = {"vggish.handle": VGGISH_HANDLE, "vggish.precision": "fp32"}
CLI_MODEL = ["--vggish-model", VGGISH_HANDLE, "--precision", "fp32"]  # the same extractors on the command line
GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
COMMANDS = ("train", "status", "features")
MIN_FRAMES = 64
STORE_FORMAT = 1  # bump when what a cached folder holds changes
SHARDS_PER_TASK = 16
TRAIN_PEAK_GIB, GROWTH_SLACK, BOOKKEEPING_S, TARGET_CLIPS = 2.0, 1.1, 30.0, 100_000
BYTES_PER_FILE = 44 + 30 * 22050 * 2  # a 30 s 16-bit mono WAV at 22.05 kHz


# --- what is stored ------------------------------------------------------------------------------
def make_config(data_dir: str | Path):
    from genreflow.config import load_config

    return load_config(None, {"data_dir": str(data_dir), **OVERRIDES})


def make_extractor(kind: str, data_dir: str | Path):
    from genreflow.config import build_extractor as build

    return build(kind, make_config(data_dir)).resolved()


def full_shape(extractor) -> tuple[int, int]:
    """The stored 2-D shape of one clip of the configured duration (what the extractor writes)."""
    audio = extractor.audio
    if extractor.name in ("mfcc", "spectral"):
        frames = 1 + int(round(audio.sample_rate * audio.duration_s)) // extractor.config.hop_length
        rows = extractor.config.n_mfcc if extractor.name == "mfcc" else len(extractor.config.rows())
        return rows, frames
    if extractor.name == "vggish":
        return int(audio.duration_s // extractor.frame_seconds), 128
    raise SystemExit(f"bench_scale.py knows the stored shape of mfcc, vggish and spectral, not {extractor.name!r}.")


def with_frames(extractor, shape: tuple[int, int], frames: int) -> tuple[int, int]:
    """``shape`` with its time axis set to ``frames``."""
    return (shape[0], frames) if extractor.kind.time_axis == 1 else (frames, shape[1])


def time_frames(extractor, shape: tuple[int, int]) -> int:
    return shape[extractor.kind.time_axis]


def content_hash(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def genre_of(i: int) -> str:
    return GENRES[i % len(GENRES)]  # genres cycle fastest: every block of 10 clips holds each once


def clip_valid(rng, n: int, frames: int):
    """Valid frames per clip: 90 % whole clips, 10 % shorter ones padded to the full length."""
    import numpy as np

    valid = np.full(n, frames, np.int64)
    short = rng.random(n) < 0.1
    valid[short] = rng.integers(max(1, frames // 6), frames, size=int(short.sum()), endpoint=False)
    return valid


def index_document(n: int) -> dict[str, Any]:
    """The index a `genreflow index` of ``n`` distinct 30 s WAV files would write."""
    from genreflow import __version__
    from genreflow.data.audio import EXTENSIONS

    labels = {g: i for i, g in enumerate(sorted(GENRES))}
    files = []
    for i in range(n):
        genre = genre_of(i)
        files.append({"relpath": f"{genre}/clip-{i:06d}.wav", "genre": genre, "label": labels[genre],
                      "content_hash": content_hash(i), "duration_s": 30.0, "sample_rate": 22050, "channels": 1,
                      "format": "wav", "bytes": BYTES_PER_FILE})
    files.sort(key=lambda f: f["relpath"])
    return {"genreflow_version": __version__, "genres": labels, "files": files, "invalid": [], "ignored": [],
            "params": {"extensions": list(EXTENSIONS), "genre_folders": sorted(GENRES)}, "warnings": []}


def _write_shards(task: tuple[str, str, tuple[int, int], int, int, int, int, int]) -> int:
    """Worker: write the shards ``first .. first + count - 1`` (skipping those already there)."""
    import numpy as np

    from genreflow.core.fingerprint import shard_name
    from genreflow.core.fs import exists
    from genreflow.store.featureset import shard_table, write_shard

    data_dir, kind, shape, first, count, n, batch, seed = task
    extractor = make_extractor(kind, data_dir)
    fset = extractor.feature_set(data_dir)
    time_axis = extractor.kind.time_axis
    frames, kind_id = shape[time_axis], int(hashlib.sha256(kind.encode()).hexdigest()[:6], 16)
    # a small per-genre offset of each feature row: the classifier has something to find
    offsets = np.random.default_rng([seed, kind_id]).choice(
        np.array([-0.1, 0.1], np.float32), size=(len(GENRES), shape[1 - time_axis]))
    written = 0
    for j in range(first, first + count):
        lo, hi = j * batch, min(n, (j + 1) * batch)
        keys = [content_hash(i) for i in range(lo, hi)]
        if not keys or exists(fset.location.join(shard_name(keys))):
            continue
        rng = np.random.default_rng([seed, kind_id, j])
        block = rng.standard_normal((hi - lo, *shape), dtype=np.float32)
        valid = clip_valid(rng, hi - lo, frames)
        for row, i in enumerate(range(lo, hi)):
            shift = offsets[GENRES.index(genre_of(i))]
            if time_axis == 1:
                block[row] += shift[:, None]
                block[row, :, valid[row]:] = 0.0  # padding frames
            else:
                block[row] += shift[None, :]
                block[row, valid[row]:, :] = 0.0
        write_shard(fset, shard_table(extractor.kind, keys, list(block), [int(v) for v in valid]))
        written += 1
    return written


def store_dir(cache: Path, kind: str, n: int, frames: int, full_frames: int) -> Path:
    return cache / (f"{kind}-{n}" if frames == full_frames else f"{kind}-{n}-f{frames}")


def store_marker(kind: str, n: int, shape: tuple[int, int], fingerprint: str, batch_size: int, seed: int) -> dict:
    import genreflow

    return {"format": STORE_FORMAT, "kind": kind, "clips": n, "shape": list(shape), "fingerprint": fingerprint,
            "batch_size": batch_size, "seed": seed, "genres": list(GENRES), "genreflow": genreflow.__version__}


def build_store(cache: Path, kind: str, n: int, frames: int, *, batch_size: int, seed: int, workers: int,
                rebuild: bool) -> dict[str, Any]:
    """The cached data folder of ``n`` clips of ``kind`` (built now if absent or stale)."""
    from genreflow.data.index import write_index
    from genreflow.core.fs import atomic_write_text
    from genreflow.core.layout import Layout
    from genreflow.data.splits import make_splits, splits_json

    extractor = make_extractor(kind, cache)
    full = full_shape(extractor)
    shape = with_frames(extractor, full, frames)
    folder = store_dir(cache, kind, n, frames, time_frames(extractor, full))
    fingerprint = extractor.fingerprint()
    want = store_marker(kind, n, shape, fingerprint, batch_size, seed)
    marker = folder / "bench_scale_store.json"
    if not rebuild and marker.is_file() and json.loads(marker.read_text()) == want:
        return {"data_dir": str(folder), "shape": list(shape), "frames": frames, "reused": True, "build_s": 0.0,
                "fingerprint": fingerprint, "bytes": _du(folder)}
    t0 = time.perf_counter()
    plan_file = folder / "bench_scale_plan.json"
    if folder.exists() and (rebuild or not plan_file.is_file() or json.loads(plan_file.read_text()) != want):
        shutil.rmtree(folder)  # another plan (or a stale fingerprint): start clean; same plan: resume
    folder.mkdir(parents=True, exist_ok=True)
    plan_file.write_text(json.dumps(want, indent=2) + "\n")
    print(f"building {folder} ({n} clips of {kind} {tuple(shape)}, shards of {batch_size}) ...", flush=True)
    config = make_config(folder)
    index = index_document(n)
    write_index(index, str(folder))
    with _quiet_warnings():
        splits = make_splits(index["files"], config.split)
    atomic_write_text(Layout.of(str(folder)).splits_json, splits_json(splits))
    fset = make_extractor(kind, folder).feature_set(str(folder))
    fset.ensure_params_file()
    n_shards = -(-n // batch_size)
    tasks = [(str(folder), kind, tuple(shape), first, min(SHARDS_PER_TASK, n_shards - first), n, batch_size, seed)
             for first in range(0, n_shards, SHARDS_PER_TASK)]
    if workers > 1 and len(tasks) > 1:
        import multiprocessing

        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            written = sum(pool.map(_write_shards, tasks))
    else:
        written = sum(_write_shards(task) for task in tasks)
    marker.write_text(json.dumps(want, indent=2) + "\n")
    build_s = time.perf_counter() - t0
    size = _du(folder)
    print(f"  {written} shard(s) written, {size / 1e9:.2f} GB, {build_s:.0f} s", flush=True)
    return {"data_dir": str(folder), "shape": list(shape), "frames": frames, "reused": False,
            "build_s": round(build_s, 1), "fingerprint": fingerprint, "bytes": size}


@contextlib.contextmanager
def _quiet_warnings() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# --- disk budget ---------------------------------------------------------------------------------
def plan_kind(cache: Path, kind: str, sizes: list[int], keep_free_gib: float, frames_override: int | None,
              rebuild: bool) -> tuple[int, list[int], list[str]]:
    """(frames per clip, clip counts to build, notes): full frames if every store still to build
    fits the disk budget, else fewer frames (>= MIN_FRAMES) at every size, else the sizes that fit."""
    extractor = make_extractor(kind, cache)
    full = full_shape(extractor)
    full_frames = time_frames(extractor, full)
    per_frame = 4 * (full[0] * full[1]) / full_frames  # bytes per clip per frame, raw float32
    per_clip = 8 << 10  # measured on disk beyond the raw floats (Parquet list levels, page headers, keys)
    cache.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cache).free
    budget = max(0.0, free - keep_free_gib * GIB)

    def need(frames: int, ns: list[int]) -> float:  # bytes still to write (cached stores cost nothing)
        return sum(0 if (not rebuild and _cached(cache, kind, n, frames, full_frames))
                   else n * (frames * per_frame + per_clip) for n in ns)

    notes: list[str] = []
    frames = frames_override or full_frames
    if frames != full_frames:
        notes.append(f"{kind}: {frames} frames per clip instead of {full_frames} (--{kind}-frames).")
    if need(frames, sizes) <= budget:
        return frames, sizes, notes
    where = (f"{free / GIB:.1f} GiB are free on {cache} and {keep_free_gib:g} GiB stay free for others "
             "(--keep-free-gib; the disk is shared)")
    fitted = int(frames * budget / need(frames, sizes))
    while fitted >= MIN_FRAMES and need(fitted, sizes) > budget:
        fitted -= 1
    if fitted >= MIN_FRAMES:
        notes.append(f"{kind}: the stores of {', '.join(map(str, sizes))} clips need {need(frames, sizes) / GIB:.1f} GiB "
                     f"at {frames} frames per clip; {where}, so every {kind} store here holds {fitted} frames per "
                     f"clip instead of {frames} (reading and pooling per clip shrink by {frames / fitted:.1f}x; "
                     "pooled memory per clip and the growth ratios are unaffected).")
        return fitted, sizes, notes
    kept: list[int] = []
    for n in sorted(sizes):
        if need(frames, kept + [n]) <= budget:
            kept.append(n)
        else:
            notes.append(f"{kind} at {n} clips skipped: its store needs {need(frames, [n]) / GIB:.1f} GiB; {where}, "
                         f"and not even {MIN_FRAMES} frames per clip at every size would fit.")
    return frames, kept, notes


def _cached(cache: Path, kind: str, n: int, frames: int, full_frames: int) -> bool:
    return (store_dir(cache, kind, n, frames, full_frames) / "bench_scale_store.json").is_file()


# --- measuring -----------------------------------------------------------------------------------
@contextlib.contextmanager
def patched_env(**values: str | None) -> Iterator[None]:
    """os.environ with ``values`` set (None: removed), for the measured process to inherit."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def tfhub_cache(cache: Path) -> Path:
    """A TF Hub cache in which the placeholder handle resolves (its folder exists, not empty),
    so ``vggish``'s model check answers without network. Nothing loads the model here."""
    root = cache / "tfhub"
    entry = root / hashlib.sha1(VGGISH_HANDLE.encode("utf8")).hexdigest()
    entry.mkdir(parents=True, exist_ok=True)
    (entry / "README.txt").write_text("placeholder for bench_scale.py: stores are synthetic, no model runs\n")
    return root


def measure(cmd: list[str], log: Path, work: Path, idle_wait: float, tfhub: Path) -> dict[str, Any]:
    """One fresh process: wall time and peak tree memory (bench_pipeline.measure), plus whether
    it started Ray (its private RAY_TMPDIR must stay empty)."""
    from bench_pipeline import BenchError, measure as measure_process

    ray_tmp = Path(tempfile.mkdtemp(prefix="gfbs-", dir="/tmp"))  # short: Ray's socket paths are limited
    try:
        with patched_env(RAY_TMPDIR=str(ray_tmp), TFHUB_CACHE_DIR=str(tfhub), GENREFLOW_VGGISH_MODEL=None):
            try:
                row = measure_process(cmd, log, work, idle_wait)
            except BenchError as exc:
                return {"ok": False, "error": str(exc)[-3000:]}
        names = row.get("peak_rss_by_process_gib", {})
        row["ray_started"] = any(ray_tmp.iterdir()) or any(n in ("raylet", "gcs_server") or n.startswith("ray::")
                                                          for n in names)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    row["ok"] = True
    return row


REPORT = r"^{kind} \[(\w+)\]: (\d+) computed, (\d+) already cached, (\d+) failed"


def check_run(command: str, kind: str, n: int, row: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    """What the command's output must show: all clips used, nothing computed, no Ray."""
    text = [line for _, line in row.get("lines", [])]
    checks: dict[str, Any] = {}
    if command == "features":
        counts = [re.match(REPORT.format(kind=kind), line) for line in text]
        found = [m for m in counts if m]
        if found:
            computed, cached, failed = map(int, found[-1].groups()[1:])
            checks.update(computed=computed, cached=cached, failed=failed)
        checks["ok"] = bool(found) and checks["computed"] == 0 and checks["cached"] == n and not row["ray_started"]
    elif command == "status":
        mine = [line for line in text if line.startswith(f"{kind} ") and f"{n}/{n}" in line.split()]
        checks["stored_line"] = mine[0].strip() if mine else None
        checks["ok"] = bool(mine) and not row["ray_started"]
    else:
        metrics_file = data_dir / "processed" / "reports" / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        checks.update(n_train=metrics.get("n_train"), n_val=metrics.get("n_val"), accuracy=metrics.get("accuracy"),
                      missing_warning=any("have no" in line and "features" in line for line in text))
        checks["ok"] = ((metrics.get("n_train") or 0) + (metrics.get("n_val") or 0) == n
                        and not checks["missing_warning"] and not row["ray_started"])
    return checks


def warm_up() -> None:
    """Read the interpreter's and the libraries' files once, untimed, so the first measured
    command does not pay for a cold page cache that the others never see."""
    code = ("import genreflow.cli, genreflow.cli.commands, genreflow.model.training, genreflow.stages.extract, genreflow.model.reports, "
            "sklearn.linear_model, sklearn.metrics, pyarrow.parquet, pandas, matplotlib.pyplot")
    subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=600, check=False)


def command_line(command: str, kind: str, data_dir: Path) -> list[str]:
    base = [sys.executable, "-m", "genreflow", command, "--data-dir", str(data_dir), *CLI_MODEL]
    return base + (["--features", kind] if command in ("train", "features") else [])


def run_one(command: str, kind: str, n: int, store: dict[str, Any], args: argparse.Namespace, work: Path,
            tfhub: Path) -> dict[str, Any]:
    data_dir = Path(store["data_dir"])
    if command == "train":  # this run's metrics only, never a previous run's
        (data_dir / "processed" / "reports" / "metrics.json").unlink(missing_ok=True)
    samples = []
    for repeat in range(args.repeats):
        log = work / f"{kind}-{n}-{command}-{repeat}.log"
        row = measure(command_line(command, kind, data_dir), log, work, args.idle_wait, tfhub)
        if not row["ok"]:
            print(f"  {command}: FAILED\n{row['error']}", flush=True)
            return {"kind": kind, "clips": n, "command": command, "frames": store["frames"], "ok": False,
                    "error": row["error"]}
        row["checks"] = check_run(command, kind, n, row, data_dir)
        samples.append(row)
        print(f"  {command:8s} {kind} {n:>7}: {row['wall_s']:8.2f} s, peak RSS {row['peak_rss_gib']:.3f} GiB"
              f"{'' if row['checks']['ok'] else '  CHECK FAILED: ' + json.dumps(row['checks'])}", flush=True)
    last = samples[-1]
    return {
        "kind": kind, "clips": n, "command": command, "frames": store["frames"], "ok": all(s["checks"]["ok"] for s in samples),
        "repeats": len(samples),
        "wall_s": round(statistics.median(s["wall_s"] for s in samples), 3),
        "peak_rss_gib": round(statistics.median(s["peak_rss_gib"] for s in samples), 3),
        "peak_pss_gib": round(statistics.median(s["peak_pss_gib"] for s in samples), 3),
        "cpu_s": round(statistics.median(s["cpu_s"] for s in samples), 2),
        "foreign_cpu_share": max(s["foreign_cpu_share"] for s in samples),
        "peak_processes": max(s["peak_processes"] for s in samples),
        "ray_started": any(s["ray_started"] for s in samples),
        "checks": last["checks"], "walls_s": [s["wall_s"] for s in samples],
        "peak_rss_by_process_gib": last["peak_rss_by_process_gib"],
        "timeline": last["timeline"], "output_tail": [line for _, line in last["lines"][-25:]],
    }


# --- growth and targets --------------------------------------------------------------------------
def growth(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each kind and command, each larger clip count against the smallest one measured."""
    out = []
    ok = [r for r in runs if r.get("ok") and "wall_s" in r]
    for kind in dict.fromkeys(r["kind"] for r in ok):
        for command in COMMANDS:
            mine = sorted((r for r in ok if r["kind"] == kind and r["command"] == command), key=lambda r: r["clips"])
            for base, top in ((mine[0], r) for r in mine[1:]):
                out.append({"kind": kind, "command": command, "from_clips": base["clips"], "to_clips": top["clips"],
                            "clips_ratio": round(top["clips"] / base["clips"], 3),
                            "wall_ratio": round(top["wall_s"] / base["wall_s"], 3),
                            "cpu_ratio": round(top["cpu_s"] / base["cpu_s"], 3) if base["cpu_s"] else None,
                            "memory_ratio": round(top["peak_rss_gib"] / base["peak_rss_gib"], 3)})
    return out


def targets(runs: list[dict[str, Any]], grown: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 13's targets, judged at 100k clips where measured (else at the largest count, marked)."""
    out = []
    ok = [r for r in runs if r.get("ok") and "wall_s" in r]

    def largest(kind: str, command: str) -> dict[str, Any] | None:
        mine = [r for r in ok if r["kind"] == kind and r["command"] == command]
        return max(mine, key=lambda r: r["clips"]) if mine else None

    kinds = list(dict.fromkeys(r["kind"] for r in runs))
    if "mfcc" in kinds:
        top = largest("mfcc", "train")
        if top:
            out.append({"target": f"train mfcc peak RSS < {TRAIN_PEAK_GIB:g} GiB at 100k clips", "kind": "mfcc",
                        "command": "train", "clips": top["clips"], "measured": f"{top['peak_rss_gib']:.2f} GiB",
                        "met": top["peak_rss_gib"] < TRAIN_PEAK_GIB, "at_target_size": top["clips"] >= TARGET_CLIPS})
        g = [x for x in grown if x["kind"] == "mfcc" and x["command"] == "train"]
        if g:
            x = max(g, key=lambda x: x["to_clips"])
            bound = GROWTH_SLACK * x["clips_ratio"]
            out.append({"target": f"train mfcc wall {x['from_clips']}->{x['to_clips']} <= {bound:g}x (linear)",
                        "kind": "mfcc", "command": "train", "clips": x["to_clips"],
                        "measured": f"{x['wall_ratio']:.2f}x (CPU time {x['cpu_ratio'] or 0:.2f}x)",
                        "met": x["wall_ratio"] <= bound, "at_target_size": x["to_clips"] >= TARGET_CLIPS})
    for kind in kinds:
        for command, label in (("status", "status"), ("features", "warm run (features, all stored)")):
            top = largest(kind, command)
            if top:
                out.append({"target": f"{label} {kind} < {BOOKKEEPING_S:g} s at 100k clips", "kind": kind,
                            "command": command, "clips": top["clips"], "measured": f"{top['wall_s']:.1f} s",
                            "met": top["wall_s"] < BOOKKEEPING_S, "at_target_size": top["clips"] >= TARGET_CLIPS})
    return out


def row_target(run: dict[str, Any]) -> str:
    if run["command"] == "train":
        return f"peak < {TRAIN_PEAK_GIB:g} GiB, wall <= {GROWTH_SLACK:g}x clips" if run["kind"] == "mfcc" else ""
    return f"< {BOOKKEEPING_S:g} s"


# --- output --------------------------------------------------------------------------------------
def table(result: dict[str, Any]) -> str:
    from genreflow.core.tables import format_table

    m = result["machine"]
    flags = " ".join(m.get("bf16_flags") or []) or "none"
    lines = [f"CPU: {m['cpu_model']} (lscpu model name); bf16 flags: {flags}; {m['usable_cpus']} usable CPUs, "
             f"{m['memory_gib']} GiB; Python {m['python']}; genreflow {m['versions'].get('genreflow')} "
             f"({result['git']['commit'][:10]}{', dirty tree' if result['git']['dirty'] else ''})"]
    lines += [f"note: {note}" for note in result["notes"]]
    grown = {(g["kind"], g["command"], g["to_clips"]): g for g in result["growth"]}
    rows = []
    for r in result["runs"]:
        if not r.get("ok") and "wall_s" not in r:
            rows.append([r["kind"], r["clips"], r["command"], "FAILED", "", "", "", "", "", row_target(r), "error"])
            continue
        g = grown.get((r["kind"], r["command"], r["clips"]))
        growth_cell = (f"{g['wall_ratio']:.2f}x / {g['cpu_ratio'] or 0:.2f}x / {g['memory_ratio']:.2f}x"
                       if g else "-")
        check = "ok" if r["ok"] else "CHECK FAILED"
        rows.append([r["kind"], r["clips"], r["command"], f"{r['wall_s']:.2f}", f"{r['cpu_s']:.1f}",
                     f"{100 * r['foreign_cpu_share']:.0f} %", f"{r['peak_rss_gib']:.3f}", f"{r['peak_pss_gib']:.3f}",
                     growth_cell, row_target(r), check])
    lines += ["", format_table(["kind", "clips", "command", "wall s", "CPU s", "others", "peak RSS GiB", "PSS GiB",
                                "growth wall / CPU / RSS", "target", "checks"], rows)]
    lines.append("CPU s: user+system time of the command's process tree; others: share of the machine's CPUs that "
                 "other processes used meanwhile (the machine is shared: wall time is only comparable when low)")
    if result["growth"]:
        spans = sorted({f"{g['from_clips']}->{g['to_clips']} = {g['clips_ratio']:g}x clips" for g in result["growth"]})
        lines.append("growth: each row against the smallest clip count of its kind and command (" + ", ".join(spans) + ")")
    if result["targets"]:
        lines += ["", "targets (issue 13):"]
        for t in result["targets"]:
            where = "" if t["at_target_size"] else f" [measured at {t['clips']} clips, not 100k]"
            lines.append(f"  {'met   ' if t['met'] else 'MISSED'}  {t['target']}: {t['measured']}{where}")
    return "\n".join(lines)


def git_info() -> dict[str, Any]:
    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD") or "unknown", "dirty": bool(git("status", "--porcelain", "genreflow"))}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", default="10000,100000", help="Clip counts, comma-separated (default 10000,100000).")
    p.add_argument("--kinds", default="mfcc,vggish,spectral", help="Feature kinds, comma-separated.")
    p.add_argument("--commands", default=",".join(COMMANDS), help="Which of train,status,features to measure.")
    p.add_argument("--repeats", type=int, default=1, help="Runs per command (medians reported).")
    p.add_argument("--batch-size", type=int, default=None, help="Rows per shard (default: genreflow's batch_size).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help=f"Where stores are kept (default {DEFAULT_CACHE}).")
    p.add_argument("--work-dir", type=Path, default=None, help="Logs of the measured commands (default: a temp folder).")
    p.add_argument("--build-workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--keep-free-gib", type=float, default=40.0, help="Never leave less free on the cache's disk.")
    p.add_argument("--spectral-frames", type=int, default=None, help="Frames per spectral clip (default: the full clip, 1292 at 30 s).")
    p.add_argument("--rebuild", action="store_true", help="Rebuild cached stores.")
    p.add_argument("--idle-wait", type=float, default=0.0, help="Wait up to S s for idle CPUs before each run.")
    p.add_argument("--out", type=Path, default=Path("bench_scale.json"))
    p.add_argument("--render", type=Path, default=None, help="Print the table of a saved JSON and exit.")
    args = p.parse_args(argv)
    args.clips = sorted({int(c) for c in args.clips.split(",") if c.strip()})
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    args.commands = [c.strip() for c in args.commands.split(",") if c.strip()]
    if not args.clips or min(args.clips) < 20:
        p.error("--clips: positive counts of at least 20 (every genre needs train and val files)")
    if set(args.commands) - set(COMMANDS):
        p.error(f"--commands: from {','.join(COMMANDS)}")
    from genreflow.features import registered

    if set(args.kinds) - {"mfcc", "vggish", "spectral"} or set(args.kinds) - set(registered()):
        p.error("--kinds: from mfcc,vggish,spectral")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.render:
        result = json.loads(args.render.read_text())
        result["growth"] = growth(result["runs"])  # also for a run killed before its end
        result["targets"] = targets(result["runs"], result["growth"])
        print(table(result))
        return result
    cache = args.cache_dir.expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    batch_size = args.batch_size or make_config(cache).batch_size
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    tfhub = tfhub_cache(cache)
    machine = support.machine_info()
    warm_up()
    print(support.bf16_note(machine).split(";")[0] + "; bf16 flags: "
          + (" ".join(machine["bf16_flags"]) or "none"), flush=True)
    print(f"cache: {cache} ({shutil.disk_usage(cache).free / 1e9:.1f} GB free); logs: {work}", flush=True)
    result: dict[str, Any] = {"machine": machine, "git": git_info(), "notes": [], "stores": [], "runs": [],
                              "settings": {"clips": args.clips, "kinds": args.kinds, "commands": args.commands,
                                           "batch_size": batch_size, "seed": args.seed, "repeats": args.repeats,
                                           "cache_dir": str(cache), "keep_free_gib": args.keep_free_gib}}
    if "vggish" in args.kinds and "features" in args.commands:
        result["notes"].append("vggish warm run: `features --features vggish` checks the model handle before it plans, "
                               "and for a URL handle that imports TensorFlow even when nothing is pending: its wall "
                               "time and memory are mostly that import, not bookkeeping.")
    for kind in args.kinds:
        override = args.spectral_frames if kind == "spectral" else None
        frames, sizes, notes = plan_kind(cache, kind, args.clips, args.keep_free_gib, override, args.rebuild)
        for note in notes:
            print(f"note: {note}", flush=True)
        result["notes"] += notes
        for n in sizes:
            store = build_store(cache, kind, n, frames, batch_size=batch_size, seed=args.seed,
                                workers=args.build_workers, rebuild=args.rebuild)
            result["stores"].append({"kind": kind, "clips": n, **store})
            print(f"{kind} {n} clips: {store['data_dir']} ({store['bytes'] / 1e9:.2f} GB"
                  f"{', reused' if store['reused'] else ''})", flush=True)
            for command in args.commands:
                result["runs"].append(run_one(command, kind, n, store, args, work, tfhub))
            result["growth"] = growth(result["runs"])
            args.out.write_text(json.dumps(result, indent=1) + "\n")  # a killed run keeps what it measured
    result["growth"] = growth(result["runs"])
    result["targets"] = targets(result["runs"], result["growth"])
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print("\n" + table(result))
    print(f"\nwrote {args.out}")
    if not all(r.get("ok") for r in result["runs"]):
        sys.exit(1)
    return result


if __name__ == "__main__":
    main()
