"""Angles between reflections of cubic and body-centred tetragonal (bct) lattices in the [110] zone.

With the beam along [110], the reflections seen on the detector lie in the plane spanned by
[1-10] and [001]. These angles fix where the atomic {111} and the superlattice {112}
reflections of a PbS mesocrystal appear relative to each other (Zaluzhnyy et al.), and so the
peaks of their angular cross-correlation. Angles in degrees.
"""

from __future__ import annotations

import math

THETA_111_DEG = math.degrees(math.atan(1.0 / math.sqrt(2.0)))
"""Angle between [1-10] and <111> in the [110] zone of a cubic lattice, 35.26°."""


def bct_beta_deg(c_over_a: float) -> float:
    """β = atan(c / (a√2)) in degrees, the angle between [001]_SL and (1-12)_SL of a bct lattice."""
    return math.degrees(math.atan(c_over_a / math.sqrt(2.0)))


def c_over_a_from_beta(beta_deg: float) -> float:
    """Inverse of :func:`bct_beta_deg`: c/a = √2 · tan β."""
    return math.sqrt(2.0) * math.tan(math.radians(beta_deg))


__all__ = ["THETA_111_DEG", "bct_beta_deg", "c_over_a_from_beta"]
