"""Rotational symmetry order of a superlattice ring from the Fourier components of its CCF.

For one ring, the mask-corrected, normalised CCF C(Δ) (:func:`~.xcca.masked_ccf`) has
Fourier components C_n = |I_n|² / I_0² (:func:`~.xcca.fourier_components`), n ≥ 1: the
power of the ring's n-th angular harmonic relative to its mean. An N-fold ring has power
only at multiples of N (a hexagonal SL: 6, 12, 18 …; square: 4, 8, 12 …; dodecagonal:
12, 24 …; an oblique lattice also at 2).

:func:`ring_symmetry` calls a harmonic n ≤ ``n_max`` significant if C_n is at least
``rel_threshold`` of the largest C_n (n ≥ 1) and ``snr`` times the noise floor (the
median C_n over the upper half of the harmonics, where a ring of spots wider than a few
bins has only noise: |I_n|² of white noise is exponentially distributed, so C_n above 30
medians has a false-alarm probability of about 10⁻⁹ per harmonic), and at least
``min_component`` in absolute terms: an isotropic ring regrouped from square pixels has
C_4, C_8, C_12 … of 10⁻⁴–10⁻³ from the pixel grid alone (a ring of a few hundred pixels),
far below the C_n ≈ 0.01–1 of a ring of spots. The symmetry order is
the greatest common divisor of the significant harmonics; 0 means no significant angular
structure (an isotropic ring).

:func:`symmetry_series` does this frame by frame and :func:`transition_time` finds when
one symmetry hands over to another: the time at which r(t) = C_to / (C_from + C_to)
first crosses ½ (linear interpolation between frames). Angles in degrees, times in s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import reduce

import numpy as np

from mc_beamline.analysis.xcca.ccf import fourier_components, masked_ccf


@dataclass(frozen=True)
class RingSymmetry:
    """Angular symmetry of one ring.

    Attributes
    ----------
    order : symmetry order (gcd of the significant harmonics); 0 for none.
    c_n : normalised Fourier components C_n = |I_n|²/I_0², n = 0 … n_max (C_0 set to 1).
    significant : the significant harmonics n.
    noise_floor : the noise level of C_n (median of the upper harmonics).
    """

    order: int
    c_n: np.ndarray
    significant: tuple[int, ...]
    noise_floor: float

    def component(self, n: int) -> float:
        """C_n (normalised)."""
        return float(self.c_n[n])


def ring_symmetry(profile: np.ndarray, weight: np.ndarray | None = None, *, n_max: int = 24,
                  rel_threshold: float = 0.1, snr: float = 30.0, min_component: float = 0.005) -> RingSymmetry:
    """Symmetry order of a ring profile I(φ_k) on the azimuthal bins (see module docstring).

    Parameters
    ----------
    profile : (N,) ring intensity per azimuthal bin; NaN where there is no data.
    weight : good-pixel weight per bin (None: 1 where finite).
    n_max : highest harmonic considered for the order (N ≥ 4 n_max recommended).
    rel_threshold, snr : significance thresholds (relative to the largest C_n and to the
        noise floor).
    min_component : smallest C_n that counts as angular order (absolute).
    """
    profile = np.asarray(profile, dtype=float)
    if profile.ndim != 1 or profile.size < 4 * n_max:
        raise ValueError(f"A ring profile needs at least {4 * n_max} azimuthal bins for n_max = {n_max}.")
    ccf = masked_ccf(profile, weight)
    cn = fourier_components(ccf).real
    if not np.all(np.isfinite(cn[: n_max + 1])):
        return RingSymmetry(0, np.where(np.isfinite(cn[: n_max + 1]), cn[: n_max + 1], 0.0), (), float("nan"))
    n_half = cn.size - 1
    upper = np.abs(cn[max(n_max + 1, n_half // 2):])
    noise = float(np.median(upper)) if upper.size else 0.0
    c = cn[: n_max + 1].copy()
    c[0] = 1.0
    peak = float(np.max(c[1:]))
    floor = max(rel_threshold * peak, snr * noise, min_component)
    sig = [n for n in range(1, n_max + 1) if c[n] >= floor]
    order = reduce(math.gcd, sig) if sig else 0
    return RingSymmetry(int(order), c, tuple(sig), noise)


@dataclass(frozen=True)
class SymmetrySeries:
    """Per-frame ring symmetry: ``order`` (n_frames,), ``c_n`` (n_frames, n_max + 1), and
    the times ``t_s`` (s)."""

    t_s: np.ndarray
    order: np.ndarray
    c_n: np.ndarray

    def component(self, n: int) -> np.ndarray:
        """C_n for every frame."""
        return self.c_n[:, n]


def symmetry_series(profiles: np.ndarray, weights: np.ndarray | None = None, t_s: np.ndarray | None = None,
                    **kwargs) -> SymmetrySeries:
    """:func:`ring_symmetry` of every frame's ring profile (n_frames, N); ``t_s`` default 0, 1, …"""
    profiles = np.asarray(profiles, dtype=float)
    if profiles.ndim != 2:
        raise ValueError("profiles must have shape (n_frames, n_bins).")
    results = [ring_symmetry(p, None if weights is None else np.asarray(weights)[i], **kwargs)
               for i, p in enumerate(profiles)]
    t = np.arange(len(results), dtype=float) if t_s is None else np.asarray(t_s, dtype=float)
    return SymmetrySeries(t, np.array([r.order for r in results]), np.stack([r.c_n for r in results]))


