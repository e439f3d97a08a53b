"""Helpers for bench_pipeline.py: synthetic clips, the cached VGGish stand-in, the machine's
description, and a sampler that sums the resident memory of a whole process tree.

Kept apart from the orchestration so each piece stays short and readable. Nothing here is
imported by genreflow itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
FORMATS = ("wav", "flac", "ogg", "mp3")
DEFAULT_CACHE = Path(os.environ.get("GENREFLOW_BENCH_CACHE", Path.home() / ".cache" / "genreflow-bench"))


# --- inputs -------------------------------------------------------------------------------------
def clip_spec(i: int) -> tuple[str, str, int, int]:
    """(genre, format, sample rate, channels) of synthetic clip ``i``.

    Genres cycle fastest so any 4 consecutive clips cover every genre; formats cycle per group
    of 4; wav/ogg are 22.05 kHz mono (GTZAN-like), flac/mp3 44.1 kHz stereo (ripped music).
    """
    from genreflow.data.synth import SYNTH_GENRES

    genre = SYNTH_GENRES[i % len(SYNTH_GENRES)]
    fmt = FORMATS[(i // len(SYNTH_GENRES)) % len(FORMATS)]
    stereo = fmt in ("flac", "mp3")
    return genre, fmt, 44100 if stereo else 22050, 2 if stereo else 1


def _write_clip(args: tuple[str, int, float]) -> str:
    import numpy as np

    from genreflow.data.synth import genre_clip, noise, write_audio

    root, i, seconds = args
    genre, fmt, sr, channels = clip_spec(i)
    path = Path(root) / genre / f"clip-{i:05d}.{fmt}"
    if not path.exists():
        mono = genre_clip(genre, seconds, sr, seed=i) + noise(seconds, sr, amp=0.003, seed=100_000 + i)
        mono = np.clip(mono, -0.99, 0.99).astype(np.float32)
        samples = mono if channels == 1 else np.stack([mono, np.roll(mono, 11) * 0.9], axis=1)
        tmp = path.with_name(f".{path.name}.tmp")
        write_audio(tmp, samples, sr, fmt=fmt)
        os.replace(tmp, path)  # a killed run never leaves half a clip under a visible name
    return str(path.relative_to(root))


def synthetic_clips(cache: Path, n: int, seconds: float, workers: int) -> tuple[Path, list[str]]:
    """Write (once, into ``cache``) and return ``n`` distinct clips as ``(raw_dir, relpaths)``."""
    raw = cache / f"clips-{seconds:g}s" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    jobs = [(str(raw), i, seconds) for i in range(n)]
    if n >= 8 and workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rel = list(pool.map(_write_clip, jobs, chunksize=4))
    else:
        rel = [_write_clip(job) for job in jobs]
    return raw, sorted(rel)


def user_clips(data_dir: Path) -> tuple[Path, list[str]]:
    """The audio files of an existing genreflow data folder (DATA/raw/<genre>/...)."""
    raw = data_dir / "raw"
    if not raw.is_dir():
        raise SystemExit(f"--data-dir {data_dir} has no raw/ folder (expected raw/<genre>/<files>).")
    rel = sorted(str(p.relative_to(raw)) for p in raw.rglob("*")
                 if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS and len(p.relative_to(raw).parts) > 1
                 and not any(part.startswith(".") for part in p.relative_to(raw).parts))
    if not rel:
        raise SystemExit(f"--data-dir {data_dir}: no .wav/.flac/.ogg/.mp3 files under raw/<genre>/.")
    return raw, rel


def unique_contents(raw: Path, relpaths: list[str]) -> int:
    """Distinct file contents (genreflow computes each content once, whatever its name)."""
    digests = set()
    for rel in relpaths:
        digest = hashlib.sha256()
        with open(raw / rel, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digests.add(digest.hexdigest())
    return len(digests)


def mirror_raw(src_raw: Path, relpaths: list[str], dest_data_dir: Path) -> None:
    """Give a fresh data folder the same raw files, by hard link (no copy) where possible."""
    for rel in relpaths:
        target = dest_data_dir / "raw" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src_raw / rel, target)
        except OSError:  # another filesystem: copy (symlinks would change what `index` reports)
            shutil.copy2(src_raw / rel, target)


def audio_seconds(raw: Path, relpaths: list[str], cap_s: float) -> float:
    """Seconds of audio the pipelines process: each file's duration, capped at the clip length."""
    import soundfile as sf

    return sum(min(sf.info(str(raw / rel)).duration, cap_s) for rel in relpaths)


