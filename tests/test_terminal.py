"""What a user sees: `genreflow run` in a terminal draws progress bars; piped, it prints one
summary line per stage and none of TensorFlow's or Ray's own chatter, which --verbose brings
back; `genreflow status | head -1` exits quietly.

Each test runs the real console script in a subprocess (it starts its own local Ray), on a
small synthetic tree written by ``make_tree`` with a short ``[audio] duration_s``.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from pipeline_support import make_tree, write_toml

pytestmark = pytest.mark.slow

SECONDS = 2.0
PER_GENRE = 3
N_FILES = 2 * PER_GENRE  # make_tree's default: two synthetic genres
RUN = ["run", "--features", "mfcc", "--workers", "2"]
TIMEOUT = 420

# Lines TensorFlow's C++ side and Ray print on their own; none may reach a user by default.
CHATTER = (
    "absl::InitializeLog",
    "oneDNN custom operations",
    "Could not find cuda",
    "Token authentication is enabled",
    "Progress bars disabled",
    " INFO ",
    "streaming_executor",
    "core_worker.cc",
    "cuInit",
    "cuda_platform",
    "E0000",
    "W0000",
)
# What --verbose must bring back: Ray's (or TensorFlow's) own log lines.
VERBOSE_LINE = re.compile(r"\b(INFO|WARNING)\s+\S+\.py:\d+ -- |absl::InitializeLog|oneDNN custom operations"
                          r"|Token authentication is enabled")


def _launcher() -> list[str]:
    script = Path(sys.executable).with_name("genreflow")
    return [str(script)] if script.exists() else [sys.executable, "-m", "genreflow"]


def _env(**extra: str) -> dict[str, str]:
    """The test process's environment without anything that would quiet (or route) the child
    for it: genreflow must set its own defaults, and start its own local Ray."""
    from genreflow.core.console import QUIET_ENV

    env = {k: v for k, v in os.environ.items()
           if k not in QUIET_ENV and k not in ("GENREFLOW_VERBOSE", "RAY_ADDRESS", "PYTHONWARNINGS")}
    env.update(extra)
    return env


def _project(root: Path) -> Path:
    """ROOT/genreflow.toml (short clips) and ROOT/data/raw/<genre>/clip_i.<fmt>."""
    root.mkdir(parents=True, exist_ok=True)
    make_tree(root / "data", per_genre=PER_GENRE, seconds=SECONDS)
    write_toml(root / "genreflow.toml", duration_s=SECONDS)
    return root


def _piped(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*_launcher(), *args], cwd=cwd, env=_env(), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=TIMEOUT)


def _under_pty(cwd: Path, *args: str, columns: int = 120, lines: int = 40) -> tuple[int, str]:
    """Run the command with stdin, stdout and stderr on a pseudo-terminal of the given size;
    returns (exit status, everything it drew)."""
    master, slave = os.openpty()
    # a real terminal has a size: tqdm (and Ray Data's bars) size themselves from it
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    env = _env(TERM="xterm-256color", COLUMNS=str(columns), LINES=str(lines))
    proc = subprocess.Popen([*_launcher(), *args], cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT
    exited_at = None
    try:
        while True:
            now = time.monotonic()
            if now > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail(f"`genreflow {' '.join(args)}` under a pty ran past {TIMEOUT} s; it drew:\n"
                            + b"".join(chunks).decode(errors="replace")[-3000:])
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 10:
                break  # a straggler (a Ray process) still holds the pty: the command itself is done
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every holder of the slave side is gone
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def _chatter(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(marker in line for marker in CHATTER)]


@pytest.fixture(scope="module")
def piped_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """`genreflow run --features mfcc --workers 2` with stdout and stderr on pipes."""
    root = _project(tmp_path_factory.mktemp("piped"))
    return root, _piped(root, *RUN)


def test_run_in_a_terminal_draws_progress_bars(tmp_path):
    root = _project(tmp_path / "tty")
    status, drawn = _under_pty(root, *RUN)
    assert status == 0, drawn[-3000:]
    # tqdm redraws a bar in place: a carriage return, then "validate:  NN%|...| k/N"
    validate_bars = re.findall(rf"\rvalidate:\s+\d+%\|[^\r\n]*\| *\d+/{N_FILES}\b", drawn)
    assert validate_bars, "no progress bar for the validate step was drawn:\n" + drawn[-3000:]
    # genreflow's own bar for the feature pass, with counts (Ray Data's one-line bar is off)
    assert re.search(rf"\rfeatures:\s+\d+%\|[^\r\n]*\| *\d+/{N_FILES}\b", drawn), \
        "no progress bar with counts for the feature pass:\n" + drawn[-3000:]
    assert "Running Dataset" not in drawn, drawn[-3000:]
    # the results are there too, and a terminal gets no library chatter either
    assert re.search(rf"^mfcc \[[0-9a-f]+\]: {N_FILES} computed", drawn, re.MULTILINE), drawn[-3000:]
    assert not _chatter(drawn), "TensorFlow/Ray chatter in the terminal:\n" + "\n".join(_chatter(drawn))


def test_run_piped_prints_one_summary_line_per_stage_and_no_chatter(piped_run):
    _, proc = piped_run
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    err_lines = [line for line in proc.stderr.splitlines() if line.strip()]
    # index: one "validated N file(s) in T s (R files/s)" line, no bar (no carriage return)
    validated = [line for line in err_lines if re.fullmatch(
        rf"validated {N_FILES} file\(s\) in \d+(\.\d+)? s \(\d+(\.\d+)? files/s\)", line)]
    assert len(validated) == 1, proc.stderr
    assert "\r" not in proc.stderr, repr(proc.stderr[-2000:])
    # features: one line per kind on stdout
    kind_lines = re.findall(r"^mfcc \[[0-9a-f]+\]: (\d+) computed.*$", proc.stdout, re.MULTILINE)
    assert kind_lines == [str(N_FILES)], proc.stdout
    # train + evaluate: its result, once
    assert len(re.findall(r"^accuracy: \d\.\d+$", proc.stdout, re.MULTILINE)) == 1, proc.stdout
    for header in ("== index", "== features: mfcc", "== train + evaluate"):
        assert proc.stdout.count(header) == 1, (header, proc.stdout)
    # nothing from TensorFlow or Ray
    assert not _chatter(proc.stderr), "TensorFlow/Ray chatter on stderr:\n" + "\n".join(_chatter(proc.stderr))
    assert not _chatter(proc.stdout), "TensorFlow/Ray chatter on stdout:\n" + "\n".join(_chatter(proc.stdout))
    # features: one summary line
    features = [line for line in err_lines if re.fullmatch(
        rf"features: {N_FILES} file\(s\) decoded for mfcc in \d+(\.\d+)? s \(\d+(\.\d+)? files/s\)", line)]
    assert len(features) == 1, proc.stderr
    # stderr holds only stage summaries (and genreflow's own notes/warnings, if any)
    periodic = re.compile(r"(validate|features): [\d,]+/[\d,]+ files, [\d.,]+ files/s, ETA .+")  # a slow machine
    others = [line for line in err_lines if line not in validated + features and not periodic.fullmatch(line)
              and not line.startswith(("note:", "warning:"))]
    assert not others, "unexpected stderr lines:\n" + "\n".join(others)


def test_piped_embed_with_a_model_prints_no_ray_or_tensorflow_lines(tmp_path, standin_model):
    root = _project(tmp_path / "embed")
    subprocess.run([*_launcher(), "index"], cwd=root, env=_env(), capture_output=True, timeout=TIMEOUT)
    proc = _piped(root, "embed", "--vggish-model", standin_model, "--precision", "fp32", "--workers", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(rf"^vggish \[[0-9a-f]+\]: {N_FILES} computed", proc.stdout, re.MULTILINE), proc.stdout
    assert not _chatter(proc.stderr), "chatter on stderr:\n" + "\n".join(_chatter(proc.stderr))


def test_a_long_stage_prints_progress_lines_into_a_pipe(tmp_path):
    """In a log, a stage longer than the interval (10 s; shortened here) prints done/total,
    rate and ETA lines between its start and its summary line."""
    root = _project(tmp_path / "periodic")
    subprocess.run([*_launcher(), "index"], cwd=root, env=_env(), capture_output=True, timeout=TIMEOUT)
    proc = subprocess.run([*_launcher(), "features", "--features", "mfcc", "--workers", "2"], cwd=root,
                          env=_env(GENREFLOW_PROGRESS_INTERVAL_S="0.001"), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    periodic = re.findall(rf"^features: (\d+)/{N_FILES} files, [\d.,]+ files/s, ETA (\d+ [hms]|\d+ m \d+ s)",
                          proc.stderr, re.MULTILINE)
    assert periodic and all(0 < int(done) < N_FILES for done, _ in periodic), proc.stderr
    assert "\r" not in proc.stderr


def test_verbose_brings_ray_and_tensorflow_logs_back(tmp_path):
    root = _project(tmp_path / "verbose")
    proc = _piped(root, *RUN, "--verbose", "--executor", "ray")  # 2 workers would run without Ray
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert VERBOSE_LINE.search(proc.stderr), "--verbose showed none of Ray's/TensorFlow's log lines:\n" + proc.stderr
    assert re.search(rf"^validated {N_FILES} file\(s\) in ", proc.stderr, re.MULTILINE), proc.stderr


@pytest.mark.parametrize("lines_read", [1, 0], ids=["head-1", "closed-before-output"])
def test_status_into_a_closed_pipe_exits_quietly(piped_run, lines_read):
    """`genreflow status | head -1`: the reader takes one line (or none) and goes away."""
    root, run = piped_run
    assert run.returncode == 0, run.stderr[-3000:]
    proc = subprocess.Popen([*_launcher(), "status", "--data-dir", str(root / "data")], cwd=root, env=_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = [proc.stdout.readline() for _ in range(lines_read)]
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace")
        status = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if lines_read:
        assert first[0].startswith(b"data: "), first
    assert status == 0, err
    assert "Broken pipe" not in err and "Traceback" not in err and "BrokenPipeError" not in err, err
