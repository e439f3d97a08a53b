"""What a user sees while genreflow works: progress bars in a terminal, one summary line per
stage in a pipe, and none of TensorFlow's or Ray's chatter unless --verbose asks for it.

The environment variables must be set before TensorFlow and Ray are imported (in this process
and in every Ray worker it starts), so the CLI calls ``configure`` first thing; a value the user
already set is kept.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import time
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterator

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


# invisible in a name and harmless to show as is: the joiners of Persian, Indic scripts and emoji
_KEPT_FORMAT_CHARS = frozenset("\u200c\u200d")
_SHORT_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape_char(char: str) -> str:
    code = ord(char)
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape): as \xNN, like printable_path
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _unsafe(char: str) -> bool:
    """Control characters, line/paragraph separators, lone surrogates and invisible format
    characters (bidi overrides such as U+202E): they break a table's lines or spoof its text."""
    category = unicodedata.category(char)
    return category in ("Cc", "Zl", "Zp", "Cs") or (category == "Cf" and char not in _KEPT_FORMAT_CHARS)


def display_name(text: object) -> str:
    """A genre or file name (or a message holding one) as one visible line: newlines, tabs, other
    control characters and bidi controls become escapes (``\\n``, ``\\t``, ``\\u202e``) so they
    cannot break or spoof a table or a message; accents, CJK and spaces stay as they are."""
    text = str(text)
    if text.isprintable():  # the common case: nothing to escape (cheap for 50,000 names)
        return text
    return "".join(_escape_char(c) if _unsafe(c) else c for c in text)


PIPE_INTERVAL_S = 10.0  # a progress line in a pipe or log at most this often


def duration_text(seconds: float) -> str:
    """2 h 05 m, 2 m 40 s, 12 s: the shape people read at a glance."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} m"
    return f"{minutes} m {secs:02d} s" if minutes else f"{secs} s"


class Progress:
    """One stage's progress: a tqdm bar on a terminal (done/total, rate, ETA; any width); in a
    pipe or log a line at most every ``PIPE_INTERVAL_S`` seconds
    (``features: 1,200/5,000 files, 24 files/s, ETA 2 m 40 s``); ``close`` prints the one summary
    line of the stage. Nothing at all with --quiet."""

    def __init__(self, total: int, desc: str, unit: str = "file") -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.done = 0
        self.started = self._last_line = time.monotonic()
        self.interval = float(os.environ.get("GENREFLOW_PROGRESS_INTERVAL_S") or PIPE_INTERVAL_S)
        self._bar: Any = None
        if is_terminal() and not VERBOSITY.quiet and total:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False,
                             mininterval=0.2)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if VERBOSITY.quiet or not self.total or now - self._last_line < self.interval or self.done >= self.total:
            return
        self._last_line = now
        rate = self.done / max(now - self.started, 1e-9)
        eta = f", ETA {duration_text((self.total - self.done) / rate)}" if rate > 0 else ""
        print(f"{self.desc}: {self.done:,}/{self.total:,} {self.unit}s, {_rate_text(rate)} {self.unit}s/s{eta}",
              file=sys.stderr, flush=True)

    def close(self, summary: str | None = None) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if not VERBOSITY.quiet and self.total:
            seconds = time.monotonic() - self.started
            rate = self.done / seconds if seconds > 0 else 0.0
            line = summary or f"{self.desc}: {self.done:,}/{self.total:,} {self.unit}s"
            print(f"{line} in {seconds:.1f} s ({rate:.1f} {self.unit}s/s)", file=sys.stderr, flush=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _rate_text(rate: float) -> str:
    return f"{rate:.1f}" if rate < 10 else f"{rate:,.0f}"


@contextlib.contextmanager
def silenced(active: bool = True) -> Iterator[None]:
    """Nothing printed inside the block (tables, summaries, progress), for callers of the Python
    API; the verbosity and the streams are restored afterwards."""
    if not active:
        yield
        return
    level = VERBOSITY.level
    VERBOSITY.level = 0
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        VERBOSITY.level = level
