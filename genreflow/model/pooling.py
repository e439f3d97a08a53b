"""Pool a clip's frames into one vector: mean and standard deviation over real-audio frames.

Padding frames are excluded, so a 5 s clip padded to 30 s is described by its 5 s of sound.
Feature sets are pooled one record batch at a time, so memory grows with clips x pooled
dimensions, never with clips x frames.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np

from genreflow.store.featureset import FeatureSet, Kind, iter_batches


def pool_frames(frames: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """frames [shape=(n, T, d)], valid [shape=(n,)] -> [shape=(n, 2d), float32]: mean then std."""
    n, t, _ = frames.shape
    counts = np.clip(np.asarray(valid, dtype=np.int64), 1, t)
    mask = (np.arange(t)[None, :] < counts[:, None])[:, :, None]
    denom = counts[:, None].astype(np.float64)
    mean = np.where(mask, frames, 0).sum(axis=1, dtype=np.float64) / denom
    var = (np.where(mask, frames - mean[:, None, :], 0) ** 2).sum(axis=1, dtype=np.float64) / denom
    return np.concatenate([mean, np.sqrt(var)], axis=1).astype(np.float32)


def clip_frames(kind: Kind, batch) -> Iterable[tuple[np.ndarray, int]]:
    """Each row of a store record batch as (time-major frames [shape=(T, d)], valid frames)."""
    rows_col, cols_col = kind.shape_columns
    rows = batch.column(rows_col).to_numpy()
    cols = batch.column(cols_col).to_numpy()
    valid = batch.column("valid_frames").to_numpy()
    values = batch.column(kind.value_column)
    flat = values.flatten().to_numpy(zero_copy_only=False)
    offsets = values.offsets.to_numpy() - values.offsets[0].as_py()
    for i in range(len(rows)):
        array = flat[offsets[i]:offsets[i + 1]].reshape(int(rows[i]), int(cols[i]))
        yield kind.frames(array), int(valid[i])


def pool_batch(kind: Kind, batch) -> np.ndarray:
    """Mean+std of every row of a record batch (vectorised when all shapes agree)."""
    rows_col, cols_col = kind.shape_columns
    rows, cols = batch.column(rows_col).to_numpy(), batch.column(cols_col).to_numpy()
    if not len(rows):
        return np.zeros((0, 0), np.float32)
    if (rows == rows[0]).all() and (cols == cols[0]).all():
        values = batch.column(kind.value_column)
        flat = values.flatten().to_numpy(zero_copy_only=False)
        stacked = flat.reshape(len(rows), int(rows[0]), int(cols[0]))
        frames = stacked.transpose(0, 2, 1) if kind.time_axis == 1 else stacked
        return pool_frames(frames, batch.column("valid_frames").to_numpy())
    return np.concatenate([pool_frames(f[None], np.array([v])) for f, v in clip_frames(kind, batch)])


ClipPooler = Callable[[str, np.ndarray, int], np.ndarray]  # (key, frames (T, d), valid) -> [shape=(m, 2d)]


def pooled_vectors(fset: FeatureSet, wanted: set[str] | None = None,
                   pool_clip: ClipPooler | None = None) -> dict[str, np.ndarray]:
    """content_hash -> pooled rows [shape=(m, 2d), float32] for every stored clip (or those in
    ``wanted``); m = 1 for whole-clip pooling, the number of segments with ``pool_clip``."""
    out: dict[str, np.ndarray] = {}
    columns = [fset.kind.value_column, *fset.kind.shape_columns, "valid_frames"]
    for batch in iter_batches(fset, columns):
        keys = batch.column("content_hash").to_pylist()
        if wanted is not None:
            keep = [i for i, k in enumerate(keys) if k in wanted]
            if len(keep) < len(keys):
                import pyarrow as pa

                batch, keys = batch.take(pa.array(keep, pa.int64())), [keys[i] for i in keep]
            if not keys:
                continue
        if pool_clip is None:
            matrix = pool_batch(fset.kind, batch)
            out.update((k, matrix[i:i + 1]) for i, k in enumerate(keys))
        else:
            out.update((k, pool_clip(k, frames, valid).astype(np.float32, copy=False))
                       for k, (frames, valid) in zip(keys, clip_frames(fset.kind, batch)))
    return out


def valid_frames_by_key(fset: FeatureSet, wanted: set[str] | None = None) -> dict[str, int]:
    """content_hash -> valid frames (reads two small columns only)."""
    out: dict[str, int] = {}
    for batch in iter_batches(fset, ["valid_frames"]):
        for key, valid in zip(batch.column("content_hash").to_pylist(), batch.column("valid_frames").to_pylist()):
            if wanted is None or key in wanted:
                out[key] = int(valid)
    return out


def clip_rows(sets: Sequence[tuple[FeatureSet, float]], wanted: set[str] | None,
              segment_s: float | None) -> dict[str, np.ndarray]:
    """content_hash -> feature rows of one clip over every kind in ``sets`` ((feature set,
    seconds per frame) pairs, in column order), for clips stored in all of them.

    Whole clip (``segment_s`` None): one row, each kind's mean+std. Segments: windows of
    ``segment_s`` seconds with 50 % overlap, aligned in time across kinds (so every kind gives
    the same number of segments), each row a segment.
    """
    from genreflow.model.segments import pool_times, segment_times, shared_seconds

    times: dict[str, list] = {}
    if segment_s is not None:
        valid = [valid_frames_by_key(fset, wanted) for fset, _ in sets]
        common = set.intersection(*(set(v) for v in valid)) if valid else set()
        times = {k: segment_times(shared_seconds([(v[k], fs) for v, (_, fs) in zip(valid, sets)]), segment_s)
                 for k in common}
        wanted = common
    parts = []
    for fset, frame_seconds in sets:
        pooler = None if segment_s is None else (
            lambda key, frames, valid, fs=frame_seconds: pool_times(frames, valid, fs, times[key]))
        parts.append(pooled_vectors(fset, wanted, pooler))
    keys = set.intersection(*(set(p) for p in parts)) if parts else set()
    return {k: np.concatenate([p[k] for p in parts], axis=1) for k in keys}
