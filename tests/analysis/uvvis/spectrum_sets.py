"""The reactor-model spectrum sets the UV-Vis tests and the UV-Vis benchmark both use."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from mc_beamline.physics.cdse import MSC_FAMILIES, CdSePopulation
from mc_beamline.physics.flow_reactor import ReactorConditions


def reactor_conditions() -> Iterator[ReactorConditions]:
    """Nucleation 190–350 °C; growth at, 40 °C below and 90 °C below it; 1.5–14 s (204 conditions)."""
    for t_nuc in range(190, 351, 10):
        for drop in (0, 40, 90):
            for t in (1.5, 4.5, 7.6, 14.0):
                yield ReactorConditions.at_reaction_time(t_nuc, t_nuc - drop, t)


def random_mixtures(n: int = 120, seed: int = 2020) -> list[CdSePopulation]:
    """Random MSC mixtures (each family 1–30 µM with probability 0.35) on NCs of 2.1–3.9 nm
    (3–40 µM, absent one time in five): harder than the reactor makes them."""
    rng = np.random.default_rng(seed)
    mixtures = []
    for _ in range(n):
        msc = {f.name: float(rng.uniform(1, 30)) if rng.random() < 0.35 else 0.0 for f in MSC_FAMILIES}
        nc_um = float(rng.uniform(3, 40)) if rng.random() < 0.8 else 0.0
        d = float(rng.uniform(2.1, 3.9))
        mixtures.append(CdSePopulation(msc, nc_um, d, float(rng.uniform(0.05, 0.09)) + 0.05 * (d - 2.1)))
    return mixtures
