"""Pool a clip's frames into vectors: mean and population std over real-audio frames.

ONE kernel (``mean_std``) and ONE window rule (``segment_times``) serve training, evaluate and
both predict paths, so a clip gets bit-identical vectors whichever way it is pooled.

Whole clip: padding frames are excluded, so a 5 s clip padded to 30 s is described by its 5 s
of sound. Segments: a genre shows in short stretches (a drum pattern, a chord change) that one
mean+std over 30 s blurs; windows of ``segment_s`` seconds start every half window from 0; a
clip no longer than one window is one window; if the regular windows stop short of the end,
one more full-length window is placed flush with the end. Several kinds are cut in seconds,
not frames (MFCC ~23 ms, VGGish 0.96 s): window [t0, t1) takes, from each kind, the frames
that start inside it, so segment i means the same stretch of audio in every kind.

Feature sets are pooled one record batch at a time, so memory grows with clips x pooled
dimensions, never with clips x frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from genreflow.errors import ConfigError, DataError
from genreflow.store.featureset import FeatureSet, Kind, iter_batches

_EPS = 1e-6  # seconds, or fractions of a frame: absorbs float error in hop / frame arithmetic


def mean_std(windows: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """windows [shape=(n, w, d)], counts [shape=(n,)] in [1, w] -> [shape=(n, 2d), float32]:
    mean then population std over the first ``counts[i]`` frames of each window (float64 sums)."""
    windows = np.ascontiguousarray(windows, dtype=np.float64)  # one memory layout: the same sums, bit for bit
    n, w, _ = windows.shape
    counts = np.asarray(counts, dtype=np.int64)
    mask = (np.arange(w)[None, :] < counts[:, None])[:, :, None]
    denom = counts[:, None].astype(np.float64)
    mean = np.where(mask, windows, 0).sum(axis=1, dtype=np.float64) / denom
    var = (np.where(mask, windows - mean[:, None, :], 0) ** 2).sum(axis=1, dtype=np.float64) / denom
    return np.concatenate([mean, np.sqrt(var)], axis=1).astype(np.float32)


def pool_frames(frames: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Whole clips: frames [shape=(n, T, d)], valid [shape=(n,)] -> [shape=(n, 2d), float32].

    ``valid`` is clamped to [1, T], so a damaged count can neither empty nor overrun a clip."""
    return mean_std(frames, np.clip(np.asarray(valid, dtype=np.int64), 1, frames.shape[1]))


