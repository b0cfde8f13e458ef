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
own noise). The background does not depend on them, so it is projected out once; the
non-linear parameters are fitted with Kaufman's Jacobian (Gaussian derivatives analytic,
the NC columns differenced alone, their unchanged pieces reused), at most
:data:`MAX_FIT_EVALUATIONS` evaluations per fit. A family is an MSC if its fitted peak lies
within ``tolerance_nm`` of the family position, is narrower than
:data:`~mc_beamline.analysis.uvvis.peaks.HIDDEN_MSC_MAX_FWHM_NM` and than the NC's first
transition, and its height is ``min_snr`` standard errors and ``min_absorbance`` above
zero; the others are dropped and the model refitted until every peak left passes. The NCs
are reported if the ensemble lowers χ² by :data:`NC_MIN_DCHI2` against the same model
without it, its first transition is ``min_snr`` standard errors high and at least
:data:`MIN_NC_FWHM_NM` wide. The exciton is the maximum of the fitted ensemble's first
transition.

The reported standard errors of the MSC positions and of the mean diameter (carried to the
exciton wavelength through the Yu curve) come from the covariance (JᵀJ)⁻¹·max(χ²/dof, 1)
of all parameters, the linear ones included; a height's significance uses its standard
error at the fitted non-linear parameters. Wavelengths in nm, energies in eV, absorbance
decadic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy.linalg import solve_triangular
from scipy.optimize import least_squares, nnls

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
_E_STEP_EV = 0.004
MAX_FIT_EVALUATIONS = 20
"""Model evaluations per least-squares fit. The fits stop there (or once χ² changes by less
than 1e-5 of itself) whether or not the NC shape has settled: the narrow valley that the
free higher transitions leave is crept along for hundreds of evaluations for a few units of
χ², and the decisions and sizes are validated at this budget."""
_NC_DIFF_STEP = 1e-5
"""Relative step of the NC parameters in the differenced derivatives of the NC columns."""


_SIZE_NODES = np.linspace(-4.0, 4.0, 161)
"""Diameters of the ensemble in units of its spread σ_D about the mean."""


@dataclass(frozen=True)
class _Density:
    """The ensemble's first-transition energies E1 as a density on a uniform energy grid.

    Attributes
    ----------
    grid : energies, eV, step :data:`_E_STEP_EV`, reaching further than the widest line
        (4 × its σ) plus the largest offset beyond the extreme E1 on either side.
    spectrum : real FFT of the weight per grid point, of length :attr:`fft_size`.
    fft_size : FFT length (≥ the grid's; the density is zero within the padding, so a
        circular convolution wraps nothing onto it).
    """

    grid: np.ndarray
    spectrum: np.ndarray
    fft_size: int

    def broadened(self, sigma_ev: float) -> np.ndarray:
        """The density convolved with a unit-height Gaussian of ``sigma_ev`` (eV), on the grid."""
        f = scipy.fft.rfftfreq(self.fft_size, _E_STEP_EV)
        kernel = math.sqrt(2.0 * math.pi) * sigma_ev / _E_STEP_EV * np.exp(-2.0 * (math.pi * sigma_ev * f) ** 2)
        return scipy.fft.irfft(self.spectrum * kernel, self.fft_size)[: self.grid.size]


def _first_transition_density(mean_d: float, spread: float) -> _Density:
    """The density of first-transition energies of a Gaussian diameter distribution (mean
    ``mean_d`` nm, relative ``spread``) weighted by ε(D), mapped through the Yu curve."""
    x = _SIZE_NODES
    d = mean_d * (1.0 + spread * x)
    w = np.exp(-0.5 * x * x) * yu_extinction_coefficient(np.maximum(d, 1.0)) * (d > 1.0)
    e1 = HC_EV_NM / yu_wavelength_nm(np.maximum(d, 1.0))
    pad = 4.0 * _SIGMA1_BOUNDS[1] * _WIDTH_FACTOR_BOUNDS[1] + _OFFSET_BOUNDS[-1][1]
    grid = np.arange(e1.min() - pad, e1.max() + pad, _E_STEP_EV)
    pos = (e1 - grid[0]) / _E_STEP_EV
    i = np.floor(pos).astype(int)
    f = pos - i
    density = np.bincount(i, w * (1 - f), grid.size) + np.bincount(i + 1, w * f, grid.size)
    size = scipy.fft.next_fast_len(grid.size, real=True)
    return _Density(grid, scipy.fft.rfft(density, size), size)


