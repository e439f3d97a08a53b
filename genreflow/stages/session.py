"""Where a pass runs (Ray or this process), and starting or joining Ray once per command: a
local Ray with N CPUs, or an existing cluster."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any, Iterator

from genreflow.core.console import VERBOSITY, is_terminal
from genreflow.errors import RayStartError

EXECUTORS = ("auto", "ray", "local")
LOCAL_MAX_WORKERS = 2  # measured on 2 cores; above that Ray's processes keep CPU extractors off one GIL


def uses_ray(executor: str, address: str | None, workers: int) -> bool:
    """Whether a pass runs on Ray or in this process (stages/local.py). ``auto`` picks Ray to
    join a cluster (--address, $RAY_ADDRESS) or a Ray this process runs, for more than
    LOCAL_MAX_WORKERS workers, or where an NVIDIA GPU is visible (Ray gives model actors their
    GPU); on a small CPU machine the same work runs faster and in less memory without Ray's
    start-up and processes."""
    address = address or os.environ.get("RAY_ADDRESS") or None  # "local" with one is refused by Config
    if executor != "auto":
        return executor == "ray"
    return bool(address) or workers > LOCAL_MAX_WORKERS or _gpu_visible() or _ray_running_here()


def pass_uses_ray(config: Any) -> bool:
    """``uses_ray`` for a Config: its [run] executor, address and workers."""
    return uses_ray(config.run.executor, config.address, config.n_workers)


def _ray_running_here() -> bool:
    """A Ray this process already joined (a notebook's ray.init, a Ray job's driver) is used."""
    ray = sys.modules.get("ray")
    return bool(ray is not None and getattr(ray, "is_initialized", lambda: False)())


def _gpu_visible() -> bool:
    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return False
    try:
        return bool(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return False


@contextlib.contextmanager
def ray_session(address: str | None, workers: int) -> Iterator[None]:
    """Join ``address`` (or $RAY_ADDRESS, as set by ``ray job submit``) or start Ray locally
    with ``workers`` CPUs; a Ray this function started is stopped on exit.

    A failed start or join (a port another Ray holds, a bad address, refused authentication)
    raises RayStartError: one line with Ray's reason, its log folder and what to try, instead
    of Ray's traceback.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs = {"logging_level": ray_logging_level(), "log_to_driver": True}
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            # "local": never attach to a cluster some `ray start` left on this machine
            ray.init(address="local", num_cpus=workers, include_dashboard=False, **kwargs)
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError, OSError...
        with contextlib.suppress(Exception):
            ray.shutdown()  # whatever half-started is stopped, so a retry starts clean
        raise RayStartError(start_failure_message(address, exc)) from None
    try:
        yield
    finally:
        ray.shutdown()


def ray_log_folder() -> str:
    """Where a local Ray writes its logs: <temp dir>/ray/session_latest/logs ($RAY_TMPDIR moves it)."""
    try:
        from ray._common.utils import get_default_ray_temp_dir  # private: may move between versions

        root = get_default_ray_temp_dir()
    except Exception:  # noqa: BLE001 - fall back to Ray's documented default
        root = os.path.join(os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp", "ray")
    return os.path.join(root, "session_latest", "logs")


def start_failure_message(address: str | None, exc: BaseException) -> str:
    """One line: what failed, Ray's own first line, where its logs are, what to do."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if address:
        return (f"Could not join the Ray cluster at {address!r} ({type(exc).__name__}: {reason}). Check the "
                "address (--address or $RAY_ADDRESS; host:port of the head node, or ray://host:10001), that the "
                f"cluster runs and accepts this machine; the head node's logs are in {ray_log_folder()} there.")
    return (f"Could not start a local Ray ({type(exc).__name__}: {reason}). Its logs are in {ray_log_folder()}. "
            "Another Ray on this machine may hold its ports or files: stop it (`ray stop`), or join it with "
            "--address, then run the command again (finished work is kept).")


def cluster_gpus() -> float:
    """GPUs Ray can schedule on (0 on a CPU-only machine or cluster)."""
    import ray

    return float(ray.cluster_resources().get("GPU", 0))


def cluster_cpus() -> int:
    """CPUs Ray can schedule on (the whole cluster when joined to one)."""
    import ray

    return int(ray.cluster_resources().get("CPU", 1))


def ray_logging_level() -> int:
    """What ray.init should log: errors only unless --verbose (its token-auth and progress-bar
    notes are not the user's business on a local run)."""
    return logging.INFO if VERBOSITY.verbose else logging.ERROR


def quiet_ray_data() -> None:
    """Ray Data's own bars and INFO lines only with --verbose: genreflow draws its own bar per
    stage from the pass's result stream (Ray Data's one line is cut at the terminal's width and
    shows no count or ETA)."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = is_terminal() and VERBOSITY.verbose
    if hasattr(context, "enable_operator_progress_bars"):
        context.enable_operator_progress_bars = False
    if not VERBOSITY.verbose:
        for name in ("ray.data", "ray.data._internal.execution.streaming_executor", "ray"):
            logging.getLogger(name).setLevel(logging.ERROR)
