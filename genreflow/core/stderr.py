"""Keeping C libraries' notes off the user's terminal: fd 2 silenced around a block.

libmpg123 writes notes such as "Illegal Audio-MPEG-Header ..." straight to file descriptor 2
while libsndfile decodes a damaged MP3 (genreflow reports such files with a reason instead),
and TensorFlow's C++ side prints while it is imported.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator

# libmpg123 writes notes such as "Illegal Audio-MPEG-Header ..." or "Xing stream size off ..."
# straight to file descriptor 2 while libsndfile decodes a damaged MP3; genreflow reports such
# files with a reason instead. fd 2 belongs to the whole process, so a depth counter under a
# lock makes the first decoder in redirect it and the last one out restore it, even when
# threads decode at once. Python's own writes meanwhile (another thread's progress line or
# warning) go to the real stderr: sys.stderr, when it is fd 2, is swapped for a stream on the
# saved descriptor, so only what C code writes to fd 2 is lost.
_quiet_lock = threading.Lock()
_quiet_depth = 0
_saved_stderr: int | None = None
_python_stderr: Any = None  # sys.stderr as it was, while a stand-in writes to the saved fd


def _reset_quiet_after_fork() -> None:
    """A forked child keeps no other thread: give it a fresh lock and its real stderr back."""
    global _quiet_lock, _quiet_depth, _saved_stderr
    _quiet_lock = threading.Lock()
    if _saved_stderr is not None:
        _restore_python_stderr()
        os.dup2(_saved_stderr, 2)
        os.close(_saved_stderr)
    _quiet_depth, _saved_stderr = 0, None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_quiet_after_fork)


def _redirect_stderr_to_devnull() -> int:
    """Point fd 2 at /dev/null; return a duplicate of the old fd 2 (raises OSError if none)."""
    if sys.stderr is not None:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
    saved = os.dup(2)
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
        finally:
            os.close(devnull)
    except OSError:
        os.close(saved)
        raise
    return saved


@contextmanager
def quiet_native_stderr(active: bool = True) -> Iterator[None]:
    """Silence what C libraries write to fd 2 inside the block (no-op when ``active`` is false
    or fd 2 cannot be duplicated); the real stderr is always restored on the way out."""
    global _quiet_depth, _saved_stderr
    if not active:
        yield
        return
    with _quiet_lock:
        if _quiet_depth == 0:
            try:
                _saved_stderr = _redirect_stderr_to_devnull()
            except OSError:
                active = False
            else:
                _swap_python_stderr(_saved_stderr)
        if active:
            _quiet_depth += 1
    try:
        yield
    finally:
        if active:
            with _quiet_lock:
                _quiet_depth -= 1
                if _quiet_depth == 0 and _saved_stderr is not None:
                    _restore_python_stderr()
                    os.dup2(_saved_stderr, 2)
                    os.close(_saved_stderr)
                    _saved_stderr = None


def _swap_python_stderr(saved: int) -> None:
    """Point sys.stderr at the saved real fd 2 while fd 2 itself is silenced, when sys.stderr
    writes to fd 2 (under a test runner's capture it does not, and is left alone)."""
    global _python_stderr
    try:
        if sys.stderr is None or sys.stderr.fileno() != 2:
            return
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        return
    import io

    _python_stderr = sys.stderr
    sys.stderr = io.TextIOWrapper(io.FileIO(saved, "w", closefd=False), encoding=_python_stderr.encoding,
                                  errors="backslashreplace", line_buffering=True)


def _restore_python_stderr() -> None:
    global _python_stderr
    if _python_stderr is None:
        return
    stand_in, sys.stderr, _python_stderr = sys.stderr, _python_stderr, None
    try:
        stand_in.flush()
    except (OSError, ValueError):
        pass