class _NcColumns:
    """The NC columns at one spectrum's photon energies (eV), for parameters ``p`` (the mean
    D, spread, σ1, then (Δi, gi, ρi) per higher transition): the excitonic bands (first
    transition + ρi × higher ones, scaled to peak 1) and the two continuum terms.

    The pieces of recent parameters are kept (densities, transitions sampled at the
    spectrum's energies, continua): the differenced derivatives change one parameter at a
    time, and each parameter changes only some of the pieces.
    """

    _KEEP = 32

    def __init__(self, energy: np.ndarray):
        self.energy = energy
        self._kept: dict[tuple, object] = {}

    def _piece(self, key: tuple, make: Callable[[], object]):
        """The piece kept under ``key``, made (and the oldest dropped) where there is none."""
        if key not in self._kept:
            self._kept[key] = make()
            if len(self._kept) > self._KEEP:
                self._kept.pop(next(iter(self._kept)))
        return self._kept[key]

    def _transition(self, mean_d: float, spread: float, sigma_ev: float, offset_ev: float) -> np.ndarray:
        """The density broadened by ``sigma_ev``, ``offset_ev`` up, at the spectrum's energies."""
        def make():
            density = self._piece(("density", mean_d, spread), lambda: _first_transition_density(mean_d, spread))
            broadened = self._piece(("broadened", mean_d, spread, sigma_ev), lambda: density.broadened(sigma_ev))
            return np.interp(self.energy - offset_ev, density.grid, broadened)
        return self._piece(("sampled", mean_d, spread, sigma_ev, offset_ev), make)

    def _continuum(self, mean_d: float, onset_ev: float) -> np.ndarray:
        """The two continuum terms from ``onset_ev`` above the mean diameter's E1, peak 1."""
        def make():
            e_mean = HC_EV_NM / yu_wavelength_nm(mean_d)
            z = (self.energy - e_mean - onset_ev) / _CONTINUUM_SOFTNESS_EV
            soft = _CONTINUUM_SOFTNESS_EV * np.logaddexp(0.0, z)
            out = np.column_stack([soft, soft**2])
            return out / np.maximum(out.max(axis=0), 1e-300)
        return self._piece(("continuum", mean_d, onset_ev), make)

    def __call__(self, p: np.ndarray) -> np.ndarray:
        mean_d, spread, s1 = (float(v) for v in p[:3])
        bands = self._transition(mean_d, spread, s1, 0.0)
        top = bands.max()
        for i in range(len(_OFFSET_BOUNDS)):
            off, g, ratio = (float(v) for v in p[3 + 3 * i : 6 + 3 * i])
            higher = self._transition(mean_d, spread, g * s1, off)
            bands = bands + ratio * top / max(higher.max(), 1e-300) * higher
        return np.column_stack([bands / max(bands.max(), 1e-300), self._continuum(mean_d, float(p[6]))])


def _first_transition(p: np.ndarray) -> tuple[float, float]:
    """Wavelength (nm) of the maximum of the ensemble's first transition and its FWHM (nm)."""
    density = _first_transition_density(p[0], p[1])
    grid, prof = density.grid, density.broadened(p[2])
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
    """A whole-band fit: the families fitted, χ², the non-linear parameters θ (family
    centres, family σ, then the NC parameters) and the heights (family peaks, then the NC
    columns; the background is not kept), each with its standard error."""

    names: tuple[str, ...]
    with_nc: bool
    chi2: float
    theta: np.ndarray
    theta_err: np.ndarray
    coef: np.ndarray
    coef_err: np.ndarray


@dataclass(frozen=True)
class _Evaluation:
    """The model at one θ: its weighted columns with the background projected out, the
    heights (≥ 0) and the residual left after the background and those columns."""

    theta: np.ndarray
    columns: np.ndarray
    coef: np.ndarray
    residual: np.ndarray