def transition_time(t_s: np.ndarray, c_from: np.ndarray, c_to: np.ndarray) -> float | None:
    """Time (s) at which C_to / (C_from + C_to) first rises through ½ (linear interpolation),
    or None if it never does."""
    t = np.asarray(t_s, dtype=float)
    a = np.maximum(np.asarray(c_from, dtype=float), 0.0)
    b = np.maximum(np.asarray(c_to, dtype=float), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(a + b > 0, b / (a + b), np.nan)
    for i in range(1, t.size):
        if np.isfinite(r[i - 1]) and np.isfinite(r[i]) and r[i - 1] < 0.5 <= r[i]:
            return float(t[i - 1] + (0.5 - r[i - 1]) / (r[i] - r[i - 1]) * (t[i] - t[i - 1]))
    return None


@dataclass(frozen=True)
class OrderedRing:
    """The q ring with the strongest angular modulation of a frame.

    Attributes
    ----------
    q_nm : centre of the ring, nm⁻¹ (intensity-weighted over its q bin).
    excess : its angular χ² in excess of counting noise, in standard deviations.
    """

    q_nm: float
    excess: float


def find_ordered_ring(image: np.ndarray, q_map: np.ndarray, phi_map: np.ndarray, mask: np.ndarray | None = None,
                      *, q_bin_nm: float = 0.02, n_sectors: int = 72, min_excess: float = 20.0
                      ) -> OrderedRing | None:
    """The ring of ``image`` whose intensity varies most with azimuth beyond counting noise.

    Pixels are grouped into q bins of ``q_bin_nm`` (nm⁻¹) and ``n_sectors`` azimuthal sectors.
    For each q bin with mean m per pixel, χ² = Σ_s (S_s − n_s m)² / (n_s m) over its sectors
    (S_s counts in n_s pixels) follows χ²(k − 1) for an isotropic ring of Poisson counts;
    the excess z = (χ² − (k − 1)) / √(2 (k − 1)) measures the angular order. Returns the bin
    of largest z if z ≥ ``min_excess`` (else None: no ordered ring). A ring of spots stands
    out by hundreds of σ; powder rings of 3D crystals only show the weak modulation of the
    pixel grid on a steep radial profile, which :func:`ring_symmetry` then reports as order 0.
    """
    q = np.asarray(q_map, dtype=float).ravel()
    counts = np.asarray(image, dtype=float).ravel()
    good = np.isfinite(counts) & (counts >= 0)
    if mask is not None:
        good &= ~np.asarray(mask, dtype=bool).ravel()
    q_bin = np.floor(q[good] / q_bin_nm).astype(np.int64)
    sector = np.floor((np.asarray(phi_map, dtype=float).ravel()[good] + 180.0) / 360.0 * n_sectors).astype(np.int64)
    sector = np.clip(sector, 0, n_sectors - 1)
    n_q = int(q_bin.max()) + 1 if q_bin.size else 0
    if n_q == 0:
        return None
    cell = q_bin * n_sectors + sector
    sums = np.bincount(cell, counts[good], minlength=n_q * n_sectors).reshape(n_q, n_sectors)
    npix = np.bincount(cell, minlength=n_q * n_sectors).reshape(n_q, n_sectors)
    qsum = np.bincount(q_bin, q[good] * counts[good], minlength=n_q)
    total, ntot = sums.sum(axis=1), npix.sum(axis=1)
    full = (npix > 0).all(axis=1) & (total > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(full, total / np.maximum(ntot, 1), np.nan)
        expected = npix * mean[:, None]
        chi2 = np.nansum(np.where(npix > 0, (sums - expected) ** 2 / expected, 0.0), axis=1)
    dof = n_sectors - 1
    z = np.where(full, (chi2 - dof) / math.sqrt(2.0 * dof), -np.inf)
    best = int(np.argmax(z))
    if not np.isfinite(z[best]) or z[best] < min_excess:
        return None
    return OrderedRing(float(qsum[best] / total[best]), float(z[best]))


def ring_profile(q_nm: np.ndarray, polar: np.ndarray, q_center_nm: float, half_width_nm: float) -> np.ndarray:
    """Mean over the q bins with |q − q_center| ≤ half width of a polar frame (…, n_q, N) → (…, N)."""
    q = np.asarray(q_nm, dtype=float)
    sel = np.abs(q - q_center_nm) <= half_width_nm
    if not sel.any():
        raise ValueError(f"No q bin within {half_width_nm:g} nm⁻¹ of {q_center_nm:g} nm⁻¹.")
    return np.asarray(polar, dtype=float)[..., sel, :].mean(axis=-2)


__all__ = [
    "OrderedRing",
    "RingSymmetry",
    "SymmetrySeries",
    "ring_profile",
    "find_ordered_ring",
    "ring_symmetry",
    "symmetry_series",
    "transition_time",
]
