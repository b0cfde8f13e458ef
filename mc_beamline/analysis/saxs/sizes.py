"""SAXS of a reaction mixture: size distribution of small spheres and lamellar mesophases.

Size distribution. I(q) is fitted on a logarithmic radius grid r_j as

    I(q) = Σ_j x_j · V_j · P(q r_j) + b + c · q⁻⁴,    x_j, b, c ≥ 0

with P the sphere form factor and V_j = 4/3 π r_j³, so x_j is proportional to the volume
fraction of spheres of radius r_j (the contrast is a common factor); b is a flat
background and the Porod term c·q⁻⁴ absorbs scattering from structures larger than the
grid (precursor aggregates at q < 1 nm⁻¹). The fit minimises

    Σ_i ((model_i − I_i)/σ_i)² + λ² · Σ_j (x_{j−1} − 2 x_j + x_{j+1})²   (x = 0 off the grid)

by non-negative least squares on the stacked system (Tikhonov regularisation of the
curvature of the distribution). λ is the largest value on a logarithmic ladder whose χ²
exceeds the least-regularised χ² by no more than 2·sqrt(2·N) (a statistically
insignificant loss of fit, N data points). Without σ, the noise is estimated from the
scatter of the data about a smooth curve. The result is reported as relative volume
fractions (Σ = 1) and the volume-weighted mean radius Σ r_j x_j / Σ x_j; its standard
error is the spread of the mean over :data:`BOOTSTRAP_SAMPLES` refits (same λ) of the
fitted curve plus Gaussian noise of the data's σ (parametric bootstrap, fixed seed).

Lamellar mesophase. Bragg peaks are found by a matched filter (a Ricker kernel of the
expected peak width: no response to a constant or straight background, little to the much
broader form-factor features), kept if ``min_snr`` noise σ high, and refined by a Gaussian
on a straight background; broad correlation maxima (wider than twice the expected width)
are not Bragg peaks. A mesophase is a set of such peaks at q1, 2 q1 (and 3 q1, if
present) within ``ratio_tol``; q1 is fitted as Σ n q_n / Σ n², d = 2π / q1.

Public functions (what the ``saxs`` command calls):

* ``size_distribution(q_nm, intensity, sigma=None) -> SizeDistribution`` with
  ``.radius_nm``, ``.volume_fraction`` (sums to 1), ``.mean_radius_nm`` and ``.as_dict()``
  (the ``size_distribution`` object of RESULT.json);
* ``detect_mesophase(q_nm, intensity, sigma=None) -> LamellarMesophase | None`` with
  ``.d_nm``, ``.peaks_q_nm`` and ``.as_dict()`` (the ``mesophase`` object), same as
  ``find_lamellar_mesophase``; ``bragg_peaks`` lists the narrow peaks themselves.
* Bad curves raise :class:`SaxsInputError` (a ValueError) with one sentence.

q in nm⁻¹, radii and d in nm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import median_filter
from scipy.optimize import least_squares, nnls


BOOTSTRAP_SAMPLES = 20
"""Refits behind the standard error of the mean radius."""


class SaxsInputError(ValueError):
    """A SAXS curve that cannot be analysed; the message is one sentence."""


@dataclass(frozen=True)
class SizeDistribution:
    """Volume-weighted size distribution of spheres from a SAXS curve.

    Attributes
    ----------
    radius_nm : radius grid, nm.
    volume_fraction : relative volume fraction at each radius (sums to 1).
    mean_radius_nm : volume-weighted mean radius, nm.
    background : fitted flat background (intensity units).
    chi2_reduced : χ² per data point of the fit.
    mean_radius_err_nm : standard error of the mean radius, nm.
    method : "nnls" (regularised fit of the curve, this module) or "sphere fit" (the
        Gaussian of a fitted form factor, for curves with a structure factor:
        :meth:`~mc_beamline.analysis.saxs.form_factor.SphereFit.size_distribution`).
    """

    radius_nm: np.ndarray
    volume_fraction: np.ndarray
    mean_radius_nm: float
    background: float
    chi2_reduced: float
    mean_radius_err_nm: float = float("nan")
    method: str = "nnls"

    def as_dict(self) -> dict:
        """The ``size_distribution`` object of the ``saxs`` RESULT.json."""
        return {"radius_nm": self.radius_nm.tolist(), "volume_fraction": self.volume_fraction.tolist(),
                "mean_radius_nm": float(self.mean_radius_nm), "mean_radius_nm_err": float(self.mean_radius_err_nm),
                "method": self.method}


@dataclass(frozen=True)
class LamellarMesophase:
    """A lamellar mesophase: period d (nm) and the Bragg peaks (nm⁻¹) that index it."""

    d_nm: float
    peaks_q_nm: tuple[float, ...]

    def as_dict(self) -> dict:
        """The ``mesophase`` object of the ``saxs`` RESULT.json."""
        return {"d_nm": float(self.d_nm), "peaks_q_nm": [float(q) for q in self.peaks_q_nm]}


def _checked(q_nm, intensity, sigma) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    q = np.asarray(q_nm, dtype=float)
    i = np.asarray(intensity, dtype=float)
    if q.ndim != 1 or i.shape != q.shape:
        raise SaxsInputError("q and I must be 1-D arrays of the same length.")
    if q.size < 20:
        raise SaxsInputError(f"A SAXS curve needs at least 20 points, this one has {q.size}.")
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(i))):
        raise SaxsInputError("q and I must be finite numbers (no NaN or infinity).")
    if np.any(q <= 0) or np.any(np.diff(q) <= 0):
        raise SaxsInputError("q must be positive and strictly increasing.")
    s = None
    if sigma is not None:
        s = np.asarray(sigma, dtype=float)
        if s.shape != q.shape or not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise SaxsInputError("sigma must be positive finite numbers, one per q.")
    return q, i, s


def estimate_noise(intensity: np.ndarray, window: int = 31) -> np.ndarray:
    """Noise σ per point from second differences: (I[k−1] − 2 I[k] + I[k+1]) / √6 has the
    σ of white noise and almost none of a densely sampled smooth curve; 1.4826 × their
    running median absolute value over ``window`` points."""
    i = np.asarray(intensity, dtype=float)
    d2 = np.empty_like(i)
    d2[1:-1] = (i[:-2] - 2.0 * i[1:-1] + i[2:]) / math.sqrt(6.0)
    d2[0], d2[-1] = d2[1], d2[-2]
    sigma = 1.4826 * median_filter(np.abs(d2), size=window, mode="nearest")
    floor = max(float(np.median(sigma)) * 0.05, np.finfo(float).tiny)
    return np.maximum(sigma, floor)


def _sphere_kernel(q: np.ndarray, r: np.ndarray) -> np.ndarray:
    x = q[:, None] * r[None, :]
    f = 3.0 * (np.sin(x) - x * np.cos(x)) / x**3
    return (4.0 / 3.0 * math.pi * r**3)[None, :] * f * f


def size_distribution(q_nm: np.ndarray, intensity: np.ndarray, sigma: np.ndarray | None = None, *,
                      q_min_nm: float = 0.5, radius_nm: np.ndarray | None = None) -> SizeDistribution:
    """Volume-weighted sphere size distribution from I(q) by regularised NNLS.

    Parameters
    ----------
    q_nm, intensity, sigma : the curve (q in nm⁻¹, σ optional).
    q_min_nm : points below this q are not fitted (precursor structure lives there).
    radius_nm : radius grid (nm); default 60 radii, log-spaced from 2/q_max (smaller
        spheres scatter almost flat up to q_max and cannot be told from the background)
        to min(π/q_min, 8 nm).

    Raises
    ------
    SaxsInputError
        If the curve is unusable or nothing above ``q_min_nm`` is left to fit.
    """
    q, i, s = _checked(q_nm, intensity, sigma)
    if s is None:
        s = estimate_noise(i)
    keep = q >= q_min_nm
    if keep.sum() < 20:
        raise SaxsInputError(f"Fewer than 20 points lie above q = {q_min_nm:g} nm⁻¹ for the size fit.")
    q, i, s = q[keep], i[keep], s[keep]
    if radius_nm is None:
        r = np.geomspace(2.0 / q[-1], min(math.pi / q[0], 8.0), 60)
    else:
        r = np.asarray(radius_nm, dtype=float)
    kernel = _sphere_kernel(q, r)
    columns = np.column_stack([kernel, np.ones_like(q), q**-4.0])
    a = columns / s[:, None]
    norms = np.linalg.norm(a, axis=0)
    a = a / norms
    b = i / s
    n_r = r.size
    # Second differences with x = 0 beyond both ends of the grid: the distribution must
    # fade out inside the grid instead of piling up at its edges.
    curvature = np.zeros((n_r, a.shape[1]))
    idx = np.arange(n_r)
    curvature[idx, idx] = -2.0
    curvature[idx[1:], idx[:-1]] = 1.0
    curvature[idx[:-1], idx[1:]] = 1.0
    curvature[:, :n_r] /= norms[None, :n_r]  # regularise the physical x_j, not the scaled ones
    curvature /= np.linalg.norm(curvature[:, :n_r], axis=1, keepdims=True).mean()
    scale = np.linalg.norm(a[:, :n_r], ord=2)
    threshold = None
    best = None
    rhs_zero = np.zeros(n_r)
    for lam in scale * np.geomspace(1e-6, 1.0, 19):
        coef, _ = nnls(np.vstack([a, lam * curvature]), np.concatenate([b, rhs_zero]), maxiter=50 * a.shape[1])
        chi2 = float(np.sum((a @ coef - b) ** 2))
        if threshold is None:
            threshold = chi2 + 2.0 * math.sqrt(2.0 * q.size)
        if chi2 > threshold:
            break
        best = (coef, chi2, lam)
    coef, chi2, lam = best
    x = coef / norms
    vol = x[:n_r]
    total = vol.sum()
    if total <= 0:
        raise SaxsInputError("No sphere scattering above the background was found in the curve.")
    frac = vol / total
    stacked = np.vstack([a, lam * curvature])
    rng = np.random.default_rng(0)
    means = []
    for _ in range(BOOTSTRAP_SAMPLES):  # the weighted data have unit σ
        c_b, _ = nnls(stacked, np.concatenate([a @ coef + rng.standard_normal(q.size), rhs_zero]),
                      maxiter=50 * a.shape[1])
        v_b = (c_b / norms)[:n_r]
        if v_b.sum() > 0:
            means.append(float(np.sum(r * v_b) / v_b.sum()))
    err = float(np.std(means, ddof=1)) if len(means) > 1 else float("nan")
    return SizeDistribution(r, frac, float(np.sum(r * frac)), float(x[n_r]), chi2 / q.size, err)


def _uniform(q: np.ndarray, values: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    grid = np.arange(q[0], q[-1] + 0.5 * step, step)
    grid = grid[grid <= q[-1]]
    return grid, np.interp(grid, q, values)


def bragg_peaks(q_nm: np.ndarray, intensity: np.ndarray, sigma: np.ndarray | None = None, *,
                min_snr: float = 6.0, peak_fwhm_nm: float = 0.06,
                max_fwhm_nm: float | None = None) -> list[tuple[float, float]]:
    """Narrow (Bragg-like) peaks in a SAXS curve: [(q (nm⁻¹), height above background)].

    A matched filter finds them: the curve is correlated with a Ricker (Mexican-hat)
    kernel of σ = ``peak_fwhm_nm`` / 2.3548, which has zero mean and zero first moment (no
    response to a constant or a straight background, little to form-factor wiggles that are
    much broader) and is scaled so that a Gaussian peak of that width and height A gives A.
    Its noise σ follows from the per-point σ (given, or estimated from the data). Local
    maxima at least ``min_snr`` σ high are refined by a least-squares Gaussian on a straight
    background (±6 σ around them); peaks wider than ``max_fwhm_nm`` (default twice
    ``peak_fwhm_nm``) are dropped: broad correlation maxima are not Bragg peaks.
    """
    if max_fwhm_nm is None:
        max_fwhm_nm = 2.0 * peak_fwhm_nm
    q, i, s = _checked(q_nm, intensity, sigma)
    if s is None:
        s = estimate_noise(i)
    step = float(np.median(np.diff(q)))
    grid, ig = _uniform(q, i, step)
    _, sg = _uniform(q, s, step)
    width = max(peak_fwhm_nm / 2.3548, step)
    half = int(math.ceil(4.0 * width / step))
    if grid.size < 2 * half + 5:
        return []
    t = np.arange(-half, half + 1) * step / width
    kernel = (1.0 - t * t) * np.exp(-0.5 * t * t)
    kernel -= kernel.mean()
    kernel /= np.sum(kernel * np.exp(-0.5 * t * t))
    response = np.correlate(ig, kernel, mode="same")
    noise = np.sqrt(np.convolve(sg**2, kernel[::-1] ** 2, mode="same"))
    response[:half] = response[-half:] = 0.0
    snr = response / noise
    k = np.arange(1, grid.size - 1)
    maxima = k[(snr[k] >= min_snr) & (response[k] >= response[k - 1]) & (response[k] > response[k + 1])]
    peaks = []
    for m in maxima:
        fitted = _fit_gaussian_peak(grid, ig, sg, float(grid[m]), width)
        if fitted is None:
            continue
        centre, height, sig = fitted
        if 2.3548 * sig <= max_fwhm_nm and abs(centre - grid[m]) <= 2.0 * width:
            peaks.append((centre, height))
    return peaks


def _fit_gaussian_peak(q: np.ndarray, i: np.ndarray, s: np.ndarray, q0: float,
                       width: float) -> tuple[float, float, float] | None:
    """Gaussian + straight line fitted to the points within ±6·``width`` of ``q0``."""
    sel = np.abs(q - q0) <= 6.0 * width
    if sel.sum() < 6:
        return None
    x, y, w = q[sel], i[sel], 1.0 / s[sel]

    def residual(theta):
        a, c, sig, b0, b1 = theta
        return (a * np.exp(-0.5 * ((x - c) / sig) ** 2) + b0 + b1 * (x - q0) - y) * w

    a0 = float(y.max() - 0.5 * (y[0] + y[-1]))
    theta0 = [max(a0, 1e-12), q0, width, float(min(y[0], y[-1])), 0.0]
    lo = [0.0, q0 - 2.0 * width, 0.3 * width, -np.inf, -np.inf]
    hi = [np.inf, q0 + 2.0 * width, 8.0 * width, np.inf, np.inf]
    try:
        fit = least_squares(residual, theta0, bounds=(lo, hi))
    except ValueError:
        return None
    a, c, sig = fit.x[:3]
    return (float(c), float(a), float(sig)) if a > 0 else None


def find_lamellar_mesophase(q_nm: np.ndarray, intensity: np.ndarray, sigma: np.ndarray | None = None, *,
                            min_snr: float = 6.0, ratio_tol: float = 0.03,
                            peak_fwhm_nm: float = 0.06) -> LamellarMesophase | None:
    """Lamellar Bragg peaks (q1, 2 q1, and 3 q1 if present) in a SAXS curve, or None.

    Parameters
    ----------
    q_nm, intensity, sigma : the curve (q in nm⁻¹, σ optional: estimated from the data).
    min_snr : a peak stands this many noise σ above its local background (see
        :func:`bragg_peaks`).
    ratio_tol : relative tolerance on q_n / (n q1).
    peak_fwhm_nm : expected width of a Bragg peak, nm⁻¹ (sets the matched filter).

    Returns
    -------
    LamellarMesophase or None
        d = 2π / q1 (nm), q1 = Σ n q_n / Σ n² over the indexed orders, and the peak
        positions (nm⁻¹) in order.
    """
    peaks = sorted(q for q, _ in bragg_peaks(q_nm, intensity, sigma, min_snr=min_snr, peak_fwhm_nm=peak_fwhm_nm))
    if len(peaks) < 2:
        return None
    for j, q1 in enumerate(peaks):
        orders = {1: q1}
        for q2 in peaks[j + 1 :]:
            n = round(q2 / q1)
            if n in (2, 3) and abs(q2 / (n * q1) - 1.0) <= ratio_tol and n not in orders:
                orders[n] = q2
        if 2 in orders:
            ns = np.array(sorted(orders))
            qs = np.array([orders[n] for n in ns])
            q_fit = float(np.sum(ns * qs) / np.sum(ns * ns))
            return LamellarMesophase(2.0 * math.pi / q_fit, tuple(float(v) for v in qs))
    return None


def detect_mesophase(q_nm: np.ndarray, intensity: np.ndarray, sigma: np.ndarray | None = None,
                     **options) -> LamellarMesophase | None:
    """The ``mesophase`` entry of a SAXS analysis: a lamellar mesophase or None.

    Same as :func:`find_lamellar_mesophase` (``.d_nm`` in nm, ``.peaks_q_nm`` in nm⁻¹,
    ``.as_dict()`` the RESULT.json object).
    """
    return find_lamellar_mesophase(q_nm, intensity, sigma, **options)


__all__ = [
    "LamellarMesophase",
    "SaxsInputError",
    "SizeDistribution",
    "bragg_peaks",
    "detect_mesophase",
    "estimate_noise",
    "find_lamellar_mesophase",
    "size_distribution",
]
