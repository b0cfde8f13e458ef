"""Whole-band model of a CdSe absorption spectrum: the NC band first, cluster peaks as residuals.

The NC band is fitted as one size-distributed model before any narrow peak may be called a
magic-size cluster (MSC). The model, over the whole recorded range:

* an NC ensemble, Gaussian in diameter (mean D, relative spread 1.5–10 %), weighted by the
  Yu extinction coefficient ε(D): the density of first-transition energies E1 = hc/λ_Yu(D)
  on a 4 meV grid, broadened by convolution with Gaussians in photon energy. The first
  transition has the homogeneous width σ1 (0.02–0.08 eV); two higher ones lie at E1 + Δi
  with widths gi·σ1 (gi 1–4) and peak heights ρi times the first's, where Δ2 (0.10–0.30 eV,
  the 2S3/2–1Se-type transition), Δ3 (0.25–0.70 eV, 1P-type), gi and ρi are free, so that a
  band shaped unlike any one model is followed; the mean D stays within
  :data:`NC_SEARCH_NM` of the band that the band search located. An interband continuum
  rises from E1 + Δ3 (soft onset; linear and quadratic terms, heights ≥ 0);
* a smooth background: a cubic B-spline in wavelength with knots every
  :data:`BACKGROUND_KNOTS_NM` (scattering, offsets, what the continuum shapes leave over;
  too stiff to make a 16 nm peak);
* a Gaussian (in wavelength) at each MSC family position inside the range, centre within
  ``tolerance_nm`` + 3 nm of it, FWHM 5–16 nm, height ≥ 0.

The heights and the background are linear and follow from weighted least squares for every
trial of the non-linear parameters (variable projection; weights 1/σ with σ the spectrum's
own noise). A family is an MSC if its fitted peak lies within ``tolerance_nm`` of the family
position, is narrower than :data:`~mc_beamline.analysis.uvvis.peaks.HIDDEN_MSC_MAX_FWHM_NM`
and than the NC's first transition, and its height is ``min_snr`` standard errors and
``min_absorbance`` above zero; the others are dropped and the model refitted until every
peak left passes. The NCs are reported if the ensemble lowers χ² by :data:`NC_MIN_DCHI2`
against the same model without it, its first transition is ``min_snr`` standard errors
high and at least :data:`MIN_NC_FWHM_NM` wide. The exciton is the maximum of the fitted
ensemble's first transition.

The reported standard errors of the MSC positions and of the mean diameter (carried to the
exciton wavelength through the Yu curve) come from the covariance (JᵀJ)⁻¹·max(χ²/dof, 1)
of all parameters, the linear ones included; a height's significance uses its standard
error at the fitted non-linear parameters. Wavelengths in nm, energies in eV, absorbance
decadic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_triangular
from scipy.optimize import least_squares, lsq_linear

from mc_beamline.analysis.uvvis.grid import SpectrumGrid, spline_basis
from mc_beamline.analysis.uvvis.peaks import (
    FWHM_PER_SIGMA,
    HIDDEN_MSC_MAX_FWHM_NM,
    MIN_MSC_FWHM_NM,
    MscPeak,
    NcExciton,
    covariance,
    gaussians,
)
from mc_beamline.materials.cdse import (
    BULK_GAP_EV,
    HC_EV_NM,
    MSC_FAMILY_NM,
    yu_diameter_nm,
    yu_diameter_slope,
    yu_extinction_coefficient,
    yu_wavelength_nm,
)

TYPICAL_FAMILY_FWHM_NM = {"CdSe-350": 8.0, "CdSe-380": 9.0, "CdSe-403": 10.0, "CdSe-437": 11.0, "CdSe-465": 12.0}
"""Starting FWHM (nm) of a family's peak when it was not found before."""
BACKGROUND_KNOTS_NM = 50.0
"""Knot spacing of the background spline (nm)."""
NC_MIN_DCHI2 = 100.0
"""χ² drop that the NC ensemble must bring (at ``min_snr`` = 6; scaled by (min_snr/6)²)."""
NC_SEARCH_NM = 20.0
"""The fitted first transition stays within this many nm of the band search's exciton."""
MIN_NC_FWHM_NM = 18.0
"""The first transition of an NC ensemble is at least this wide (nm)."""
# Bounds of the NC parameters: mean diameter (nm), relative spread, σ1 (eV), and per higher
# transition (offset above E1 in eV, width factor).
_D_BOUNDS = (1.8, 6.0)
_SPREAD_BOUNDS = (0.015, 0.10)
_SIGMA1_BOUNDS = (0.02, 0.08)
_OFFSET_BOUNDS = ((0.10, 0.30), (0.25, 0.70))
_WIDTH_FACTOR_BOUNDS = (1.0, 4.0)
_HEIGHT_RATIO_BOUNDS = ((0.0, 1.5), (0.0, 3.0))
_NC_STARTS = [(spread, s1, 0.07, 0.13, 1.5, 0.5, 0.25, 0.35, 2.0, 1.0)
               for spread in (0.04, 0.08) for s1 in (0.025, 0.045)]
