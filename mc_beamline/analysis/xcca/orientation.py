"""Per-frame in-plane orientations of the atomic lattice and superlattice, and ψ.

Orientation u of a lattice = detector azimuth (degrees) of its [1-10] axis, defined modulo
180° because the patterns are centrosymmetric; reported in (-90°, 90°]. The reflections of
each lattice sit at fixed in-plane angles from u (see :mod:`mc_beamline.analysis.xcca.structure`):
SL {112} at ±(90° - β), ±(90° + β); AL {111} at ±θ, 180° ± θ.

A peak at φ can be any of the reflections, so it proposes u = φ - a for every reflection
angle a (two distinct values modulo 180° for both families). Candidates are scored by the
summed prominence of the peaks they explain (within ``tolerance_deg``) and refined by the
prominence-weighted mean of those peaks' proposals. One SL peak alone, or one AL peak
(typical on a partial arc), leaves two equally good candidates: the mirror ambiguity.

Misorientation ψ = u_SL - u_AL (degrees, in (-90°, 90°]): the pair of SL and AL candidates
with the smallest |ψ| within ``psi_max_deg``. This uses the known orientation relation
([001]_SL nearly ∥ [001]_AL) to resolve the mirror ambiguity, so it assumes |ψ| < θ ≈ 35°.

The superlattice angle β is measured from the SL peaks alone: the {112} peaks of one grain
are 2β and 180° - 2β apart (Zaluzhnyy et al., Fig. S2), so the folded separation
min(s, 180° - s) of peak pairs clusters at min(2β, 180° - 2β).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from mc_beamline.analysis.xcca.structure import (
    al_111_angles_deg,
    sl_112_angles_deg,
    wrap90,
)


@dataclass(frozen=True)
class OrientationCandidate:
    """A lattice orientation u (degrees, (-90, 90]) and its support (summed prominence)."""

    u_deg: float
    score: float
    n_peaks: int


def _circular_mean_180(values: np.ndarray, weights: np.ndarray) -> float:
    ang = np.radians(2.0 * np.asarray(values))
    c = float((weights * np.cos(ang)).sum())
    s = float((weights * np.sin(ang)).sum())
    return float(wrap90(np.degrees(np.arctan2(s, c)) / 2.0))


def orientation_candidates(
    azimuths_deg: Sequence[float],
    prominences: Sequence[float],
    reflection_angles_deg: Sequence[float],
    tolerance_deg: float = 3.0,
    min_ratio: float = 0.6,
) -> list[OrientationCandidate]:
    """Orientations u that explain the peaks of one ring, best first.

    Parameters
    ----------
    azimuths_deg : peak azimuths on the ring, degrees.
    prominences : their prominences (weights).
    reflection_angles_deg : in-plane angles of the lattice's reflections on that ring from
        its [1-10] axis (e.g. :func:`~mc_beamline.analysis.xcca.structure.sl_112_angles_deg`).
    tolerance_deg : largest distance between a peak and a reflection it is said to be.
    min_ratio : keep candidates scoring at least this fraction of the best.
    """
    phi = np.asarray(azimuths_deg, dtype=np.float64)
    w = np.asarray(prominences, dtype=np.float64)
    if phi.size == 0:
        return []
    refl = np.asarray(reflection_angles_deg, dtype=np.float64)
    # distinct proposals modulo 180°: each proposal not within the tolerance of an earlier seed
    proposals = wrap90(phi[:, None] - refl[None, :]).ravel()
    seeds = np.array(_first_distinct(proposals, tolerance_deg))
    # every seed at once (seeds x peaks x reflections): each peak's best-matching reflection
    dev = wrap90(phi[None, :, None] - refl[None, None, :] - seeds[:, None, None])
    best = np.argmin(np.abs(dev), axis=2)
    d = np.take_along_axis(dev, best[..., None], axis=2)[..., 0]
    hit = np.abs(d) <= tolerance_deg
    found = hit.any(axis=1)
    if not found.any():
        return []
    seeds, d, hit = seeds[found], d[found], hit[found]
    # refine: prominence-weighted circular mean (period 180°) of the explained peaks' proposals
    weight = np.where(hit, w[None, :], 0.0)
    ang = np.radians(2.0 * (seeds[:, None] + d))
    u_ref = wrap90(np.degrees(np.arctan2((weight * np.sin(ang)).sum(axis=1), (weight * np.cos(ang)).sum(axis=1))) / 2.0)
    # support at the refined orientations
    dev = wrap90(phi[None, :, None] - refl[None, None, :] - u_ref[:, None, None])
    hit = np.abs(dev).min(axis=2) <= tolerance_deg
    scores = np.where(hit, w[None, :], 0.0).sum(axis=1)
    cands = [OrientationCandidate(float(u), float(sc), int(n)) for u, sc, n in zip(u_ref, scores, hit.sum(axis=1))]
    # merge candidates that converged to the same orientation
    cands.sort(key=lambda c: -c.score)
    merged: list[OrientationCandidate] = []
    for c in cands:
        if all(abs(wrap90(c.u_deg - m.u_deg)) > tolerance_deg for m in merged):
            merged.append(c)
    top = merged[0].score
    return [c for c in merged if c.score >= min_ratio * top]


def _first_distinct(values: np.ndarray, tolerance_deg: float) -> list[float]:
    """``values`` (degrees) in order, leaving out each one within ``tolerance_deg``
    (modulo 180°) of a value already kept."""
    near = (np.abs(wrap90(values[:, None] - values[None, :])) <= tolerance_deg).tolist()
    kept: list[int] = []
    for i, row in enumerate(near):
        if not any(row[j] for j in kept):
            kept.append(i)
    return [float(values[i]) for i in kept]


def sl_orientation_candidates(
    azimuths_deg: Sequence[float],
    prominences: Sequence[float],
    beta_deg: float,
    tolerance_deg: float = 3.0,
    min_ratio: float = 0.6,
) -> list[OrientationCandidate]:
    """:func:`orientation_candidates` for the SL {112} peaks of a bct lattice with angle β."""
    return orientation_candidates(azimuths_deg, prominences, sl_112_angles_deg(beta_deg), tolerance_deg, min_ratio)


def al_orientation_candidates(
    azimuths_deg: Sequence[float],
    prominences: Sequence[float],
    tolerance_deg: float = 4.0,
    min_ratio: float = 0.6,
) -> list[OrientationCandidate]:
    """:func:`orientation_candidates` for the {111} peaks of a rock-salt AL in the [110] zone."""
    return orientation_candidates(azimuths_deg, prominences, al_111_angles_deg(), tolerance_deg, min_ratio)


@dataclass(frozen=True)
class Misorientation:
    """ψ = u_SL - u_AL in degrees, (-90, 90], and the orientations it was derived from."""

    psi_deg: float
    u_sl_deg: float
    u_al_deg: float


def misorientation(
    sl_candidates: Sequence[OrientationCandidate],
    al_candidates: Sequence[OrientationCandidate],
    psi_max_deg: float = 20.0,
) -> Misorientation | None:
    """The SL/AL candidate pair with the smallest |ψ| (≤ ``psi_max_deg``), or None."""
    best = None
    for s in sl_candidates:
        for a in al_candidates:
            psi = float(wrap90(s.u_deg - a.u_deg))
            if abs(psi) <= psi_max_deg and (best is None or abs(psi) < abs(best.psi_deg)):
                best = Misorientation(psi, s.u_deg, a.u_deg)
    return best


@dataclass(frozen=True)
class PairAngle:
    """β from SL peak pairs: ``beta_deg`` = half the folded pair separation, in (0, 45]°.

    The true β is this value or 90° - ``beta_deg`` (the pair separations 2β and 180° - 2β
    cannot be told apart from the SL ring alone). ``n_pairs`` pairs were used;
    ``error_deg`` is the standard error of ``beta_deg``.
    """

    beta_deg: float
    n_pairs: int
    error_deg: float


def sl_pair_angle(
    peak_lists: Iterable[Sequence[float]],
    fold_range_deg: tuple[float, float] = (40.0, 90.0),
    window_deg: float = 3.0,
) -> PairAngle | None:
    """Estimate β from the separations of SL {112} peaks within each frame.

    Every pair of peaks of one frame gives a separation s in [0, 180]; folded,
    s' = min(s, 180° - s). The mode of s' in ``fold_range_deg`` (a 0.25° histogram smoothed
    over 1°) is refined by the median of s' within ``window_deg`` of it; β = s'/2.
    Returns None when no pair falls in the range.
    """
    values = []
    for peaks in peak_lists:
        p = np.asarray(list(peaks), dtype=np.float64)
        if p.size < 2:
            continue
        i, j = np.triu_indices(p.size, 1)
        s = np.abs(np.mod(p[i] - p[j] + 180.0, 360.0) - 180.0)
        values.append(np.minimum(s, 180.0 - s))
    if not values:
        return None
    v = np.concatenate(values)
    lo, hi = fold_range_deg
    v = v[(v >= lo) & (v <= hi)]
    if v.size == 0:
        return None
    edges = np.arange(lo, hi + 0.25, 0.25)
    hist, _ = np.histogram(v, edges)
    kernel = np.exp(-0.5 * (np.arange(-8, 9) * 0.25 / 1.0) ** 2)
    smooth = np.convolve(hist, kernel, mode="same")
    mode = 0.5 * (edges[:-1] + edges[1:])[int(np.argmax(smooth))]
    near = v[np.abs(v - mode) <= window_deg]
    med = float(np.median(near))
    mad = float(np.median(np.abs(near - med))) * 1.4826
    err = mad / np.sqrt(near.size) if near.size > 1 else float("nan")
    return PairAngle(beta_deg=med / 2.0, n_pairs=int(near.size), error_deg=err / 2.0)


__all__ = [
    "OrientationCandidate",
    "orientation_candidates",
    "sl_orientation_candidates",
    "al_orientation_candidates",
    "Misorientation",
    "misorientation",
    "PairAngle",
    "sl_pair_angle",
]
