"""The Ray Data pipeline: decode tasks, MFCC tasks and VGGish actors over the index rows whose
content hash is not yet in the store, each batch written as one shard by the worker itself.

Only small per-file summaries travel back to the driver, so its memory stays flat however
many clips run. Ray appears in this module alone; the maths it calls are plain functions.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .config import Config
from .errors import AudioDecodeError, GenreflowError, StoreWriteError
from .fs import remove_stale_temps
from .store import FeatureSet, shard_table, stored_keys, write_shard

DECODED_AHEAD_BYTES = 512 << 20  # decoded audio that may wait for the VGGish actors in Ray's object store
MAX_BATCH_BYTES = 256 << 20  # bound the decoded audio one batch holds (matters for long durations)
IN_MEMORY_BYTES = 64 << 20  # files up to this size are read once, hashed and decoded from memory


@dataclass
class StageReport:
    """What one feature pass did, by unique content hash."""

    kind: str
    fingerprint: str
    files: int = 0
    unique: int = 0
    cached: int = 0
    computed: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.kind} [{self.fingerprint}]: {self.computed} computed, {self.cached} already cached, "
                f"{len(self.failed)} failed ({self.files} files, {self.unique} unique)")


def pending(files: list[dict[str, Any]], stored: set[str]) -> tuple[list[dict[str, str]], int]:
    """Unique-content rows still to compute, and how many unique hashes are already stored."""
    todo, seen = [], set()
    for record in files:
        key = record["content_hash"]
        if key in seen:
            continue
        seen.add(key)
        if key not in stored:
            todo.append({"content_hash": key, "relpath": record["relpath"]})
    return todo, len(seen) - len(todo)


def needs_compute(fset: FeatureSet, files: list[dict[str, Any]]) -> bool:
    """True when some indexed content is not yet in ``fset`` (so a Ray session is needed)."""
    return bool(pending(files, stored_keys(fset))[0])


def decode_one(data_dir: str, relpath: str, content_hash: str, *, sample_rate: int, duration_s: float):
    """Check the file is still the one indexed, then decode it (raises AudioDecodeError).

    Files up to IN_MEMORY_BYTES are read once and decoded from memory (one read, also on object
    stores); larger ones are hashed as a stream and decoded from the path, reading only what the
    duration needs.
    """
    import hashlib
    import io

    from .audio import load_audio
    from .fs import open_input, read_bytes, sha256_and_size
    from .layout import Layout

    loc = Layout.of(data_dir).raw.join(relpath)
    try:
        size = loc.fs.get_file_info(loc.path).size
        if size is not None and size <= IN_MEMORY_BYTES:
            data = read_bytes(loc)
            digest, source = hashlib.sha256(data).hexdigest(), io.BytesIO(data)
        else:
            (digest, _), source = sha256_and_size(loc), open_input(loc)
    except FileNotFoundError:
        raise AudioDecodeError("deleted since `genreflow index`: re-run it") from None
    except OSError as exc:
        raise AudioDecodeError(f"unreadable: {exc.strerror or exc}") from None
    if digest != content_hash:
        raise AudioDecodeError("changed since `genreflow index` (content hash differs): re-run it")
    return load_audio(source, sample_rate=sample_rate, duration_s=duration_s)


def decode_batch(batch: dict[str, np.ndarray], *, data_dir: str, sample_rate: int,
                 duration_s: float) -> dict[str, np.ndarray]:
    """Ray Data task: one row per file in, its fixed-length waveform (or a reason) out."""
    n = len(batch["content_hash"])
    samples = np.zeros((n, int(round(sample_rate * duration_s))), dtype=np.float32)
    n_valid = np.zeros(n, dtype=np.int64)
    reasons = [""] * n
    for i, (key, rel) in enumerate(zip(batch["content_hash"], batch["relpath"])):
        try:
            wave = decode_one(data_dir, str(rel), str(key), sample_rate=sample_rate, duration_s=duration_s)
            samples[i], n_valid[i] = wave.samples, wave.n_valid
        except AudioDecodeError as exc:
            reasons[i] = str(exc)
        except Exception as exc:  # never let one file sink the batch
            reasons[i] = f"unexpected error while decoding: {type(exc).__name__}: {exc}"
    return {"content_hash": batch["content_hash"], "relpath": batch["relpath"], "samples": samples,
            "n_valid": n_valid, "reason": np.array(reasons, dtype=object)}


def write_features(batch: dict[str, np.ndarray], fset: FeatureSet,
                   compute: Callable[[np.ndarray, int], tuple[np.ndarray, int]]) -> dict[str, np.ndarray]:
    """Compute features for the decoded rows, write them as one shard, return per-file status."""
    keys, arrays, valid = [], [], []
    reasons = list(batch["reason"])
    for i, key in enumerate(batch["content_hash"]):
        if reasons[i]:
            continue
        try:
            array, n_valid_frames = compute(batch["samples"][i], int(batch["n_valid"][i]))
        except Exception as exc:
            reasons[i] = f"feature extraction failed: {type(exc).__name__}: {exc}"
            continue
        keys.append(str(key))
        arrays.append(array)
        valid.append(n_valid_frames)
    if keys:
        try:
            fset.ensure_params_file()
            write_shard(fset, shard_table(fset.kind, keys, arrays, valid))
        except OSError as exc:
            raise StoreWriteError(
                f"Could not write a {fset.kind.name} shard in {fset.location}: {exc.strerror or exc}. "
                "Free some space or fix the permissions and run the command again: "
                "every shard already written is kept and will not be recomputed.") from None
    return {"content_hash": batch["content_hash"], "relpath": batch["relpath"],
            "reason": np.array(reasons, dtype=object)}


def mfcc_batch(batch: dict[str, np.ndarray], *, fset: FeatureSet, config: Config) -> dict[str, np.ndarray]:
    """Ray Data task: MFCC of each decoded row, written as one shard."""
    from .mfcc import compute_mfcc, valid_frames

    def compute(y: np.ndarray, n_valid: int) -> tuple[np.ndarray, int]:
        mfcc = compute_mfcc(y=y, sr=config.audio.sample_rate, config=config.mfcc)
        return mfcc, valid_frames(n_valid, hop_length=config.mfcc.hop_length, n_frames=mfcc.shape[1])

    return write_features(batch, fset, compute)


class EmbedBatch:
    """Ray Data actor: loads VGGish once in ``__init__``, embeds and writes shards per batch."""

    def __init__(self, *, fset: FeatureSet, handle: str, threads: int) -> None:
        from .vggish import load_model

        self.fset = fset
        self.model = load_model(handle, threads=threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from .vggish import embed_waveform

        return write_features(batch, self.fset, lambda y, n: embed_waveform(self.model, np.clip(y, -1.0, 1.0), n))


def embed_plan(cpus: int) -> tuple[int, float, int, float]:
    """(actors, CPUs reserved per actor, TensorFlow threads per actor, CPUs per decode task).

    Each actor's TF pools match the CPUs it holds so actors never oversubscribe the cores.
    On one or two CPUs the one actor reserves all but half a CPU and the decode tasks that
    half (decoding a clip costs about a tenth of embedding it): both then run at once, so
    decoding overlaps inference, and their different CPU counts keep Ray Data from fusing the
    decode into the actor, where it would run in turn with inference while a core idles.
    """
    if cpus <= 2:
        return 1, cpus - 0.5, cpus, 0.5
    threads = 2
    actors = max(1, (cpus - 1) // threads)
    return actors, float(threads), threads, 1.0


def _rows_per_batch(config: Config, sample_rate: int) -> int:
    row_bytes = 4 * sample_rate * config.audio.duration_s
    return max(1, min(config.batch_size, int(MAX_BATCH_BYTES // row_bytes)))


def extract(config: Config, fset: FeatureSet, files: list[dict[str, Any]]) -> StageReport:
    """Compute one feature set for every indexed file not yet stored; needs a Ray session
    unless everything is stored already."""
    remove_stale_temps(fset.location)
    report = StageReport(fset.kind.name, fset.fingerprint, files=len(files))
    todo, report.cached = pending(files, stored_keys(fset))
    report.unique = report.cached + len(todo)
    if not todo:
        return report
    import ray

    from .raysession import cluster_cpus

    kind = fset.kind.name
    sample_rate = config.audio.sample_rate if kind == "mfcc" else 16000
    workers = config.workers or cluster_cpus()
    # small runs still spread over every worker; large ones use full batches (= shards)
    rows = min(_rows_per_batch(config, sample_rate), max(1, math.ceil(len(todo) / workers)))
    blocks = math.ceil(len(todo) / rows)
    ds = ray.data.from_items(todo, override_num_blocks=blocks)
    decode_kwargs = {"data_dir": config.data_dir, "sample_rate": sample_rate, "duration_s": config.audio.duration_s}
    if kind == "mfcc":
        slots = ray.data.TaskPoolStrategy(size=min(workers, blocks))  # no idle slots (Ray warns of them)
        ds = ds.map_batches(decode_batch, fn_kwargs=decode_kwargs, batch_size=rows, num_cpus=1, compute=slots)
        ds = ds.map_batches(mfcc_batch, fn_kwargs={"fset": fset, "config": config}, batch_size=rows, num_cpus=1,
                            compute=slots)
    else:
        actors, actor_cpus, threads, decode_cpus = embed_plan(workers)
        decoders = max(1, int((workers - actors * actor_cpus) // decode_cpus))
        ds = ds.map_batches(decode_batch, fn_kwargs=decode_kwargs, batch_size=rows, num_cpus=decode_cpus,
                            compute=ray.data.TaskPoolStrategy(size=decoders))
        ds = ds.map_batches(EmbedBatch, fn_constructor_kwargs={"fset": fset, "handle": config.vggish.handle,
                                                               "threads": threads},
                            batch_size=rows, num_cpus=actor_cpus, compute=ray.data.ActorPoolStrategy(size=actors))
        # decode tasks outrun the actors: bound the decoded audio waiting in the object store, or it
        # grows with the run (1.3 GiB more at 1,000 clips)
        limits = ds.context.execution_options.resource_limits
        ds.context.execution_options.resource_limits = limits.copy(object_store_memory=DECODED_AHEAD_BYTES)
    try:
        for out in ds.iter_batches(batch_size=256, batch_format="numpy"):
            for rel, reason in zip(out["relpath"], out["reason"]):
                if reason:
                    report.failed.append({"relpath": str(rel), "reason": str(reason)})
                else:
                    report.computed += 1
    except Exception as exc:
        raise user_error(exc) or exc
    return report


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
    from . import errors

    found = re.findall(r"genreflow\.errors\.(\w+): (.+)", str(exc))
    if found and isinstance(getattr(errors, found[-1][0], None), type):
        return getattr(errors, found[-1][0])(found[-1][1].strip())
    return None
