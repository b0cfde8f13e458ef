"""UV-Vis absorption spectra of CdSe reaction mixtures: MSC families and the NC exciton.

Three steps; the last decides.

Narrow-peak search (MSC candidates, and the MSCs reported when no NC band is there). A
matched filter (a Ricker kernel of σ = 4.5 nm: no response to a straight background)
proposes candidates within ``tolerance_nm`` + 2 nm of each family position of
:data:`~mc_beamline.materials.cdse.MSC_FAMILY_NM`. All candidates are fitted together:
Gaussians on a cubic B-spline background with knots every 20 nm, by variable projection
(peak centres and widths non-linear, amplitudes and spline coefficients by weighted linear
least squares, weights 1/σ with σ from the spectrum's own second differences). A peak is
kept if its centre is within ``tolerance_nm`` of the family, its FWHM is 5–20 nm and its
height is ``min_snr`` standard errors and ``min_absorbance`` above the background; rejected
candidates are dropped and the rest refitted.

Band search (where the NC first exciton is). The kept peaks are subtracted; the
longest-wavelength significant minimum of a 31 nm Savitzky–Golay second derivative above
440 nm locates the band; three Gaussians in photon energy plus a straight line, fitted from
0.30 eV below to 0.60 eV above it, refine its position (a "band" narrower than 18 nm, or
weaker than a quarter of the fitted third band, is not refined).

Whole-band model (:mod:`mc_beamline.analysis.uvvis.band_model`). Where a band was located,
the NC band is fitted over the whole spectrum as one size-distributed model, with Gaussians
at the family positions; only peaks narrower than the NC's first transition and significant
against the noise are MSCs, and the ensemble's first transition gives the exciton
wavelength, its FWHM and, by the Yu et al. sizing curve
(:func:`~mc_beamline.materials.cdse.yu_diameter_nm`), the diameter.

Wavelengths in nm, absorbance decadic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares, lsq_linear

from mc_beamline.analysis.uvvis.band_model import MIN_NC_FWHM_NM, whole_band_fit
from mc_beamline.analysis.uvvis.grid import SpectrumGrid, spline_basis
from mc_beamline.analysis.uvvis.peaks import (
    FWHM_PER_SIGMA,
    MIN_MSC_FWHM_NM,
    MscPeak,
    NcExciton,
    covariance,
    gaussians,
)
from mc_beamline.materials.cdse import HC_EV_NM, MSC_FAMILY_NM

TYPICAL_MSC_FWHM_NM = 11.0
"""Starting width of a cluster peak in the fit (the families have FWHM 8–15 nm)."""
MIN_NC_BAND_RATIO = 0.25
"""The first-exciton band is at least this fraction of the fitted third band (which
absorbs the onset of the continuum); weaker 'bands' are edges left by the MSC peaks."""


@dataclass(frozen=True)
class SpectrumAnalysis:
    """MSC families and NC exciton found in one absorption spectrum."""

    msc: tuple[MscPeak, ...]
    nc: NcExciton | None

    @property
    def families(self) -> set[str]:
        """Names of the MSC families found, e.g. {"CdSe-437"}."""
        return {p.family for p in self.msc}

    def as_dict(self, label: str) -> dict:
        """One entry of the ``spectra`` list of the ``msc`` RESULT.json."""
        return {"label": label, "msc": [p.as_dict() for p in self.msc],
                "nc": None if self.nc is None else self.nc.as_dict()}


class SpectrumError(ValueError):
    """A spectrum that cannot be analysed; the message is one sentence."""


def _uniform_grid(wavelength_nm, absorbance) -> SpectrumGrid:
    lam = np.asarray(wavelength_nm, dtype=float)
    a = np.asarray(absorbance, dtype=float)
    if lam.ndim != 1 or a.shape != lam.shape:
        raise SpectrumError("Wavelength and absorbance must be 1-D arrays of the same length.")
    if lam.size < 30:
        raise SpectrumError(f"A spectrum needs at least 30 points, this one has {lam.size}.")
    if not (np.all(np.isfinite(lam)) and np.all(np.isfinite(a))):
        raise SpectrumError("Wavelengths and absorbances must be finite numbers.")
    if np.any(np.diff(lam) <= 0):
        raise SpectrumError("Wavelengths must increase strictly.")
    steps = np.diff(lam)
    if steps.max() <= 1.01 * steps.min():
        return SpectrumGrid(lam, a, noise_sigma(a), float(np.mean(steps)))
    # Non-uniform sampling: resample at the coarsest step (no interpolated point then
    # pretends to be an independent measurement) with the noise of the original samples.
    step = float(steps.max())
    grid = np.arange(lam[0], lam[-1] + 0.5 * step, step)
    grid = grid[grid <= lam[-1]]
    return SpectrumGrid(grid, np.interp(grid, lam, a), np.interp(grid, lam, noise_sigma(a)), step)


def noise_sigma(absorbance: np.ndarray, window: int = 41) -> np.ndarray:
    """Noise σ per point of a densely sampled spectrum, from second differences.

    (A[k−1] − 2A[k] + A[k+1]) / √6 carries the σ of white noise and almost nothing of the
    smooth spectrum; σ = 1.4826 × its running median absolute value over ``window`` points.
    """
    a = np.asarray(absorbance, dtype=float)
    d2 = np.empty_like(a)
    d2[1:-1] = (a[:-2] - 2.0 * a[1:-1] + a[2:]) / math.sqrt(6.0)
    d2[0], d2[-1] = d2[1], d2[-2]
    window = min(window, a.size) | 1
    padded = np.pad(np.abs(d2), window // 2, mode="edge")
    sigma = 1.4826 * np.median(np.lib.stride_tricks.sliding_window_view(padded, window), axis=1)
    return np.maximum(sigma, max(float(np.median(sigma)) * 0.1, 1e-6))


def _second_derivative(grid: SpectrumGrid, width_nm: float) -> tuple[np.ndarray, np.ndarray]:
    """Savitzky–Golay (cubic) second derivative over ``width_nm`` and its noise σ.

    Points within half a window of either end, where the window does not fit, get 0.
    """
    size = grid.absorbance.size
    n = min(max(int(round(width_nm / grid.step_nm)) | 1, 5), size if size % 2 else size - 1)
    t = np.arange(n) - n // 2
    kernel = np.linalg.pinv(np.vander(t, 4, increasing=True))[2] * 2.0 / grid.step_nm**2
    d2 = np.zeros(size)
    d2[n // 2 : size - n // 2] = np.convolve(grid.absorbance, kernel[::-1], mode="valid")
    return d2, grid.sigma * float(np.sqrt(np.sum(kernel**2)))


def _local_minima(y: np.ndarray) -> np.ndarray:
    k = np.arange(1, y.size - 1)
    return k[(y[k] <= y[k - 1]) & (y[k] < y[k + 1])]


@dataclass(frozen=True)
class _PeakFit:
    centre: np.ndarray
    sigma: np.ndarray
    amplitude: np.ndarray
    amplitude_sigma: np.ndarray
    centre_sigma: np.ndarray


def _fit_narrow_peaks(x: np.ndarray, y: np.ndarray, w: np.ndarray, centres: np.ndarray, bounds: np.ndarray,
                      knot_spacing: float, sigma_range: tuple[float, float]) -> _PeakFit:
    """Gaussians on a smooth spline background, by variable projection.

    Centres and widths are non-linear parameters; for each trial the amplitudes and the
    spline coefficients follow from weighted linear least squares (weights ``w`` = 1/σ).
    """
    spline = spline_basis(x, knot_spacing)
    k = centres.size

    lower = np.concatenate([np.zeros(k), np.full(spline.shape[1], -np.inf)])
    upper = np.full(k + spline.shape[1], np.inf)

    def linear(theta):
        g = gaussians(x, theta[:k], theta[k:])
        basis = np.column_stack([g, spline]) * w[:, None]
        # Peak amplitudes ≥ 0 (an absorption peak), background coefficients free.
        coef = lsq_linear(basis, y * w, bounds=(lower, upper), method="bvls").x
        return basis, coef

    def residual(theta):
        basis, coef = linear(theta)
        return basis @ coef - y * w

    s0 = np.full(k, TYPICAL_MSC_FWHM_NM / FWHM_PER_SIGMA)
    lo = np.concatenate([bounds[:, 0], np.full(k, sigma_range[0])])
    hi = np.concatenate([bounds[:, 1], np.full(k, sigma_range[1])])
    theta0 = np.clip(np.concatenate([centres, s0]), lo + 1e-9, hi - 1e-9)
    sol = least_squares(residual, theta0, bounds=(lo, hi), x_scale=np.concatenate([np.ones(k), s0]))
    theta = sol.x
    basis, coef = linear(theta)
    dof = max(x.size - basis.shape[1] - 2 * k, 1)
    chi2 = float(np.sum((basis @ coef - y * w) ** 2)) / dof
    cov = np.linalg.pinv(basis.T @ basis) * max(chi2, 1.0)
    # centres: the variable-projection Jacobian (amplitudes and background follow the centres)
    cov_theta = covariance(sol.jac, chi2 * dof, dof)
    return _PeakFit(theta[:k], theta[k:], coef[:k], np.sqrt(np.clip(np.diag(cov)[:k], 0.0, None)),
                    np.sqrt(np.clip(np.diag(cov_theta)[:k], 0.0, None)))


def _narrow_peak_response(grid: SpectrumGrid, sigma_nm: float) -> tuple[np.ndarray, np.ndarray]:
    """Matched filter for narrow peaks: correlation with a Ricker (Mexican-hat) kernel.

    The kernel has zero mean and zero first moment, so a straight background gives no
    response, and it is scaled so that a Gaussian peak of height A and σ = ``sigma_nm``
    gives A. Returns the response and its noise σ (white noise of the local σ).
    """
    half = int(math.ceil(4.0 * sigma_nm / grid.step_nm))
    t = np.arange(-half, half + 1) * grid.step_nm / sigma_nm
    kernel = (1.0 - t * t) * np.exp(-0.5 * t * t)
    kernel -= kernel.mean()
    kernel /= np.sum(kernel * np.exp(-0.5 * t * t))
    response = np.convolve(grid.absorbance, kernel[::-1], mode="same")
    response[:half] = response[-half:] = 0.0
    return response, grid.sigma * float(np.sqrt(np.sum(kernel**2)))


def _find_msc(grid: SpectrumGrid, tolerance_nm: float, max_fwhm_nm: float, min_snr: float,
              min_absorbance: float) -> tuple[list[MscPeak], np.ndarray]:
    """MSC peaks and their fitted Gaussian profiles (to subtract before the NC search)."""
    lam = grid.wavelength_nm
    response, noise = _narrow_peak_response(grid, 4.5)
    maxima = _local_minima(-response)
    cands = []
    for name, pos in MSC_FAMILY_NM.items():
        if pos - 30.0 < lam[0] or pos + 30.0 > lam[-1]:
            continue
        near = maxima[np.abs(lam[maxima] - pos) <= tolerance_nm + 2.0]
        near = near[response[near] >= 0.3 * min_snr * noise[near]]  # the fit below decides
        if near.size:
            best = near[np.argmax(response[near] / noise[near])]
            cands.append((name, pos, float(lam[best])))
    accepted: list[MscPeak] = []
    profile = np.zeros_like(lam)
    while cands:
        lo = min(c[2] for c in cands) - 35.0
        hi = max(c[2] for c in cands) + 35.0
        sel = (lam >= lo) & (lam <= hi)
        x, y, w = lam[sel], grid.absorbance[sel], 1.0 / grid.sigma[sel]
        centres = np.array([c[2] for c in cands])
        bounds = np.array([[c[1] - tolerance_nm - 3.0, c[1] + tolerance_nm + 3.0] for c in cands])
        fit = _fit_narrow_peaks(x, y, w, centres, bounds, 20.0,
                                (MIN_MSC_FWHM_NM / FWHM_PER_SIGMA, 1.25 * max_fwhm_nm / FWHM_PER_SIGMA))
        keep = []
        for j, (name, pos, _) in enumerate(cands):
            fwhm = FWHM_PER_SIGMA * fit.sigma[j]
            amp, amp_sigma = fit.amplitude[j], fit.amplitude_sigma[j]
            ok = (abs(fit.centre[j] - pos) <= tolerance_nm and MIN_MSC_FWHM_NM <= fwhm <= max_fwhm_nm
                  and amp >= max(min_snr * amp_sigma, min_absorbance))
            keep.append(ok)
        if all(keep):
            for j, (name, _, _) in enumerate(cands):
                accepted.append(MscPeak(name, float(fit.centre[j]), float(FWHM_PER_SIGMA * fit.sigma[j]),
                                        float(fit.amplitude[j]), float(fit.centre_sigma[j])))
                profile += fit.amplitude[j] * np.exp(-0.5 * ((lam - fit.centre[j]) / fit.sigma[j]) ** 2)
            break
        cands = [c for c, ok in zip(cands, keep) if ok]
    return accepted, profile


def _nc_window(rest: SpectrumGrid, e0: float):
    energy = HC_EV_NM / rest.wavelength_nm
    sel = (energy >= e0 - 0.30) & (energy <= e0 + 0.60)
    return energy[sel], rest.absorbance[sel], 1.0 / rest.sigma[sel]


def _fit_nc(rest: SpectrumGrid, e0: float, min_absorbance: float) -> NcExciton | None:
    """Three excitonic bands in photon energy + a straight line around ``e0`` (eV)."""
    lam_all = rest.wavelength_nm
    x, y, w = _nc_window(rest, e0)

    def model(theta):
        # Band 1 at E1; bands 2 and 3 at E1 + Δ, at least as wide as band 1.
        amp1, e1, s1, amp2, d2_, g2, amp3, d3_, g3, c0, c1 = theta
        out = c0 + c1 * (x - e0) + amp1 * np.exp(-0.5 * ((x - e1) / s1) ** 2)
        out = out + amp2 * np.exp(-0.5 * ((x - e1 - d2_) / (s1 * g2)) ** 2)
        return out + amp3 * np.exp(-0.5 * ((x - e1 - d3_) / (s1 * g3)) ** 2)

    top = max(float(np.ptp(y)), 1e-4)
    theta0 = [top, e0, 0.06, 0.5 * top, 0.15, 1.5, top, 0.4, 2.0, float(y.min()), 0.0]
    lo = [0.0, e0 - 0.08, 0.02, 0.0, 0.08, 1.0, 0.0, 0.2, 1.0, -np.inf, -np.inf]
    hi = [np.inf, e0 + 0.08, 0.25, np.inf, 0.35, 4.0, np.inf, 0.8, 6.0, np.inf, np.inf]
    theta0 = np.clip(theta0, np.array(lo) + 1e-9, np.array(hi) - 1e-9)
    fit = least_squares(lambda t: (model(t) - y) * w, theta0, bounds=(lo, hi))
    chi2 = float(np.sum(fit.fun**2))
    err = np.sqrt(np.clip(np.diag(covariance(fit.jac, chi2, x.size - fit.x.size)), 0.0, None))
    amp, centre, sig = fit.x[:3]
    wavelength = HC_EV_NM / centre
    fwhm_nm = wavelength**2 / HC_EV_NM * FWHM_PER_SIGMA * sig
    if (amp < min_absorbance or fwhm_nm < MIN_NC_FWHM_NM or amp < MIN_NC_BAND_RATIO * fit.x[6]
            or wavelength > lam_all[-1] - 10.0):
        return None
    return NcExciton.at(wavelength, fwhm_nm, wavelength**2 / HC_EV_NM * err[1])


def _find_nc(grid: SpectrumGrid, msc_profile: np.ndarray, min_snr: float,
             min_absorbance: float) -> tuple[NcExciton | None, float | None]:
    """The longest-wavelength broad excitonic band: the exciton of a fit in photon energy
    (None where that fit finds no band) and the band's wavelength (nm; the significant
    minimum of the second derivative, or the fitted exciton), or (None, None)."""
    lam = grid.wavelength_nm
    rest = SpectrumGrid(lam, grid.absorbance - msc_profile, grid.sigma, grid.step_nm)
    d2, d2_sigma = _second_derivative(rest, 31.0)
    minima = _local_minima(d2)
    minima = minima[(lam[minima] >= 440.0) & (lam[minima] <= lam[-1] - 20.0)]
    minima = minima[-d2[minima] >= min_snr * d2_sigma[minima]]
    if minima.size == 0:
        return None, None
    band = float(lam[int(minima[-1])])
    exciton = _fit_nc(rest, HC_EV_NM / band, min_absorbance)
    return exciton, band if exciton is None else exciton.wavelength_nm


def analyse_spectrum(wavelength_nm: np.ndarray, absorbance: np.ndarray, *, tolerance_nm: float = 4.0,
                     max_msc_fwhm_nm: float = 20.0, min_snr: float = 6.0,
                     min_absorbance: float = 0.007) -> SpectrumAnalysis:
    """MSC families and the NC first exciton in one absorption spectrum.

    Parameters
    ----------
    wavelength_nm, absorbance : the spectrum (nm, increasing; decadic absorbance).
    tolerance_nm : a narrow peak belongs to a family if it lies within this many nm of
        the family position (so 382 and 467 nm count as CdSe-380 and CdSe-465).
    max_msc_fwhm_nm : widest peak accepted as an MSC (their FWHM is 8–15 nm; NC bands are
        several times wider).
    min_snr : significance of a peak (second derivative and fitted height) in noise σ.
    min_absorbance : smallest peak height reported, absorbance units.

    Raises
    ------
    SpectrumError
        If the arrays are unusable (too short, not finite, wavelengths not increasing).
    """
    grid = _uniform_grid(wavelength_nm, absorbance)
    msc, profile = _find_msc(grid, tolerance_nm, max_msc_fwhm_nm, min_snr, min_absorbance)
    nc, band_nm = _find_nc(grid, profile, min_snr, min_absorbance)
    msc, nc = whole_band_fit(grid, msc, nc, band_nm, tolerance_nm, min_snr, min_absorbance)
    return SpectrumAnalysis(tuple(sorted(msc, key=lambda p: p.wavelength_nm)), nc)


__all__ = [
    "MscPeak",
    "NcExciton",
    "SpectrumAnalysis",
    "SpectrumError",
    "analyse_spectrum",
    "noise_sigma",
]
