"""2D SAXS patterns of NC monolayer superlattices with N-fold order (seeds 003 and 001).

A superlattice domain seen with the beam along its normal gives Bragg spots at the
reciprocal-lattice vectors G = h b1 + k b2 of its 2D lattice (a1 = d (1, 0),
a2 = d (cos γ, sin γ), rotated by the domain orientation). Each spot is a Gaussian in q
(σ_q from the domain size, FWHM = 2π·0.9 / domain) and in azimuth (σ_φ, orientational
disorder inside the beam), weighted by the NC form factor P(q) (sphere of the NC radius)
; an isotropic ring of disordered NCs and a
flat background come on top.

* :class:`HexToSquareTransition` (seed 003, oriented attachment of 6.2 nm PbSe): the lattice
  angle γ goes from 60° (hexagonal, oleate-capped, centre distance ``d_start_nm``) to 90°
  (square, epitaxially connected, 6.7 nm) along s(t) = 1 / (1 + exp(−(t − t_c)/w)):
  γ = 60° + 30° s, d = d_start + (6.7 nm − d_start) s. The first ring changes from six
  spots (C_6) to four (C_4); the truth of the transition time is t_c (γ = 75°).
* :func:`dodecagonal_spots` (seed 001, binary NC quasicrystal, γ_eff = 0.51): twelve equal
  spots on the first ring and twelve, turned by 15°, at 2 cos 15° times its q: a ring of
  12-fold symmetry (C_12, no C_4 or C_6).

Patterns evaluate on any (q, φ) grid: :func:`polar_grid` gives the polar grid of
mc-beamline's azimuthal bins (φ_k = −180° + (k + 1)·360°/N, as the ring regrouping uses),
and :meth:`SpotPattern.on_detector` fills a detector frame from per-pixel q and φ maps
(e.g. ``DetectorGeometry.q_map`` / ``phi_map``). Units: q in nm⁻¹, lengths in nm,
angles in degrees, times in s, intensities in counts per pixel (or per polar bin).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SCHERRER_K = 0.9


def polar_grid(q_min_nm: float, q_max_nm: float, n_q: int, n_phi: int = 360) -> tuple[np.ndarray, np.ndarray]:
    """q bin centres (nm⁻¹, linear) and azimuth bin centres φ_k = −180° + (k+1)·360°/N (degrees)."""
    q = np.linspace(q_min_nm, q_max_nm, n_q)
    phi = -180.0 + (np.arange(n_phi) + 1.0) * (360.0 / n_phi)
    return q, phi


def _sphere_p(q: np.ndarray, r: float) -> np.ndarray:
    x = np.maximum(np.asarray(q, dtype=float) * r, 1e-6)
    f = 3 * (np.sin(x) - x * np.cos(x)) / x**3
    return f * f


@dataclass(frozen=True)
class SpotPattern:
    """Bragg spots of one 2D domain plus an isotropic part.

    Attributes
    ----------
    q_nm, phi_deg, weight : spot positions (nm⁻¹, degrees) and peak heights (counts).
    radial_sigma_nm : Gaussian σ of a spot along q, nm⁻¹.
    angular_sigma_deg : Gaussian σ of a spot along φ, degrees.
    ring_q_nm, ring_sigma_nm, ring_height : isotropic ring of disordered NCs (peak height).
    background : flat background per pixel.
    """

    q_nm: np.ndarray
    phi_deg: np.ndarray
    weight: np.ndarray
    radial_sigma_nm: float
    angular_sigma_deg: float
    ring_q_nm: float = 1.0
    ring_sigma_nm: float = 0.1
    ring_height: float = 0.0
    background: float = 0.0

    def intensity(self, q_nm: np.ndarray, phi_deg: np.ndarray) -> np.ndarray:
        """Expected intensity at (q, φ) (broadcast together), counts per pixel or bin."""
        q = np.asarray(q_nm, dtype=float)
        phi = np.asarray(phi_deg, dtype=float)
        q, phi = np.broadcast_arrays(q, phi)
        out = np.full(q.shape, float(self.background))
        out += self.ring_height * np.exp(-0.5 * ((q - self.ring_q_nm) / self.ring_sigma_nm) ** 2)
        for qs, ps, ws in zip(self.q_nm, self.phi_deg, self.weight):
            near = np.abs(q - qs) < 6 * self.radial_sigma_nm
            if not near.any():
                continue
            dphi = (phi[near] - ps + 180.0) % 360.0 - 180.0
            out[near] += ws * np.exp(-0.5 * ((q[near] - qs) / self.radial_sigma_nm) ** 2
                                     - 0.5 * (dphi / self.angular_sigma_deg) ** 2)
        return out

    def polar_frame(self, q_nm: np.ndarray, phi_deg: np.ndarray, rng: np.random.Generator | int | None = None
                    ) -> np.ndarray:
        """Intensity on a polar grid, shape (n_q, n_φ); Poisson counts if ``rng`` is given."""
        mean = self.intensity(np.asarray(q_nm)[:, None], np.asarray(phi_deg)[None, :])
        return mean if rng is None else np.random.default_rng(rng).poisson(mean).astype(float)

    def on_detector(self, q_map: np.ndarray, phi_map: np.ndarray, rng: np.random.Generator | int | None = None
                    ) -> np.ndarray:
        """A detector frame from per-pixel q (nm⁻¹) and φ (degrees) maps; Poisson counts
        (uint32) if ``rng`` is given, else the expected float intensity."""
        mean = self.intensity(q_map, phi_map)
        if rng is None:
            return mean
        return np.random.default_rng(rng).poisson(mean).astype(np.uint32)


def lattice_2d_spots(d_nm: float, gamma_deg: float, orientation_deg: float, q_max_nm: float, *,
                     radius_nm: float, domain_nm: float, angular_sigma_deg: float, scale: float = 1.0
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Spots (q, φ, peak height) of a 2D lattice (spacing ``d_nm``, angle ``gamma_deg``,
    turned by ``orientation_deg``) up to ``q_max_nm``; heights ``scale`` · P(q) of the NCs;
    also the radial σ (nm⁻¹) of a spot."""
    g = math.radians(gamma_deg)
    a = np.array([[d_nm, 0.0], [d_nm * math.cos(g), d_nm * math.sin(g)]])
    b = 2 * math.pi * np.linalg.inv(a).T
    n = int(math.ceil(q_max_nm * d_nm / (2 * math.pi) / max(math.sin(g), 0.3))) + 1
    h, k = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    hk = np.stack([h.ravel(), k.ravel()], axis=1)
    hk = hk[(hk != 0).any(axis=1)]
    vec = hk @ b
    q = np.hypot(vec[:, 0], vec[:, 1])
    keep = q <= q_max_nm
    vec, q = vec[keep], q[keep]
    phi = (np.degrees(np.arctan2(vec[:, 1], vec[:, 0])) + orientation_deg + 180.0) % 360.0 - 180.0
    weight = scale * _sphere_p(q, radius_nm)
    sig_q = 2 * math.pi * SCHERRER_K / domain_nm / 2.3548
    return q, phi, weight, sig_q


