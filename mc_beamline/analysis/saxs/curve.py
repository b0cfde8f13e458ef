"""The analysis of one 1D SAXS curve, as ``mc-beamline saxs`` reports it.

`analyse_curve` returns::

    {"crystal": {"lattice", "a_nm", "a_nm_err", "peaks_q_nm", "hkl", "fraction", "c_over_a",
                 "c_over_a_err", "rms_rel_error", "n_peaks_indexed", "score", "indexed_on"} | null,
     "fluid": {"dense_fraction", "dilute_fraction"},
     "size_distribution": {"radius_nm", "volume_fraction", "mean_radius_nm",
                           "mean_radius_nm_err", "method"} | null,
     "form_factor": {"radius_nm", "radius_nm_err", "polydispersity"} | null,
     "mesophase": {"d_nm", "peaks_q_nm"} | null}

* crystal: Bragg peaks of S(q) = I / P (or of I(q)) indexed by
  :mod:`mc_beamline.analysis.saxs.sq_indexing` (null: no lattice explains the peaks, or
  there are none); ``fraction`` is the number fraction of NCs in the supercrystal from the
  component fit of :mod:`mc_beamline.analysis.saxs.phases`.
* form_factor: the sphere form factor P that S(q) was divided by.
* fluid: the number fractions of NCs in the dense and the dilute fluid of the same fit
  (crystal + dense + dilute = 1).
* size_distribution: volume-weighted sphere radii from
  :func:`mc_beamline.analysis.saxs.sizes.size_distribution` (fitted above q = 0.5 nm⁻¹
  where the curve has at least 40 points there, else over the whole curve; radii from
  2/q_max to π/q_min); null only if that fit finds no sphere scattering. With a crystal, or
  at least :data:`DENSE_SIZING_FRACTION` of the NCs in the dense fluid, the Gaussian of the
  fitted form factor instead (``method`` "sphere fit").
* mesophase: a lamellar mesophase from
  :func:`mc_beamline.analysis.saxs.sizes.find_lamellar_mesophase` (null if none). A
  lamellar "crystal" with the same period is reported here only; "orders" that are all
  indexed reflections of a 3D supercrystal are not a mesophase.

q in nm⁻¹, intensities in any unit (cm⁻¹ for absolute data), lengths in nm.
"""

from __future__ import annotations

import math

import numpy as np

from mc_beamline.analysis.saxs.phases import fit_phase_series
from mc_beamline.analysis.saxs.sizes import (
    SaxsInputError,
    find_lamellar_mesophase,
    size_distribution,
)
from mc_beamline.analysis.saxs.sq_indexing import index_structure_factor


DENSE_SIZING_FRACTION = 0.5
"""With at least this number fraction of NCs in the dense fluid (or a crystal), the sizes
come from the fitted sphere form factor, not the regularised NNLS fit."""


def size_radius_grid(q_nm: np.ndarray) -> np.ndarray:
    """Radius grid (nm) of the size distribution fitted over ``q_nm``: 60 radii, log-spaced
    from 2/q_max (smaller spheres scatter flat) to π/q_min (larger ones are unresolved)."""
    return np.geomspace(2.0 / q_nm[-1], math.pi / q_nm[0], 60)


def analyse_curve(q_nm: np.ndarray, intensity: np.ndarray, sigma: np.ndarray | None = None) -> dict:
    """The ``saxs`` RESULT.json object of one curve (q in nm⁻¹)."""
    q = np.asarray(q_nm, dtype=float)
    i = np.asarray(intensity, dtype=float)
    found = index_structure_factor(q, i, sigma)
    indexing = found.indexing
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
        crystal = {"lattice": lattice.lattice, "a_nm": lattice.a_nm, "a_nm_err": lattice.a_err_nm,
                   "peaks_q_nm": [p for p, h in zip(lattice.peaks_q_nm, lattice.hkl) if h is not None],
                   "hkl": [list(h) for h in lattice.hkl if h is not None],
                   "fraction": float(frac[2]), "c_over_a": lattice.c_over_a, "c_over_a_err": lattice.c_over_a_err,
                   "rms_rel_error": lattice.rms_rel_error, "n_peaks_indexed": lattice.n_matched,
                   "score": lattice.score, "indexed_on": found.source}
    above = q >= 0.5
    q_min = 0.5 if above.sum() >= 40 else float(q[0])
    q_fit = q[q >= q_min]
    radii = size_radius_grid(q_fit)
    ff = found.form_factor
    if ff is not None and (lattice is not None or frac[1] >= DENSE_SIZING_FRACTION):
        # a structure factor (Bragg peaks, or the dense fluid's S(q) ≠ 1) distorts the NNLS
        # fit of sphere sizes: the form factor fitted beside the peaks sizes the NCs
        sizes = ff.size_distribution(np.geomspace(min(radii[0], 0.5 * ff.radius_nm), max(radii[-1], 2.0 * ff.radius_nm),
                                                  60)).as_dict()
    else:
        try:
            sizes = size_distribution(q, i, sigma, q_min_nm=q_min, radius_nm=radii).as_dict()
        except SaxsInputError:
            sizes = None
    return {"crystal": crystal,
            "fluid": {"dense_fraction": float(frac[1]), "dilute_fraction": float(frac[0])},
            "size_distribution": sizes,
            "form_factor": None if ff is None else ff.as_dict(),
            "mesophase": None if mesophase is None else mesophase.as_dict()}


__all__ = ["analyse_curve", "size_radius_grid"]
