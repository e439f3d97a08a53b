"""The features pass: one pass over the files whose features are missing for any kind a run
needs. Each file is read once (hashed and decoded together), resampled to each extractor's
rate, CPU extractors run in the decode task, model extractors in actors that receive the
decoded signal; every batch is written as one shard per kind by the worker itself.

It runs on Ray Data (a cluster, many cores, GPUs) or, on a small machine, in this process with
the same tasks (stages/local.py; ``session.uses_ray`` decides). Only small per-file summaries
travel back to the driver, so its memory stays flat however many clips run.
"""

from __future__ import annotations

import math
import warnings
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from genreflow.config import Config
from genreflow.errors import GenreflowError
from genreflow.features import Extractor
from genreflow.core.fs import remove_stale_temps
from genreflow.stages.workers import OK, ModelBatch, decode_batch, decoded_bytes, kinds_of, todo_row
from genreflow.store.featureset import FeatureSet, stored_keys

DECODED_AHEAD_BYTES = 512 << 20  # decoded audio that may wait for the model actors in Ray's object store
MAX_BATCH_BYTES = 256 << 20  # bound the decoded audio one batch holds (matters for long durations)


@dataclass
class StageReport:
    """What one feature kind did in a pass, by unique content hash."""

    kind: str
    fingerprint: str
    files: int = 0
    unique: int = 0
    cached: int = 0
    computed: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    devices: set[str] = field(default_factory=set)  # where a model kind ran: "CPU", "GPU 0"...

    @property
    def pending(self) -> int:
        return self.unique - self.cached

    def line(self) -> str:
        gpus = sorted(d for d in self.devices if d.startswith("GPU"))
        where = f", on {', '.join(gpus)}" if gpus else ""
        return (f"{self.kind} [{self.fingerprint}]: {self.computed} computed, {self.cached} already cached, "
                f"{len(self.failed)} failed ({self.files} files, {self.unique} unique{where})")


@dataclass
class Plan:
    """Which unique contents still need which kinds; built from one read of each store's keys."""

    extractors: list[Extractor]
    fsets: dict[str, FeatureSet]
    todo: list[dict[str, str]]  # todo_row: content_hash, relpath and the kinds it lacks
    reports: dict[str, StageReport]
    seconds: dict[str, float] = field(default_factory=dict)  # worker seconds per step of the pass


def plan(config: Config, extractors: Sequence[Extractor], files: list[dict[str, Any]]) -> Plan:
    """Pending work per unique content: a file stored for one kind is decoded only for the others."""
    fsets = {e.name: e.feature_set(config.data_dir) for e in extractors}
    stored = {name: stored_keys(fset) for name, fset in fsets.items()}
    reports = {name: StageReport(name, fset.fingerprint, files=len(files)) for name, fset in fsets.items()}
    todo, seen = [], set()
    for record in files:
        key = record["content_hash"]
        if key in seen:
            continue
        seen.add(key)
        missing = [name for name in fsets if key not in stored[name]]
        for name in fsets:
            reports[name].unique += 1
            reports[name].cached += name not in missing
        if missing:
            todo.append(todo_row(key, record["relpath"], missing))
    return Plan(list(extractors), fsets, todo, reports)


