"""Sums with per-element counts: the streaming averages live analysis, replay and workers merge."""

from __future__ import annotations

import numpy as np


class SumCountAverage:
    """Per-element sum and count of the values added so far, and the number of frames.

    Elements nothing was added to average to NaN, not 0. Averages of disjoint frame sets
    merge exactly like one pass (up to floating-point summation order). Subclasses fill
    ``sum``, ``count`` and ``n_frames``.
    """

    sum: np.ndarray
    count: np.ndarray
    n_frames: int

    def merge(self, other: "SumCountAverage") -> "SumCountAverage":
        """Add the frames of ``other`` (same shape) to this one; returns self."""
        if type(other) is not type(self) or other.sum.shape != self.sum.shape:
            raise ValueError(f"Cannot merge a {type(other).__name__} of shape {other.sum.shape} "
                             f"into a {type(self).__name__} of shape {self.sum.shape}.")
        self.sum += other.sum
        self.count += other.count
        self.n_frames += other.n_frames
        return self

    def mean(self) -> np.ndarray:
        """Average per element, NaN where nothing was added."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.sum / np.maximum(self.count, 1), np.nan)
