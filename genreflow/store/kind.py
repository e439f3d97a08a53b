"""How one kind of feature is stored (no I/O, so extractors can declare it for free)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Kind:
    """How one kind of feature is stored: its value column, the two columns of its shape and
    which of the two stored axes is time (MFCC: (n_mfcc, frames) -> 1; VGGish: (frames, 128) -> 0)."""

    name: str
    value_column: str
    shape_columns: tuple[str, str]
    time_axis: int = 0

    def frames(self, array: np.ndarray) -> np.ndarray:
        """The stored 2-D array as time-major frames [shape=(T, d)]."""
        return array.T if self.time_axis == 1 else array