def dodecagonal_spots(q0_nm: float, orientation_deg: float = 0.0, *, radius_nm: float = 4.0,
                      domain_nm: float = 80.0, angular_sigma_deg: float = 1.5, scale: float = 200.0,
                      background: float = 2.0) -> SpotPattern:
    """The 12-fold pattern of a dodecagonal NC quasicrystal: 12 spots at ``q0_nm`` and 12,
    turned by 15°, at 2 cos 15° · q0 (the sums of neighbouring first-ring vectors)."""
    ang = np.arange(12) * 30.0 + orientation_deg
    q2 = 2 * math.cos(math.radians(15.0)) * q0_nm
    q = np.concatenate([np.full(12, q0_nm), np.full(12, q2)])
    phi = (np.concatenate([ang, ang + 15.0]) + 180.0) % 360.0 - 180.0
    w = scale * np.concatenate([np.full(12, 1.0), np.full(12, 0.4)]) * _sphere_p(q, radius_nm) / _sphere_p(
        np.array([q0_nm]), radius_nm)[0]
    sig_q = 2 * math.pi * SCHERRER_K / domain_nm / 2.3548
    return SpotPattern(q, phi, w, sig_q, angular_sigma_deg, background=background)


@dataclass(frozen=True)
class HexToSquareTransition:
    """Hexagonal → square transformation of a PbSe NC monolayer (seed 003).

    Attributes
    ----------
    t_transition_s : time the lattice angle passes 75° (the truth of the transition), s.
    width_s : width w of the sigmoid s(t), s (γ goes 63° → 87° within about ±2.3 w).
    d_start_nm, d_end_nm : centre-to-centre distance before (oleate-capped) and after
        attachment (6.7 nm), nm.
    radius_nm : NC radius (6.2 nm PbSe: 3.1), nm.
    domain_nm : superlattice domain size (spot radial width), nm.
    angular_sigma_deg : orientational spread of the spots, degrees.
    spot_scale : peak height of a first-order spot at q = 2π/d, counts per pixel or bin;
        other spots scale with P(q) of the NCs.
    ring_fraction : isotropic ring of disordered NCs, height relative to a spot's peak.
    background : flat background, counts per pixel or bin.
    """

    t_transition_s: float = 25.0
    width_s: float = 3.0
    d_start_nm: float = 7.5
    d_end_nm: float = 6.7
    radius_nm: float = 3.1
    domain_nm: float = 60.0
    angular_sigma_deg: float = 3.0
    spot_scale: float = 400.0
    ring_fraction: float = 0.1
    background: float = 2.0

    def progress(self, t_s: float | np.ndarray) -> np.ndarray:
        """s(t) in [0, 1]: 0 hexagonal, 1 square."""
        return 1.0 / (1.0 + np.exp(-(np.asarray(t_s, dtype=float) - self.t_transition_s) / self.width_s))

    def lattice_angle_deg(self, t_s: float | np.ndarray) -> np.ndarray:
        """Lattice angle γ(t), degrees (60 hexagonal, 90 square)."""
        return 60.0 + 30.0 * self.progress(t_s)

    def spacing_nm(self, t_s: float | np.ndarray) -> np.ndarray:
        """Centre-to-centre distance d(t), nm."""
        return self.d_start_nm + (self.d_end_nm - self.d_start_nm) * self.progress(t_s)

    def pattern(self, t_s: float, orientation_deg: float = 0.0, q_max_nm: float = 3.0) -> SpotPattern:
        """The expected pattern at ``t_s`` for a domain turned by ``orientation_deg``."""
        d = float(self.spacing_nm(t_s))
        gamma = float(self.lattice_angle_deg(t_s))
        q, phi, w, sig_q = lattice_2d_spots(d, gamma, orientation_deg, q_max_nm, radius_nm=self.radius_nm,
                                            domain_nm=self.domain_nm, angular_sigma_deg=self.angular_sigma_deg,
                                            scale=self.spot_scale)
        q1 = 2 * math.pi / d
        w = w / _sphere_p(np.array([q1]), self.radius_nm)[0]
        return SpotPattern(q, phi, w, sig_q, self.angular_sigma_deg, ring_q_nm=q1, ring_sigma_nm=3 * sig_q,
                           ring_height=self.ring_fraction * self.spot_scale, background=self.background)

    def first_ring_nm(self, t_s: float) -> float:
        """q of the first-order spots (|b1| = 2π / (d sin γ)), nm⁻¹."""
        return 2 * math.pi / (float(self.spacing_nm(t_s)) * math.sin(math.radians(float(self.lattice_angle_deg(t_s)))))

    def polar_series(self, t_s: np.ndarray, q_nm: np.ndarray, phi_deg: np.ndarray,
                     rng: np.random.Generator | int | None = 0) -> np.ndarray:
        """Frames on a polar grid for every time, shape (n_t, n_q, n_φ); each frame a new
        domain of random orientation (a nanobeam on a fresh spot); Poisson counts."""
        rng = np.random.default_rng(rng)
        frames = []
        for t in np.atleast_1d(t_s):
            pat = self.pattern(float(t), float(rng.uniform(-180, 180)), q_max_nm=float(np.max(q_nm)) + 0.5)
            frames.append(pat.polar_frame(q_nm, phi_deg, rng))
        return np.stack(frames)


__all__ = [
    "HexToSquareTransition",
    "SpotPattern",
    "dodecagonal_spots",
    "lattice_2d_spots",
    "polar_grid",
]
