"""What the CPU can do for bf16 inference, read from /proc/cpuinfo (no TensorFlow import).

`precision = "auto"` must resolve once, in the driver, from facts rather than guesses: the
kernel's CPU flags say whether the cores multiply bf16 in hardware (Intel AMX-BF16 or
AVX512-BF16 on Sapphire Rapids and newer, AVX512-BF16 on AMD Zen 4 and newer). A model name
would not: the same name covers steppings and cloud SKUs with different features. Everything
here is plain text parsing, so the driver can decide without loading TensorFlow.
"""

from __future__ import annotations

import functools
import os
import platform
import sys

from genreflow.errors import ConfigError

BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
PRECISIONS = ("auto", "fp32", "bf16")
_CPUINFO = "/proc/cpuinfo"


@functools.lru_cache(maxsize=1)
def _read_cpuinfo() -> str:
    """The file once per process: `auto` may be resolved many times, the CPU does not change."""
    try:
        with open(_CPUINFO, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def bf16_flags(cpuinfo_text: str | None = None) -> set[str]:
    """The bf16 flags ({"amx_bf16", "avx512_bf16"} or a subset) the CPU reports.

    `cpuinfo_text` is the text of /proc/cpuinfo (for tests); None reads the file, and off
    Linux (no /proc/cpuinfo) the answer is the empty set, so `auto` falls back to fp32.
    Only x86 "flags" lines count; ARM's "Features" lines are not read (bf16 there is not
    served by TensorFlow's oneDNN rewrite on standard builds).
    """
    if cpuinfo_text is None:
        if not sys.platform.startswith("linux"):
            return set()
        cpuinfo_text = _read_cpuinfo()
    found: set[str] = set()
    for line in cpuinfo_text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            found.update(BF16_FLAGS.intersection(value.split()))
    return found


def resolve_precision(requested: str, flags: set[str] | None = None) -> str:
    """"auto" -> "bf16" when the CPU has a bf16 flag, else "fp32"; "fp32"/"bf16" pass through.

    `flags` defaults to this machine's `bf16_flags()`. Anything else raises ConfigError with one
    line, because the value usually comes from a TOML file or the command line.
    """
    if requested not in PRECISIONS:
        raise ConfigError(f"precision={requested!r} is not valid; use one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    present = bf16_flags() if flags is None else flags
    return "bf16" if BF16_FLAGS & set(present) else "fp32"


def cpu_model() -> str:
    """The CPU's model name as `lscpu` shows it ("model name" in /proc/cpuinfo), for reports;
    platform.processor() where there is no such line (macOS, Windows, some ARM kernels)."""
    text = _read_cpuinfo() if sys.platform.startswith("linux") else ""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def usable_cpus() -> int:
    """CPUs this process may really use: its affinity mask (taskset, a container's cpuset),
    lowered by a cgroup v2 CPU quota (docker --cpus) when one is set; at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as handle:
            quota, period = handle.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cpus)
