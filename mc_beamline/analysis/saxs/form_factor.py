"""Sphere form factor of a SAXS curve and the structure factor it leaves, S(q) = I(q) / P(q).

A supercrystal or dense colloid of spheres scatters I(q) = c · P̄(q) · S(q) + b, with P̄
the form factor of spheres with a Gaussian radius distribution (mean R, relative spread
``polydispersity``; :func:`~mc_beamline.analysis.saxs.phases.sphere_form_factor_poly`).
S(q) tends to 1 at large q, and Bragg peaks are narrow excursions above it, so P̄ is
fitted to ln I by robust least squares (Cauchy loss: the peaks are outliers, the minima
of P̄ and the decay of the curve fix R) above ``q_min`` (where S has settled near 1):

    r_i = (ln(c P̄(q_i; R, p) + b) − ln I_i) / sqrt(δ² + (σ_i / I_i)²),    δ = 0.05

(δ the relative misfit allowed for S ≠ 1 between the peaks). Start values come from a scan
of R on a logarithmic grid and p ∈ {0.05, 0.10, 0.15}: b at each by non-negative linear
least squares of the relative residuals (grid points where that leaves no sphere are
skipped; b = 0 if all are), c as the median of (I − b) / P̄ over the points above b,
which Bragg peaks do not pull. The standard error of R is
sqrt of the diagonal of the covariance (JᵀJ)⁻¹ · Σr² / (n − 4) at the solution.

The structure factor is S = (I − b) / (c P̄) with σ_S = σ_I / (c P̄). Near the minima of
P̄, S is noisy and a reflection there may be invisible: :meth:`SphereFit.visibility`
says how much of the form factor's envelope is left at q (0 in a minimum, about 1
between minima).

Spheres in a lattice: between sharp Bragg peaks S(q) can lie decades below 1 and no
stretch of the curve has S ≈ 1, but averaged over a shell of q that holds several
reflections S is close to 1 (the peaks carry what is missing between them);
:func:`fit_shell_averaged_form_factor` fits the curve and the model averaged alike over
such shells, with R inside the range the lattice allows.

Units: q in nm⁻¹, R in nm, intensities in the curve's unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares, nnls

from mc_beamline.analysis.saxs.phases import sphere_form_factor_poly
from mc_beamline.analysis.saxs.sizes import SizeDistribution

RELATIVE_MISFIT = 0.05
"""δ: relative misfit of c P̄ + b to I allowed where S deviates from 1 between peaks."""
_PD_STARTS = (0.05, 0.10, 0.15)
MAX_POLYDISPERSITY = 0.3


@dataclass(frozen=True)
class SphereFit:
    """Polydisperse sphere form factor fitted to a SAXS curve.

    Attributes
    ----------
    radius_nm, radius_err_nm : mean radius and its standard error, nm.
    polydispersity : relative σ of the (number-weighted Gaussian) radius distribution.
    scale : c, intensity of P̄ at q = 0 (curve units).
    background : flat background b (curve units).
    q_min_nm : lower end of the fitted range, nm⁻¹.
    """

    radius_nm: float
    radius_err_nm: float
    polydispersity: float
    scale: float
    background: float
    q_min_nm: float

    def form_factor(self, q_nm: np.ndarray) -> np.ndarray:
        """c · P̄(q) (curve units)."""
        return self.scale * sphere_form_factor_poly(q_nm, self.radius_nm, self.polydispersity)[0]

    def structure_factor(self, q_nm: np.ndarray, intensity: np.ndarray,
                         sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """S(q) = (I − b) / (c P̄) and its σ."""
        p = np.maximum(self.form_factor(q_nm), 1e-300)
        return (np.asarray(intensity, float) - self.background) / p, np.asarray(sigma, float) / p

    def visibility(self, q_nm: np.ndarray) -> np.ndarray:
        """P̄(q) over the envelope of a sphere form factor, min(1, 9 / (qR)⁴): about 1
        between minima, → 0 in a minimum (a reflection there is suppressed)."""
        q = np.atleast_1d(np.asarray(q_nm, dtype=float))
        p = sphere_form_factor_poly(q.ravel(), self.radius_nm, self.polydispersity)[0].reshape(q.shape)
        envelope = np.minimum(1.0, 9.0 / np.maximum(q * self.radius_nm, 1e-9) ** 4)
        return np.clip(p / envelope, 0.0, 1.0)

    def size_distribution(self, radius_nm: np.ndarray) -> SizeDistribution:
        """The fitted Gaussian as relative volume fractions on ``radius_nm`` (nm), with the
        volume-weighted mean radius ⟨R⁴⟩/⟨R³⟩ (nm) and its error (that of R scaled)."""
        r = np.asarray(radius_nm, dtype=float)
        x, w = np.polynomial.hermite_e.hermegauss(41)
        nodes = self.radius_nm * (1.0 + self.polydispersity * x)
        ok = nodes > 0
        mean_v = float(np.sum(w[ok] * nodes[ok] ** 4) / np.sum(w[ok] * nodes[ok] ** 3))
        sd = max(self.polydispersity * self.radius_nm, 1e-3 * self.radius_nm)
        dens = np.exp(-0.5 * ((r - self.radius_nm) / sd) ** 2) * r**3 * np.gradient(r)
        frac = dens / dens.sum() if dens.sum() > 0 else dens
        return SizeDistribution(r, frac, mean_v, self.background, float("nan"),
                                self.radius_err_nm * mean_v / self.radius_nm, "sphere fit")

    def robust_cost(self, q_nm: np.ndarray, intensity: np.ndarray, sigma: np.ndarray, q_min_nm: float) -> float:
        """Σ ln(1 + r_i²) over q ≥ ``q_min_nm`` with I > 0 (r_i as in the fit): how well this
        form factor fits that part of the curve."""
        q = np.asarray(q_nm, dtype=float)
        i = np.asarray(intensity, dtype=float)
        sel = (q >= q_min_nm) & (i > 0)
        s = np.asarray(sigma, dtype=float)[sel]
        weight = 1.0 / np.sqrt(RELATIVE_MISFIT**2 + (s / i[sel]) ** 2)
        theta = [math.log(self.radius_nm), self.polydispersity, math.log(self.scale), self.background]
        return float(np.sum(np.log1p(_residual(theta, q[sel], np.log(i[sel]), weight) ** 2)))

    def as_dict(self) -> dict:
        """The ``form_factor`` object of the ``saxs`` RESULT.json."""
        return {"radius_nm": self.radius_nm, "radius_nm_err": self.radius_err_nm,
                "polydispersity": self.polydispersity}


def _residual(theta, q, ln_i, weight):
    ln_r, pd, ln_c, b = theta
    model = math.exp(ln_c) * sphere_form_factor_poly(q, math.exp(ln_r), pd, n_nodes=11)[0] + b
    return (np.log(np.maximum(model, 1e-300)) - ln_i) * weight


def _scan(q: np.ndarray, i: np.ndarray, ln_i: np.ndarray, weight: np.ndarray, free_b: bool,
          radii: np.ndarray) -> tuple | None:
    """Start values (cost, [ln R, p, ln c, b]) of least robust cost on the (R, p) grid; b by
    non-negative least squares (``free_b``; grid points where that leaves no sphere are
    skipped) or 0. None if every grid point is skipped."""
    rel_w = weight / i  # relative residuals, linear in c and b
    best = None
    for r in radii:
        for pd in _PD_STARTS:
            p = sphere_form_factor_poly(q, r, pd, n_nodes=9)[0]
            b, above = 0.0, np.ones(i.size, bool)
            if free_b:
                (c, b), _ = nnls(np.stack([p, np.ones_like(p)], axis=1) * rel_w[:, None], i * rel_w)
                above = i > 1.05 * b
                if c <= 0 or above.sum() < 10:
                    continue
            # c as the median ratio over the points above b (robust against Bragg peaks)
            ln_c = float(np.median(np.log(i[above] - b) - np.log(np.maximum(p[above], 1e-300))))
            res = _residual([math.log(r), pd, ln_c, b], q, ln_i, weight)
            cost = float(np.sum(np.log1p(res**2)))
            if best is None or cost < best[0]:
                best = (cost, [math.log(r), pd, ln_c, b])
    return best


def fit_sphere_form_factor(q_nm: np.ndarray, intensity: np.ndarray, sigma: np.ndarray, *,
                           q_min_nm: float | None = None,
                           radius_range_nm: tuple[float, float] | None = None,
                           min_radius_nm: float = 0.0) -> SphereFit | None:
    """Fit c · P̄(q; R, p) + b to the curve above ``q_min_nm`` (see the module docstring),
    with R inside ``radius_range_nm`` if given (default: 1.5/q_max to 2π/q_min), and at
    least ``min_radius_nm`` (nm) where that is inside the default range.

    Returns None where fewer than 20 points with I > 0 are left, or no radius fits.
    """
    q = np.asarray(q_nm, dtype=float)
    i = np.asarray(intensity, dtype=float)
    s = np.asarray(sigma, dtype=float)
    q_lo = float(q[0]) if q_min_nm is None else float(q_min_nm)
    sel = (q >= q_lo) & (i > 0)
    if sel.sum() < 20:
        return None
    qf, i_f, s_f = q[sel], i[sel], s[sel]
    ln_i = np.log(i_f)
    weight = 1.0 / np.sqrt(RELATIVE_MISFIT**2 + (s_f / i_f) ** 2)
    if radius_range_nm is None:
        r_lo, r_hi = max(1.5 / qf[-1], 0.3), min(2.0 * math.pi / qf[0], 100.0)
        r_lo = min(max(r_lo, min_radius_nm), r_hi)
    else:
        r_lo, r_hi = radius_range_nm
    radii = np.geomspace(r_lo, r_hi, 50)
    best = _scan(qf, i_f, ln_i, weight, True, radii) or _scan(qf, i_f, ln_i, weight, False, radii)
    theta0 = np.array(best[1])
    lo = [max(theta0[0] - 0.7, math.log(r_lo)), 0.0, -np.inf, 0.0]
    hi = [min(theta0[0] + 0.7, math.log(r_hi)), MAX_POLYDISPERSITY, np.inf, float(np.max(i_f))]
    theta0 = np.clip(theta0, np.array(lo) + 1e-9, np.array(hi) - 1e-9)
    fit = least_squares(_residual, theta0, args=(qf, ln_i, weight), bounds=(lo, hi), loss="cauchy",
                        x_scale=[0.05, 0.02, 0.1, max(theta0[3], 1e-3 * float(np.median(i_f)))], max_nfev=100)
    ln_r, pd, ln_c, b = fit.x
    resid = _residual(fit.x, qf, ln_i, weight)
    dof = max(qf.size - 4, 1)
    try:
        cov = np.linalg.pinv(fit.jac.T @ fit.jac) * float(np.sum(np.log1p(resid**2))) / dof
        ln_r_err = math.sqrt(max(float(cov[0, 0]), 0.0))
    except np.linalg.LinAlgError:
        ln_r_err = float("nan")
    radius = math.exp(ln_r)
    return SphereFit(radius, radius * ln_r_err, float(pd), math.exp(ln_c), float(b), q_lo)


def _shell_average(q: np.ndarray, y: np.ndarray, width_nm: float, at: np.ndarray) -> np.ndarray:
    """Mean of y over [q − width/2, q + width/2] at each q of ``at`` (trapezoidal integral,
    any q spacing)."""
    cum = np.r_[0.0, np.cumsum(0.5 * (y[1:] + y[:-1]) * np.diff(q))]
    return (np.interp(at + 0.5 * width_nm, q, cum) - np.interp(at - 0.5 * width_nm, q, cum)) / width_nm


def fit_shell_averaged_form_factor(q_nm: np.ndarray, intensity: np.ndarray, sigma: np.ndarray, *,
                                   q_min_nm: float, width_nm: float,
                                   radius_range_nm: tuple[float, float]) -> SphereFit | None:
    """Fit c · P̄(q; R, p) + b to the curve averaged over q windows of ``width_nm`` (nm⁻¹)
    above ``q_min_nm``, with R inside ``radius_range_nm`` (nm).

    Averaged over a shell of q that holds several reflections, the structure factor of a
    crystal is close to 1: the Bragg peaks carry the intensity missing between them. Curve
    and model are averaged alike (linear intensity) and fitted in ln by least squares with
    the relative misfit :data:`RELATIVE_MISFIT` (S averaged over a finite shell is not
    exactly 1). Start values: the least misfit on a grid of R (15 radii over the range) and
    p as in :func:`fit_sphere_form_factor`, b = 0, c the median ratio. ``sigma`` sets the relative
    weights of the windows (σ of a window mean is ignored: far below the misfit). Returns
    None where fewer than 10 windows' centres fit above ``q_min_nm`` + width / 2.
    """
    q = np.asarray(q_nm, dtype=float)
    i = np.asarray(intensity, dtype=float)
    at = q[(q >= q_min_nm + 0.5 * width_nm) & (q <= q[-1] - 0.5 * width_nm)]
    if at.size < 10:
        return None
    i_avg = _shell_average(q, i, width_nm, at)
    if np.any(i_avg <= 0):
        return None
    ln_i = np.log(i_avg)
    rel_err = _shell_average(q, np.asarray(sigma, dtype=float), width_nm, at) / i_avg
    weight = 1.0 / np.sqrt(RELATIVE_MISFIT**2 + rel_err**2)
    inside = (q >= at[0] - 0.5 * width_nm) & (q <= at[-1] + 0.5 * width_nm)
    q_in = q[inside]

    def residual(theta):
        ln_r, pd, ln_c, b = theta
        model = math.exp(ln_c) * sphere_form_factor_poly(q_in, math.exp(ln_r), pd, n_nodes=11)[0] + b
        return (np.log(np.maximum(_shell_average(q_in, model, width_nm, at), 1e-300)) - ln_i) * weight

    lo = [math.log(radius_range_nm[0]), 0.0, -np.inf, 0.0]
    hi = [math.log(radius_range_nm[1]), MAX_POLYDISPERSITY, np.inf, float(np.max(i_avg))]
    start = None
    for r in np.geomspace(*radius_range_nm, 15):
        for pd in _PD_STARTS:
            p = _shell_average(q_in, sphere_form_factor_poly(q_in, r, pd, n_nodes=9)[0], width_nm, at)
            theta = [math.log(r), pd, float(np.median(ln_i - np.log(np.maximum(p, 1e-300)))), 0.0]
            cost = float(np.sum(residual(theta) ** 2))
            if start is None or cost < start[0]:
                start = (cost, theta)
    theta0 = np.clip(start[1], np.array(lo) + 1e-9, np.array(hi) - 1e-9)
    best = least_squares(residual, theta0, bounds=(lo, hi), max_nfev=100,
                         x_scale=[0.05, 0.02, 0.1, 1e-3 * float(np.median(i_avg))])
    ln_r, pd, ln_c, b = best.x
    dof = max(at.size - 4, 1)
    try:
        cov = np.linalg.pinv(best.jac.T @ best.jac) * 2.0 * best.cost / dof
        ln_r_err = math.sqrt(max(float(cov[0, 0]), 0.0))
    except np.linalg.LinAlgError:
        ln_r_err = float("nan")
    radius = math.exp(ln_r)
    return SphereFit(radius, radius * ln_r_err, float(pd), math.exp(ln_c), float(b), float(q_min_nm))


__all__ = ["RELATIVE_MISFIT", "SphereFit", "fit_shell_averaged_form_factor", "fit_sphere_form_factor"]
