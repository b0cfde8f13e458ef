"""UV-Vis absorption spectra of CdSe reaction mixtures: MSC families and the NC exciton.

Sizing (Yu et al., Chem. Mater. 2003, 15, 2854), λ = first-exciton peak in nm::

    D(λ) = 1.6122e-9 λ⁴ − 2.6575e-6 λ³ + 1.6242e-3 λ² − 0.4277 λ + 41.57   (nm)
    ε(D) = 5857 · D^2.65                                                  (M⁻¹ cm⁻¹)

D(467 nm) = 2.075 nm, D(465 nm) = 2.06 nm, D(572 nm) = 3.57 nm. The curve is monotonic
above 286 nm.

MSC families (narrow peaks at fixed positions). A matched filter (a Ricker kernel of
σ = 4.5 nm: no response to a straight background) proposes candidates within
``tolerance_nm`` + 2 nm of each family position. All candidates are then fitted together:
Gaussians on a cubic B-spline background with knots every 20 nm (too stiff to follow a
10 nm peak, supple enough for NC bands and the continuum), by variable projection (peak
centres and widths non-linear, amplitudes and spline coefficients by weighted linear least
squares, weights 1/σ with σ from the spectrum's own second differences). A peak is an MSC
if its centre is within ``tolerance_nm`` of the family, its FWHM is 5–20 nm and its height
is ``min_snr`` standard errors and ``min_absorbance`` above the background; rejected
candidates are dropped and the rest refitted. The broad shoulders of the NCs' second and
third excitonic bands (FWHM ≥ 30 nm) fail the width test or go into the background.

NC first exciton (the longest-wavelength broad excitonic maximum). The fitted MSC peaks are
subtracted; the longest-wavelength significant minimum of a 31 nm Savitzky–Golay second
derivative above 440 nm locates the band; three Gaussians in photon energy (the first,
second and third excitonic bands, the others at least as wide as the first) plus a straight
line are fitted from 0.30 eV below to 0.60 eV above it. The first band's centre is the
exciton wavelength, its width the FWHM, and Yu's curve gives the diameter. A "band" narrower
than 18 nm, or weaker than a quarter of the fitted third band, is rejected (edges left by
MSC peaks, not NCs).

Joint band model (just-formed NCs, whose first exciton lies near the CdSe-465/437 peaks):
when the band found above lies below 505 nm, or none was found beside a 437/465 peak, the
region 395–640 nm is refitted with an NC size ensemble of excitonic Gaussians in photon
energy plus continuum, narrow Gaussians at the 403/437/465 positions and a baseline. The NC
must lower χ² by ``JOINT_MIN_DCHI2`` against the clusters alone (else no NC is reported),
a family not found before is added if it lowers χ² as much, and the exciton is the maximum
of the fitted ensemble's first band.

Wavelengths in nm, absorbance decadic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares, lsq_linear, nnls

HC_EV_NM = 1239.841984
"""h·c in eV·nm: photon energy (eV) = HC_EV_NM / wavelength (nm)."""
MIN_MSC_FWHM_NM = 5.0
"""Narrower 'peaks' are noise: MSC absorption peaks are 8–15 nm wide."""
TYPICAL_MSC_FWHM_NM = 11.0
"""Starting width of a cluster peak in the fit (the families have FWHM 8–15 nm)."""
MIN_NC_FWHM_NM = 18.0
"""The first exciton of an NC ensemble is broader than this (nm)."""
MIN_NC_BAND_RATIO = 0.25
"""The first-exciton band is at least this fraction of the fitted third band (which
absorbs the onset of the continuum); weaker 'bands' are edges left by the MSC peaks."""
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
HIDDEN_MSC_MAX_FWHM_NM = 16.0
"""Widest cluster peak looked for under an NC band (nm): the NC band itself is wider."""
HIDDEN_MSC_MIN_DCHI2 = 100.0
"""χ² drop that a cluster peak under an NC band must bring (at ``min_snr`` = 6)."""

MSC_FAMILY_NM: dict[str, float] = {
    "CdSe-350": 350.0,
    "CdSe-380": 380.0,
    "CdSe-403": 403.0,
    "CdSe-437": 437.0,
    "CdSe-465": 465.0,
}
"""Absorption maxima (nm) of the magic-size-cluster families of seed 002 (Fig. 4; the
paper also writes 382 and 467 nm for the second and last family)."""


def yu_diameter_nm(wavelength_nm: float | np.ndarray) -> float | np.ndarray:
    """CdSe NC diameter (nm) from its first-exciton wavelength (nm), Yu et al. 2003."""
    lam = np.asarray(wavelength_nm, dtype=float)
    d = (((1.6122e-9 * lam - 2.6575e-6) * lam + 1.6242e-3) * lam - 0.4277) * lam + 41.57
    return float(d) if d.ndim == 0 else d


def yu_extinction_coefficient(diameter_nm: float | np.ndarray) -> float | np.ndarray:
    """Molar extinction coefficient (M⁻¹ cm⁻¹) at the first exciton of a CdSe NC of
    ``diameter_nm`` (nm), per particle, Yu et al. 2003."""
    eps = 5857.0 * np.asarray(diameter_nm, dtype=float) ** 2.65
    return float(eps) if eps.ndim == 0 else eps


@dataclass(frozen=True)
class MscPeak:
    """A narrow absorption peak assigned to a magic-size-cluster family.

    Attributes
    ----------
    family : family name, e.g. "CdSe-437".
    wavelength_nm : fitted peak position, nm.
    fwhm_nm : fitted full width at half maximum, nm.
    absorbance : peak height above the local background (absorbance units).
    """

    family: str
    wavelength_nm: float
    fwhm_nm: float
    absorbance: float

    def as_dict(self) -> dict:
        return {"family": self.family, "wavelength_nm": self.wavelength_nm, "fwhm_nm": self.fwhm_nm,
                "absorbance": self.absorbance}


@dataclass(frozen=True)
class NcExciton:
    """First excitonic absorption of the regular nanocrystals.

    Attributes
    ----------
    wavelength_nm : position of the first-exciton band, nm.
    diameter_nm : Yu-curve diameter at that wavelength, nm.
    fwhm_nm : FWHM of the band, nm.
    """

    wavelength_nm: float
    diameter_nm: float
    fwhm_nm: float

    def as_dict(self) -> dict:
        return {"wavelength_nm": self.wavelength_nm, "diameter_nm": self.diameter_nm, "fwhm_nm": self.fwhm_nm}


@dataclass(frozen=True)
class SpectrumAnalysis:
    """MSC families and NC exciton found in one absorption spectrum."""

    msc: tuple[MscPeak, ...]
    nc: NcExciton | None

    @property
    def families(self) -> set[str]:
        return {p.family for p in self.msc}

    def as_dict(self, label: str) -> dict:
        """One entry of the ``spectra`` list of the ``msc`` RESULT.json."""
        return {"label": label, "msc": [p.as_dict() for p in self.msc],
                "nc": None if self.nc is None else self.nc.as_dict()}


class SpectrumError(ValueError):
    """A spectrum that cannot be analysed; the message is one sentence."""


@dataclass(frozen=True)
class _Grid:
    wavelength_nm: np.ndarray
    absorbance: np.ndarray
    sigma: np.ndarray
    step_nm: float


def _uniform_grid(wavelength_nm, absorbance) -> _Grid:
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
        return _Grid(lam, a, noise_sigma(a), float(np.mean(steps)))
    # Non-uniform sampling: resample at the coarsest step (no interpolated point then
    # pretends to be an independent measurement) with the noise of the original samples.
    step = float(steps.max())
    grid = np.arange(lam[0], lam[-1] + 0.5 * step, step)
    grid = grid[grid <= lam[-1]]
    return _Grid(grid, np.interp(grid, lam, a), np.interp(grid, lam, noise_sigma(a)), step)


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


def _second_derivative(grid: _Grid, width_nm: float) -> tuple[np.ndarray, np.ndarray]:
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


def _spline_basis(x: np.ndarray, knot_spacing: float) -> np.ndarray:
    """Uniform cubic B-spline basis on ``x`` with knots every ``knot_spacing`` (same units).

    B(u) = (4 − 6u² + 3|u|³)/6 for |u| < 1, (2 − |u|)³/6 for 1 ≤ |u| < 2, with
    u = (x − c_j)/spacing and centres c_j from one spacing before ``x[0]`` to one after ``x[-1]``.
    """
    n_int = max(int(math.ceil((x[-1] - x[0]) / knot_spacing)), 1)
    spacing = (x[-1] - x[0]) / n_int if x[-1] > x[0] else knot_spacing
    centres = x[0] + spacing * np.arange(-1, n_int + 2)
    u = np.abs((x[:, None] - centres[None, :]) / spacing)
    return np.where(u < 1.0, (4.0 - 6.0 * u**2 + 3.0 * u**3) / 6.0, np.where(u < 2.0, (2.0 - u) ** 3 / 6.0, 0.0))


def _gaussians(x: np.ndarray, centres: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * ((x[:, None] - centres[None, :]) / sigmas[None, :]) ** 2)


@dataclass(frozen=True)
class _PeakFit:
    centre: np.ndarray
    sigma: np.ndarray
    amplitude: np.ndarray
    amplitude_sigma: np.ndarray


def _fit_narrow_peaks(x: np.ndarray, y: np.ndarray, w: np.ndarray, centres: np.ndarray, bounds: np.ndarray,
                      knot_spacing: float, sigma_range: tuple[float, float]) -> _PeakFit:
    """Gaussians on a smooth spline background, by variable projection.

    Centres and widths are non-linear parameters; for each trial the amplitudes and the
    spline coefficients follow from weighted linear least squares (weights ``w`` = 1/σ).
    """
    spline = _spline_basis(x, knot_spacing)
    k = centres.size

    lower = np.concatenate([np.zeros(k), np.full(spline.shape[1], -np.inf)])
    upper = np.full(k + spline.shape[1], np.inf)

    def linear(theta):
        g = _gaussians(x, theta[:k], theta[k:])
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
    theta = least_squares(residual, theta0, bounds=(lo, hi), x_scale=np.concatenate([np.ones(k), s0])).x
    basis, coef = linear(theta)
    dof = max(x.size - basis.shape[1] - 2 * k, 1)
    chi2 = float(np.sum((basis @ coef - y * w) ** 2)) / dof
    cov = np.linalg.pinv(basis.T @ basis) * max(chi2, 1.0)
    return _PeakFit(theta[:k], theta[k:], coef[:k], np.sqrt(np.clip(np.diag(cov)[:k], 0.0, None)))


def _narrow_peak_response(grid: _Grid, sigma_nm: float) -> tuple[np.ndarray, np.ndarray]:
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


def _find_msc(grid: _Grid, tolerance_nm: float, max_fwhm_nm: float, min_snr: float,
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
                                        float(fit.amplitude[j])))
                profile += fit.amplitude[j] * np.exp(-0.5 * ((lam - fit.centre[j]) / fit.sigma[j]) ** 2)
            break
        cands = [c for c, ok in zip(cands, keep) if ok]
    return accepted, profile


@dataclass(frozen=True)
class _NcFit:
    exciton: NcExciton | None
    chi2: float
    msc: MscPeak | None = None
    msc_profile: np.ndarray | None = None


def _nc_window(rest: _Grid, e0: float):
    energy = HC_EV_NM / rest.wavelength_nm
    sel = (energy >= e0 - 0.30) & (energy <= e0 + 0.60)
    return sel, energy[sel], rest.absorbance[sel], 1.0 / rest.sigma[sel]


def _fit_nc(rest: _Grid, e0: float, min_absorbance: float,
            hidden: tuple[str, float, float] | None = None) -> _NcFit:
    """Three excitonic bands in photon energy + a straight line around ``e0`` (eV).

    ``hidden`` = (family, position nm, tolerance nm): also fit a narrow MSC Gaussian (in
    wavelength) at that family position, for a cluster peak buried under the NC band.
    """
    lam_all = rest.wavelength_nm
    sel, x, y, w = _nc_window(rest, e0)
    lam = HC_EV_NM / x

    def model(theta):
        # Band 1 at E1; bands 2 and 3 at E1 + Δ, at least as wide as band 1.
        amp1, e1, s1, amp2, d2_, g2, amp3, d3_, g3, c0, c1 = theta[:11]
        out = c0 + c1 * (x - e0) + amp1 * np.exp(-0.5 * ((x - e1) / s1) ** 2)
        out = out + amp2 * np.exp(-0.5 * ((x - e1 - d2_) / (s1 * g2)) ** 2)
        out = out + amp3 * np.exp(-0.5 * ((x - e1 - d3_) / (s1 * g3)) ** 2)
        if hidden is not None:
            out = out + theta[11] * np.exp(-0.5 * ((lam - theta[12]) / theta[13]) ** 2)
        return out

    top = max(float(np.ptp(y)), 1e-4)
    theta0 = [top, e0, 0.06, 0.5 * top, 0.15, 1.5, top, 0.4, 2.0, float(y.min()), 0.0]
    lo = [0.0, e0 - 0.08, 0.02, 0.0, 0.08, 1.0, 0.0, 0.2, 1.0, -np.inf, -np.inf]
    hi = [np.inf, e0 + 0.08, 0.25, np.inf, 0.35, 4.0, np.inf, 0.8, 6.0, np.inf, np.inf]
    if hidden is not None:
        _, pos, tol = hidden
        theta0 += [0.2 * top, pos, 5.0]
        lo += [0.0, pos - tol, MIN_MSC_FWHM_NM / FWHM_PER_SIGMA]
        hi += [np.inf, pos + tol, HIDDEN_MSC_MAX_FWHM_NM / FWHM_PER_SIGMA]
    theta0 = np.clip(theta0, np.array(lo) + 1e-9, np.array(hi) - 1e-9)
    fit = least_squares(lambda t: (model(t) - y) * w, theta0, bounds=(lo, hi))
    chi2 = float(np.sum(fit.fun**2))
    amp, centre, sig = fit.x[:3]
    wavelength = HC_EV_NM / centre
    fwhm_nm = wavelength**2 / HC_EV_NM * FWHM_PER_SIGMA * sig
    exciton = None
    if not (amp < min_absorbance or fwhm_nm < MIN_NC_FWHM_NM or amp < MIN_NC_BAND_RATIO * fit.x[6]
            or wavelength > lam_all[-1] - 10.0):
        exciton = NcExciton(float(wavelength), float(yu_diameter_nm(wavelength)), float(fwhm_nm))
    if hidden is None:
        return _NcFit(exciton, chi2)
    a_msc, c_msc, s_msc = fit.x[11:14]
    jac = fit.jac
    dof = max(x.size - jac.shape[1], 1)
    cov = np.linalg.pinv(jac.T @ jac) * max(chi2 / dof, 1.0)
    a_sigma = float(np.sqrt(max(cov[11, 11], 0.0)))
    peak = MscPeak(hidden[0], float(c_msc), float(FWHM_PER_SIGMA * s_msc), float(a_msc))
    profile = a_msc * np.exp(-0.5 * ((lam_all - c_msc) / s_msc) ** 2)
    return _NcFit(exciton, chi2, peak, profile) if a_sigma > 0 or a_msc == 0 else _NcFit(exciton, chi2, peak, profile)


def _find_nc(grid: _Grid, msc_profile: np.ndarray, min_snr: float, min_absorbance: float,
             known: set[str], tolerance_nm: float) -> tuple[NcExciton | None, list[MscPeak]]:
    """The longest-wavelength broad excitonic band, refined by a fit in photon energy, and
    any MSC peak of a family that the band hides (found by a joint fit)."""
    lam = grid.wavelength_nm
    rest = _Grid(lam, grid.absorbance - msc_profile, grid.sigma, grid.step_nm)
    d2, d2_sigma = _second_derivative(rest, 31.0)
    minima = _local_minima(d2)
    minima = minima[(lam[minima] >= 440.0) & (lam[minima] <= lam[-1] - 20.0)]
    minima = minima[-d2[minima] >= min_snr * d2_sigma[minima]]
    if minima.size == 0:
        return None, []
    e0 = float(HC_EV_NM / lam[int(minima[-1])])
    base = _fit_nc(rest, e0, min_absorbance)
    if base.exciton is None:
        return None, []
    exciton, hidden_peaks = base.exciton, []
    for name, pos in MSC_FAMILY_NM.items():
        # Families inside the fitted window, within two band widths of the exciton.
        if name in known or abs(pos - exciton.wavelength_nm) > 2.0 * exciton.fwhm_nm:
            continue
        if not (e0 - 0.25 <= HC_EV_NM / pos <= e0 + 0.55):
            continue
        joint = _fit_nc(rest, e0, min_absorbance, hidden=(name, pos, tolerance_nm))
        peak = joint.msc
        # A cluster peak must be needed by the data (χ² drop) and significant on its own.
        if (joint.exciton is not None and peak.absorbance >= min_absorbance
                and base.chi2 - joint.chi2 >= HIDDEN_MSC_MIN_DCHI2 * max(min_snr / 6.0, 1.0) ** 2
                and peak.fwhm_nm <= HIDDEN_MSC_MAX_FWHM_NM - 0.5):
            exciton = joint.exciton
            hidden_peaks.append(peak)
            rest = _Grid(lam, rest.absorbance - joint.msc_profile, rest.sigma, rest.step_nm)
    return exciton, hidden_peaks



# --------------------------------------------------------------------------- joint band model
# Where a cluster peak (CdSe-437/465) sits on the first exciton of just-formed NCs, the
# peak-plus-spline and second-derivative steps above cannot tell the two apart. There the
# region ≥ 395 nm is refitted with a physical model: a size ensemble of NCs whose excitonic
# bands are Gaussians in photon energy (band 1, σ = 0.04 eV, peak ∝ ε_Yu(D); bands 2 and 3
# at E1 + 0.07 + 0.13·Ec and E1 + 0.25 + 0.35·Ec, Ec = E1 − 1.74 eV) plus a soft-onset
# continuum from E1 + 0.35 eV, together with narrow Gaussians at the family positions, the
# 465 family's continuum and a baseline (offset, slope, λ⁻⁴). NC presence and each extra
# family are decided by the χ² drop they bring.
TYPICAL_FAMILY_FWHM_NM = {"CdSe-350": 8.0, "CdSe-380": 9.0, "CdSe-403": 10.0, "CdSe-437": 11.0, "CdSe-465": 12.0}
_BULK_GAP_EV = 1.74
_NC_BANDS = ((1.0, 0.04), (0.3, 0.07), (0.6, 0.12))
_NC_CONTINUUM_ONSET_EV = 0.35
_CONTINUUM_SOFTNESS_EV = 0.10
_MODEL_MIN_NM = 395.0
_MODEL_MAX_NM = 640.0
JOINT_MIN_DCHI2 = 100.0
"""χ² drop that the NC band, or a cluster peak added in the joint model, must bring."""
_YU_LAM = np.linspace(320.0, 720.0, 4001)
_YU_D = yu_diameter_nm(_YU_LAM)
_HERMITE = np.polynomial.hermite_e.hermegauss(7)


def _yu_wavelength(d: np.ndarray) -> np.ndarray:
    return np.interp(d, _YU_D, _YU_LAM)


def _nc_nodes(mean_d: float, rel_sd: float):
    x, w = _HERMITE
    d = mean_d * (1.0 + rel_sd * x)
    keep = d > 1.0
    return d[keep], w[keep] / w[keep].sum()


def _nc_columns(energy: np.ndarray, mean_d: float, rel_sd: float, want_peak: bool = False):
    """Excitonic bands (scaled so that band 1 alone peaks at 1) and continuum (peak 1) of the
    ensemble, and the wavelength of band 1's maximum."""
    d, w = _nc_nodes(mean_d, rel_sd)
    e1 = HC_EV_NM / _yu_wavelength(d)
    ec = np.maximum(e1 - _BULK_GAP_EV, 0.0)
    centres = (e1, e1 + 0.07 + 0.13 * ec, e1 + 0.25 + 0.35 * ec)
    weight = w * yu_extinction_coefficient(d)
    e = energy[:, None]
    band1 = np.exp(-0.5 * ((e - centres[0]) / _NC_BANDS[0][1]) ** 2) @ weight
    bands = band1 + sum(r * np.exp(-0.5 * ((e - c) / s) ** 2) for (r, s), c in zip(_NC_BANDS[1:], centres[1:])) @ weight
    z = (e - e1 - _NC_CONTINUUM_ONSET_EV) / _CONTINUUM_SOFTNESS_EV
    cont = (_CONTINUUM_SOFTNESS_EV * np.logaddexp(0.0, z)) @ (w * d**3)
    if not want_peak:
        top = float(band1.max())
        return bands / top, cont / max(float(cont.max()), 1e-300), None
    # band 1's maximum on a fine energy grid
    fine = np.linspace(float(e1.min()) - 0.1, float(e1.max()) + 0.1, 400)
    prof = np.exp(-0.5 * ((fine[:, None] - e1) / _NC_BANDS[0][1]) ** 2) @ weight
    i = int(np.argmax(prof))
    if 0 < i < fine.size - 1:
        a, b, c = prof[i - 1 : i + 2]
        den = a - 2 * b + c
        e_peak = fine[i] + (0.5 * (a - c) / den * (fine[1] - fine[0]) if den < 0 else 0.0)
    else:
        e_peak = fine[i]
    top = float(prof.max())
    half = fine[prof >= 0.5 * top]
    fwhm_nm = HC_EV_NM / half.min() - HC_EV_NM / half.max()
    return bands / top, cont / max(float(cont.max()), 1e-300), (float(HC_EV_NM / e_peak), float(fwhm_nm))