def vggish_model(cache: Path, small: bool) -> Path:
    """The VGGish stand-in (full size unless ``small``), built once into ``cache``."""
    path = cache / ("vggish-standin-small-seed0" if small else "vggish-standin-full-seed0")
    if not (path / "saved_model.pb").is_file():
        tmp = cache / f".{path.name}.tmp-{os.getpid()}"
        code = ("from genreflow.testing import build_vggish_standin; import sys; "
                "build_vggish_standin(sys.argv[1], full_size=sys.argv[2] == 'full', seed=0)")
        # a subprocess, so this process never holds TensorFlow (it would skew the memory numbers)
        subprocess.run([sys.executable, "-c", code, str(tmp), "small" if small else "full"], check=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        if not (path / "saved_model.pb").is_file():
            shutil.rmtree(path, ignore_errors=True)
            os.replace(tmp, path)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return path


# --- the machine --------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    import psutil

    from genreflow.core.host import bf16_flags, cpu_model

    versions = {}
    for name in ("genreflow", "ray", "tensorflow", "librosa", "numpy"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:
            versions[name] = None
    import genreflow

    return {
        "cpu_model": cpu_model(),  # lscpu's "Model name"
        "bf16_flags": sorted(bf16_flags()),  # grep -o 'amx_bf16\|avx512_bf16' /proc/cpuinfo | sort -u
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "genreflow_path": str(Path(genreflow.__file__).parent),
    }


def bf16_note(machine: dict[str, Any]) -> str:
    """One line on what bf16 rows mean on this CPU (the figures differ by an order of magnitude)."""
    flags = machine.get("bf16_flags") or []
    if flags:
        return f"CPU: {machine['cpu_model']}; bf16 flags: {' '.join(flags)} (bf16 runs in hardware)"
    return (f"CPU: {machine['cpu_model']}; bf16 flags: none (no amx_bf16/avx512_bf16: bf16 is emulated in "
            "software, slower than fp32; not bf16-hardware figures)")


def cpu_counters() -> tuple[float, float, float]:
    """(busy CPU seconds of the whole machine, of which stolen by the hypervisor, of this process)."""
    import psutil

    t = psutil.cpu_times()
    busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
    own = psutil.Process().cpu_times()
    return busy, getattr(t, "steal", 0.0), own.user + own.system


def wait_for_idle(max_wait_s: float, busy_below: float = 0.15, window_s: float = 3.0) -> float:
    """On a shared machine, wait (up to ``max_wait_s``) until the CPUs are nearly idle for one
    ``window_s``; return the busy share of the last window (the caller records it)."""
    import psutil

    deadline = time.monotonic() + max_wait_s
    while True:
        busy = psutil.cpu_percent(interval=window_s) / 100
        if busy < busy_below or time.monotonic() >= deadline:
            return round(busy, 3)


def load_average() -> float:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else -1.0


# --- memory of a process tree -------------------------------------------------------------------
@dataclass
class MemoryPeak:
    rss_bytes: int = 0
    pss_bytes: int = 0
    processes: int = 0
    by_name: dict[str, int] = field(default_factory=dict)  # summed RSS per process name at the peak
    samples: int = 0
    cpu_s: float = 0.0  # user + system CPU of every process seen, as last sampled
    timeline: list[tuple[float, float, float]] = field(default_factory=list)  # (t s, RSS GiB, CPU s) per second


class TreeMemorySampler(threading.Thread):
    """Sample the resident memory summed over a process and everything it started.

    Which processes count: the root (the command under test) and all its descendants, the tree
    walked again every ``tree_every`` s (Ray's gcs_server, raylet, dashboard, agents, log monitor
    and the ``ray::`` workers that the raylet forks all descend from a driver that started Ray;
    workers rename themselves ``ray::IDLE``, ``ray::MapWorker(...)``, so names or command lines
    would not find them), plus any process whose environment carries ``marker`` (the root is
    given a unique ``GENREFLOW_BENCH_RUN`` value that every descendant inherits), which still
    finds a Ray process re-parented to init. Sums RSS every ``interval`` s (RSS counts shared pages,
    e.g. Ray's object store, once per process that touches them, so it over-counts) and PSS
    (shared pages split between their users, a truer total) every ``pss_every`` s. Also adds up
    each process's CPU time as last sampled (a process's final fraction of a tick is missed), since
    ``RUSAGE_CHILDREN`` never sees Ray workers that the raylet, not us, reaps.
    """

    def __init__(self, root_pid: int, marker: str, interval: float = 0.25, pss_every: float = 1.0,
                 tree_every: float = 1.0, scan_every: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.root_pid, self.marker = root_pid, marker
        self.interval, self.pss_every, self.tree_every, self.scan_every = interval, pss_every, tree_every, scan_every
        self._tree: set[int] = {root_pid}
        self.peak = MemoryPeak()
        self._stop_event = threading.Event()
        self._procs: dict[int, Any] = {}
        self._marked: set[int] = set()
        self._cpu: dict[int, float] = {}
        self._t0 = time.monotonic()

    def stop(self) -> MemoryPeak:
        self._stop_event.set()
        self.join(timeout=5)
        return self.peak

    def _scan_marked(self) -> None:
        import psutil

        for proc in psutil.process_iter(["pid"]):
            if proc.pid in self._marked or proc.pid == os.getpid():
                continue
            try:
                if proc.environ().get("GENREFLOW_BENCH_RUN") == self.marker:
                    self._marked.add(proc.pid)
            except (psutil.Error, OSError):
                continue

    def _scan_tree(self) -> None:
        """The root and its descendants (walking /proc costs more than sampling, so not every tick)."""
        import psutil

        try:
            root = self._procs.setdefault(self.root_pid, psutil.Process(self.root_pid))
            self._tree = {self.root_pid} | {p.pid for p in root.children(recursive=True)}
        except psutil.Error:
            self._tree = set()

    def _members(self) -> list[Any]:
        import psutil

        members = []
        for pid in self._tree | self._marked:
            try:
                members.append(self._procs.setdefault(pid, psutil.Process(pid)))
            except psutil.Error:
                self._marked.discard(pid)
                self._tree.discard(pid)
        return members

    def sample(self, with_pss: bool) -> None:
        import psutil

        rss, pss, by_name = 0, 0, {}
        members = self._members()
        for proc in members:
            try:
                if with_pss:
                    info = proc.memory_full_info()
                    pss += info.pss
                else:
                    info = proc.memory_info()
                rss += info.rss
                times = proc.cpu_times()
                self._cpu[proc.pid] = times.user + times.system
                name = proc.name()
                by_name[name] = by_name.get(name, 0) + info.rss
            except psutil.Error:
                continue
        self.peak.samples += 1
        self.peak.cpu_s = sum(self._cpu.values())
        if rss > self.peak.rss_bytes:
            self.peak.rss_bytes, self.peak.by_name, self.peak.processes = rss, by_name, len(members)
        self.peak.pss_bytes = max(self.peak.pss_bytes, pss)
        if with_pss:  # once per pss_every seconds: enough to see the phases of a run
            self.peak.timeline.append((round(time.monotonic() - self._t0, 2), round(rss / 2**30, 3),
                                       round(self.peak.cpu_s, 2)))

    def run(self) -> None:
        last_pss = last_scan = last_tree = 0.0
        while not self._stop_event.is_set():
            now = time.monotonic()
            if now - last_scan >= self.scan_every:
                self._scan_marked()
                last_scan = now
            if now - last_tree >= self.tree_every:
                self._scan_tree()
                last_tree = now
            with_pss = now - last_pss >= self.pss_every
            self.sample(with_pss)
            if with_pss:
                last_pss = now
            self._stop_event.wait(self.interval)


def run_round(units: list, repeat: int, run_unit, label_of, prefix: str, extra=lambda row: "") -> list[dict[str, Any]]:
    """One round of a side-by-side benchmark: ``run_unit(*unit)`` (a list of result rows) for each
    unit, in an order rotated per round so slow drifts of a shared machine spread evenly; one
    line per row as it finishes."""
    units = units[repeat % len(units):] + units[: repeat % len(units)]
    rows = []
    for unit in units:
        new = run_unit(*unit)
        for row in new:
            row["repeat"] = repeat
            print(f"  [{prefix}round {repeat + 1}] {label_of(row):34s} {row['wall_s']:8.2f} s  "
                  f"peak RSS {row['peak_rss_gib']:.2f} GiB  CPU used {100 * row['cpu_utilisation']:3.0f}%, "
                  f"by others {100 * row['foreign_cpu_share']:3.0f}%{extra(row)}"
                  f"{'' if row['ok'] else '  CHECK FAILED'}", flush=True)
        rows.extend(new)
    return rows


def median_breakdown(group: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over a group of repeated rows of their stage and step breakdowns: ``stages_s``
    (genreflow runs) and ``steps_s`` + ``model_load_s`` (the plain loop)."""
    import statistics

    out: dict[str, Any] = {}
    if group[0].get("stages"):
        out["stages_s"] = {k: round(statistics.median(r["stages"].get(k, 0.0) for r in group), 3)
                           for k in group[0]["stages"]}
    if group[0]["kind"] == "plain":
        out["steps_s"] = {k: round(statistics.median(r["detail"]["steps_s"][k] for r in group), 3)
                          for k in group[0]["detail"]["steps_s"]}
        out["model_load_s"] = round(statistics.median(r["detail"]["model_load_s"] for r in group), 3)
    return out


def run_marker(label: str) -> str:
    return hashlib.sha256(f"{label}-{os.getpid()}-{time.time_ns()}".encode()).hexdigest()[:16]


@contextlib.contextmanager
def baseline_checkout(ref: str, prefix: str):
    """(scratch folder, a `git worktree` of ``ref`` inside it) for before/after runs; both are
    removed afterwards. Run the baseline with PYTHONPATH=<worktree> (Ray workers inherit it)."""
    repo = Path(__file__).resolve().parents[1]
    work = Path(tempfile.mkdtemp(prefix=prefix))
    src = work / "baseline"
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(src), ref], check=True,
                   capture_output=True)
    try:
        yield work, src
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(src)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def save_results(path: Path, machine: dict[str, Any], args: Any, rows: list, summary: dict, **extra: Any
                 ) -> dict[str, Any]:
    """The JSON every before/after script writes: machine, arguments, every run, medians."""
    result = {"machine": machine, "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
              "summary": summary, **extra}
    path.write_text(json.dumps(result, indent=2, default=str))
    return result
