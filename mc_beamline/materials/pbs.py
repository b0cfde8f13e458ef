"""Lead sulphide (PbS), the nanocrystals of the seed-000 mesocrystal (Zaluzhnyy et al.)."""

from __future__ import annotations

PBS_A_NM = 0.5936
"""Rock-salt lattice constant of PbS, nm (its {111} ring lies at q = 2π√3/a ≈ 18.33 nm⁻¹)."""

__all__ = ["PBS_A_NM"]
