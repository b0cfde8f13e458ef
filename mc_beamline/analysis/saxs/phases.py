"""Phase fractions of a self-assembling NC colloid from SAXS, and its nucleation pathway.

Component model (decoupling approximation; the same physics as the simulator, written
independently here so that analysis/ stands alone)::

    I(q) = Σ_k c_k · P̄(q) · [1 + β(q) (S_k(q) − 1)] + b,      c_k, b ≥ 0

with k = dilute fluid, dense fluid, supercrystal. P̄ and β: spheres of mean radius R with
a Gaussian radius spread (relative σ ``polydispersity``); fluids: Percus–Yevick hard
spheres of diameter d at volume fractions φ_dilute (small) and φ_dense; crystal:
S = 1 + exp(−q² σ_DW²) (Z0(q) − 1) with the powder lattice factor Z0 of the lattice found
by :mod:`mc_beamline.analysis.saxs.indexing` (Gaussian peaks of FWHM w). Every component
is per particle, so the number fraction of NCs in phase k is c_k / Σ c.

Fit (:func:`fit_phase_series`): the shape parameters θ = (R, polydispersity, d, φ_dilute,
φ_dense, w, σ_DW, and a scale of a) are shared by all frames of a time series; the
amplitudes c_k and b of each frame are linear and solved by non-negative least squares
inside the χ² (variable projection), θ by bounded non-linear least squares. A start for R
comes from a scan of the form factor against the curve.

Pathway (:func:`classify_pathway`): two-step nucleation if the dense fluid holds at least
``dense_threshold`` of the NCs at some time before the crystal fraction has reached half
of its final value; one-step if crystals grow while the dense fraction stays below it;
"none" if no crystal fraction above ``crystal_threshold`` appears.

Units: q in nm⁻¹, lengths in nm, times in s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares, nnls

from mc_beamline.analysis.saxs.indexing import (
    LatticeFit,
    _noise,
    index_curve,
    reflections,
)

PHASES = ("dilute", "dense", "crystal")
_N_BASIS = {"fcc": 4, "bcc": 2, "sc": 1, "hcp": 2, "bct": 2, "hex": 1}


def _cell_volume(lattice: str, c_over_a: float | None) -> float:
    """Volume of the conventional cell for a = 1 nm, nm³."""
    if lattice == "hcp":
        return math.sqrt(3) / 2 * (c_over_a or math.sqrt(8.0 / 3.0))
    if lattice == "hex":
        return math.sqrt(3) / 2 * (c_over_a or 1.0)
    if lattice == "bct":
        return c_over_a or 1.0
    return 1.0


# ----------------------------------------------------------------------- model pieces
def sphere_form_factor_poly(q_nm: np.ndarray, radius_nm: float, polydispersity: float,
                            n_nodes: int = 21) -> tuple[np.ndarray, np.ndarray]:
    """P̄(q) (1 at q = 0) and β(q) of spheres with a Gaussian radius distribution."""
    q = np.asarray(q_nm, dtype=float)
    x, w = np.polynomial.hermite_e.hermegauss(n_nodes)
    if polydispersity <= 1e-6:
        x, w = np.zeros(1), np.ones(1)
    r = np.maximum(radius_nm * (1 + polydispersity * x), 1e-6)
    w = np.where(radius_nm * (1 + polydispersity * x) > 0, w, 0.0)
    w = w / w.sum()
    qr = q[:, None] * r[None, :]
    small = qr < 1e-3
    qs = np.where(small, 1.0, qr)
    f = np.where(small, 1.0, 3 * (np.sin(qs) - qs * np.cos(qs)) / qs**3)
    v = r**3
    vf = f @ (w * v)
    v2f2 = (f * f) @ (w * v * v)
    p = v2f2 / float(np.sum(w * v * v))
    beta = np.where(v2f2 > 0, vf**2 / np.where(v2f2 > 0, v2f2, 1.0), 1.0)
    return p, np.clip(beta, 0, 1)


def hard_sphere_py(q_nm: np.ndarray, diameter_nm: float, phi: float) -> np.ndarray:
    """Percus–Yevick S(q) of hard spheres of ``diameter_nm`` at volume fraction ``phi``."""
    q = np.asarray(q_nm, dtype=float)
    if phi <= 0:
        return np.ones_like(q)
    x = q * diameter_nm
    x = np.where(x < 0.05, 0.05, x)
    den = (1 - phi) ** 4
    al = (1 + 2 * phi) ** 2 / den
    be = -6 * phi * (1 + phi / 2) ** 2 / den
    ga = phi * al / 2
    s, c = np.sin(x), np.cos(x)
    g = (al * (s - x * c) / x**2 + be * (2 * x * s + (2 - x * x) * c - 2) / x**3
         + ga * (-x**4 * c + 4 * ((3 * x * x - 6) * c + (x**3 - 6 * x) * s + 6)) / x**5)
    return 1.0 / (1.0 + 24 * phi * g / x)


def powder_lattice_factor(q_nm: np.ndarray, lattice: str, a_nm: float, fwhm_nm: float,
                          c_over_a: float | None = None) -> np.ndarray:
    """Powder lattice factor Z0(q) of a lattice (averages to 1 over q), Gaussian peaks."""
    q = np.asarray(q_nm, dtype=float)
    sig = fwhm_nm / 2.3548
    refl = reflections(lattice, (float(q.max()) + 6 * sig) * a_nm, c_over_a)
    g = refl.g / a_nm
    weight = refl.strength * refl.g**2  # Σ|F|² of the shell
    z = np.zeros_like(q)
    sel = (g > q.min() - 6 * sig)
    for gs, ws in zip(g[sel], weight[sel]):
        lo, hi = np.searchsorted(q, gs - 6 * sig), np.searchsorted(q, gs + 6 * sig)
        z[lo:hi] += ws * np.exp(-0.5 * ((q[lo:hi] - gs) / sig) ** 2)
    z /= sig * math.sqrt(2 * math.pi)
    vol = _cell_volume(lattice, c_over_a) * a_nm**3
    return 2 * math.pi**2 / (_N_BASIS[lattice] * vol * q**2) * z


@dataclass(frozen=True)
class ComponentParams:
    """Shape parameters of the component model (nm, nm⁻¹ for ``fwhm_nm``)."""

    radius_nm: float
    """Mean sphere radius R, nm."""
    polydispersity: float
    """Relative standard deviation of the radius (Gaussian)."""
    diameter_nm: float
    """Hard-sphere diameter d of the fluids, nm."""
    phi_dilute: float
    """Volume fraction of the dilute fluid."""
    phi_dense: float
    """Volume fraction of the dense fluid."""
    lattice: str | None = None
    """Supercrystal lattice (``fcc``, ``bcc``, ...), or None without a crystal."""
    a_nm: float | None = None
    """Lattice constant, nm."""
    c_over_a: float | None = None
    """Axial ratio of a non-cubic lattice."""
    fwhm_nm: float = 0.05
    """FWHM w of the Bragg peaks, nm⁻¹."""
    dw_sigma_nm: float = 0.2
    """Debye–Waller displacement σ_DW, nm."""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def component_curves(q_nm: np.ndarray, p: ComponentParams) -> np.ndarray:
    """Per-particle curves of the dilute fluid, dense fluid and crystal, shape (3, n_q);
    the crystal row is zero without a lattice."""
    q = np.asarray(q_nm, dtype=float)
    pf, beta = sphere_form_factor_poly(q, p.radius_nm, p.polydispersity)
    rows = [pf * (1 + beta * (hard_sphere_py(q, p.diameter_nm, p.phi_dilute) - 1)),
            pf * (1 + beta * (hard_sphere_py(q, p.diameter_nm, p.phi_dense) - 1))]
    if p.lattice is None:
        rows.append(np.zeros_like(q))
    else:
        z = powder_lattice_factor(q, p.lattice, p.a_nm, p.fwhm_nm, p.c_over_a)
        s = 1 + np.exp(-(q * p.dw_sigma_nm) ** 2) * (z - 1)
        rows.append(pf * (1 + beta * (s - 1)))
    return np.stack(rows)


# ----------------------------------------------------------------------- fitting
@dataclass(frozen=True)
class PhaseSeries:
    """Phase fractions of a series of curves.

    Attributes
    ----------
    fractions : (n_frames, 3) number fractions of NCs: dilute, dense, crystal (rows sum to 1).
    amplitudes : (n_frames, 3) fitted c_k (intensity units per unit P̄).
    background : (n_frames,) fitted flat background.
    params : the shared shape parameters.
    chi2_reduced : χ² per point of the whole fit.
    lattice : the indexing used for the crystal component (None: no crystal).
    """

    fractions: np.ndarray
    amplitudes: np.ndarray
    background: np.ndarray
    params: ComponentParams
    chi2_reduced: float
    lattice: LatticeFit | None


def _amplitudes(basis: np.ndarray, frames: np.ndarray, sigma: np.ndarray):
    """NNLS of every frame on [basis rows, flat]; returns coefficients and weighted residuals."""
    cols = np.vstack([basis, np.ones(basis.shape[1])]).T  # (n_q, 4)
    n_t = frames.shape[0]
    coef = np.zeros((n_t, cols.shape[1]))
    res = np.empty_like(frames)
    for t in range(n_t):
        a = cols / sigma[t][:, None]
        norms = np.linalg.norm(a, axis=0)
        norms[norms == 0] = 1.0
        x, _ = nnls(a / norms, frames[t] / sigma[t], maxiter=200)
        coef[t] = x / norms
        res[t] = (cols @ coef[t] - frames[t]) / sigma[t]
    return coef, res


def _radius_start(q, frame, sig, pd):
    """Best R of P̄(q; R) · c + b on a log grid (nm)."""
    grid = np.geomspace(max(1.5 / q[-1], 0.3), min(math.pi / q[0], 200.0), 60)
    best = None
    for r in grid:
        pf, _ = sphere_form_factor_poly(q, r, pd, n_nodes=9)
        cols = np.stack([pf, np.ones_like(q)], axis=1) / sig[:, None]
        x, rn = nnls(cols, frame / sig)
        if best is None or rn < best[0]:
            best = (rn, r)
    return float(best[1])


def fit_phase_series(q_nm: np.ndarray, frames: np.ndarray, sigma: np.ndarray | None = None, *,
                     lattice: LatticeFit | None | str = "auto", polydispersity: float = 0.07,
                     max_nfev: int = 200) -> PhaseSeries:
    """Fit the component model to one curve (n_q,) or a series (n_frames, n_q).

    Parameters
    ----------
    q_nm : nm⁻¹, increasing. frames : intensities. sigma : their uncertainties (same
        shape) or None (estimated from the scatter of each curve).
    lattice : the crystal's indexing; "auto" indexes the first, middle and last frames and
        keeps the indexing with the most peaks
        (:func:`~mc_beamline.analysis.saxs.indexing.index_curve`); None: no crystal.
    polydispersity : start value of the relative radius spread.
    """
    q = np.asarray(q_nm, dtype=float)
    y = np.atleast_2d(np.asarray(frames, dtype=float))
    if y.shape[1] != q.size:
        raise ValueError(f"Frames have {y.shape[1]} points per curve but q has {q.size}.")
    if sigma is None:
        s = np.stack([_noise(f) for f in y])
    else:
        s = np.broadcast_to(np.atleast_2d(np.asarray(sigma, dtype=float)), y.shape).copy()
    s = np.maximum(s, 1e-12 * max(float(np.abs(y).max()), 1e-300))
    if isinstance(lattice, str):
        if lattice != "auto":
            raise ValueError("lattice must be 'auto', None or a LatticeFit.")
        lattice = None
        most = -1
        for t in sorted({y.shape[0] - 1, 0, y.shape[0] // 2}):
            _, res = index_curve(q, y[t], s[t])
            if res.best is not None and res.best.n_matched > most:
                lattice, most = res.best, res.best.n_matched
    # start values
    ref = y[0]
    r0 = _radius_start(q, ref, s[0], polydispersity)
    if lattice is not None:
        d_nn = {"fcc": lattice.a_nm / math.sqrt(2), "bcc": lattice.a_nm * math.sqrt(3) / 2}.get(
            lattice.lattice, lattice.a_nm)
        d0 = d_nn
        r0 = min(r0, 0.5 * d_nn)
    else:
        d0 = 2.1 * r0
    # parameters: R, pd, d/(2R), φ_dil, φ_dense, fwhm, σ_DW, a-scale
    x0 = np.array([r0, polydispersity, max(d0 / (2 * r0), 1.0), 0.03, 0.40, 0.05, 0.1 * r0, 1.0])
    lo = np.array([0.5 * r0, 0.0, 1.0, 0.0, 0.2, 0.005, 0.0, 0.99])
    hi = np.array([1.5 * r0, 0.25, 1.5, 0.15, 0.55, 1.0, 0.5 * r0, 1.01])
    if lattice is None:
        fixed = np.array([False, False, False, False, False, True, True, True])
    else:
        fixed = np.zeros(8, bool)
        step = float(np.median(np.diff(q)))
        x0[5] = max(0.05 * lattice.peaks_q_nm[0] * 0.5, 2.0 * step)
        lo[5] = step * 0.5
    x0 = np.clip(x0, lo, hi)

    def params(x):
        full = x0.copy()
        full[~fixed] = x
        ca = lattice.c_over_a if lattice is not None else None
        return ComponentParams(full[0], full[1], 2 * full[0] * full[2], full[3], full[4],
                               lattice.lattice if lattice is not None else None,
                               lattice.a_nm * full[7] if lattice is not None else None, ca, full[5], full[6])

    def resid(x):
        b = component_curves(q, params(x))
        return _amplitudes(b, y, s)[1].ravel()

    sol = least_squares(resid, x0[~fixed], bounds=(lo[~fixed], hi[~fixed]), x_scale="jac", max_nfev=max_nfev,
                        diff_step=1e-4)
    p = params(sol.x)
    coef, res = _amplitudes(component_curves(q, p), y, s)
    amps = coef[:, :3]
    tot = amps.sum(axis=1, keepdims=True)
    frac = np.where(tot > 0, amps / np.where(tot > 0, tot, 1.0), np.nan)
    return PhaseSeries(frac, amps, coef[:, 3], p, float(np.sum(res**2) / res.size), lattice)


@dataclass(frozen=True)
class Pathway:
    """Nucleation pathway of a series: "one-step", "two-step" or "none" (no crystals).

    Attributes
    ----------
    pathway : the classification.
    dense_max : largest dense-fluid fraction, and ``t_dense_max_s`` when (s).
    t_crystal_half_s : time the crystal fraction first reaches half its final value (s).
    crystal_final : crystal fraction of the last frames.
    """

    pathway: str
    dense_max: float
    t_dense_max_s: float
    t_crystal_half_s: float | None
    crystal_final: float


def classify_pathway(t_s: np.ndarray, fractions: np.ndarray, *, dense_threshold: float = 0.15,
                     crystal_threshold: float = 0.1) -> Pathway:
    """One-step vs two-step nucleation from phase fractions (n_frames, 3) at times ``t_s`` (s)."""
    t = np.asarray(t_s, dtype=float)
    f = np.asarray(fractions, dtype=float)
    if f.ndim != 2 or f.shape[1] != 3 or f.shape[0] != t.size:
        raise ValueError("fractions must have shape (n_frames, 3) matching the times.")
    dense, cryst = f[:, 1], f[:, 2]
    n_end = max(1, t.size // 10)
    final = float(np.nanmean(cryst[-n_end:]))
    k = int(np.nanargmax(dense))
    if final < crystal_threshold:
        return Pathway("none", float(dense[k]), float(t[k]), None, final)
    half = np.flatnonzero(cryst >= 0.5 * final)
    t_half = float(t[half[0]]) if half.size else float(t[-1])
    before = t <= t_half
    dense_before = float(np.nanmax(dense[before])) if before.any() else 0.0
    pathway = "two-step" if dense_before >= dense_threshold else "one-step"
    return Pathway(pathway, float(dense[k]), float(t[k]), t_half, final)


__all__ = [
    "ComponentParams",
    "PHASES",
    "Pathway",
    "PhaseSeries",
    "classify_pathway",
    "component_curves",
    "fit_phase_series",
    "hard_sphere_py",
    "powder_lattice_factor",
    "sphere_form_factor_poly",
]
