"""Hot pixels on the analysed rings: pixels far above their ring neighbours in many frames.

A hot pixel (a detector defect, a pixel with a stuck or noisy counter) reads far more than
the pixels around it on the same ring, and it does so frame after frame. A Bragg peak also
stands above the ring, but it moves with the grain under the beam, so at any one pixel it
stands out in a few frames only; and it spreads over several pixels, so it does not stand
above its own immediate neighbours the way a lone defective pixel does.
:class:`HotPixelSearch` counts, for every ring pixel of a
:class:`~mc_beamline.analysis.detector.polar.RingPolarOperator`, in how many frames it
stands out, and calls it hot when that happens in a large fraction of the frames:

* ring neighbourhood of a pixel: the good pixels of its ring and radial slice (q within
  1/8 of the ring's width) in its azimuthal bin and the w bins on either side, w the
  smallest half width (in bins) that gives at least :data:`MIN_NEIGHBOURS` = 32 pixels on
  the static mask. For a 1 Mpx Eiger at 164 mm and 12.4 keV (1° bins): the atomic ring at
  18.3 nm⁻¹ has ≈ 60 pixels per bin and slice, so w = 0 (1°); the superlattice ring at
  1.72 nm⁻¹ has ≈ 0.5, so w ≈ 30 (≈ 60°).
* local neighbourhood: the pixel's eight detector neighbours that are on the detector,
  not masked and not bad in the frame (at least :data:`MIN_LOCAL` = 3 of them).
* a pixel stands out in a frame when its value v > m + k·σ in both neighbourhoods, m the
  median of the neighbourhood's values in that frame and σ = max(1.4826·MAD, √max(m, 1)):
  the robust standard deviation (MAD = median absolute deviation from m), never below the
  Poisson σ of the median in counts, so that where the ring reads 0s and 1s a pixel that
  reads 1 does not stand out. Default k = 10. Examples: m = 4 counts, MAD = 1.5 → σ = 2.2,
  threshold 26 counts; m = 400, MAD = 14 → σ = 20.8, threshold 608. Pure Poisson noise
  exceeds a threshold with a probability below 10⁻⁹ per pixel and frame (m = 1: v ≥ 12).
  The local test spares Bragg spots: the pixels of a superlattice spot of the seed sample
  (≈ 15 pixels reading 10–60 counts on a ring of 0–1) exceed the ring's threshold, but
  each lies within the spread of its neighbours.
* a pixel is hot when it stands out in at least max(:data:`MIN_FRAMES`, ⌈f·K⌉) of the K
  frames searched; default f = 0.5, so with K = 32 frames, in 16 of them. Fewer than
  :data:`MIN_FRAMES` = 4 frames never make a pixel hot (one frame cannot tell a hot pixel
  from a sharp Bragg peak).

Pixels that are bad in a frame (gap value, non-finite: see
:func:`~mc_beamline.analysis.detector.polar.bad_value_mask`) neither stand out nor enter
their neighbours' medians in that frame. The counts are sums over frames, so they do not
depend on the order frames come in.

Limit: a Bragg spot one or two pixels wide that stays on the same pixels in half of the
frames searched (a grain longer than K/2 raster steps along the scan, a single-crystal
substrate reflection) cannot be told from a hot pixel and is found as one.
"""

from __future__ import annotations

import math
import warnings

import numba
import numpy as np

from mc_beamline.analysis.detector.polar import RingPolarOperator, bad_value_mask

MIN_NEIGHBOURS = 32
"""Good pixels (static mask) a neighbourhood should hold; its azimuthal width grows until it does."""
MIN_TESTED = 8
"""Fewest good pixels of a ring neighbourhood in a frame for its median to judge its pixels."""
MIN_LOCAL = 3
"""Fewest good detector neighbours (of eight) for the local test to judge a pixel."""
MIN_FRAMES = 4
"""Fewest frames a pixel must stand out in to be hot, whatever the fraction."""
ROBUST_SIGMA_PER_MAD = 1.4826
"""σ of a normal distribution per median absolute deviation."""


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _stand_out(values, bad, offsets, n_bins, half_width, n_sigma, out):
    """Set ``out[i]`` for each pixel i that stands out of its ring neighbourhood.

    ``values`` (P,) float64 and ``bad`` (P,) bool: the pixels in segment order, segment s
    holding ``values[offsets[s]:offsets[s + 1]]``; segments run over bins fastest, n_bins per
    (ring, radial slice). ``half_width`` (n_segments,): w of each segment's neighbourhood.
    """
    n_segments = offsets.size - 1
    buffer = np.empty(values.size)
    out[:] = False
    for s in range(n_segments):
        p0 = offsets[s]
        p1 = offsets[s + 1]
        if p1 == p0:
            continue
        base = s - s % n_bins
        k = s - base
        w = half_width[s]
        m = 0
        for d in range(-w, w + 1):
            t = base + (k + d) % n_bins
            for i in range(offsets[t], offsets[t + 1]):
                if not bad[i]:
                    buffer[m] = values[i]
                    m += 1
        if m < MIN_TESTED:
            continue
        level = np.median(buffer[:m])
        for i in range(m):
            buffer[i] = abs(buffer[i] - level)
        sigma = max(ROBUST_SIGMA_PER_MAD * np.median(buffer[:m]), math.sqrt(max(level, 1.0)))
        threshold = level + n_sigma * sigma
        for i in range(p0, p1):
            out[i] = not bad[i] and values[i] > threshold


