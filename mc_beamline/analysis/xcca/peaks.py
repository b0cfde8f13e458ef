"""Peak finding on azimuthal ring profiles with masked bins and counting noise.

A profile I(φ_k) over N bins (periodic in φ) is smoothed by normalised convolution with
a periodic Gaussian kernel g, so masked bins (W = 0 or NaN) are bridged by their
neighbours and do not pull the profile down::

    S = (g ∗ W·I) / (g ∗ W),     σ_S² = (g² ∗ W²·v) / (g ∗ W)²

σ_S is the noise a peak-free profile would have (the null hypothesis of detection): with
pixel counts known, v_k = (L·n_k + 1)/n_k², the variance of the mean of n_k Poisson pixels
at the profile's background level L (the 20th percentile of the valid smoothed bins; the
+1 keeps almost empty bins honest); otherwise a robust scatter estimate (1.4826·MAD of
I - S). A smoothed bin
is valid where g ∗ W reaches ``min_coverage`` of its typical value.

A peak is a local maximum of S whose windowed prominence, S minus the higher of the
minima of S within ``window_deg`` on either side, reaches ``min_snr`` · σ_S, and whose
two neighbouring bins are valid (a maximum on the edge of a masked region or of a partial
arc is no peak). Its azimuth is refined to a fraction of a bin by a Gaussian
(log-parabola) through three smoothed bins around the maximum. Smoothing is vectorised
over profiles (rings, frames); the search is compiled
(:mod:`~mc_beamline.analysis.xcca.peak_kernels`) and runs over all profiles in one call.

Angles in degrees, azimuths in (-180, 180].
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from mc_beamline.analysis.xcca.peak_kernels import (
    BACKGROUND_QUANTILE,
    PEAK_FIELDS,
    find_peaks,
)


class RingPeak(NamedTuple):
    """One azimuthal peak of a ring profile.

    Attributes
    ----------
    azimuth_deg : refined peak azimuth, degrees in (-180, 180].
    height : smoothed intensity at the maximum (profile units, e.g. counts per pixel).
    prominence : height above the higher of the minima within the search window on
        either side (profile units).
    width_deg : FWHM in degrees from the curvature at the maximum and the prominence,
        assuming a Gaussian peak, smoothing removed (a rough estimate).
    snr : prominence divided by the noise σ of the smoothed profile at the peak.
    """

    azimuth_deg: float
    height: float
    prominence: float
    width_deg: float
    snr: float


@dataclass(frozen=True)
class SmoothedProfiles:
    """Smoothed ring profiles (..., N): value S (NaN where invalid), noise σ_S, validity."""

    value: np.ndarray
    sigma: np.ndarray
    valid: np.ndarray


@lru_cache(maxsize=64)
def kernel_spectra(n_bins: int, sigma_bins: float) -> tuple[np.ndarray, np.ndarray]:
    """rFFTs (norm "backward") of the periodic Gaussian kernel g (Σg = 1, σ in bins) and of g²."""
    k = np.arange(n_bins)
    d = np.minimum(k, n_bins - k).astype(np.float64)
    if sigma_bins <= 0:
        g = (d == 0).astype(np.float64)
    else:
        g = np.exp(-0.5 * (d / sigma_bins) ** 2)
        g /= g.sum()
    g_hat, g2_hat = np.fft.rfft(g), np.fft.rfft(g * g)
    g_hat.setflags(write=False)
    g2_hat.setflags(write=False)
    return g_hat, g2_hat


def _kernels(n: int, smooth_bins, lead_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    sb = np.atleast_1d(np.asarray(smooth_bins, dtype=np.float64))
    if sb.size == 1:
        return kernel_spectra(n, float(sb[0]))
    if not lead_shape or lead_shape[-1] != sb.size:
        raise ValueError("Give one smoothing width per profile (along the second-to-last axis).")
    spectra = [kernel_spectra(n, float(b)) for b in sb]
    return np.stack([a for a, _ in spectra]), np.stack([b for _, b in spectra])


def background_level(smoothed: np.ndarray, valid: np.ndarray, quantile: float = BACKGROUND_QUANTILE) -> np.ndarray:
    """Background level L of smoothed profiles (..., N): a low quantile of the valid bins.

    The ``quantile`` (default 20 %) of the valid smoothed values, clipped at 0, shape
    (..., 1); 0 for a profile without valid bins. Peaks rarely cover most of a ring, so
    this is the level the noise of a peak-free profile is computed at.
    """
    smoothed = np.asarray(smoothed, dtype=np.float64)
    valid = np.broadcast_to(valid, smoothed.shape)
    filled = np.where(valid, smoothed, np.inf)
    n_valid = valid.sum(axis=-1, keepdims=True)
    k = np.floor(quantile * np.maximum(n_valid - 1, 0)).astype(np.intp)
    part = np.partition(filled, np.unique(k).tolist(), axis=-1) if k.size else filled
    level = np.take_along_axis(part, k, axis=-1)
    return np.where(n_valid > 0, np.maximum(level, 0.0), 0.0)


def smooth_profiles(
    intensity: np.ndarray,
    weight: np.ndarray | None = None,
    n_pixels: np.ndarray | None = None,
    smooth_bins: float | np.ndarray = 1.0,
    min_coverage: float = 0.25,
    typical_coverage: np.ndarray | float | None = None,
) -> SmoothedProfiles:
    """Gaussian normalised-convolution smoothing of periodic ring profiles.

    Parameters
    ----------
    intensity : profiles (..., N), mean counts per pixel; NaN where masked.
    weight : bin weights W in [0, 1] (None: 1 where finite).
    n_pixels : good pixels per bin, for Poisson noise at the background level; None: the
        robust scatter (1.4826·MAD) of I - S, the same for all bins of a profile.
    smooth_bins : Gaussian σ of the kernel in bins (0: no smoothing); a float, or one
        value per profile along the second-to-last axis (e.g. one per ring).
    min_coverage : a smoothed bin is valid where g ∗ W reaches this fraction of
        ``typical_coverage`` (default: the 90th percentile of g ∗ W of the profile).
    """
    intensity = np.asarray(intensity, dtype=np.float64)
    n = intensity.shape[-1]
    if weight is None:
        weight = np.isfinite(intensity).astype(np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    good = (weight > 0) & np.isfinite(intensity)
    w = np.where(good, weight, 0.0)
    x = np.where(good, intensity, 0.0)
    g_hat, g2_hat = _kernels(n, smooth_bins, intensity.shape[:-1])
    spec = np.fft.rfft(np.stack([w * x, w]), axis=-1)
    num, den = np.fft.irfft(spec * g_hat, n=n, axis=-1)
    if typical_coverage is None:
        typical_coverage = np.percentile(den, 90, axis=-1, keepdims=True)
    valid = (den >= min_coverage * np.asarray(typical_coverage)) & (den > 1e-12)
    safe_den = np.where(valid, den, 1.0)
    value = np.where(valid, num / safe_den, np.nan)
    if n_pixels is not None:
        # w²·(L·n + 1)/n² = L·(w²/n) + w²/n², each smoothed with g²
        n_pix = np.asarray(n_pixels, dtype=np.float64)
        safe_n = np.maximum(n_pix, 1.0)
        a = np.where(n_pix > 0, w * w / safe_n, 0.0)
        b = np.where(n_pix > 0, w * w / (safe_n * safe_n), 0.0)
        conv_a, conv_b = np.fft.irfft(np.fft.rfft(np.stack([a, b]), axis=-1) * g2_hat, n=n, axis=-1)
        level = background_level(value, valid)
        var_num = level * conv_a + conv_b
        sigma = np.sqrt(np.maximum(var_num, 0.0)) / safe_den
    else:
        resid = np.where(good & valid, x - np.nan_to_num(value), np.nan)
        med = np.nanmedian(resid, axis=-1, keepdims=True)
        mad = 1.4826 * np.nanmedian(np.abs(resid - med), axis=-1, keepdims=True)
        # white noise of σ smoothed by a kernel with Σg = 1 keeps σ·sqrt(Σg²)
        g2_sum = np.real(np.asarray(g2_hat)[..., :1])
        sigma = np.broadcast_to(mad * np.sqrt(g2_sum), value.shape)
    sigma = np.where(valid, sigma, np.nan)
    return SmoothedProfiles(value, sigma, valid)


class PeakSearch:
    """Peak search over smoothed profiles of a fixed layout (..., N), parameters per profile.

    Built once for a layout (``lead_shape`` = the profiles' leading shape, e.g. (rings,)
    or (frames, rings)); :meth:`find` then runs the compiled search of
    :mod:`~mc_beamline.analysis.xcca.peak_kernels` over all profiles in one call. The
    parameters are scalars or one value per profile along the last leading axis.

    Parameters
    ----------
    lead_shape : leading shape of the profiles; ``n_bins`` : N.
    smooth_bins : Gaussian σ of the smoothing that produced the profiles, in bins.
    min_snr : minimum windowed prominence in units of the noise σ_S at the maximum.
    window_deg : half width of the windows left and right of a maximum for its prominence.
    min_prominence : absolute minimum prominence (profile units).

    Attributes
    ----------
    smooth_bins, min_snr, min_prominence : float64 (n_rows,), one per profile row
        (``min_prominence`` is -inf throughout when no positive value was given).
    half : int64 (n_rows,), the window half widths in bins, 1 … ``h_max`` ≤ N - 1.
    """

    def __init__(
        self,
        lead_shape: tuple[int, ...],
        n_bins: int,
        smooth_bins: float | np.ndarray = 1.0,
        min_snr: float | np.ndarray = 8.0,
        window_deg: float | np.ndarray = 15.0,
        min_prominence: float | np.ndarray = 0.0,
    ):
        self.lead_shape = tuple(lead_shape)
        self.n_bins = n = int(n_bins)
        n_rows = int(np.prod(self.lead_shape)) if self.lead_shape else 1
        n_per = self.lead_shape[-1] if self.lead_shape else 1
        self.n_rows = n_rows
        self.width = 360.0 / n

        def per_row(value) -> np.ndarray:
            a = np.asarray(value, dtype=np.float64).reshape(-1)
            if a.size == 1:
                return np.full(n_rows, float(a[0]))
            if a.size != n_per:
                raise ValueError("Per-profile parameters need one value per profile along the last leading axis.")
            return np.tile(a, n_rows // n_per)

        self.smooth_bins = per_row(smooth_bins)
        self.min_snr = per_row(min_snr)
        prom = per_row(min_prominence)
        self.min_prominence = prom if np.any(prom > 0) else np.full(n_rows, -np.inf)
        half = np.maximum(1, np.round(per_row(window_deg) / self.width).astype(np.int64))
        self.h_max = int(min(half.max(), n - 1))
        self.half = np.minimum(half, self.h_max)

    def find(self, azimuth_deg: np.ndarray, smoothed: SmoothedProfiles) -> list:
        """Nested lists (``lead_shape``) of :class:`RingPeak`, each list sorted by azimuth."""
        n = self.n_bins
        value = smoothed.value
        if not np.all(smoothed.valid):  # invalid bins are NaN: no comparison with them holds
            value = np.where(smoothed.valid, value, np.nan)
        s2 = np.ascontiguousarray(value, dtype=np.float64).reshape(-1, n)
        if s2.shape[0] != self.n_rows:
            raise ValueError("Profiles do not have the layout this peak search was built for.")
        sig2 = np.ascontiguousarray(smoothed.sigma, dtype=np.float64).reshape(-1, n)
        table = np.empty((self.n_rows, n // 2 + 1, PEAK_FIELDS))
        counts = np.empty(self.n_rows, dtype=np.int64)
        find_peaks(
            s2, sig2, self.min_snr, self.min_prominence, self.half, self.h_max, self.smooth_bins,
            float(azimuth_deg[0]), self.width, table, counts,
        )
        out = peak_lists(table, counts)
        if not self.lead_shape:
            return out[0]
        for size in reversed(self.lead_shape[1:]):
            out = [out[i : i + size] for i in range(0, len(out), size)]
        return out


def peak_lists(table: np.ndarray, counts: np.ndarray) -> list[list[RingPeak]]:
    """Lists of :class:`RingPeak` from a peak table (rows, ≥ max count, 5) and counts (rows,)."""
    table = table.reshape(-1, table.shape[-2], table.shape[-1])
    return [[RingPeak(*p) for p in table[r, :c].tolist()] if c else [] for r, c in enumerate(counts.ravel().tolist())]


def detect_peaks(
    azimuth_deg: np.ndarray,
    smoothed: SmoothedProfiles,
    smooth_bins: float | np.ndarray = 1.0,
    min_snr: float | np.ndarray = 8.0,
    window_deg: float | np.ndarray = 15.0,
    min_prominence: float | np.ndarray = 0.0,
) -> list:
    """Peaks of smoothed profiles (..., N); nested lists of :class:`RingPeak` by azimuth.

    ``smooth_bins``, ``min_snr``, ``window_deg`` and ``min_prominence`` are scalars or one
    value per profile along the second-to-last axis (per ring). For 1-D input the result is
    one list of peaks; for shape (A, N) a list of A lists; for (F, A, N) F lists of A lists.
    See :class:`PeakSearch` to search many profiles of the same layout.
    """
    value = smoothed.value
    search = PeakSearch(value.shape[:-1], value.shape[-1], smooth_bins, min_snr, window_deg, min_prominence)
    return search.find(azimuth_deg, smoothed)


def find_ring_peaks(
    azimuth_deg: np.ndarray,
    intensity: np.ndarray,
    weight: np.ndarray | None = None,
    n_pixels: np.ndarray | None = None,
    *,
    smooth_deg: float = 1.0,
    min_snr: float = 8.0,
    window_deg: float = 15.0,
    min_prominence: float = 0.0,
    max_peaks: int | None = None,
) -> list[RingPeak]:
    """Azimuthal peaks of one ring profile.

    Parameters
    ----------
    azimuth_deg : bin centres (N,), degrees, equally spaced over 360° (periodic).
    intensity : mean counts per pixel per bin (N,); NaN where masked.
    weight : good-pixel weights W (N,), 0 where masked (None: finite bins count 1).
    n_pixels : good pixels per bin (N,) for Poisson noise; None for a robust estimate.
    smooth_deg : Gaussian σ of the smoothing in degrees.
    min_snr : minimum windowed prominence in units of the smoothed profile's noise σ.
    window_deg : how far on each side to look for the minima that define the prominence.
    min_prominence : absolute minimum prominence (profile units).
    max_peaks : keep at most this many, the most prominent.

    Returns
    -------
    Peaks sorted by azimuth (degrees in (-180, 180]).
    """
    azimuth_deg = np.asarray(azimuth_deg, dtype=np.float64)
    n = azimuth_deg.size
    smooth_bins = smooth_deg / (360.0 / n)
    sm = smooth_profiles(intensity, weight, n_pixels, smooth_bins)
    peaks = detect_peaks(azimuth_deg, sm, smooth_bins, min_snr, window_deg, min_prominence)
    if max_peaks is not None and len(peaks) > max_peaks:
        peaks = sorted(sorted(peaks, key=lambda pk: -pk.prominence)[:max_peaks], key=lambda pk: pk.azimuth_deg)
    return peaks