class _JointModel:
    def __init__(self, grid: _Grid, families: list[tuple[str, float, float]], tolerance_nm: float):
        sel = (grid.wavelength_nm >= _MODEL_MIN_NM) & (grid.wavelength_nm <= _MODEL_MAX_NM)
        self.lam = grid.wavelength_nm[sel]
        self.energy = HC_EV_NM / self.lam
        self.w = 1.0 / grid.sigma[sel]
        self.yw = grid.absorbance[sel] * self.w
        self.tol = tolerance_nm
        self.families = families  # (name, start centre, start fwhm)
        self.min_d = 1.6  # smallest NC mean diameter tried, nm
        lam = self.lam
        fixed = [np.ones_like(lam), (lam - 500.0) / 100.0, (400.0 / lam) ** 4]
        onset = HC_EV_NM / MSC_FAMILY_NM["CdSe-465"] + 0.35
        z = (self.energy - onset) / _CONTINUUM_SOFTNESS_EV
        fixed.append(np.logaddexp(0.0, z))
        self.fixed = np.column_stack(fixed)
        self.fixed_lo = np.array([-np.inf, -np.inf, 0.0, 0.0])

    def _solve(self, cols: np.ndarray, lo: np.ndarray):
        basis = cols * self.w[:, None]
        norm = np.sqrt(np.einsum("ij,ij->j", basis, basis))
        norm[norm == 0] = 1.0
        scaled = basis / norm
        try:
            coef = np.linalg.solve(scaled.T @ scaled, scaled.T @ self.yw) / norm
        except np.linalg.LinAlgError:
            coef = np.linalg.lstsq(basis, self.yw, rcond=None)[0]
        if np.any(coef < lo):
            # Non-negative least squares, free coefficients split into ± pairs.
            free = ~np.isfinite(lo)
            aug = np.column_stack([basis, -basis[:, free]])
            sol = nnls(aug, self.yw, maxiter=50 * aug.shape[1])[0]
            coef = sol[: basis.shape[1]].copy()
            coef[free] -= sol[basis.shape[1]:]
        return basis, coef

    def _columns(self, theta: np.ndarray, with_nc: bool, names: list, want_peak: bool = False):
        k = len(names)
        cs, ss = theta[:k], theta[k : 2 * k]
        cols = [self.fixed, _gaussians(self.lam, cs, ss)]
        lo = [self.fixed_lo, np.zeros(k)]
        peak_nm = None
        if with_nc:
            bands, cont, peak_nm = _nc_columns(self.energy, theta[2 * k], theta[2 * k + 1], want_peak)
            cols.append(np.column_stack([bands, cont]))
            lo.append(np.zeros(2))
        return np.column_stack(cols), np.concatenate(lo), peak_nm

    def fit(self, names: list, with_nc: bool, nc_start: list[float], free: set | None = None):
        """Returns (χ², coefficients, θ, cov of linear coefs, (nc peak nm, its FWHM nm) or None).

        Only the families in ``free`` (all by default) have their centre and width fitted;
        the others keep their starting values.
        """
        k = len(names)
        start = {n: (c, f) for n, c, f in self.families}
        c0 = [start[n][0] for n in names]
        s0 = [start[n][1] / FWHM_PER_SIGMA for n in names]
        lo = [MSC_FAMILY_NM[n] - self.tol for n in names] + [MIN_MSC_FWHM_NM / FWHM_PER_SIGMA] * k
        hi = [MSC_FAMILY_NM[n] + self.tol for n in names] + [HIDDEN_MSC_MAX_FWHM_NM / FWHM_PER_SIGMA] * k
        if with_nc:
            lo += [self.min_d, 0.005]
            hi += [4.5, 0.2]
        is_free = [free is None or n in free for n in names]
        mask = np.array(is_free + is_free + [True, True] * with_nc, dtype=bool)

        def residual_full(theta):
            cols, blo, _ = self._columns(theta, with_nc, names)
            basis, coef = self._solve(cols, blo)
            return basis @ coef - self.yw

        lo, hi = np.array(lo) + 1e-9, np.array(hi) - 1e-9
        # Coarse scan of the starting NC size (peak parameters at their starts), then one fit.
        best = None
        for d0 in (nc_start if with_nc else [None]):
            theta0 = np.clip(c0 + s0 + ([d0, 0.03] if with_nc else []), lo, hi)
            res = residual_full(theta0)
            if best is None or res @ res < best[0]:
                best = (float(res @ res), theta0)
        chi2, theta = best
        if mask.any():
            template = theta.copy()

            def residual(sub):
                template[mask] = sub
                return residual_full(template)

            r = least_squares(residual, theta[mask], bounds=(lo[mask] - 1e-9, hi[mask] + 1e-9), diff_step=1e-4,
                              max_nfev=60)
            theta = theta.copy()
            theta[mask] = r.x
            chi2 = float(2.0 * r.cost)
        cols, blo, peak_nm = self._columns(theta, with_nc, names, True)
        basis, coef = self._solve(cols, blo)
        dof = max(self.lam.size - basis.shape[1] - int(mask.sum()), 1)
        cov = np.linalg.pinv(basis.T @ basis) * max(chi2 / dof, 1.0)
        return chi2, coef, theta, cov, peak_nm