def _nonnegative_lsq(columns: np.ndarray, y: np.ndarray) -> np.ndarray:
    """argmin ‖columns·c − y‖ over c ≥ 0, on the normal equations (columns scaled to unit
    norm); the bounded problem, where needed, on their Cholesky factor (same minimiser)."""
    gram = columns.T @ columns
    norm = np.sqrt(np.diag(gram))
    norm[norm == 0] = 1.0
    gram = gram / np.outer(norm, norm) + 1e-12 * np.eye(norm.size)
    rhs = columns.T @ y / norm
    coef = np.linalg.solve(gram, rhs)
    if np.any(coef < 0.0):
        r = np.linalg.cholesky(gram).T
        coef = nnls(r, solve_triangular(r.T, rhs, lower=True))[0]
    return coef / norm


class _WholeBandModel:
    """Least-squares model of the whole spectrum: background, family Gaussians, NC ensemble.

    The background is linear, free and the same for every θ, so it is projected out once
    (the weighted data and every column are taken orthogonal to it); what is left is a
    non-negative least-squares problem in the family and NC heights per θ, and θ is fitted
    by variable projection with the Jacobian of Kaufman (analytic for the Gaussians, the NC
    columns differenced alone).
    """

    def __init__(self, grid: SpectrumGrid, tolerance_nm: float):
        self.lam = grid.wavelength_nm
        self.energy = HC_EV_NM / self.lam
        self.w = 1.0 / grid.sigma
        self.tol = tolerance_nm
        background = spline_basis(self.lam, BACKGROUND_KNOTS_NM) * self.w[:, None]
        self.n_background = background.shape[1]
        self._q_background = np.linalg.qr(background)[0]
        self.y = self._without_background(grid.absorbance * self.w)
        self.d_bounds = _D_BOUNDS
        self.nc_columns = _NcColumns(self.energy)

    def _without_background(self, v: np.ndarray) -> np.ndarray:
        """``v`` (a vector or columns) minus its projection on the weighted background."""
        return v - self._q_background @ (self._q_background.T @ v)

    def _columns(self, theta: np.ndarray, names: tuple[str, ...], with_nc: bool) -> np.ndarray:
        """Family Gaussians, then the NC columns, unweighted."""
        k = len(names)
        g = gaussians(self.lam, theta[:k], theta[k : 2 * k])
        return np.column_stack([g, self.nc_columns(theta[2 * k :])]) if with_nc else g

    def evaluate(self, theta: np.ndarray, names: tuple[str, ...], with_nc: bool) -> _Evaluation:
        columns = self._without_background(self._columns(theta, names, with_nc) * self.w[:, None])
        coef = _nonnegative_lsq(columns, self.y)
        return _Evaluation(theta, columns, coef, columns @ coef - self.y)

    def model_derivatives(self, ev: _Evaluation, names: tuple[str, ...], with_nc: bool,
                          hi: np.ndarray) -> np.ndarray:
        """∂(columns·c)/∂θ at fixed heights c, weighted, background projected out (n × θ)."""
        theta, k = ev.theta, len(names)
        c, s = theta[:k], theta[k : 2 * k]
        u = (self.lam[:, None] - c) / s
        g = np.exp(-0.5 * u * u) * ev.coef[:k]
        derivs = [g * u / s, g * u * u / s]
        if with_nc:
            p = theta[2 * k :]
            base = self.nc_columns(p) @ ev.coef[k:]
            for i in range(p.size):
                step = _NC_DIFF_STEP * max(abs(p[i]), 1.0)
                q = p.copy()
                q[i] += step if q[i] + step <= hi[2 * k + i] else -step
                derivs.append(((self.nc_columns(q) @ ev.coef[k:] - base) / (q[i] - p[i]))[:, None])
        return self._without_background(np.column_stack(derivs) * self.w[:, None])

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
        last: list[_Evaluation] = []

        def evaluated(theta):
            if not last or not np.array_equal(last[0].theta, theta):
                last[:] = [self.evaluate(np.array(theta), names, with_nc)]
            return last[0]

        def jacobian(theta):
            # Kaufman: the derivatives with the fitted columns' span projected out
            ev = evaluated(theta)
            d = self.model_derivatives(ev, names, with_nc, hi)
            active = ev.columns[:, ev.coef > 0.0]
            if active.shape[1]:
                q = np.linalg.qr(active)[0]
                d = d - q @ (q.T @ d)
            return d

        best = min((evaluated(np.clip(t, lo + 1e-9, hi - 1e-9)) for t in starts),
                   key=lambda ev: float(ev.residual @ ev.residual))
        theta = best.theta
        if theta.size:
            theta = least_squares(lambda t: evaluated(t).residual, theta, jac=jacobian, bounds=(lo, hi),
                                  x_scale=np.maximum(0.05 * (hi - lo), 1e-3), ftol=1e-5,
                                  max_nfev=MAX_FIT_EVALUATIONS).x
        return self._finish(names, with_nc, evaluated(theta), hi)

    def _finish(self, names: tuple[str, ...], with_nc: bool, ev: _Evaluation, hi: np.ndarray) -> _Fit:
        """χ² and standard errors of all parameters (non-linear and linear) at ``ev``."""
        jac = np.column_stack([self.model_derivatives(ev, names, with_nc, hi), ev.columns])
        chi2 = float(ev.residual @ ev.residual)
        dof = ev.residual.size - self.n_background - jac.shape[1]
        err = np.sqrt(np.clip(np.diag(covariance(jac, chi2, dof)), 0.0, None))
        # heights' significance: their errors with the non-linear parameters at the optimum
        lin = covariance(ev.columns, chi2, dof)
        return _Fit(names, with_nc, chi2, ev.theta, err[: ev.theta.size], ev.coef,
                    np.sqrt(np.clip(np.diag(lin), 0.0, None)))