def neighbourhood_half_widths(n_static_sub: np.ndarray, min_neighbours: int = MIN_NEIGHBOURS) -> np.ndarray:
    """Half width w (bins) of each segment's neighbourhood, flat in segment order.

    ``n_static_sub`` (n_rings, n_radial, N): good pixels per segment. w is the smallest half
    width with at least ``min_neighbours`` pixels in bins k - w … k + w of the segment's ring
    and slice, at most (N - 1) // 2 (the whole slice).
    """
    counts = np.asarray(n_static_sub, dtype=np.int64)
    n_bins = counts.shape[-1]
    rows = counts.reshape(-1, n_bins)
    width = np.full(rows.shape, (n_bins - 1) // 2, dtype=np.int64)
    window = rows.copy()
    open_ = window < min_neighbours
    width[~open_] = 0
    for w in range(1, (n_bins - 1) // 2 + 1):
        if not open_.any():
            break
        window = window + np.roll(rows, w, axis=1) + np.roll(rows, -w, axis=1)
        done = open_ & (window >= min_neighbours)
        width[done] = w
        open_ &= ~done
    return width.reshape(-1)


def _robust_threshold(values: np.ndarray, n_sigma: float) -> np.ndarray:
    """m + k·max(1.4826·MAD, √max(m, 1)) of each row of ``values`` (NaN = no value)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows without values: NaN
        level = np.nanmedian(values, axis=1)
        mad = np.nanmedian(np.abs(values - level[:, None]), axis=1)
    return level + n_sigma * np.maximum(ROBUST_SIGMA_PER_MAD * mad, np.sqrt(np.maximum(level, 1.0)))


class HotPixelSearch:
    """Counts, frame by frame, how often each ring pixel of an operator stands out.

    Parameters
    ----------
    operator : the ring operator whose pixels are searched (its rings, slices, bins and mask).
    mask : the static mask (True = bad) the operator was built with, or None; masked pixels
        are no one's local neighbours.
    n_sigma : k, the threshold above the neighbourhood medians in robust σ.
    min_fraction : f, the fraction of frames in which a hot pixel stands out, in (0, 1].

    Raises
    ------
    ValueError
        For a non-positive ``n_sigma`` or ``min_fraction`` outside (0, 1].
    """

    def __init__(self, operator: RingPolarOperator, mask: np.ndarray | None = None, n_sigma: float = 10.0,
                 min_fraction: float = 0.5):
        if not (math.isfinite(n_sigma) and n_sigma > 0):
            raise ValueError(f"The hot-pixel threshold must be a positive number of σ, got {n_sigma!r}.")
        if not 0.0 < min_fraction <= 1.0:
            raise ValueError(f"The hot-pixel fraction of frames must be in (0, 1], got {min_fraction!r}.")
        self.n_sigma = float(n_sigma)
        self.min_fraction = float(min_fraction)
        self.shape = tuple(operator.shape)
        self.pixels = operator.pixels
        self._masked = None if mask is None else np.asarray(mask, dtype=bool).reshape(-1)
        counts = operator.n_static_sub.reshape(-1)
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._n_bins = operator.n_bins
        self._half_width = neighbourhood_half_widths(operator.n_static_sub)
        self._on_ring = np.empty(self.pixels.size, dtype=bool)
        self.exceed = np.zeros(self.pixels.size, dtype=np.int64)
        """Frames in which each ring pixel (order of :attr:`pixels`) stood out."""
        self.n_frames = 0
        """Frames searched so far."""

    def add(self, frame: np.ndarray) -> None:
        """Search one frame (detector shape, counts)."""
        frame = np.asarray(frame)
        if frame.shape != self.shape:
            raise ValueError(f"Frame shape {frame.shape} does not match the detector shape {self.shape}.")
        flat = frame.reshape(-1)
        values = flat[self.pixels]
        bad = bad_value_mask(values)
        if bad is None:
            bad = np.zeros(values.size, dtype=bool)
        with np.errstate(invalid="ignore"):
            as_float = np.where(bad, 0.0, values.astype(np.float64))
        _stand_out(as_float, bad, self._offsets, self._n_bins, self._half_width, self.n_sigma, self._on_ring)
        candidates = np.flatnonzero(self._on_ring)
        if candidates.size:
            local = self._local_thresholds(flat, self.pixels[candidates])
            self.exceed[candidates[as_float[candidates] > local]] += 1
        self.n_frames += 1

    def _local_thresholds(self, flat: np.ndarray, pixels: np.ndarray) -> np.ndarray:
        """Threshold of the eight detector neighbours of each pixel (NaN: fewer than MIN_LOCAL good)."""
        rows, cols = self.shape
        r, c = np.divmod(pixels, cols)
        dr = np.array([-1, -1, -1, 0, 0, 1, 1, 1])
        dc = np.array([-1, 0, 1, -1, 1, -1, 0, 1])
        nr, nc = r[:, None] + dr, c[:, None] + dc
        inside = (nr >= 0) & (nr < rows) & (nc >= 0) & (nc < cols)
        index = np.where(inside, nr * cols + nc, 0)
        raw = flat[index]
        good = inside
        bad = bad_value_mask(raw)
        if bad is not None:
            good = good & ~bad
        if self._masked is not None:
            good = good & ~self._masked[index]
        with np.errstate(invalid="ignore"):
            neighbours = np.where(good, raw.astype(np.float64), np.nan)
        threshold = _robust_threshold(neighbours, self.n_sigma)
        return np.where(good.sum(axis=1) >= MIN_LOCAL, threshold, np.nan)

    @property
    def min_count(self) -> int:
        """Frames a pixel must stand out in to be hot: max(MIN_FRAMES, ⌈f · frames searched⌉)."""
        return max(MIN_FRAMES, math.ceil(self.min_fraction * self.n_frames - 1e-9))

    def hot_pixels(self) -> np.ndarray:
        """Flat indices (row · columns + column) of the hot pixels, increasing."""
        return np.sort(self.pixels[self.exceed >= self.min_count])