"""Starts of spread, σ1, then per higher transition (Δi = a + b·Ec with Ec = E1 − E_g of
the located band, gi, ρi)."""
_CONTINUUM_SOFTNESS_EV = 0.10
_N_NC_LINEAR = 3
_E_STEP_EV = 0.004


def _first_transition_density(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ensemble's first-transition energies E1 as a density on a uniform energy grid
    (eV): the Gaussian diameter distribution weighted by ε(D), mapped through the Yu curve.
    ``p`` = (mean D nm, relative spread, ...). Returns the grid (step :data:`_E_STEP_EV`,
    padded for the widest line) and the weight per grid point."""
    x = np.linspace(-4.0, 4.0, 161)
    d = p[0] * (1.0 + p[1] * x)
    w = np.exp(-0.5 * x * x) * yu_extinction_coefficient(np.maximum(d, 1.0)) * (d > 1.0)
    e1 = HC_EV_NM / yu_wavelength_nm(np.maximum(d, 1.0))
    pad = 4.0 * _SIGMA1_BOUNDS[1] * _WIDTH_FACTOR_BOUNDS[1] + _OFFSET_BOUNDS[-1][1]
    grid = np.arange(e1.min() - pad, e1.max() + pad, _E_STEP_EV)
    pos = (e1 - grid[0]) / _E_STEP_EV
    i = np.floor(pos).astype(int)
    f = pos - i
    density = np.bincount(i, w * (1 - f), grid.size) + np.bincount(i + 1, w * f, grid.size)
    return grid, density


def _broadened(grid: np.ndarray, density: np.ndarray, sigma_ev: float) -> np.ndarray:
    """``density`` convolved with a unit-height Gaussian of ``sigma_ev`` on ``grid``."""
    half = int(math.ceil(4.0 * sigma_ev / _E_STEP_EV))
    t = np.arange(-half, half + 1) * _E_STEP_EV
    return np.convolve(density, np.exp(-0.5 * (t / sigma_ev) ** 2), mode="same")


def _nc_columns(energy: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The ensemble's excitonic bands (first transition + ρi × higher ones, scaled to peak 1)
    and the two continuum terms, for parameters ``p`` (the mean D, spread, σ1, then (Δi, gi, ρi) per higher transition)."""
    grid, density = _first_transition_density(p)
    s1 = p[2]
    bands = np.interp(energy, grid, _broadened(grid, density, s1))
    top = bands.max()
    for i in range(len(_OFFSET_BOUNDS)):
        off, g, ratio = p[3 + 3 * i : 6 + 3 * i]
        higher = np.interp(energy - off, grid, _broadened(grid, density, g * s1))
        bands = bands + ratio * top / max(higher.max(), 1e-300) * higher
    e_mean = HC_EV_NM / yu_wavelength_nm(p[0])
    soft = _CONTINUUM_SOFTNESS_EV * np.logaddexp(0.0, (energy - e_mean - p[6]) / _CONTINUUM_SOFTNESS_EV)
    out = np.column_stack([bands, soft, soft**2])
    return out / np.maximum(out.max(axis=0), 1e-300)


def _first_transition(p: np.ndarray) -> tuple[float, float]:
    """Wavelength (nm) of the maximum of the ensemble's first transition and its FWHM (nm)."""
    grid, density = _first_transition_density(p)
    prof = _broadened(grid, density, p[2])
    i = int(np.argmax(prof))
    e_peak = grid[i]
    if 0 < i < grid.size - 1:
        a, b, c = prof[i - 1 : i + 2]
        den = a - 2 * b + c
        if den < 0:
            e_peak += 0.5 * (a - c) / den * _E_STEP_EV
    half = grid[prof >= 0.5 * prof.max()]
    return float(HC_EV_NM / e_peak), float(HC_EV_NM / half.min() - HC_EV_NM / half.max())


@dataclass(frozen=True)
class _Fit:
    names: tuple[str, ...]
    with_nc: bool
    chi2: float
    theta: np.ndarray
    theta_err: np.ndarray
    coef: np.ndarray
    coef_err: np.ndarray


class _WholeBandModel:
    """Least-squares model of the whole spectrum: background, family Gaussians, NC ensemble."""

    def __init__(self, grid: SpectrumGrid, tolerance_nm: float):
        self.lam = grid.wavelength_nm
        self.energy = HC_EV_NM / self.lam
        self.w = 1.0 / grid.sigma
        self.yw = grid.absorbance * self.w
        self.tol = tolerance_nm
        self.background = spline_basis(self.lam, BACKGROUND_KNOTS_NM)
        self.d_bounds = _D_BOUNDS

    def _columns(self, theta: np.ndarray, names: tuple[str, ...], with_nc: bool):
        k = len(names)
        cols = [self.background, gaussians(self.lam, theta[:k], theta[k : 2 * k])]
        lo = [np.full(self.background.shape[1], -np.inf), np.zeros(k)]
        if with_nc:
            cols.append(_nc_columns(self.energy, theta[2 * k :]))
            lo.append(np.zeros(_N_NC_LINEAR))
        return np.column_stack(cols), np.concatenate(lo)

    def _solve(self, basis: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """Weighted linear least squares with the lower bounds ``lo`` (0 or −inf), solved on
        the normal equations (columns scaled to unit norm)."""
        norm = np.sqrt(np.einsum("ij,ij->j", basis, basis))
        norm[norm == 0] = 1.0
        scaled = basis / norm
        gram = scaled.T @ scaled + 1e-12 * np.eye(norm.size)
        rhs = scaled.T @ self.yw
        coef = np.linalg.solve(gram, rhs)
        if np.any(coef < lo):
            # the same problem on the Cholesky factor: ‖Rx − R⁻ᵀ Aᵀy‖ = ‖Ax − y‖ + const
            r = np.linalg.cholesky(gram).T
            coef = lsq_linear(r, solve_triangular(r.T, rhs, lower=True), bounds=(lo, np.inf), method="bvls").x
        return coef / norm

    def bounds(self, names: tuple[str, ...], with_nc: bool) -> tuple[np.ndarray, np.ndarray]:
        k = len(names)
        lo = [MSC_FAMILY_NM[n] - self.tol - 3.0 for n in names] + [MIN_MSC_FWHM_NM / FWHM_PER_SIGMA] * k
        hi = [MSC_FAMILY_NM[n] + self.tol + 3.0 for n in names] + [HIDDEN_MSC_MAX_FWHM_NM / FWHM_PER_SIGMA] * k
        if with_nc:
            lo += [self.d_bounds[0], _SPREAD_BOUNDS[0], _SIGMA1_BOUNDS[0]]
            hi += [self.d_bounds[1], _SPREAD_BOUNDS[1], _SIGMA1_BOUNDS[1]]
            for off, ratio in zip(_OFFSET_BOUNDS, _HEIGHT_RATIO_BOUNDS):
                lo += [off[0], _WIDTH_FACTOR_BOUNDS[0], ratio[0]]
                hi += [off[1], _WIDTH_FACTOR_BOUNDS[1], ratio[1]]
        return np.array(lo), np.array(hi)

    def fit(self, names: tuple[str, ...], starts: list[np.ndarray], with_nc: bool) -> _Fit:
        """The best of ``starts`` (θ vectors) by χ², refined by least squares."""
        lo, hi = self.bounds(names, with_nc)

        def residual(theta):
            basis, blo = self._columns(theta, names, with_nc)
            basis = basis * self.w[:, None]
            return basis @ self._solve(basis, blo) - self.yw

        best = None
        for theta0 in starts:
            theta0 = np.clip(theta0, lo + 1e-9, hi - 1e-9)
            r = residual(theta0)
            if best is None or r @ r < best[0]:
                best = (float(r @ r), theta0)
        theta = best[1]
        if theta.size:
            theta = least_squares(residual, theta, bounds=(lo, hi), x_scale=np.maximum(0.05 * (hi - lo), 1e-3),
                                  diff_step=1e-4, max_nfev=100).x
        return self._finish(names, with_nc, theta)

    def _finish(self, names: tuple[str, ...], with_nc: bool, theta: np.ndarray) -> _Fit:
        """χ² and standard errors of all parameters (non-linear and linear) at ``theta``."""
        basis, blo = self._columns(theta, names, with_nc)
        basis = basis * self.w[:, None]
        coef = self._solve(basis, blo)
        r = basis @ coef - self.yw
        lo, hi = self.bounds(names, with_nc)
        jac = []
        for i in range(theta.size):
            h = 1e-5 * max(abs(theta[i]), 1.0)
            t = theta.copy()
            t[i] = t[i] + h if t[i] + h <= hi[i] else t[i] - h
            b2, _ = self._columns(t, names, with_nc)
            jac.append(((b2 * self.w[:, None]) @ coef - (r + self.yw)) / (t[i] - theta[i]))
        jac = np.column_stack(jac + [basis])
        chi2 = float(r @ r)
        cov = covariance(jac, chi2, r.size - jac.shape[1])
        err = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        # heights' significance: their errors with the non-linear parameters at the optimum
        lin = covariance(basis, chi2, r.size - jac.shape[1])
        return _Fit(names, with_nc, chi2, theta, err[: theta.size], coef, np.sqrt(np.clip(np.diag(lin), 0.0, None)))


def _family_starts(names: tuple[str, ...], found: dict[str, MscPeak]) -> np.ndarray:
    centres = [found[n].wavelength_nm if n in found else MSC_FAMILY_NM[n] for n in names]
    fwhm = [min(found[n].fwhm_nm, HIDDEN_MSC_MAX_FWHM_NM - 1.0) if n in found else TYPICAL_FAMILY_FWHM_NM[n]
            for n in names]
    return np.array(centres + [f / FWHM_PER_SIGMA for f in fwhm])


def _accepted(fit: _Fit, nc_fwhm_nm: float, tolerance_nm: float, min_snr: float, min_absorbance: float) -> list[str]:
    """Families of ``fit`` whose peak passes the MSC tests."""
    k = len(fit.names)
    n_bg = fit.coef.size - k - _N_NC_LINEAR * fit.with_nc
    keep = []
    for i, name in enumerate(fit.names):
        fwhm = FWHM_PER_SIGMA * fit.theta[k + i]
        amp, amp_err = fit.coef[n_bg + i], fit.coef_err[n_bg + i]
        if (abs(fit.theta[i] - MSC_FAMILY_NM[name]) <= tolerance_nm and fwhm <= HIDDEN_MSC_MAX_FWHM_NM - 0.5
                and fwhm < nc_fwhm_nm and amp >= max(min_absorbance, min_snr * amp_err)):
            keep.append(name)
    return keep


def whole_band_fit(grid: SpectrumGrid, msc: list[MscPeak], nc: NcExciton | None, band_nm: float | None,
                   tolerance_nm: float, min_snr: float, min_absorbance: float) -> tuple[list[MscPeak], NcExciton | None]:
    """Cluster peaks and NC exciton from the whole-band model.

    ``msc`` (the narrow-peak search's MSCs), ``nc`` (the band search's exciton, or None) and
    ``band_nm`` (the wavelength of the band it located, nm, or None) give the starting
    values; ``msc`` and ``nc`` come back unchanged where no band was located or the spectrum
    does not cover 420–600 nm, and ``msc`` alone when the model finds no NC band. ``tolerance_nm`` (nm), ``min_snr`` (noise σ)
    and ``min_absorbance`` (absorbance units) are those of
    :func:`~mc_beamline.analysis.uvvis.spectrum.analyse_spectrum`.
    """
    lam = grid.wavelength_nm
    if band_nm is None or lam[0] > 420.0 or lam[-1] < 600.0:
        return msc, nc
    model = _WholeBandModel(grid, tolerance_nm)
    found = {p.family: p for p in msc}
    names = tuple(n for n, pos in MSC_FAMILY_NM.items() if pos - 20.0 >= lam[0] and pos + 20.0 <= lam[-1])
    # the ensemble's first transition stays near the band that the band search found
    model.d_bounds = (max(float(yu_diameter_nm(band_nm - NC_SEARCH_NM)), _D_BOUNDS[0]),
                      min(float(yu_diameter_nm(band_nm + NC_SEARCH_NM)), _D_BOUNDS[1]))
    ec = HC_EV_NM / band_nm - BULK_GAP_EV
    starts = []
    for x in (-6.0, 0.0, 6.0):
        for spread, s1, a2, b2, g2, r2, a3, b3, g3, r3 in _NC_STARTS:
            starts.append(np.concatenate([_family_starts(names, found), [yu_diameter_nm(band_nm + x), spread, s1,
                                          a2 + b2 * ec, g2, r2, a3 + b3 * ec, g3, r3]]))
    full = model.fit(names, starts, True)
    null = model.fit(names, [_family_starts(names, found)], False)
    k = len(names)
    n_bg = model.background.shape[1]
    peak_nm, fwhm_nm = _first_transition(full.theta[2 * k :])
    amp, amp_err = full.coef[n_bg + k], full.coef_err[n_bg + k]
    threshold = NC_MIN_DCHI2 * max(min_snr / 6.0, 1.0) ** 2
    if (null.chi2 - full.chi2 < threshold or amp < max(min_absorbance, min_snr * amp_err)
            or fwhm_nm < MIN_NC_FWHM_NM):
        return msc, None
    for _ in range(len(names) + 1):
        keep = tuple(_accepted(full, fwhm_nm, tolerance_nm, min_snr, min_absorbance))
        if keep == full.names:
            break
        idx = [full.names.index(n) for n in keep]
        kk = len(full.names)
        theta = np.concatenate([full.theta[idx], full.theta[[kk + i for i in idx]], full.theta[2 * kk :]])
        full = model.fit(keep, [theta], True)
        peak_nm, fwhm_nm = _first_transition(full.theta[2 * len(keep) :])
    k = len(full.names)
    n_bg = full.coef.size - k - _N_NC_LINEAR
    out = [MscPeak(n, float(full.theta[i]), float(FWHM_PER_SIGMA * full.theta[k + i]), float(full.coef[n_bg + i]),
                   float(full.theta_err[i])) for i, n in enumerate(full.names)]
    # the mean diameter's error, carried to the exciton wavelength through the Yu curve
    lam_err = float(full.theta_err[2 * k]) / abs(float(yu_diameter_slope(peak_nm)))
    return out, NcExciton.at(peak_nm, fwhm_nm, lam_err)


__all__ = ["BACKGROUND_KNOTS_NM", "MIN_NC_FWHM_NM", "NC_MIN_DCHI2", "TYPICAL_FAMILY_FWHM_NM", "whole_band_fit"]