def _joint_refit(grid: _Grid, msc: list[MscPeak], nc: NcExciton | None, tolerance_nm: float,
                 min_snr: float, min_absorbance: float) -> tuple[list[MscPeak], NcExciton | None]:
    lam = grid.wavelength_nm
    if lam[0] > _MODEL_MIN_NM + 10.0 or lam[-1] < 600.0:
        return msc, nc
    found = {p.family: p for p in msc}
    in_model = [n for n, pos in MSC_FAMILY_NM.items() if pos - 8.0 >= _MODEL_MIN_NM]
    # Just-formed NCs (first exciton below 505 nm) or cluster peaks where such a band may hide.
    if (nc is None and not {"CdSe-437", "CdSe-465"} & set(found)) or (nc is not None and nc.wavelength_nm > 505.0):
        return msc, nc
    families = [(n, found[n].wavelength_nm if n in found else MSC_FAMILY_NM[n],
                 min(found[n].fwhm_nm, HIDDEN_MSC_MAX_FWHM_NM - 1.0) if n in found else TYPICAL_FAMILY_FWHM_NM[n])
                for n in in_model]
    model = _JointModel(grid, families, tolerance_nm)
    model.min_d = float(yu_diameter_nm(MSC_FAMILY_NM["CdSe-465"] + tolerance_nm))
    if nc is not None:
        starts = [float(yu_diameter_nm(x)) for x in (nc.wavelength_nm - 6.0, nc.wavelength_nm, nc.wavelength_nm + 6.0)]
    else:
        starts = [float(yu_diameter_nm(x)) for x in np.arange(470.0, 521.0, 5.0)]
    threshold = JOINT_MIN_DCHI2 * max(min_snr / 6.0, 1.0) ** 2
    # The NC band must bring a χ² drop that no set of cluster peaks can.
    names = list(in_model)
    k = len(names)
    near = {n for n in names if n in found}
    full = model.fit(names, True, starts, near)
    null = model.fit(names, False, [], near)
    j = 4 + k
    amp, amp_sigma = full[1][j], math.sqrt(max(full[3][j, j], 0.0))
    if null[0] - full[0] < threshold or amp < max(min_absorbance, min_snr * amp_sigma):
        # No NC band beside the cluster peaks: a band found above was the clusters' edge.
        return msc, None
    # Families not found so far stay only if the joint model needs them.
    keep = []
    for i, n in enumerate(names):
        if n in found:
            keep.append(n)
            continue
        amp, amp_sigma = full[1][4 + i], math.sqrt(max(full[3][4 + i, 4 + i], 0.0))
        if amp < max(min_absorbance, min_snr * amp_sigma) or FWHM_PER_SIGMA * full[2][k + i] > HIDDEN_MSC_MAX_FWHM_NM - 0.5:
            continue
        without = model.fit([m for m in names if m != n], True, [full[2][2 * k]], near)
        if without[0] - full[0] >= threshold:
            keep.append(n)
    if keep != names or keep != sorted(near, key=names.index):
        names = keep
        full = model.fit(names, True, [full[2][2 * k]])
        k = len(names)
    chi2, coef, theta, cov, (peak_nm, fwhm) = full
    out = [p for p in msc if p.family not in names]
    for i, n in enumerate(names):
        out.append(MscPeak(n, float(theta[i]), float(FWHM_PER_SIGMA * theta[k + i]), float(coef[4 + i])))
    return out, NcExciton(float(peak_nm), float(yu_diameter_nm(peak_nm)), float(fwhm))


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
    nc, hidden = _find_nc(grid, profile, min_snr, min_absorbance, {p.family for p in msc}, tolerance_nm)
    msc, nc = _joint_refit(grid, msc + hidden, nc, tolerance_nm, min_snr, min_absorbance)
    return SpectrumAnalysis(tuple(sorted(msc, key=lambda p: p.wavelength_nm)), nc)


__all__ = [
    "MSC_FAMILY_NM",
    "MscPeak",
    "NcExciton",
    "SpectrumAnalysis",
    "SpectrumError",
    "analyse_spectrum",
    "noise_sigma",
    "yu_diameter_nm",
    "yu_extinction_coefficient",
]
