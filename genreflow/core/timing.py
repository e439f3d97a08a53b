"""Where a run's time goes: wall and CPU seconds per stage, and how busy the cores were.

CPU seconds are those of the whole process tree (this process and its children: a local Ray's
raylet and workers), read with psutil, so a stage that waits shows a low busy share and one that
keeps every core working shows close to 100 %.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator


_seen: dict[tuple[int, float], float] = {}  # (pid, create time) -> last CPU seconds read


def tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process and every descendant seen so far. A worker that
    exits keeps the CPU seconds last read for it (the kernel credits a parent only with children
    it waited for, which Ray's workers are not), so the total never goes down."""
    import psutil

    me = psutil.Process()
    for proc in [me, *me.children(recursive=True)]:
        try:
            with proc.oneshot():
                key, cpu = (proc.pid, proc.create_time()), sum(proc.cpu_times()[:2])
        except psutil.Error:  # gone between listing and reading
            continue
        _seen[key] = max(cpu, _seen.get(key, 0.0))
    return sum(_seen.values())


def cores() -> int:
    from genreflow.core.host import usable_cpus

    return usable_cpus()


@dataclass
class StageTime:
    name: str
    wall_s: float
    cpu_s: float

    @property
    def busy(self) -> float:
        """Share of the cores' time this stage kept busy (CPU s / (wall s x cores))."""
        return self.cpu_s / (self.wall_s * cores()) if self.wall_s > 0 else 0.0


@dataclass
class Timings:
    """Stage times of one command, plus the seconds workers spent in each step of a pass."""

    stages: list[StageTime] = field(default_factory=list)
    worker_s: dict[str, float] = field(default_factory=dict)  # e.g. decode, mfcc, model load musicnn

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), tree_cpu_seconds()
        try:
            yield
        finally:
            self.stages.append(StageTime(name, time.perf_counter() - wall, tree_cpu_seconds() - cpu))

    def add_startup(self) -> None:
        """Process start and imports: from the process's creation to now."""
        import psutil

        me = psutil.Process()
        self.stages.insert(0, StageTime("process start + imports", time.time() - me.create_time(),
                                        sum(me.cpu_times()[:2])))

    def as_dict(self) -> dict:
        return {"cores": cores(), "pid": os.getpid(),
                "stages": [{"name": s.name, "wall_s": round(s.wall_s, 3), "cpu_s": round(s.cpu_s, 3),
                            "busy": round(s.busy, 3)} for s in self.stages],
                "worker_s": {k: round(v, 3) for k, v in sorted(self.worker_s.items())}}

    def rows(self) -> list[list]:
        out = [[s.name, f"{s.wall_s:.1f}", f"{s.cpu_s:.1f}", f"{100 * s.busy:.0f} %"] for s in self.stages]
        out += [[f"  workers: {k}", "", f"{v:.1f}", ""] for k, v in sorted(self.worker_s.items())]
        return out
