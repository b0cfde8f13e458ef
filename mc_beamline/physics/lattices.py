"""In-plane reflections of the atomic lattice (AL) and superlattice (SL) in the [110] zone.

With the beam along [110] the reciprocal-lattice vectors seen on the detector lie in the
plane spanned by u = [1-10]/√2 and w = [001]. Every reflection is returned as its
momentum transfer q (nm⁻¹) and its in-plane angle (degrees) measured from u towards w.
Adding a grain's in-plane orientation (the detector azimuth of u) gives its azimuth φ.

Seed 000 (Zaluzhnyy et al.): rock-salt PbS AL with a = 0.5936 nm, bct SL of PbS
nanocrystals with c/a ≈ 1.22 and q(1-12) = 1.72 nm⁻¹, [110]_SL ∥ [110]_AL, [001]_SL ∥ [001]_AL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mc_beamline.materials.lattice_angles import THETA_111_DEG, bct_beta_deg
from mc_beamline.materials.pbs import PBS_A_NM


@dataclass(frozen=True)
class Reflection:
    """One in-plane reciprocal-lattice point.

    Attributes
    ----------
    hkl : Miller indices.
    q_nm : momentum transfer, nm⁻¹.
    angle_deg : in-plane angle from [1-10] towards [001], degrees in (-180, 180].
    """

    hkl: tuple[int, int, int]
    q_nm: float
    angle_deg: float


def ccf_peak_positions_deg(c_over_a: float) -> list[float]:
    """Expected CCF peaks between {112}_SL and {111}_AL, ±(90° ± θ ± β), wrapped to (-180, 180].

    A bcc superlattice (c/a = 1) degenerates to six distinct values (±19.47, ±90, ±160.53).
    """
    beta = bct_beta_deg(c_over_a)
    values = set()
    for s1 in (1, -1):
        for s2 in (1, -1):
            for s3 in (1, -1):
                d = s1 * (90.0 + s2 * THETA_111_DEG + s3 * beta)
                values.add(round(wrap_deg(d), 6))
    return sorted(values)


def wrap_deg(angle: float) -> float:
    """Wrap an angle in degrees to (-180, 180]."""
    a = math.fmod(angle, 360.0)
    if a <= -180.0:
        a += 360.0
    elif a > 180.0:
        a -= 360.0
    return a


def _zone_angle(h: int, l: int, qu: float, qw: float) -> float:
    return math.degrees(math.atan2(l * qw, h * qu))


@dataclass(frozen=True)
class BctSuperlattice:
    """Body-centred tetragonal superlattice with lattice constants a = b and c in nm."""

    a_nm: float
    c_nm: float

    @classmethod
    def from_q112(cls, q112_nm: float, c_over_a: float) -> "BctSuperlattice":
        """Lattice whose (1-12) reflection is at ``q112_nm`` (nm⁻¹) for the given c/a."""
        # q(1-12)^2 = (2π√2/a)^2 + (4π/c)^2 = (2π/a)^2 (2 + 4/(c/a)^2)
        a = 2 * math.pi * math.sqrt(2 + 4 / c_over_a**2) / q112_nm
        return cls(a_nm=a, c_nm=a * c_over_a)

    @property
    def c_over_a(self) -> float:
        return self.c_nm / self.a_nm

    def q_hkl(self, h: int, k: int, l: int) -> float:
        """Momentum transfer of reflection (hkl), nm⁻¹."""
        return 2 * math.pi * math.sqrt((h * h + k * k) / self.a_nm**2 + l * l / self.c_nm**2)

    def zone_110_reflections(self) -> list[Reflection]:
        """The (1-10), (002) and (1-12) families in the [110] zone (body-centring: l even)."""
        qu = 2 * math.pi * math.sqrt(2) / self.a_nm  # per unit h along [1-10]
        qw = 2 * math.pi / self.c_nm  # per unit l along [001]
        out = []
        for h, l in [(1, 0), (-1, 0), (0, 2), (0, -2), (1, 2), (1, -2), (-1, 2), (-1, -2)]:
            out.append(
                Reflection((h, -h, l), math.hypot(h * qu, l * qw), _zone_angle(h, l, qu, qw))
            )
        return out


@dataclass(frozen=True)
class RockSaltLattice:
    """Face-centred cubic (rock-salt) atomic lattice with constant a in nm."""

    a_nm: float = PBS_A_NM

    def q_hkl(self, h: int, k: int, l: int) -> float:
        return 2 * math.pi * math.sqrt(h * h + k * k + l * l) / self.a_nm

    def zone_110_reflections(self) -> list[Reflection]:
        """{111} (four) and {200} (two) reflections in the [110] zone."""
        # For (h,-h,l) the in-plane components are q_u = 2π h √2 / a and q_w = 2π l / a.
        qu = 2 * math.pi * math.sqrt(2) / self.a_nm
        qw = 2 * math.pi / self.a_nm
        out = []
        for h, l in [(1, 1), (1, -1), (-1, 1), (-1, -1), (0, 2), (0, -2)]:
            out.append(
                Reflection((h, -h, l), math.hypot(h * qu, l * qw), _zone_angle(h, l, qu, qw))
            )
        return out
