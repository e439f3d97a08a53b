"""Start or join Ray once per command: a local Ray with N CPUs, or an existing cluster."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator


@contextlib.contextmanager
def ray_session(address: str | None, workers: int) -> Iterator[None]:
    """Join ``address`` (or $RAY_ADDRESS, as set by ``ray job submit``) or start Ray locally
    with ``workers`` CPUs; a Ray this function started is stopped on exit."""
    import ray

    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address:
        ray.init(address=address, **kwargs)
    else:
        # "local": never attach to a cluster some `ray start` left on this machine
        ray.init(address="local", num_cpus=workers, include_dashboard=False, **kwargs)
    try:
        yield
    finally:
        ray.shutdown()


def cluster_cpus() -> int:
    """CPUs Ray can schedule on (the whole cluster when joined to one)."""
    import ray

    return int(ray.cluster_resources().get("CPU", 1))
