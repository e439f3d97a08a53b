"""The features pass on this machine without Ray: the same decode task and model actor, called
in this process.

On a machine of one or two cores Ray costs more than it gives: its start and shutdown (4-7 s),
a worker process per task that imports the decoders again, a second TensorFlow, and its object
store (together ~1 GiB more memory), while the work itself is the same. Here the decode tasks
run in threads (reading, resampling, STFTs and hashing release the GIL) and the model runs in
this thread between them, in turns: a wave of decode batches on every core, then the model on
every core. Turns measured faster than decoding beside the model on 2 cores, where the two
fight for the same cores (benchmarks/bench_musicnn.py, docs/benchmarks.md). While the model
loads (a TensorFlow import, seconds on one core) the other cores decode ahead.

The batches (here of even sizes, at most Ray's), the shards they write and the statuses they report
are those of the Ray pass, so resuming, failures per file, progress and ``--verbose`` timings work
the same.
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Iterator, Sequence

import numpy as np

from genreflow.stages.workers import ModelBatch, decode_batch, decoded_bytes

AHEAD_BYTES = 256 << 20  # decoded audio held for the model while it loads (then: one wave at a time)


def local_batches(todo: list[dict[str, str]], *, rows: int, workers: int, decode_kwargs: dict[str, Any],
                  actors: Sequence[dict[str, Any]], ahead_bytes: int = AHEAD_BYTES) -> Iterator[dict[str, np.ndarray]]:
    """Yield the pass's output batches in order (as Ray Data's ``iter_batches`` would) for batches
    of ``rows`` files: decode tasks on ``workers`` threads, then the model actors built from
    ``actors`` (ModelBatch keyword arguments, loaded once in a thread of their own)."""
    from threadpoolctl import threadpool_limits

    waiting = deque(even_batches(todo, rows, workers))  # not yet submitted
    batch_bytes = decoded_bytes(rows, decode_kwargs["duration_s"], decode_kwargs["model_rates"])
    ahead = max(workers, int(ahead_bytes // max(batch_bytes, 1)))
    pool = ThreadPoolExecutor(max_workers=workers + 1, thread_name_prefix="genreflow-pass")
    models: Future | None = pool.submit(_load, actors) if actors else None
    inflight: deque[Future] = deque()  # decode tasks in batch order

    def submit() -> None:
        inflight.append(pool.submit(decode_batch, _columns(waiting.popleft()), **decode_kwargs))

    try:
        # numpy's BLAS would start a thread per core inside every decode thread (twice the CPU
        # for the same mel matmuls on 2 cores); Ray's workers get the same limit from Ray
        with threadpool_limits(limits=1, user_api="blas"):
            while waiting or inflight:
                if models is None:  # CPU kinds only: every core decodes all the time
                    while waiting and len(inflight) < workers:
                        submit()
                    yield inflight.popleft().result()
                    continue
                if not models.done():  # the model loads on one core: the others decode ahead
                    running = [f for f in inflight if not f.done()]
                    if waiting and len(inflight) < ahead and len(running) < workers:
                        submit()
                        continue
                    wait([models, *running], return_when=FIRST_COMPLETED)
                    continue
                if not inflight:  # in turns: a wave of decode tasks on every core, then the model
                    while waiting and len(inflight) < workers:
                        submit()
                out = inflight.popleft().result()
                for actor in models.result():
                    out = actor(out)
                yield out
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def even_batches(todo: list, rows: int, workers: int) -> list[list]:
    """``todo`` in order, in batches of at most ``rows`` files whose sizes differ by one at most,
    as many as fill whole waves of ``workers`` where there are files enough: the last wave keeps
    every core decoding (200 files, 32 rows, 2 workers: 8 x 25, not 6 x 32 + 8, whose last
    batch of 8 decoded on one core while the other waited)."""
    if not todo:
        return []
    count = math.ceil(len(todo) / rows)
    count = min(len(todo), math.ceil(count / workers) * workers)
    size, longer = divmod(len(todo), count)
    batches, start = [], 0
    for i in range(count):
        end = start + size + (i < longer)
        batches.append(todo[start:end])
        start = end
    return batches


def _load(actors: Sequence[dict[str, Any]]) -> list[ModelBatch]:
    return [ModelBatch(**kwargs, device="CPU") for kwargs in actors]


def _columns(rows: list[dict[str, str]]) -> dict[str, np.ndarray]:
    """A list of todo rows as the column batch a Ray Data task receives."""
    return {key: np.array([row[key] for row in rows], dtype=object) for key in ("content_hash", "relpath", "kinds")}
