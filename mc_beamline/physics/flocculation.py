"""Flocculant addition and the self-assembly pathway it triggers (seed 004, phenomenological).

A colloid of nanocrystals (NCs, ``colloid_volume_ul`` µL, default 500 µL) receives a
flocculant (e.g. (N2H5)4Sn2S6, stock ``stock_mm`` mM, default 500 mM) from a syringe pump
at ``rate_ul_s`` µL/s until ``volume_ul`` µL have been added. With V µL added the
flocculant concentration in the cell is

    c(V) = stock · V / (V0 + V)   (mM; V0 the colloid volume)

and it rises continuously during the addition (V = rate · t_add). Its final value
``c_final`` = c(volume) and the mean ramp ``c_final / addition_time`` (mM/s) decide what
happens (seed 004: a gentle increase of the flocculant up to ~50 mM gives one-step
nucleation of supercrystals (SCs) in the colloid; a rapid addition of 100–125 mM goes
through a dense disordered fluid first, two-step):

* ``c_final < C_MIN_MM`` (20 mM): the NCs stay dispersed, pathway ``"none"`` (simulated as
  one-step with ``crystal_final = 0``: the dilute colloid forever).
* Square-well picture: the flocculant screens the NC charges and sets an attraction of
  depth u0/kT ≈ c / ``U0_MM_PER_KT`` (15 mM per kT): ~3.3 kT at 50 mM, in the 3–4 kT
  window that favours crystals; 100–125 mM (6.7–8.3 kT) is a deep quench, where the
  colloid first condenses into a dense liquid (or, deeper still, arrests as a gel).
* ``"two-step"`` if c_final ≥ ``C_TWO_STEP_MM`` (80 mM) *and* the mean ramp
  c_final / addition_time ≥ ``RAMP_TWO_STEP_MM_S`` (2 mM/s, a rapid addition): dilute →
  dense fluid (``dense_final`` 0.85, τ_dense 20 s) → SC (τ_crystal 150 s).
* ``"one-step"`` otherwise (any slow addition, or a moderate concentration): SCs grow in
  the colloid with Avrami kinetics (n = 2), ``crystal_final`` = 0.8 · min(1, (c − 20)/30)
  and τ_crystal = 150 s · 30 / (c − 20), clipped to [60, 600] s (a deeper quench
  crystallises faster).

Kinetics clock: the model's t = 0 (:class:`~mc_beamline.physics.assembly.AssemblyModel`)
is the moment c crosses ``C_MIN_MM`` during the addition, computed exactly from the
linear volume ramp: V* = C_MIN · V0 / (stock − C_MIN), t_onset = V* / rate. A time
``elapsed_s`` after the start of the addition is model time ``elapsed_s − onset_s``.

The same code serves the simulated IOC (:mod:`mc_beamline.sim_iocs.assembly`), the tests
and the demo, so the truth of a run follows from the plan parameters::

    floc = Flocculation(volume_ul=volume_for(110.0), rate_ul_s=100.0)   # rapid, 110 mM
    floc.pathway                        # "two-step"
    truth(floc, "fcc", elapsed_s=60.0)  # {"dilute": .., "dense": .., "crystal": ..}

Units: volumes µL, concentrations mM, rates µL/s, times s. Pure numpy, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mc_beamline.physics.assembly import AssemblyModel

DEFAULT_COLLOID_VOLUME_UL = 500.0
"""Volume of the NC colloid in the cell before the addition, µL."""
DEFAULT_STOCK_MM = 500.0
"""Flocculant concentration in the syringe, mM."""
C_MIN_MM = 20.0
"""Below this flocculant concentration the NCs stay dispersed, mM."""
U0_MM_PER_KT = 15.0
"""Flocculant concentration per kT of square-well depth, mM."""
C_TWO_STEP_MM = 80.0
"""Smallest final concentration of a two-step (dense fluid first) pathway, mM."""
RAMP_TWO_STEP_MM_S = 2.0
"""Smallest mean concentration ramp c_final / addition time of a two-step pathway, mM/s."""
C_SATURATION_MM = 30.0
"""One-step: concentration above C_MIN_MM at which the crystal yield saturates, mM."""
ONE_STEP_CRYSTAL_MAX = 0.8
ONE_STEP_TAU_S = 150.0
"""One-step Avrami time at c = C_MIN_MM + C_SATURATION_MM (50 mM), s."""
ONE_STEP_TAU_LIMITS_S = (60.0, 600.0)
ONE_STEP_AVRAMI_N = 2.0
TWO_STEP_DENSE_FINAL = 0.85
TWO_STEP_TAU_DENSE_S = 20.0
TWO_STEP_TAU_CRYSTAL_S = 150.0
PATHWAYS = ("none", "one-step", "two-step")
_REL_TOL = 1e-9
"""Relative tolerance of the threshold comparisons (a volume from :func:`volume_for` lands
on the intended side of a threshold despite rounding)."""


def concentration_mm(added_ul: float, colloid_volume_ul: float = DEFAULT_COLLOID_VOLUME_UL,
                     stock_mm: float = DEFAULT_STOCK_MM) -> float:
    """Flocculant concentration (mM) in the cell after ``added_ul`` µL of stock were added."""
    v = max(float(added_ul), 0.0)
    return float(stock_mm) * v / (float(colloid_volume_ul) + v) if v > 0 else 0.0


def volume_for(final_mm: float, colloid_volume_ul: float = DEFAULT_COLLOID_VOLUME_UL,
               stock_mm: float = DEFAULT_STOCK_MM) -> float:
    """µL of stock to add to ``colloid_volume_ul`` µL of colloid to reach ``final_mm`` mM.

    Raises
    ------
    ValueError
        If ``final_mm`` is negative or not below the stock concentration.
    """
    c, s = float(final_mm), float(stock_mm)
    if not (math.isfinite(c) and 0.0 <= c < s):
        raise ValueError(f"A final concentration must lie in [0, {s:g}) mM (the stock), got {final_mm!r}.")
    return c * float(colloid_volume_ul) / (s - c)


def well_depth_kt(c_mm: float) -> float:
    """Square-well depth u0/kT of the NC attraction at flocculant concentration ``c_mm`` (mM)."""
    return max(float(c_mm), 0.0) / U0_MM_PER_KT


@dataclass(frozen=True)
class Flocculation:
    """One flocculant addition to a colloid.

    Attributes
    ----------
    colloid_volume_ul : colloid volume before the addition, µL (> 0).
    stock_mm : flocculant concentration in the syringe, mM (> 0).
    volume_ul : volume of stock added, µL (≥ 0; the volume actually dispensed if the
        addition was stopped early).
    rate_ul_s : pump rate, µL/s (> 0).
    """

    colloid_volume_ul: float = DEFAULT_COLLOID_VOLUME_UL
    stock_mm: float = DEFAULT_STOCK_MM
    volume_ul: float = 0.0
    rate_ul_s: float = 1.0

    def __post_init__(self):
        for name in ("colloid_volume_ul", "stock_mm", "rate_ul_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}.")
        if not (math.isfinite(self.volume_ul) and self.volume_ul >= 0):
            raise ValueError(f"volume_ul must be a non-negative number of µL, got {self.volume_ul!r}.")

    def concentration_mm(self, elapsed_s: float) -> float:
        """Concentration (mM) ``elapsed_s`` s after the addition started (0 before it)."""
        added = min(max(float(elapsed_s), 0.0) * self.rate_ul_s, self.volume_ul)
        return concentration_mm(added, self.colloid_volume_ul, self.stock_mm)

    @property
    def final_mm(self) -> float:
        """Flocculant concentration after the addition, mM."""
        return concentration_mm(self.volume_ul, self.colloid_volume_ul, self.stock_mm)

    @property
    def addition_time_s(self) -> float:
        """Duration of the addition, volume / rate, s."""
        return self.volume_ul / self.rate_ul_s

    @property
    def ramp_mm_s(self) -> float:
        """Mean concentration ramp c_final / addition time, mM/s (inf for no addition time)."""
        t = self.addition_time_s
        return self.final_mm / t if t > 0 else (math.inf if self.final_mm > 0 else 0.0)

    @property
    def well_depth_kt(self) -> float:
        """Square-well depth u0/kT at the final concentration."""
        return well_depth_kt(self.final_mm)

    @property
    def onset_s(self) -> float:
        """Time after the addition start at which c crosses :data:`C_MIN_MM`, s (inf if never)."""
        if self.final_mm < C_MIN_MM * (1 - _REL_TOL):
            return math.inf
        v_star = C_MIN_MM * self.colloid_volume_ul / (self.stock_mm - C_MIN_MM)
        return min(v_star, self.volume_ul) / self.rate_ul_s

    @property
    def pathway(self) -> str:
        """``"none"`` (stays dispersed), ``"one-step"`` or ``"two-step"`` (see module docstring)."""
        c = self.final_mm
        if c < C_MIN_MM * (1 - _REL_TOL):
            return "none"
        if c >= C_TWO_STEP_MM * (1 - _REL_TOL) and self.ramp_mm_s >= RAMP_TWO_STEP_MM_S * (1 - _REL_TOL):
            return "two-step"
        return "one-step"

    def model_time_s(self, elapsed_s: float) -> float:
        """Model time of :class:`AssemblyModel` (s) ``elapsed_s`` s after the addition started.

        Negative (pure dilute colloid) before the onset and for pathway ``"none"``.
        """
        onset = self.onset_s
        return float(elapsed_s) - onset if math.isfinite(onset) else -1.0


def kinetics(flocculation: Flocculation) -> dict:
    """Keyword arguments of :class:`AssemblyModel` for ``flocculation`` (pathway and rates)."""
    pathway = flocculation.pathway
    c = flocculation.final_mm
    if pathway == "none":
        return {"pathway": "one-step", "crystal_final": 0.0}
    if pathway == "two-step":
        return {"pathway": "two-step", "dense_final": TWO_STEP_DENSE_FINAL, "tau_dense_s": TWO_STEP_TAU_DENSE_S,
                "tau_crystal_s": TWO_STEP_TAU_CRYSTAL_S}
    excess = c - C_MIN_MM
    lo, hi = ONE_STEP_TAU_LIMITS_S
    tau = min(max(ONE_STEP_TAU_S * C_SATURATION_MM / excess, lo), hi) if excess > 0 else hi
    return {"pathway": "one-step", "crystal_final": ONE_STEP_CRYSTAL_MAX * min(1.0, excess / C_SATURATION_MM),
            "tau_crystal_s": tau, "avrami_n": ONE_STEP_AVRAMI_N}


def assembly_model(flocculation: Flocculation, lattice: str = "fcc", radius_nm: float = 2.3,
                   **overrides) -> AssemblyModel:
    """The :class:`AssemblyModel` of the colloid after ``flocculation``.

    Parameters
    ----------
    flocculation : the addition (final concentration, rate).
    lattice : supercrystal lattice (``"fcc"``, ``"bcc"``, ``"hcp"``, …).
    radius_nm : NC radius, nm (4.6 nm Au NCs: 2.3).
    overrides : further :class:`AssemblyModel` fields (e.g. ``gap_nm``); they win over the
        kinetics derived from the flocculation.
    """
    kwargs = kinetics(flocculation)
    kwargs.update(lattice=lattice, radius_nm=radius_nm)
    kwargs.update(overrides)
    return AssemblyModel(**kwargs)


def truth(flocculation: Flocculation, lattice: str = "fcc", elapsed_s: float = 0.0, **model_kwargs
          ) -> dict[str, float]:
    """Phase fractions ``{"dilute", "dense", "crystal"}`` (sum 1) ``elapsed_s`` s after the
    addition started (before the addition: pass a negative time; pure dilute colloid)."""
    model = assembly_model(flocculation, lattice, **model_kwargs)
    return model.truth(flocculation.model_time_s(elapsed_s))


__all__ = [
    "C_MIN_MM",
    "C_TWO_STEP_MM",
    "DEFAULT_COLLOID_VOLUME_UL",
    "DEFAULT_STOCK_MM",
    "Flocculation",
    "PATHWAYS",
    "RAMP_TWO_STEP_MM_S",
    "U0_MM_PER_KT",
    "assembly_model",
    "concentration_mm",
    "kinetics",
    "truth",
    "volume_for",
    "well_depth_kt",
]
