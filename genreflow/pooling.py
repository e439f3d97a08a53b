"""Pool a clip's frames into one vector: mean and standard deviation over real-audio frames.

Padding frames are excluded, so a 5 s clip padded to 30 s is described by its 5 s of sound.
"""

from __future__ import annotations

import numpy as np

from .store import Kind


def pool_frames(frames: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """frames [shape=(n, T, d)], valid [shape=(n,)] -> [shape=(n, 2d)]: mean then std."""
    n, t, _ = frames.shape
    counts = np.clip(np.asarray(valid, dtype=np.int64), 1, t)
    mask = (np.arange(t)[None, :] < counts[:, None]).astype(np.float64)[:, :, None]
    denom = counts[:, None].astype(np.float64)
    mean = (frames * mask).sum(axis=1) / denom
    var = (((frames - mean[:, None, :]) ** 2) * mask).sum(axis=1) / denom
    return np.concatenate([mean, np.sqrt(var)], axis=1).astype(np.float32)


def frames_of(kind: Kind, values: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """A stored array (rows, cols) as time-major frames (T, d): MFCCs are (n_mfcc, T)."""
    array = np.asarray(values, dtype=np.float32).reshape(rows, cols)
    return array.T if kind.name == "mfcc" else array


def pool_table(kind: Kind, table) -> np.ndarray:
    """Pool every row of a store table at once (vectorised when all shapes agree)."""
    rows_col, cols_col = kind.shape_columns
    rows = table.column(rows_col).to_numpy()
    cols = table.column(cols_col).to_numpy()
    valid = table.column("valid_frames").to_numpy()
    flat = table.column(kind.value_column).combine_chunks().flatten().to_numpy(zero_copy_only=False)
    if len(rows) and (rows == rows[0]).all() and (cols == cols[0]).all():
        stacked = flat.reshape(len(rows), rows[0], cols[0])
        frames = stacked.transpose(0, 2, 1) if kind.name == "mfcc" else stacked
        return pool_frames(frames, valid)
    offsets = np.concatenate([[0], np.cumsum(rows * cols)])
    return np.concatenate([
        pool_frames(frames_of(kind, flat[offsets[i]:offsets[i + 1]], rows[i], cols[i])[None], valid[i:i + 1])
        for i in range(len(rows))
    ]) if len(rows) else np.zeros((0, 0), np.float32)
