"""Peak finding on azimuthal ring profiles with masked bins and counting noise.

A profile I(φ_k) over N bins (periodic in φ) is smoothed by normalised convolution with
a periodic Gaussian kernel g, so masked bins (W = 0 or NaN) are bridged by their
neighbours and do not pull the profile down::

    S = (g ∗ W·I) / (g ∗ W),     σ_S² = (g² ∗ W²·var(I)) / (g ∗ W)²

with var(I_k) = (I_k·n_k + 1) / n_k² for the mean of n_k Poisson pixels (the +1 keeps
almost empty bins honest), or a robust scatter estimate when pixel counts are not known.
A smoothed bin is valid where g ∗ W reaches ``min_coverage`` of its typical value.

A peak is a local maximum of S whose windowed prominence, S minus the higher of the
minima of S within ``window_deg`` on either side, reaches ``min_snr`` · σ_S, and whose
two neighbouring bins are valid (a maximum on the edge of a masked region or of a partial
arc is no peak). Its azimuth is refined to a fraction of a bin by a parabola through the
three top bins. All of this is vectorised over profiles (rings, frames).

Angles in degrees, azimuths in (-180, 180].
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


@dataclass(frozen=True)
class RingPeak:
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


def poisson_variance(intensity: np.ndarray, n_pixels: np.ndarray) -> np.ndarray:
    """Variance of the per-bin mean of n Poisson pixels: (I·n + 1)/n²; 0 where n = 0."""
    n = np.asarray(n_pixels, dtype=np.float64)
    i = np.where(np.isfinite(intensity), np.maximum(intensity, 0.0), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (i * n + 1.0) / np.maximum(n, 1.0) ** 2, 0.0)


def smooth_profiles(
    intensity: np.ndarray,
    weight: np.ndarray | None = None,
    n_pixels: np.ndarray | None = None,
    smooth_bins: float | np.ndarray = 1.0,
    min_coverage: float = 0.4,
    typical_coverage: np.ndarray | float | None = None,
) -> SmoothedProfiles:
    """Gaussian normalised-convolution smoothing of periodic ring profiles.

    Parameters
    ----------
    intensity : profiles (..., N), mean counts per pixel; NaN where masked.
    weight : bin weights W in [0, 1] (None: 1 where finite).
    n_pixels : good pixels per bin, for Poisson noise; None: the robust scatter
        (1.4826·MAD) of I - S, the same for all bins of a profile.
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
    rows = [w * x, w]
    if n_pixels is not None:
        rows.append(w * w * poisson_variance(intensity, n_pixels))
    spec = np.fft.rfft(np.stack(rows), axis=-1)
    num, den = np.fft.irfft(spec[:2] * g_hat, n=n, axis=-1)
    if typical_coverage is None:
        typical_coverage = np.percentile(den, 90, axis=-1, keepdims=True)
    valid = (den >= min_coverage * np.asarray(typical_coverage)) & (den > 1e-12)
    safe_den = np.where(valid, den, 1.0)
    value = np.where(valid, num / safe_den, np.nan)
    if n_pixels is not None:
        var_num = np.fft.irfft(spec[2] * g2_hat, n=n, axis=-1)
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
    """
    s = smoothed.value
    n = s.shape[-1]
    lead = s.shape[:-1]
    n_per = lead[-1] if lead else 1
    s2 = s.reshape(-1, n)
    sig2 = smoothed.sigma.reshape(-1, n)
    v2 = np.broadcast_to(smoothed.valid, s.shape).reshape(-1, n)
    n_rows = s2.shape[0]
    width = 360.0 / n

    def per_row(value) -> np.ndarray:
        a = np.asarray(value, dtype=np.float64)
        if a.ndim == 2 and a.shape == (n_rows, 1):
            return a
        a = a.reshape(-1)
        if a.size == 1:
            return np.full((n_rows, 1), float(a[0]))
        if a.size != n_per:
            raise ValueError("Per-profile parameters need one value per profile along the second-to-last axis.")
        return np.tile(a, n_rows // n_per)[:, None]

    half = np.maximum(1, np.round(per_row(window_deg) / width).astype(np.int64))
    h_max = int(min(half.max(), n - 1))
    filled = np.where(v2, s2, np.inf)
    fp = np.concatenate([filled[:, n - h_max :], filled, filled[:, :h_max]], axis=1)
    centre = fp[:, h_max : h_max + n]
    threshold = np.maximum(per_row(min_snr) * sig2, per_row(min_prominence))  # NaN where invalid
    # cheap pre-selection: local maxima that rise enough above the profile's minimum
    floor = filled.min(axis=1, keepdims=True)
    floor[~np.isfinite(floor)] = 0.0
    cand = (
        (centre > fp[:, h_max - 1 : h_max - 1 + n])
        & (centre >= fp[:, h_max + 1 : h_max + 1 + n])
        & (centre - floor >= threshold)
        & v2
    )
    rows_i, cols = np.nonzero(cand)
    if rows_i.size:
        # windowed prominence: the top minus the higher of the minima over [i-h, i] and [i, i+h]
        k = np.arange(h_max + 1)
        outside = k[None, :] > half[rows_i]
        lo = np.where(outside, np.inf, fp[rows_i[:, None], cols[:, None] + h_max - k[None, :]]).min(axis=1)
        hi = np.where(outside, np.inf, fp[rows_i[:, None], cols[:, None] + h_max + k[None, :]]).min(axis=1)
        prom = centre[rows_i, cols] - np.maximum(lo, hi)
        keep = prom >= threshold[rows_i, cols]
        rows_i, cols, prom = rows_i[keep], cols[keep], prom[keep]
    out: list[list[RingPeak]] = [[] for _ in range(n_rows)]
    if rows_i.size:
        left = s2[rows_i, (cols - 1) % n]
        right = s2[rows_i, (cols + 1) % n]
        top = s2[rows_i, cols]
        curv = left - 2.0 * top + right
        neg = curv < 0
        safe_curv = np.where(neg, curv, -1.0)
        offset = np.clip(np.where(neg, 0.5 * (left - right) / safe_curv, 0.0), -0.5, 0.5)
        phi = np.asarray(azimuth_deg, dtype=np.float64)[cols] + offset * width
        phi = np.where(phi > 180.0, phi - 360.0, phi)
        phi = np.where(phi <= -180.0, phi + 360.0, phi)
        sb = per_row(smooth_bins)[rows_i, 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            sigma_tot2 = np.where(neg, prom / -safe_curv, np.nan)
            fwhm = FWHM_PER_SIGMA * np.sqrt(np.maximum(sigma_tot2 - sb**2, 0.0)) * width
            snr = prom / sig2[rows_i, cols]
        for r, p, h, pr, fw, sn in zip(
            rows_i.tolist(), phi.tolist(), top.tolist(), prom.tolist(), fwhm.tolist(), snr.tolist()
        ):
            out[r].append(RingPeak(p, h, pr, fw, sn))
        for lst in out:
            if len(lst) > 1:
                lst.sort(key=lambda pk: pk.azimuth_deg)
    if not lead:
        return out[0]
    for size in reversed(lead[1:]):
        out = [out[i : i + size] for i in range(0, len(out), size)]
    return out


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
