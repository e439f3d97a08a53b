"""What the pass's workers run (Ray's, or threads of this process: stages/local.py): the decode
task (read + hash + decode each file once, resample, CPU extractors, shard writes) and the model
actor (a model loaded once, several clips per call).

Every batch reports, per row, a status per kind (OK, TODO for the actors, or the reason it
failed) and the seconds each step took, so the driver can count and time the pass.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Sequence

import numpy as np

from genreflow.errors import AudioDecodeError, GenreflowError, StoreWriteError
from genreflow.features import Extractor
from genreflow.store.featureset import FeatureSet, shard_table, write_shard

TODO, OK = "todo", "ok"  # per-kind status of a row; anything else is the reason it failed
STORED = "stored"  # prediction: the file's hash is in the store, nothing was decoded


def todo_row(content_hash: str, relpath: str, kinds: Sequence[str]) -> dict[str, str]:
    """One file of a pass. Ray Data columns hold plain values, so the kinds it lacks travel as
    one comma-joined string, made here and read by ``kinds_of`` only."""
    return {"content_hash": content_hash, "relpath": relpath, "kinds": ",".join(kinds)}


def decoded_bytes(files: int, duration_s: float, model_rates: Sequence[int]) -> int:
    """Memory the float32 signals of ``files`` decoded files hold, at each model rate."""
    return int(4 * files * duration_s * sum(model_rates))


def kinds_of(value: Any) -> list[str]:
    """The kinds of a ``todo_row`` (or of a batch's ``kinds`` cell)."""
    return [k for k in str(value).split(",") if k]


def write_rows(fset: FeatureSet, keys: list[str], arrays: list[np.ndarray], valid: list[int]) -> None:
    """One shard of computed rows; a full disk or read-only folder becomes one clear error."""
    if not keys:
        return
    try:
        fset.ensure_params_file()
        write_shard(fset, shard_table(fset.kind, keys, arrays, valid))
    except OSError as exc:
        raise StoreWriteError(
            f"Could not write a {fset.kind.name} shard in {fset.location}: {exc.strerror or exc}. "
            "Free some space or fix the permissions and run the command again: "
            "every shard already written is kept and will not be recomputed.") from None


def checked(array: np.ndarray) -> np.ndarray:
    """NaN or infinite features are a failure, never stored."""
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        raise ValueError(f"{bad} of {array.size} values are NaN or infinite (check the feature parameters)")
    return array


def _failure(exc: BaseException) -> str:
    return f"feature extraction failed: {type(exc).__name__}: {exc}"


class Results:
    """Where a worker puts what it computed: shards in the store (``fset`` given), or pooled
    vectors returned with the batch (prediction: nothing is written)."""

    def __init__(self, name: str, n: int, fset: FeatureSet | None) -> None:
        self.name, self.fset = name, fset
        self.keys: list[str] = []
        self.arrays: list[np.ndarray] = []
        self.valid: list[int] = []
        self.rows: list[int] = []
        self.n = n

    def add(self, row: int, key: str, array: np.ndarray, valid: int) -> None:
        array = checked(array)  # raises before anything is recorded
        self.rows.append(row), self.keys.append(key), self.arrays.append(array), self.valid.append(int(valid))

    def finish(self, kind, out: dict[str, np.ndarray]) -> None:
        if self.fset is not None:
            write_rows(self.fset, self.keys, self.arrays, self.valid)
            return
        from genreflow.model.pooling import pool_frames

        pooled = [pool_frames(kind.frames(a)[None], np.array([v]))[0] for a, v in zip(self.arrays, self.valid)]
        width = pooled[0].shape[0] if pooled else 0
        column = np.zeros((self.n, width), np.float32)
        for row, vector in zip(self.rows, pooled):
            column[row] = vector
        out[f"pooled:{self.name}"] = column


def decode_batch(batch: dict[str, np.ndarray], *, data_dir: str | None, duration_s: float,
                 cpu: Sequence[Extractor], cpu_sets: dict[str, FeatureSet] | None,
                 model_rates: Sequence[int], known: set[str] | None = None) -> dict[str, np.ndarray]:
    """Ray Data task: read + decode each file once, run the CPU extractors it lacks (one shard
    per kind, or pooled vectors when ``cpu_sets`` is None), and hand the signal at each model
    rate on to the actors. ``relpath`` is under DATA/raw, or a full path/URI without data_dir.
    ``known`` (prediction with a store): a file whose hash is there is marked STORED, undecoded;
    the ``content_hash`` column returns each file's hash."""
    from genreflow.core.fs import locate
    from genreflow.core.layout import Layout
    from genreflow.data.decode import read_and_decode

    raw = Layout.of(data_dir).raw if data_dir else None
    n = len(batch["content_hash"])
    hashes = [str(k) for k in batch["content_hash"]]
    kinds = [kinds_of(k) for k in batch["kinds"]]
    status = {e.name: [""] * n for e in cpu}
    model_status = [""] * n
    waves = {rate: np.zeros((n, int(round(rate * duration_s))), np.float32) for rate in model_rates}
    n_valid = {rate: np.zeros(n, np.int64) for rate in model_rates}
    results = {e.name: Results(e.name, n, cpu_sets[e.name] if cpu_sets is not None else None) for e in cpu}
    cpu_names = {e.name for e in cpu}
    spent: dict[str, float] = {}  # worker seconds per step, returned with the batch (run --verbose)
    for i, (key, rel) in enumerate(zip(batch["content_hash"], batch["relpath"])):
        wanted_cpu = [e for e in cpu if e.name in kinds[i]]
        wants_model = any(k not in cpu_names for k in kinds[i])
        try:
            loc = raw.join(str(rel)) if raw is not None else locate(str(rel))
            with _timed(spent, "read + decode"):
                decoded = read_and_decode(loc, duration_s=duration_s, expected_hash=str(key) if key else None,
                                          need_hash=cpu_sets is not None, known=known)  # prediction stores nothing
        except Exception as exc:  # never let one file sink the batch
            reason = str(exc) if isinstance(exc, AudioDecodeError) else \
                f"unexpected error while decoding: {type(exc).__name__}: {exc}"
            for e in wanted_cpu:
                status[e.name][i] = reason
            model_status[i] = reason if wants_model else ""
            continue
        hashes[i] = decoded.content_hash or hashes[i]
        if decoded.stored:
            for e in wanted_cpu:
                status[e.name][i] = STORED
            model_status[i] = STORED if wants_model else ""
            continue
        prepared: dict[int, Any] = {}

        def at(rate: int):
            if rate not in prepared:
                with _timed(spent, "resample"):
                    prepared[rate] = decoded.at(rate, duration_s)
            return prepared[rate]

        for e in wanted_cpu:
            wave = at(e.sample_rate)
            try:
                with _timed(spent, e.name):
                    array, valid = e.compute(None, wave.samples, wave.n_valid)
                results[e.name].add(i, decoded.content_hash, array, valid)
                status[e.name][i] = OK
            except Exception as exc:
                status[e.name][i] = _failure(exc)
        if wants_model:
            model_status[i] = TODO
            for rate in model_rates:
                wave = at(rate)
                waves[rate][i], n_valid[rate][i] = wave.samples, wave.n_valid
    out = {"content_hash": np.array(hashes, dtype=object), "relpath": batch["relpath"], "kinds": batch["kinds"],
           "model_status": np.array(model_status, dtype=object)}
    for e in cpu:
        with _timed(spent, "shard writes"):
            results[e.name].finish(e.kind, out)
    out.update({f"status:{name}": np.array(values, dtype=object) for name, values in status.items()})
    out.update(_time_columns(spent, n))
    if model_rates:
        out.update({f"samples:{rate}": waves[rate] for rate in model_rates})
        out.update({f"n_valid:{rate}": n_valid[rate] for rate in model_rates})
    return out


class ModelBatch:
    """Ray Data actor: loads one model extractor's state once, computes and writes shards per batch."""

    def __init__(self, *, extractor: Extractor, fset: FeatureSet | None, threads: int, last: bool,
                 device: str | None = None) -> None:
        """``device`` None: a Ray actor, which asks Ray for its GPUs; the local pass says "CPU"."""
        import os

        from genreflow.core.stderr import quiet_native_stderr

        self.extractor, self.fset, self.last = extractor, fset, last
        if device is None:
            import ray

            gpu_ids = ray.get_gpu_ids()  # Ray set CUDA_VISIBLE_DEVICES to these for this actor
            device = "GPU " + ",".join(str(i) for i in gpu_ids) if gpu_ids else "CPU"
        self.device = device
        # TensorFlow's C++ side prints device notes (cuInit on a machine without a GPU) when the
        # model first runs: hidden unless --verbose, like its import
        started = time.perf_counter()
        with quiet_native_stderr(active=os.environ.get("GENREFLOW_VERBOSE") != "1"):
            self.state = extractor.load(threads)
        self.spent = {f"model load {extractor.name}": time.perf_counter() - started}  # reported once

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        e, rate = self.extractor, self.extractor.sample_rate
        status = [""] * len(batch["content_hash"])
        rows = [i for i, (kinds, todo) in enumerate(zip(batch["kinds"], batch["model_status"]))
                if e.name in kinds_of(kinds) and todo == TODO]
        for i, (kinds, first) in enumerate(zip(batch["kinds"], batch["model_status"])):
            if e.name in kinds_of(kinds) and first != TODO:
                status[i] = str(first)  # the decode failed: same reason for this kind
        with _timed(self.spent, e.name):
            computed = self._compute(batch[f"samples:{rate}"], batch[f"n_valid:{rate}"], rows)
        results = Results(e.name, len(status), self.fset)
        for i, result in zip(rows, computed):
            if isinstance(result, str):
                status[i] = result
                continue
            results.add(i, str(batch["content_hash"][i]), *result)
            status[i] = OK
        out = {k: v for k, v in batch.items() if not self.last or not k.startswith(("samples:", "n_valid:"))}
        with _timed(self.spent, "shard writes"):
            results.finish(e.kind, out)
        out[f"status:{e.name}"] = np.array(status, dtype=object)
        for column, values in _time_columns(self.spent, len(status)).items():  # add to the decode task's
            out[column] = out[column] + values if column in out else values
        self.spent = {}
        out[f"device:{e.name}"] = np.array([self.device] * len(status), dtype=object)
        return out

    def _compute(self, samples: np.ndarray, n_valid: np.ndarray, rows: list[int]) -> list:
        """Results per row (array, valid) or a failure reason; one bad clip never sinks the call."""
        if not rows:
            return []
        try:
            many = self.extractor.compute_many(self.state, [samples[i] for i in rows], [int(n_valid[i]) for i in rows])
            [checked(a) for a, _ in many]
            return many
        except GenreflowError:
            raise  # a model that is not what it claims: the whole run must stop with its message
        except Exception:
            pass  # find the clip that failed, one call each
        out: list = []
        for i in rows:
            try:
                array, valid = self.extractor.compute(self.state, samples[i], int(n_valid[i]))
                out.append((checked(array), valid))
            except GenreflowError:
                raise
            except Exception as exc:
                out.append(_failure(exc))
        return out


@contextlib.contextmanager
def _timed(spent: dict[str, float], step: str):
    started = time.perf_counter()
    try:
        yield
    finally:
        spent[step] = spent.get(step, 0.0) + time.perf_counter() - started


def _time_columns(spent: dict[str, float], n: int) -> dict[str, np.ndarray]:
    """Worker seconds per step as batch columns (Ray Data batches hold one value per row: the
    total sits in the first row)."""
    columns = {}
    for step, seconds in spent.items():
        values = np.zeros(n, np.float64)
        if n:
            values[0] = seconds
        columns[f"seconds:{step}"] = values
    return columns
