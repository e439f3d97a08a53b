"""What a user sees while genreflow works: progress bars in a terminal, one summary line per
stage in a pipe, and none of TensorFlow's or Ray's chatter unless --verbose asks for it.

The environment variables must be set before TensorFlow and Ray are imported (in this process
and in every Ray worker it starts), so the CLI calls ``configure`` first thing; a value the user
already set is kept.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # oneDNN / CUDA / absl notes from TensorFlow's C++ side
    "TF_ENABLE_ONEDNN_OPTS": "1",  # the default; setting it drops TF's "oneDNN custom operations are on" note
    "GRPC_VERBOSITY": "ERROR",
    "GLOG_minloglevel": "2",
    "RAY_DEDUP_LOGS": "1",
}


@dataclass
class Verbosity:
    level: int = 1  # 0 quiet, 1 normal, 2 verbose

    @property
    def quiet(self) -> bool:
        return self.level == 0

    @property
    def verbose(self) -> bool:
        return self.level >= 2


VERBOSITY = Verbosity()


def is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def configure(level: int = 1) -> None:
    """Set the verbosity for this process; quiet the libraries' logs unless verbose."""
    VERBOSITY.level = level
    if level >= 2:
        os.environ["GENREFLOW_VERBOSE"] = "1"
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for name in ("ray", "ray.data", "tensorflow", "absl", "h5py", "numba"):
        logging.getLogger(name).setLevel(logging.ERROR)


def quiet_import(module: str) -> Any:
    """Import a module whose C++ side prints notes to fd 2 while it loads (TensorFlow: absl's
    "All log messages before absl::InitializeLog()", oneDNN and CUDA notes): silenced unless
    --verbose, in this process and in Ray workers (they inherit GENREFLOW_VERBOSE)."""
    import importlib

    if module in sys.modules or os.environ.get("GENREFLOW_VERBOSE") == "1":
        return importlib.import_module(module)
    from genreflow.core.stderr import quiet_native_stderr

    with quiet_native_stderr():
        return importlib.import_module(module)


class Progress:
    """A tqdm bar on a terminal; in a pipe nothing until ``close``, which prints one summary line."""

    def __init__(self, total: int, desc: str, unit: str = "file") -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.done = 0
        self.started = time.monotonic()
        self._bar: Any = None
        if is_terminal() and not VERBOSITY.quiet and total:
            from tqdm import tqdm

            import shutil

            # a terminal nobody sized reports 0 columns: draw 80 (or $COLUMNS) wide, not nothing
            width = shutil.get_terminal_size((0, 0)).columns or int(os.environ.get("COLUMNS") or 80)
            self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, ncols=width, leave=False)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)

    def close(self, summary: str | None = None) -> None:
        if self._bar is not None:
            self._bar.close()
        if not VERBOSITY.quiet and self.total:
            seconds = time.monotonic() - self.started
            rate = self.done / seconds if seconds > 0 else 0.0
            line = summary or f"{self.desc}: {self.done}/{self.total} {self.unit}s"
            print(f"{line} in {seconds:.1f} s ({rate:.1f} {self.unit}s/s)", file=sys.stderr, flush=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
