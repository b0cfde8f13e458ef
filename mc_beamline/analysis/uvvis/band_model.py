"""Joint band model of just-formed CdSe NCs and the clusters whose peaks sit on their exciton.

Where a cluster peak (CdSe-437/465) sits on the first exciton of just-formed NCs, the
narrow-peak and second-derivative steps of :mod:`mc_beamline.analysis.uvvis.spectrum`
cannot tell the two apart. When the NC band found there lies below 505 nm, or none was
found beside a 437/465 peak, the region 395–640 nm is refitted with a physical model:

* a size ensemble of NCs (Gaussian in diameter, Gauss–Hermite nodes) whose excitonic bands
  are Gaussians in photon energy: band 1 at E1 = hc/λ_Yu(D), σ = 0.04 eV, peak ∝ ε_Yu(D);
  bands 2 and 3 at E1 + 0.07 + 0.13·Ec and E1 + 0.25 + 0.35·Ec (Ec = E1 − E_g, E_g the
  bulk gap), plus a soft-onset continuum from E1 + 0.35 eV;
* narrow Gaussians (in wavelength) at the 403/437/465 family positions;
* a baseline (offset, slope, λ⁻⁴) and the 465 family's continuum.

The NC must lower χ² by :data:`JOINT_MIN_DCHI2` against the clusters alone (else no NC is
reported), a family not found before is added if it lowers χ² as much, and the exciton is
the maximum of the fitted ensemble's first band. Wavelengths in nm, energies in eV,
absorbance decadic.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import least_squares, nnls

from mc_beamline.analysis.uvvis.grid import SpectrumGrid
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
"""Starting FWHM (nm) of a family's peak in the joint fit when it was not found before."""
_NC_BANDS = ((1.0, 0.04), (0.3, 0.07), (0.6, 0.12))
_NC_CONTINUUM_ONSET_EV = 0.35
_CONTINUUM_SOFTNESS_EV = 0.10
_MODEL_MIN_NM = 395.0
_MODEL_MAX_NM = 640.0
JOINT_MIN_DCHI2 = 100.0
"""χ² drop that the NC band, or a cluster peak added in the joint model, must bring."""
_HERMITE = np.polynomial.hermite_e.hermegauss(7)


def _nc_nodes(mean_d: float, rel_sd: float):
    x, w = _HERMITE
    d = mean_d * (1.0 + rel_sd * x)
    keep = d > 1.0
    return d[keep], w[keep] / w[keep].sum()


def _nc_columns(energy: np.ndarray, mean_d: float, rel_sd: float, want_peak: bool = False):
    """Excitonic bands (scaled so that band 1 alone peaks at 1) and continuum (peak 1) of the
    ensemble, and the wavelength of band 1's maximum."""
    d, w = _nc_nodes(mean_d, rel_sd)
    e1 = HC_EV_NM / yu_wavelength_nm(d)
    ec = np.maximum(e1 - BULK_GAP_EV, 0.0)
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
    """Least-squares model of 395–640 nm: baseline, family Gaussians and, optionally, an NC ensemble."""

    def __init__(self, grid: SpectrumGrid, families: list[tuple[str, float, float]], tolerance_nm: float):
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
        cols = [self.fixed, gaussians(self.lam, cs, ss)]
        lo = [self.fixed_lo, np.zeros(k)]
        peak_nm = None
        if with_nc:
            bands, cont, peak_nm = _nc_columns(self.energy, theta[2 * k], theta[2 * k + 1], want_peak)
            cols.append(np.column_stack([bands, cont]))
            lo.append(np.zeros(2))
        return np.column_stack(cols), np.concatenate(lo), peak_nm

    def fit(self, names: list, with_nc: bool, nc_start: list[float], free: set | None = None):
        """Returns (χ², coefficients, θ, cov of linear coefs, (nc peak nm, its FWHM nm) or None,
        standard errors of θ (NaN for the ones held fixed)).

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
        theta_err = np.full(theta.size, np.nan)
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
            n_lin = self.fixed.shape[1] + k + 2 * with_nc
            cov_t = covariance(r.jac, chi2, self.lam.size - n_lin - int(mask.sum()))
            theta_err[mask] = np.sqrt(np.clip(np.diag(cov_t), 0.0, None))
        cols, blo, peak_nm = self._columns(theta, with_nc, names, True)
        basis, coef = self._solve(cols, blo)
        dof = max(self.lam.size - basis.shape[1] - int(mask.sum()), 1)
        cov = np.linalg.pinv(basis.T @ basis) * max(chi2 / dof, 1.0)
        return chi2, coef, theta, cov, peak_nm, theta_err


def joint_refit(grid: SpectrumGrid, msc: list[MscPeak], nc: NcExciton | None, tolerance_nm: float,
                min_snr: float, min_absorbance: float) -> tuple[list[MscPeak], NcExciton | None]:
    """Cluster peaks and NC exciton after the joint band-model refit of 395–640 nm.

    ``msc`` and ``nc`` are what the identification found; they come back unchanged where the
    model does not apply (the spectrum does not cover 405–600 nm, an NC band above 505 nm, or
    neither an NC band nor a CdSe-437/465 peak). ``tolerance_nm`` (nm), ``min_snr`` (noise σ)
    and ``min_absorbance`` (absorbance units) are those of
    :func:`~mc_beamline.analysis.uvvis.spectrum.analyse_spectrum`.
    """
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
    chi2, coef, theta, cov, (peak_nm, fwhm), theta_err = full
    out = [p for p in msc if p.family not in names]
    for i, n in enumerate(names):
        out.append(MscPeak(n, float(theta[i]), float(FWHM_PER_SIGMA * theta[k + i]), float(coef[4 + i]),
                           float(theta_err[i])))
    # the mean diameter's error, carried to the exciton wavelength through the Yu curve
    lam_err = float(theta_err[2 * k]) / abs(float(yu_diameter_slope(peak_nm)))
    return out, NcExciton.at(peak_nm, fwhm, lam_err)


__all__ = ["JOINT_MIN_DCHI2", "TYPICAL_FAMILY_FWHM_NM", "joint_refit"]
