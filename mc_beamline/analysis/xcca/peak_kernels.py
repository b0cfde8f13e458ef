"""Compiled peak search and background level of periodic ring profiles (numba).

These kernels implement the rules documented in :mod:`mc_beamline.analysis.xcca.peaks` on one
profile row at a time, without temporary arrays: a profile of 360 bins costs a few
microseconds instead of the dispatch of a few dozen small NumPy operations. They are
called by :class:`~mc_beamline.analysis.xcca.peaks.PeakSearch` and by the fused frame kernels of
:mod:`mc_beamline.analysis.xcca.kernels`.

Profiles hold NaN in invalid bins (no comparison with NaN holds, so a maximum needs two
valid neighbours). Angles in degrees; bins of ``width_deg`` with the first centre at
``phi0_deg``; profile values in profile units (e.g. counts per pixel).
"""

from __future__ import annotations

import math

import numba
import numpy as np

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
BACKGROUND_QUANTILE = 0.2
"""Quantile of the valid smoothed bins taken as a profile's background level."""
PEAK_FIELDS = 5
"""Columns of a peak table row: azimuth (deg), height, prominence, FWHM (deg), S/N."""

_JIT = dict(cache=True, nogil=True, boundscheck=False, error_model="numpy")


@numba.njit(inline="always", **_JIT)
def _kth_smallest(a: np.ndarray, n: int, k: int) -> float:
    """k-th smallest (0-based) of ``a[:n]`` (no NaN), reordering ``a[:n]`` (Wirth's selection)."""
    lo, hi = 0, n - 1
    while lo < hi:
        x = a[k]
        i, j = lo, hi
        while i <= j:
            while a[i] < x:
                i += 1
            while x < a[j]:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if j < k:
            lo = i
        if k < i:
            hi = j
    return a[k]


@numba.njit(**_JIT)
def quantile_level(values: np.ndarray, buffer: np.ndarray, quantile: float) -> float:
    """Low quantile of the finite ``values``: the k-th smallest, k = ⌊quantile·(n - 1)⌋, clipped at 0.

    0 when no value is finite. ``buffer`` is scratch space of at least ``values.size``.
    """
    nv = 0
    for v in values:
        if math.isfinite(v):
            buffer[nv] = v
            nv += 1
    if nv == 0:
        return 0.0
    level = _kth_smallest(buffer, nv, int(math.floor(quantile * (nv - 1))))
    return level if level > 0.0 else 0.0


@numba.njit(inline="always", **_JIT)
def _wrap(i: int, n: int) -> int:
    return i + n if i < 0 else (i - n if i >= n else i)


@numba.njit(inline="always", **_JIT)
def _refine_offset(s: np.ndarray, i: int, k: int, base: float, prom: float) -> float:
    """Sub-bin offset (bins) of the peak at bin i from a Gaussian through three points k bins apart.

    k ≈ the peak's σ from the curvature at the top: a Gaussian's slope is steepest there, so
    the log-parabola through S(i-k), S(i), S(i+k) above the local ``base`` is the least
    noise-sensitive three-point estimate. 0 where a point is not above the base or the fit
    is not a maximum within ±k.
    """
    n = s.size
    ym = s[_wrap(i - k, n)] - base
    yp = s[_wrap(i + k, n)] - base
    if not (0.0 < ym < math.inf and 0.0 < yp < math.inf and prom > 0.0):
        return 0.0
    lm = math.log(ym)
    lp = math.log(yp)
    curv = lm - 2.0 * math.log(prom) + lp
    if curv >= 0.0:
        return 0.0
    vertex = k * 0.5 * (lm - lp) / curv
    return vertex if abs(vertex) <= k else 0.0


@numba.njit(**_JIT)
def row_peaks(
    s: np.ndarray,
    sigma: np.ndarray,
    min_snr: float,
    min_prominence: float,
    half: int,
    h_max: int,
    smooth_bins: float,
    phi0_deg: float,
    width_deg: float,
    out: np.ndarray,
) -> int:
    """Peaks of one smoothed profile ``s`` (N,) with noise ``sigma`` into ``out`` (≥ N//2, 5).

    A peak is a bin above its left and not below its right neighbour whose prominence
    (its value minus the higher of the minima within ``half`` bins on either side) reaches
    max(``min_snr``·σ, ``min_prominence``) (no peak where that threshold is NaN). Rows of
    ``out``: :data:`PEAK_FIELDS`, sorted by azimuth (stable). Returns the number of peaks.
    """
    n = s.size
    floor = math.inf
    for v in s:
        if v < floor:
            floor = v
    count = 0
    for i in range(n):
        top = s[i]
        left = s[i - 1] if i > 0 else s[n - 1]
        right = s[i + 1] if i < n - 1 else s[0]
        if not (top > left and top >= right):
            continue
        sig = sigma[i]
        threshold = min_snr * sig
        if threshold < min_prominence:
            threshold = min_prominence
        if not (top - floor >= threshold):  # cheap bound: no window minimum is below the floor
            continue
        low_left = top
        low_right = top
        for d in range(1, half + 1):
            v = s[_wrap(i - d, n)]
            if v < low_left:
                low_left = v
            v = s[_wrap(i + d, n)]
            if v < low_right:
                low_right = v
        prom = top - max(low_left, low_right)
        if not (prom >= threshold):
            continue
        curv = left - 2.0 * top + right
        sigma_tot2 = prom / -curv if curv < 0.0 else math.inf  # Gaussian: S'' = -A/σ² at the top
        # three-point spacing k ≈ the peak's σ in bins, 1 … h_max (bins beyond ``half`` are unused)
        k = 1
        if math.isfinite(sigma_tot2):
            root = math.sqrt(sigma_tot2)
            k = h_max if root > h_max else max(round(root), 1)
        offset = _refine_offset(s, i, k, top - prom, prom) if k <= half else 0.0
        phi = phi0_deg + (i + offset) * width_deg
        if phi > 180.0:
            phi -= 360.0
        elif phi <= -180.0:
            phi += 360.0
        fwhm = FWHM_PER_SIGMA * math.sqrt(max(sigma_tot2 - smooth_bins * smooth_bins, 0.0)) * width_deg
        j = count  # insertion by azimuth, after equal ones
        while j > 0 and out[j - 1, 0] > phi:
            for field in range(PEAK_FIELDS):
                out[j, field] = out[j - 1, field]
            j -= 1
        out[j, 0] = phi
        out[j, 1] = top
        out[j, 2] = prom
        out[j, 3] = fwhm
        out[j, 4] = prom / sig
        count += 1
    return count


@numba.njit(**_JIT)
def find_peaks(values, sigma, min_snr, min_prominence, half, h_max, smooth_bins, phi0_deg, width_deg, table, counts):
    """:func:`row_peaks` for each row r of ``values``/``sigma`` (rows, N), parameters per row;
    peaks into ``table[r]`` (rows, ≥ N//2, 5), their number into ``counts[r]``."""
    for r in range(values.shape[0]):
        counts[r] = row_peaks(
            values[r], sigma[r], min_snr[r], min_prominence[r], half[r], h_max, smooth_bins[r],
            phi0_deg, width_deg, table[r],
        )