def _family_starts(names: tuple[str, ...], found: dict[str, MscPeak]) -> np.ndarray:
    centres = [found[n].wavelength_nm if n in found else MSC_FAMILY_NM[n] for n in names]
    fwhm = [min(found[n].fwhm_nm, HIDDEN_MSC_MAX_FWHM_NM - 1.0) if n in found else TYPICAL_FAMILY_FWHM_NM[n]
            for n in names]
    return np.array(centres + [f / FWHM_PER_SIGMA for f in fwhm])


def _accepted(fit: _Fit, nc_fwhm_nm: float, tolerance_nm: float, min_snr: float, min_absorbance: float) -> list[str]:
    """Families of ``fit`` whose peak passes the MSC tests."""
    k = len(fit.names)
    keep = []
    for i, name in enumerate(fit.names):
        fwhm = FWHM_PER_SIGMA * fit.theta[k + i]
        amp, amp_err = fit.coef[i], fit.coef_err[i]
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
    does not cover 420–600 nm, and ``msc`` alone when the model finds no NC band.
    ``tolerance_nm`` (nm), ``min_snr`` (noise σ) and ``min_absorbance`` (absorbance units)
    are those of :func:`~mc_beamline.analysis.uvvis.spectrum.analyse_spectrum`.
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
    k = len(names)
    # the same peaks without the ensemble, from their starts or where the full fit put them
    null = model.fit(names, [_family_starts(names, found), full.theta[: 2 * k]], False)
    peak_nm, fwhm_nm = _first_transition(full.theta[2 * k :])
    amp, amp_err = full.coef[k], full.coef_err[k]
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
    out = [MscPeak(n, float(full.theta[i]), float(FWHM_PER_SIGMA * full.theta[k + i]), float(full.coef[i]),
                   float(full.theta_err[i])) for i, n in enumerate(full.names)]
    # the mean diameter's error, carried to the exciton wavelength through the Yu curve
    lam_err = float(full.theta_err[2 * k]) / abs(float(yu_diameter_slope(peak_nm)))
    return out, NcExciton.at(peak_nm, fwhm_nm, lam_err)


__all__ = ["BACKGROUND_KNOTS_NM", "MAX_FIT_EVALUATIONS", "MIN_NC_FWHM_NM", "NC_MIN_DCHI2", "TYPICAL_FAMILY_FWHM_NM",
           "whole_band_fit"]
