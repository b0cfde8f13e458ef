"""CdSe material data for the flow-reactor simulation (seed 002).

Sizes of magic-size clusters (MSCs) and nanocrystals (NCs) and their number of CdSe units.
The literature data shared with the analysis (family positions, the Yu et al. sizing curve
and its inverse, h·c) are in :mod:`mc_beamline.materials.cdse`.

Seed 002 (Palencia et al., Nanoscale 2020, 12, 22928), Fig. 4 table: absorption maximum
→ diameter from the Yu curve d_Abs → CdSe units N from d_Abs for a sphere:

    350 nm → 1.09 nm → 12,  380 → 1.37 → 25,  403 → 1.58 → 38,  437 → 1.85 → 61,
    467 → 2.06 → 84

The paper's N follow N = ρ·(π/6)·d³ with ρ ≈ 18.3 CdSe units per nm³, the density used
here. (SCIENCE.md lists 13, 19, 33, 66, 84: those are the cluster formulas (CdSe)13, 19,
33, 66 of the species column, not the paper's N_CdSe; the paper wins.) The simulated MSC
absorption maxima are the family positions of
:data:`~mc_beamline.materials.cdse.MSC_FAMILY_NM` (350, 380, 403, 437, 465 nm: the paper
writes 380/382 and 465/467 nm for the same families; Yu gives 2.06 nm at 465 nm and
2.075 nm at 467 nm).

SAXS radii of the three largest MSCs are the paper's SAXS values (diameters 1.74, 1.88,
2.04 nm for CdSe-403, -437, -465; radii 0.87, 0.94, 1.02 nm); the two smallest families,
which SAXS could not resolve, get d_Abs / 2.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from mc_beamline.materials.cdse import MSC_FAMILY_NM

CDSE_UNITS_PER_NM3 = 18.3
"""CdSe formula units per nm³ of NC volume, as implied by the seed-002 aggregation numbers."""


def cdse_units(diameter_nm: float | np.ndarray) -> float | np.ndarray:
    """Number of CdSe formula units in a sphere of ``diameter_nm`` (nm)."""
    return CDSE_UNITS_PER_NM3 * math.pi / 6.0 * np.asarray(diameter_nm, dtype=float) ** 3


@dataclass(frozen=True)
class MscFamily:
    """One magic-size-cluster family.

    Attributes
    ----------
    name : "CdSe-437" etc. (the absorption maximum in nm).
    peak_nm : absorption maximum of the simulated cluster, nm.
    fwhm_nm : FWHM of its absorption peak, nm.
    diameter_nm : d_Abs from the Yu curve (seed 002, Fig. 4), nm.
    units : CdSe units per cluster (the paper's N_CdSe).
    saxs_radius_nm : radius a SAXS fit sees, nm.
    """

    name: str
    peak_nm: float
    fwhm_nm: float
    diameter_nm: float
    units: int
    saxs_radius_nm: float


MSC_FAMILIES: tuple[MscFamily, ...] = (
    MscFamily("CdSe-350", MSC_FAMILY_NM["CdSe-350"], 8.0, 1.09, 12, 0.545),
    MscFamily("CdSe-380", MSC_FAMILY_NM["CdSe-380"], 9.0, 1.37, 25, 0.685),
    MscFamily("CdSe-403", MSC_FAMILY_NM["CdSe-403"], 10.0, 1.58, 38, 0.87),
    MscFamily("CdSe-437", MSC_FAMILY_NM["CdSe-437"], 11.0, 1.85, 61, 0.94),
    MscFamily("CdSe-465", MSC_FAMILY_NM["CdSe-465"], 12.0, 2.06, 84, 1.02),
)
"""The five families of seed 002, smallest first."""

MSC_BY_NAME = {f.name: f for f in MSC_FAMILIES}

@dataclass(frozen=True)
class CdSePopulation:
    """CdSe particles in a volume of reaction mixture.

    Attributes
    ----------
    msc_um : particle concentration of each MSC family (µM of clusters), keyed by name.
    nc_um : number concentration of nanocrystals, µM.
    nc_mean_diameter_nm, nc_std_diameter_nm : mean and standard deviation of the NC
        diameters (number distribution, taken as Gaussian), nm.
    """

    msc_um: Mapping[str, float] = field(default_factory=dict)
    nc_um: float = 0.0
    nc_mean_diameter_nm: float = 0.0
    nc_std_diameter_nm: float = 0.0

    def msc_cdse_mm(self, name: str) -> float:
        """CdSe units held by MSC family ``name``, mM."""
        return self.msc_um.get(name, 0.0) * MSC_BY_NAME[name].units / 1000.0

    @property
    def nc_cdse_mm(self) -> float:
        """CdSe units held by the nanocrystals, mM (third moment of the Gaussian)."""
        mu, sd = self.nc_mean_diameter_nm, self.nc_std_diameter_nm
        third = mu**3 + 3.0 * mu * sd**2
        return self.nc_um * CDSE_UNITS_PER_NM3 * math.pi / 6.0 * third / 1000.0

    def nc_diameter_nodes(self, n: int = 15) -> tuple[np.ndarray, np.ndarray]:
        """Quadrature of the NC number distribution: diameters (nm) and weights summing to 1.

        Gauss–Hermite nodes of the Gaussian; nodes below 1 nm (the tail of a wide
        distribution) are dropped and the weights renormalised.
        """
        mu, sd = self.nc_mean_diameter_nm, self.nc_std_diameter_nm
        if sd <= 1e-6 * max(mu, 1e-9):
            return np.array([mu]), np.array([1.0])
        x, w = np.polynomial.hermite_e.hermegauss(n)
        d = mu + sd * x
        keep = d > 1.0
        w = w[keep] / w[keep].sum()
        return d[keep], w


__all__ = [
    "CDSE_UNITS_PER_NM3",
    "CdSePopulation",
    "MSC_BY_NAME",
    "MSC_FAMILIES",
    "MscFamily",
    "cdse_units",
]