def embed_plan(cpus: int) -> tuple[int, float, int, float]:
    """(actors, CPUs reserved per actor, TensorFlow threads per actor, CPUs per decode task).

    Each actor's TF pools match the CPUs it holds so actors never oversubscribe the cores.
    On one or two CPUs the one actor reserves all but half a CPU and the decode tasks that
    half: both then run at once, so decoding overlaps inference, and their different CPU
    counts keep Ray Data from fusing the decode into the actor, where it would run in turn
    with inference while a core idles.
    """
    if cpus <= 2:
        return 1, cpus - 0.5, cpus, 0.5
    threads = 2
    actors = max(1, (cpus - 1) // threads)
    return actors, float(threads), threads, 1.0


def gpu_plan(gpus: float, per_actor: float) -> tuple[int, float] | None:
    """(model actors, GPUs each) when the cluster has GPUs and the user allows them, else None
    (CPU actors). Ray gives each actor its own CUDA_VISIBLE_DEVICES, so TensorFlow in an actor
    sees only the GPU(s) it holds."""
    if gpus <= 0 or per_actor <= 0:
        return None
    return max(1, int(gpus // per_actor)), float(per_actor)


def _rows_per_batch(config: Config, sample_rates: Sequence[int], duration_s: float) -> int:
    return max(1, min(config.batch_size, int(MAX_BATCH_BYTES // max(decoded_bytes(1, duration_s, sample_rates), 1))))


def execute(config: Config, work: Plan, tick: Callable[[int], None] | None = None) -> list[StageReport]:
    """Compute everything ``work`` lists in one Ray Data pass (needs a Ray session unless
    nothing is pending); returns one report per kind. ``tick(n)`` hears of every n files done."""
    for fset in work.fsets.values():
        remove_stale_temps(fset.location)
    if work.todo:
        _run(config, work, tick)
    return [work.reports[e.name] for e in work.extractors]


def _batches(config: Config, extractors: Sequence[Extractor], todo: list[dict[str, str]],
             fsets: dict[str, FeatureSet] | None, data_dir: str | None,
             known: set[str] | None = None) -> tuple[Iterator[dict[str, np.ndarray]], list[str]]:
    """The pass over ``todo`` as a stream of output batches: decode (+ CPU kinds) tasks, then the
    model kinds' actors, on Ray or in this process (``uses_ray``). With ``fsets`` workers write
    shards; without, they return pooled vectors (and skip the files whose hash is in ``known``)."""
    from genreflow.stages.session import pass_uses_ray

    needed = {k for row in todo for k in kinds_of(row["kinds"])}
    cpu = [e for e in extractors if not e.uses_model and e.name in needed]
    models = [e for e in extractors if e.uses_model and e.name in needed]
    decode_kwargs = {"data_dir": data_dir, "duration_s": extractors[0].audio.duration_s, "cpu": cpu,
                     "cpu_sets": None if fsets is None else {e.name: fsets[e.name] for e in cpu},
                     "model_rates": sorted({e.sample_rate for e in models}), "known": known}
    actor_kwargs = [{"extractor": e, "fset": None if fsets is None else fsets[e.name], "last": n == len(models) - 1}
                    for n, e in enumerate(models)]
    names = [e.name for e in cpu + models]
    if not pass_uses_ray(config):
        from genreflow.stages.local import local_batches

        workers = config.n_workers
        rows = _rows(config, decode_kwargs, len(todo), workers)
        actors = [{**kwargs, "threads": workers} for kwargs in actor_kwargs]
        return local_batches(todo, rows=rows, workers=workers, decode_kwargs=decode_kwargs, actors=actors), names
    ds = _dataset(config, todo, decode_kwargs, actor_kwargs)
    return ds.iter_batches(batch_size=None, batch_format="numpy"), names  # each block as it is done


def _rows(config: Config, decode_kwargs: dict[str, Any], files: int, workers: int) -> int:
    """Files per batch: small runs still spread over every worker; large ones use full batches (= shards)."""
    rates = decode_kwargs["model_rates"] or [decode_kwargs["cpu"][0].audio.sample_rate]
    return min(_rows_per_batch(config, rates, decode_kwargs["duration_s"]), max(1, math.ceil(files / workers)))


def _dataset(config: Config, todo: list[dict[str, str]], decode_kwargs: dict[str, Any],
             actor_kwargs: list[dict[str, Any]]):
    """The Ray Data pass: decode tasks, then one actor pool per model kind."""
    import ray

    from genreflow.stages.session import cluster_cpus, cluster_gpus, quiet_ray_data

    quiet_ray_data()
    workers = config.n_workers if config.workers else cluster_cpus()  # capped at this machine's CPUs locally
    rows = _rows(config, decode_kwargs, len(todo), workers)
    blocks = math.ceil(len(todo) / rows)
    ds = ray.data.from_items(todo, override_num_blocks=blocks)
    if not actor_kwargs:
        slots = ray.data.TaskPoolStrategy(size=min(workers, blocks))  # no idle slots (Ray warns of them)
        return ds.map_batches(decode_batch, fn_kwargs=decode_kwargs, batch_size=rows, num_cpus=1, compute=slots)
    gpu = gpu_plan(cluster_gpus(), config.run.gpus_per_model_actor)
    if gpu is None:
        actors, actor_cpus, threads, decode_cpus = embed_plan(workers)
        decoders = max(1, int((workers - actors * actor_cpus) // decode_cpus))
    else:  # decode on every CPU; the model actors follow the GPUs, one CPU each to feed them
        actors, gpus_each = gpu
        actor_cpus, threads, decode_cpus = 1.0, 1, 1.0
        decoders = max(1, int(cluster_cpus() - actors))
    ds = ds.map_batches(decode_batch, fn_kwargs=decode_kwargs, batch_size=rows, num_cpus=decode_cpus,
                        compute=ray.data.TaskPoolStrategy(size=decoders))
    for kwargs in actor_kwargs:
        resources = {"num_cpus": actor_cpus} if gpu is None else {"num_cpus": actor_cpus, "num_gpus": gpus_each}
        extractor = kwargs["extractor"] if gpu is None else kwargs["extractor"].on_accelerator()
        with warnings.catch_warnings():  # Ray 2.60 names max_restarts a deprecated remote arg, yet
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*")  # offers no other way
            # a lost actor fails its batch and a rerun resumes; restartable actors whose arguments
            # sit in the object store make Ray's core worker print a warning on every run
            ds = ds.map_batches(ModelBatch, fn_constructor_kwargs={**kwargs, "extractor": extractor, "threads": threads},
                                batch_size=rows, compute=ray.data.ActorPoolStrategy(size=actors), max_restarts=0,
                                **resources)
    # decode tasks outrun the actors: bound the decoded audio waiting in the object store, or it
    # grows with the run (1.3 GiB more at 1,000 clips)
    limits = ds.context.execution_options.resource_limits
    ds.context.execution_options.resource_limits = limits.copy(object_store_memory=DECODED_AHEAD_BYTES)
    return ds


def iter_pooled(config: Config, extractors: Sequence[Extractor], todo: list[dict[str, str]],
                known: set[str] | None = None):
    """Prediction's pass: yields numpy batches with ``relpath`` (a full path or URI),
    ``content_hash``, ``status:<kind>`` (STORED for a file whose hash is in ``known``) and
    ``pooled:<kind>`` [shape=(n, 2d)]; writes nothing."""
    batches, _ = _batches(config, extractors, todo, None, None, known)
    try:
        yield from batches
    except Exception as exc:
        raise user_error(exc) or exc


def _run(config: Config, work: Plan, tick: Callable[[int], None] | None = None) -> None:
    batches, names = _batches(config, work.extractors, work.todo, work.fsets, config.data_dir)
    try:
        for out in batches:
            if tick is not None:
                tick(len(out["relpath"]))
            for column in out:
                if column.startswith("seconds:"):
                    step = column.split(":", 1)[1]
                    work.seconds[step] = work.seconds.get(step, 0.0) + float(np.nansum(out[column]))  # a column only some blocks have is NaN in the others
            for name in names:
                if f"device:{name}" in out:
                    work.reports[name].devices.update(str(d) for d in out[f"device:{name}"])
                for rel, status in zip(out["relpath"], out[f"status:{name}"]):
                    if status == OK:
                        work.reports[name].computed += 1
                    elif status:
                        work.reports[name].failed.append({"relpath": str(rel), "reason": str(status)})
    except Exception as exc:
        raise user_error(exc) or exc


def user_error(exc: BaseException) -> GenreflowError | None:
    """Ray wraps errors raised in tasks and actors (model load, disk full); find ours in the
    chain and return a plain copy, so the user sees its message rather than Ray's stack."""
    seen: BaseException | None = exc
    for _ in range(20):
        if seen is None:
            break
        original = getattr(seen, "cause", None)
        if isinstance(original, GenreflowError):
            seen = original
        if isinstance(seen, GenreflowError):
            # Ray's wrapper subclasses the cause; rebuild the plain type with the first line only
            plain = next(c for c in type(seen).__mro__ if c.__module__ == GenreflowError.__module__)
            return plain(str(seen.args[0]) if seen.args else str(seen))
        seen = original or seen.__cause__ or seen.__context__
    # Ray Data re-raises a UserCodeException whose cause survives only as traceback text
    from genreflow import errors

    found = re.findall(r"genreflow\.errors\.(\w+): (.+)", str(exc))
    if found and isinstance(getattr(errors, found[-1][0], None), type):
        return getattr(errors, found[-1][0])(found[-1][1].strip())
    return None