def pool_ranges(frames: np.ndarray, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    """One clip's frames [shape=(T, d)] pooled over frame ranges -> [shape=(len(ranges), 2d)]."""
    frames = _check_frames(frames)
    starts = np.array([f0 for f0, _ in ranges], dtype=np.int64)
    lengths = np.array([f1 - f0 for f0, f1 in ranges], dtype=np.int64)
    if (lengths < 1).any() or (starts < 0).any() or (starts + lengths > len(frames)).any():
        raise DataError(f"frame ranges {list(ranges)} do not fit a clip of {len(frames)} frames.")
    index = np.minimum(starts[:, None] + np.arange(int(lengths.max()))[None, :], len(frames) - 1)
    return mean_std(frames[index], lengths)


@dataclass(frozen=True)
class KindFrames:
    """One feature kind of one clip: time-major frames, real-audio frame count, frame hop."""

    frames: np.ndarray  # [shape=(T, d)] float32, time-major
    valid: int  # leading frames that hold real audio (the rest is padding)
    frame_seconds: float  # seconds per frame hop: MFCC hop_length / sr, VGGish 0.96


MIN_SEGMENT_S = 0.01  # 10 ms, under one MFCC frame (~23 ms): shorter windows only multiply the rows
MAX_SEGMENTS_PER_CLIP = 150_000  # e.g. one hour (the longest audio.duration_s) in 0.05 s windows: 144,000


def check_segment_s(segment_s: float | None) -> None:
    """None (whole clip) or a finite number of seconds >= MIN_SEGMENT_S."""
    if segment_s is None:
        return
    if isinstance(segment_s, (bool, np.bool_)) or not isinstance(segment_s, (int, float, np.integer, np.floating)) \
            or not (math.isfinite(segment_s) and segment_s >= MIN_SEGMENT_S):
        raise ConfigError(f"segment_s={segment_s!r} is invalid: must be a float in [{MIN_SEGMENT_S}, inf) seconds "
                          "(or unset for whole-clip pooling).")


def _clip_valid(valid: int, n_frames: int) -> int:
    """As ``pool_frames``: at least one frame, never more than the array holds."""
    return int(min(max(int(valid), 1), max(n_frames, 1)))


def segment_times(valid_seconds: float, segment_s: float | None) -> list[tuple[float, float]]:
    """Windows [t0, t1) in seconds over ``valid_seconds`` of audio, starting every segment_s / 2.

    ``segment_s=None`` (or a clip no longer than it) gives one window, the whole clip.
    """
    check_segment_s(segment_s)
    if not (math.isfinite(valid_seconds) and valid_seconds > 0):
        raise DataError(f"valid_seconds={valid_seconds!r} must be a positive number of seconds.")
    if segment_s is None or valid_seconds <= segment_s + _EPS:
        return [(0.0, float(valid_seconds))]
    hop = segment_s / 2
    n_regular = int(math.floor((valid_seconds - segment_s) / hop + _EPS)) + 1
    if n_regular >= MAX_SEGMENTS_PER_CLIP:
        raise ConfigError(f"segment_s={segment_s!r} cuts {valid_seconds:g} s of audio into {n_regular + 1} windows, "
                          f"over the {MAX_SEGMENTS_PER_CLIP} per clip allowed: use a larger --segment-s.")
    times = [(i * hop, i * hop + segment_s) for i in range(n_regular)]
    if valid_seconds - times[-1][1] > _EPS:
        times.append((valid_seconds - segment_s, float(valid_seconds)))
    return times


def frame_range(t0: float, t1: float, frame_seconds: float, valid: int) -> tuple[int, int]:
    """Frames of one kind whose start time ``i * frame_seconds`` lies in [t0, t1).

    Clamped to the ``valid`` frames; a window in which no frame starts (narrower than one
    frame hop) gets the frame that covers its middle, so no segment is empty.
    """
    f0 = max(math.ceil(t0 / frame_seconds - _EPS), 0)
    f1 = min(math.ceil(t1 / frame_seconds - _EPS), valid)
    if f1 <= f0:
        f0 = min(int(math.floor((t0 + t1) / 2 / frame_seconds + _EPS)), valid - 1)
        f1 = f0 + 1
    return f0, f1


def shared_seconds(spans: Sequence[tuple[int, float]]) -> float:
    """The stretch of audio all kinds share: min over kinds of valid * frame_seconds.

    ``spans`` holds (valid frames, frame_seconds) per kind. Each kind's valid frames start
    inside the real audio and cover it, so the minimum still reaches the end of the real
    audio; the last segment also takes every remaining frame of each kind (``pool_times``),
    so nothing is lost to a kind's coarser frames.
    """
    if not spans:
        raise DataError("shared_seconds needs at least one feature kind.")
    return min(max(int(valid), 1) * float(frame_seconds) for valid, frame_seconds in spans)


def pool_times(frames: np.ndarray, valid: int, frame_seconds: float,
               times: Sequence[tuple[float, float]]) -> np.ndarray:
    """One kind of one clip pooled over time windows: [shape=(len(times), 2d)].

    ``times`` comes from ``segment_times`` and must be the same for every kind of the clip
    (that is what aligns them). The last window runs to this kind's last valid frame.
    """
    frames = _check_frames(frames)
    if not (math.isfinite(frame_seconds) and frame_seconds > 0):
        raise ConfigError(f"frame_seconds={frame_seconds!r} is invalid: must be a float in (0, inf).")
    valid = _clip_valid(valid, len(frames))
    ranges = [frame_range(t0, t1, frame_seconds, valid) for t0, t1 in times]
    ranges[-1] = (ranges[-1][0], valid)  # the last segment reaches this kind's last real frame
    return pool_ranges(frames, ranges)


def combine_kinds(kinds: Sequence[KindFrames], segment_s: float | None) -> np.ndarray:
    """Segment vectors of one clip over one or more feature kinds, aligned in time.

    Returns np.ndarray [shape=(n_segments, sum of 2 * d_k)]: per segment, each kind's mean+std
    in the order of ``kinds``, over ``segment_times(shared_seconds(...), segment_s)``.
    ``segment_s=None`` gives one row, the concatenated ``pooling.pool_frames`` vectors of the
    kinds (whole-clip features, exactly as training pools them).
    """
    if not kinds:
        raise DataError("combine_kinds needs at least one feature kind.")
    if segment_s is None:
        return np.concatenate([pool_frames(_check_frames(k.frames)[None], np.array([k.valid])) for k in kinds],
                              axis=1)
    spans = [(_clip_valid(k.valid, len(_check_frames(k.frames))), k.frame_seconds) for k in kinds]
    times = segment_times(shared_seconds(spans), segment_s)
    return np.concatenate([pool_times(k.frames, k.valid, k.frame_seconds, times) for k in kinds], axis=1)


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
    """content_hash -> valid frames, clamped to [1, n_frames] as every pooler does (reads three
    small columns only), so a damaged count cannot make a clip's windows outrun its frames."""
    frames_col = fset.kind.shape_columns[fset.kind.time_axis]
    out: dict[str, int] = {}
    for batch in iter_batches(fset, ["valid_frames", frames_col]):
        for key, valid, n in zip(batch.column("content_hash").to_pylist(), batch.column("valid_frames").to_pylist(),
                                 batch.column(frames_col).to_pylist()):
            if wanted is None or key in wanted:
                out[key] = _clip_valid(valid, n)
    return out


def clip_rows(sets: Sequence[tuple[FeatureSet, float]], wanted: set[str] | None,
              segment_s: float | None) -> dict[str, np.ndarray]:
    """content_hash -> feature rows of one clip over every kind in ``sets`` ((feature set,
    seconds per frame) pairs, in column order), for clips stored in all of them.

    Whole clip (``segment_s`` None): one row, each kind's mean+std. Segments: windows of
    ``segment_s`` seconds with 50 % overlap, aligned in time across kinds (so every kind gives
    the same number of segments), each row a segment.
    """
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


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 2 or frames.shape[0] == 0:
        raise DataError(f"frames must be time-major [shape=(T, d)] with T >= 1, got shape {frames.shape}.")
    return frames
