"""Superlattice structure from the SL–AL cross-correlation: β, c/a, bct or bcc.

Geometry (seed 000, Zaluzhnyy et al.): beam along [110] of both lattices, [001]_SL ∥ [001]_AL
up to a small misorientation ψ. In-plane angles are measured from [1-10] towards [001]:

* rock-salt atomic lattice (AL): {111} at ±θ and 180° ± θ, θ = atan(1/√2) = 35.26°;
  {200} at ±90°.
* body-centred tetragonal superlattice (SL): {112} ((1-12) family) at ±(90° - β) and
  ±(90° + β) with β = atan(c / (a√2)), the angle between [001]_SL and (1-12)_SL;
  (002) at ±90°, (1-10) at 0° and 180°. A bcc SL is c/a = 1 (β = θ).

With the CCF convention C(Δ) = <I_SL(φ) I_AL(φ + Δ)>_φ (q1 = SL, q2 = AL), a grain whose
AL {111} peak at +θ (or 180° + θ) is seen correlates with the four SL {112} peaks at

    P = {θ - 90° + β, θ - 90° - β, θ + 90° - β, θ + 90° + β}

and the mirror peak (-θ) gives -P: together the eight peaks Δ = ±(90° ± θ ± β). A common
shift -ψ̄ moves all of them. With only an arc of the AL ring on the detector the two sets
P and -P need not be equally strong, so the model has one amplitude per set.

Angles in degrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mc_beamline.materials.lattice_angles import (
    THETA_111_DEG,
    bct_beta_deg,
    c_over_a_from_beta,
)

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def wrap180(angle_deg):
    """Wrap angles (degrees) to (-180, 180]."""
    if isinstance(angle_deg, (float, int)):  # one angle: Python's float % is NumPy's np.mod, bit for bit
        a = (float(angle_deg) + 180.0) % 360.0 - 180.0
        return a + 360.0 if a <= -180.0 else a
    a = np.mod(np.asarray(angle_deg, dtype=np.float64) + 180.0, 360.0) - 180.0
    a = np.where(a <= -180.0, a + 360.0, a)
    return a if a.ndim else float(a)


def wrap90(angle_deg):
    """Wrap angles (degrees) to (-90, 90] (orientations of centrosymmetric patterns)."""
    if isinstance(angle_deg, (float, int)):  # one angle (called per peak pair in the result): no arrays
        a = (float(angle_deg) + 90.0) % 180.0 - 90.0
        return a + 180.0 if a <= -90.0 else a
    a = np.mod(np.asarray(angle_deg, dtype=np.float64) + 90.0, 180.0) - 90.0
    a = np.where(a <= -90.0, a + 180.0, a)
    return a if a.ndim else float(a)


def sl_112_angles_deg(beta_deg: float) -> np.ndarray:
    """In-plane angles of the four {112} SL reflections from [1-10]_SL: ±(90-β), ±(90+β)."""
    return wrap180(np.array([90.0 - beta_deg, 90.0 + beta_deg, -90.0 + beta_deg, -90.0 - beta_deg]))


def al_111_angles_deg() -> np.ndarray:
    """In-plane angles of the four {111} AL reflections from [1-10]_AL: ±θ, 180 ± θ."""
    t = THETA_111_DEG
    return wrap180(np.array([t, -t, 180.0 - t, -180.0 + t]))


def ccf_peak_sets_deg(beta_deg: float, theta_deg: float = THETA_111_DEG) -> tuple[np.ndarray, np.ndarray]:
    """The two sets of SL{112}–AL{111} CCF peaks (P from the +θ AL peak, and -P), degrees."""
    t, b = theta_deg, beta_deg
    p = np.array([t - 90.0 + b, t - 90.0 - b, t + 90.0 - b, t + 90.0 + b])
    return wrap180(p), wrap180(-p)


def expected_ccf_peaks_deg(c_over_a: float) -> list[float]:
    """Distinct positions ±(90 ± θ ± β) in (-180, 180], sorted (6 for bcc, 8 for bct)."""
    return model_peak_positions_deg(c_over_a, 0.0)


def _periodic_gauss(delta_deg: np.ndarray, centres: np.ndarray, sigma_deg: float) -> np.ndarray:
    d = wrap180(delta_deg[:, None] - centres[None, :])
    return np.exp(-0.5 * (d / sigma_deg) ** 2)


def model_ccf(
    delta_deg: np.ndarray,
    c_over_a: float,
    sigma_deg: float,
    offset_deg: float = 0.0,
    baseline: float = 0.0,
    amplitude_plus: float = 1.0,
    amplitude_minus: float | None = None,
) -> np.ndarray:
    """Model SL{112}–AL{111} CCF for a bct (or bcc, c/a = 1) superlattice.

    Gaussian peaks of σ ``sigma_deg`` (the SL and AL azimuthal widths and the spread of ψ
    added in quadrature) at P + ``offset_deg`` (amplitude ``amplitude_plus``) and at
    -P + ``offset_deg`` (``amplitude_minus``, default equal), on a constant ``baseline``.
    """
    delta_deg = np.asarray(delta_deg, dtype=np.float64)
    if amplitude_minus is None:
        amplitude_minus = amplitude_plus
    p, m = ccf_peak_sets_deg(bct_beta_deg(c_over_a))
    gp = _periodic_gauss(delta_deg, p + offset_deg, sigma_deg).sum(axis=1)
    gm = _periodic_gauss(delta_deg, m + offset_deg, sigma_deg).sum(axis=1)
    return baseline + amplitude_plus * gp + amplitude_minus * gm


def model_ccf_from_lattices(
    delta_deg: np.ndarray,
    sl_angles_deg: np.ndarray,
    al_angles_deg: np.ndarray,
    sigma_deg: float,
    psi_deg: float = 0.0,
    sl_weights: np.ndarray | None = None,
    al_weights: np.ndarray | None = None,
) -> np.ndarray:
    """Orientation-averaged CCF of two rings from their in-plane reflection angles.

    Every pair (SL reflection i, AL reflection j) of one grain gives a peak at
    Δ = α_j - (γ_i + ψ) with weight w_i·v_j; averaging over grain orientations keeps only
    these differences. Use it for candidate structures other than bct/bcc: pass the
    reflection angles (degrees from [1-10]) of each lattice on the two rings.
    """
    delta_deg = np.asarray(delta_deg, dtype=np.float64)
    sl = np.asarray(sl_angles_deg, dtype=np.float64) + psi_deg
    al = np.asarray(al_angles_deg, dtype=np.float64)
    ws = np.ones(sl.size) if sl_weights is None else np.asarray(sl_weights, dtype=np.float64)
    wa = np.ones(al.size) if al_weights is None else np.asarray(al_weights, dtype=np.float64)
    centres = (al[None, :] - sl[:, None]).ravel()
    weights = (ws[:, None] * wa[None, :]).ravel()
    return _periodic_gauss(delta_deg, centres, sigma_deg) @ weights


@dataclass(frozen=True)
class SuperlatticeFit:
    """Least-squares fit of :func:`model_ccf` to a measured CCF.

    Attributes
    ----------
    lattice : "bct", or "bcc" when c/a is within ``bcc_tolerance`` of 1.
    c_over_a : tetragonal distortion c/a of the adopted fit.
    beta_deg : β = atan(c/(a√2)) in degrees.
    sigma_deg : Gaussian σ of the CCF peaks, degrees.
    offset_deg : common shift of the peaks (≈ -mean ψ), degrees.
    baseline, amplitude_plus, amplitude_minus : model constants (CCF units).
    peaks_deg : the model's CCF peak positions ±(90 ± θ ± β) + offset, degrees in
        (-180, 180], sorted; peaks closer than 0.5° count once (six for bcc).
    r_squared : coefficient of determination of the adopted fit.
    c_over_a_ccf : c/a of the fit with β free (the CCF alone).
    c_over_a_ccf_error : 1σ uncertainty of ``c_over_a_ccf`` from the fit covariance.
    beta_source : "ccf" (β free) or "sl_pairs" (β fixed to a value measured from the SL
        peak pairs, the CCF choosing between β and 90° - β).
    """

    lattice: str
    c_over_a: float
    beta_deg: float
    sigma_deg: float
    offset_deg: float
    baseline: float
    amplitude_plus: float
    amplitude_minus: float
    peaks_deg: list[float] = field(default_factory=list)
    r_squared: float = float("nan")
    c_over_a_ccf: float = float("nan")
    c_over_a_ccf_error: float = float("nan")
    beta_source: str = "ccf"


def _linear_amplitudes(delta, ccf, c_over_a, sigma, offset):
    p, m = ccf_peak_sets_deg(bct_beta_deg(c_over_a))
    design = np.column_stack(
        [
            np.ones_like(delta),
            _periodic_gauss(delta, p + offset, sigma).sum(axis=1),
            _periodic_gauss(delta, m + offset, sigma).sum(axis=1),
        ]
    )
    coef, *_ = np.linalg.lstsq(design, ccf, rcond=None)
    resid = ccf - design @ coef
    return coef, float(resid @ resid)


def _refine(delta, y, x0, lower, upper, fixed_ca=None):
    """Nonlinear least squares of the model; params (c/a, σ, offset, baseline, A+, A-)."""

    def resid(params):
        if fixed_ca is None:
            ca, sigma, off, b, ap, am = params
        else:
            ca = fixed_ca
            sigma, off, b, ap, am = params
        return model_ccf(delta, ca, sigma, off, b, ap, am) - y

    if fixed_ca is not None:
        x0, lower, upper = x0[1:], lower[1:], upper[1:]
    x0 = np.clip(x0, np.array(lower) + 1e-9, np.array(upper) - 1e-9)
    from scipy.optimize import least_squares  # only for the result: not before the first frame

    sol = least_squares(resid, x0, bounds=(lower, upper), x_scale="jac")
    params = sol.x if fixed_ca is None else np.concatenate([[fixed_ca], sol.x])
    return params, sol


def fit_superlattice(
    delta_deg: np.ndarray,
    ccf: np.ndarray,
    beta_candidates_deg: list[float] | None = None,
    c_over_a_range: tuple[float, float] = (0.6, 2.4),
    sigma_guess_deg: float = 5.0,
    bcc_tolerance: float = 0.04,
) -> SuperlatticeFit:
    """Fit the bct/bcc model CCF (c/a, peak σ, offset, baseline, two amplitudes) to a CCF.

    A grid search over c/a (linear least squares for baseline and amplitudes at each c/a)
    finds the start; ``scipy.optimize.least_squares`` refines all six parameters. NaN
    values of the CCF are ignored.

    With ``beta_candidates_deg`` (e.g. β and 90° - β from :func:`~mc_beamline.analysis.xcca.orientation.sl_pair_angle`)
    the model is also fitted with β fixed at each candidate, and the best of those fits is
    adopted: the SL peak pairs measure β far more precisely than the CCF of a few grains
    seen through masks, while the CCF tells β from 90° - β and gives width and offset.

    Raises
    ------
    ValueError
        If fewer than 20 finite CCF values remain.
    """
    delta = np.asarray(delta_deg, dtype=np.float64)
    y = np.asarray(ccf, dtype=np.float64)
    ok = np.isfinite(y)
    if ok.sum() < 20:
        raise ValueError("The averaged CCF has too few defined values to fit a superlattice model.")
    delta, y = delta[ok], y[ok]
    lo, hi = c_over_a_range
    best = None
    for ca in np.arange(lo, hi + 1e-9, 0.01):
        for sigma in (0.6 * sigma_guess_deg, sigma_guess_deg, 1.6 * sigma_guess_deg):
            coef, cost = _linear_amplitudes(delta, y, ca, sigma, 0.0)
            if coef[1] < 0 or coef[2] < 0:
                continue
            if best is None or cost < best[0]:
                best = (cost, ca, sigma, coef)
    if best is None:
        best = (np.inf, 1.2, sigma_guess_deg, np.array([np.mean(y), 1.0, 1.0]))
    _, ca0, s0, coef0 = best
    x0 = np.array([ca0, s0, 0.0, coef0[0], max(coef0[1], 1e-6), max(coef0[2], 1e-6)])
    lower = [lo, 0.3, -20.0, -np.inf, 0.0, 0.0]
    upper = [hi, 40.0, 20.0, np.inf, np.inf, np.inf]
    params, sol = _refine(delta, y, x0, lower, upper)
    free_ca = float(params[0])
    r = sol.fun
    try:
        dof = max(1, y.size - sol.x.size)
        cov = np.linalg.pinv(sol.jac.T @ sol.jac) * float(r @ r) / dof
        ca_err = float(np.sqrt(max(cov[0, 0], 0.0)))
    except np.linalg.LinAlgError:
        ca_err = float("nan")
    source = "ccf"
    if beta_candidates_deg:
        fixed = []
        for beta in beta_candidates_deg:
            ca = c_over_a_from_beta(float(beta))
            if not (lo <= ca <= hi):
                continue
            coef, _ = _linear_amplitudes(delta, y, ca, params[1], params[2])
            start = np.array([ca, params[1], params[2], coef[0], max(coef[1], 1e-6), max(coef[2], 1e-6)])
            fixed.append(_refine(delta, y, start, lower, upper, fixed_ca=ca))
        if fixed:
            params, sol = min(fixed, key=lambda ps: float(ps[1].fun @ ps[1].fun))
            r = sol.fun
            source = "sl_pairs"
    ca, sigma, off, b, ap, am = (float(v) for v in params)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(r @ r) / ss_tot if ss_tot > 0 else float("nan")
    lattice = "bcc" if abs(ca - 1.0) <= bcc_tolerance else "bct"
    return SuperlatticeFit(
        lattice=lattice,
        c_over_a=ca,
        beta_deg=bct_beta_deg(ca),
        sigma_deg=sigma,
        offset_deg=off,
        baseline=b,
        amplitude_plus=ap,
        amplitude_minus=am,
        peaks_deg=model_peak_positions_deg(ca, off),
        r_squared=r2,
        c_over_a_ccf=free_ca,
        c_over_a_ccf_error=ca_err,
        beta_source=source,
    )


def model_peak_positions_deg(c_over_a: float, offset_deg: float = 0.0) -> list[float]:
    """Distinct CCF peak positions ±(90 ± θ ± β) + offset in (-180, 180], sorted."""
    p, m = ccf_peak_sets_deg(bct_beta_deg(c_over_a))
    values = np.sort(wrap180(np.concatenate([p, m]) + offset_deg))
    distinct: list[float] = []
    for v in values:
        if not distinct or abs(wrap180(v - distinct[-1])) >= 0.5:
            distinct.append(float(v))
    if len(distinct) > 1 and abs(wrap180(distinct[0] - distinct[-1])) < 0.5:
        distinct.pop()
    return distinct


def ccf_local_maxima(delta_deg: np.ndarray, ccf: np.ndarray, min_prominence: float = 0.0) -> list[float]:
    """Positions (degrees) of the local maxima of a periodic CCF, parabola-refined; NaN skipped."""
    delta = np.asarray(delta_deg, dtype=np.float64)
    y = np.asarray(ccf, dtype=np.float64)
    n = y.size
    step = 360.0 / n
    out = []
    for i in range(n):
        c, l, r = y[i], y[(i - 1) % n], y[(i + 1) % n]
        if not (np.isfinite(c) and np.isfinite(l) and np.isfinite(r)) or not (c > l and c >= r):
            continue
        if min_prominence > 0:
            w = max(1, int(round(20.0 / step)))
            idx = (i + np.arange(-w, w + 1)) % n
            if c - np.nanmax([np.nanmin(y[idx[: w + 1]]), np.nanmin(y[idx[w:]])]) < min_prominence:
                continue
        curv = l - 2 * c + r
        off = 0.5 * (l - r) / curv if curv < 0 else 0.0
        out.append(float(wrap180(delta[i] + off * step)))
    return sorted(out)
