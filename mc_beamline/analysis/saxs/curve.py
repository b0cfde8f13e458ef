"""The analysis of one 1D SAXS curve, as ``mc-beamline saxs`` reports it.

`analyse_curve` returns::

    {"crystal": {"lattice", "a_nm", "peaks_q_nm", "fraction", "c_over_a", "rms_rel_error",
                 "n_peaks_indexed"} | null,
     "fluid": {"dense_fraction", "dilute_fraction"},
     "size_distribution": {"radius_nm", "volume_fraction", "mean_radius_nm"} | null,
     "mesophase": {"d_nm", "peaks_q_nm"} | null}

* crystal: Bragg peaks indexed by :mod:`mc_beamline.analysis.saxs.indexing` (null: no
  lattice explains the peaks, or there are none); ``fraction`` is the number fraction of
  NCs in the supercrystal from the component fit of :mod:`mc_beamline.analysis.saxs.phases`.
* fluid: the number fractions of NCs in the dense and the dilute fluid of the same fit
  (crystal + dense + dilute = 1).
* size_distribution: volume-weighted sphere radii from
  :func:`mc_beamline.analysis.saxs.sizes.size_distribution` (fitted above q = 0.5 nm⁻¹
  where the curve has at least 40 points there, else over the whole curve; radii from
  2/q_max to π/q_min); null only if that fit finds no sphere scattering.
* mesophase: a lamellar mesophase from
  :func:`mc_beamline.analysis.saxs.sizes.find_lamellar_mesophase` (null if none). A
  lamellar "crystal" with the same period is reported here only; "orders" that are all
  indexed reflections of a 3D supercrystal are not a mesophase.

q in nm⁻¹, intensities in any unit (cm⁻¹ for absolute data), lengths in nm.
"""

from __future__ import annotations

import math

import numpy as np

from mc_beamline.analysis.saxs.indexing import index_curve
from mc_beamline.analysis.saxs.phases import fit_phase_series
from mc_beamline.analysis.saxs.sizes import (
    SaxsInputError,
    find_lamellar_mesophase,
    size_distribution,
)


def analyse_curve(q_nm: np.ndarray, intensity: np.ndarray, sigma: np.ndarray | None = None) -> dict:
    """The ``saxs`` RESULT.json object of one curve (q in nm⁻¹)."""
    q = np.asarray(q_nm, dtype=float)
    i = np.asarray(intensity, dtype=float)
    peaks, indexing = index_curve(q, i, sigma)
    try:
        mesophase = find_lamellar_mesophase(q, i, sigma)
    except SaxsInputError:
        mesophase = None
    lattice = indexing.best
    if lattice is not None and lattice.lattice == "lamellar" and mesophase is not None \
            and abs(lattice.a_nm / mesophase.d_nm - 1) < 0.03:
        lattice = None
    if lattice is not None and lattice.lattice != "lamellar" and mesophase is not None:
        indexed = np.array([p for p, h in zip(lattice.peaks_q_nm, lattice.hkl) if h is not None])
        if all(np.min(np.abs(indexed / qm - 1)) <= 0.015 for qm in mesophase.peaks_q_nm):
            mesophase = None  # its "orders" are reflections of the supercrystal
    phases = fit_phase_series(q, i, sigma, lattice=lattice)
    frac = phases.fractions[0]
    frac = np.where(np.isfinite(frac), frac, 0.0)
    if not np.isfinite(phases.fractions[0]).all():
        frac = np.array([1.0, 0.0, 0.0])
    crystal = None
    if lattice is not None:
        crystal = {"lattice": lattice.lattice, "a_nm": lattice.a_nm,
                   "peaks_q_nm": [p for p, h in zip(lattice.peaks_q_nm, lattice.hkl) if h is not None],
                   "fraction": float(frac[2]), "c_over_a": lattice.c_over_a,
                   "rms_rel_error": lattice.rms_rel_error, "n_peaks_indexed": lattice.n_matched}
    above = q >= 0.5
    q_min = 0.5 if above.sum() >= 40 else float(q[0])
    q_fit = q[q >= q_min]
    try:
        sizes = size_distribution(q, i, sigma, q_min_nm=q_min,
                                  radius_nm=np.geomspace(2.0 / q_fit[-1], math.pi / q_fit[0], 60)).as_dict()
    except SaxsInputError:
        sizes = None
    return {"crystal": crystal,
            "fluid": {"dense_fraction": float(frac[1]), "dilute_fraction": float(frac[0])},
            "size_distribution": sizes,
            "mesophase": None if mesophase is None else mesophase.as_dict()}


__all__ = ["analyse_curve"]
