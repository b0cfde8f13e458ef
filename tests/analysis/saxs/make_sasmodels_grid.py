"""Generate the sasmodels validation curves of ``test_sasmodels_validation.py``.

The curves are sasmodels' (the SasView team's code) ``<lattice>_paracrystal`` models with a
Gaussian radius polydispersity. sasmodels computes the paracrystal intensity as
lattice_scale(R) · ⟨Z(q)⟩ · F²(q; R) with ⟨Z⟩ the orientation-averaged lattice factor
(independent of R) and lattice_scale ∝ R³, averaged over the radius distribution. The
orientation average costs seconds per curve and would be repeated for every radius node,
so this script calls sasmodels for ⟨Z⟩ once per lattice (paracrystal over sphere at a tiny
radius) and sums sasmodels' sphere intensities over sasmodels' own Gaussian weights; the
test checks at a few q that this equals sasmodels' polydisperse paracrystal called directly.
The noise-free curves are stored in ``data/sasmodels_paracrystal_grid.npz``; the test adds
the noise.

Grid: lattice (fcc, bcc, sc paracrystal) × radius R (2.3, 4.0 nm) × nearest-neighbour
distance dnn/(2R) (1.065: the 0.3 nm gap of Au NC supercrystals at R = 2.3 nm; 1.25) ×
distortion d_factor (0.02, 0.05) × Gaussian radius polydispersity (0.05, 0.10; 7 points
over ±3 σ). q from 0.2 to 6 nm⁻¹ in steps of 0.01 nm⁻¹; sasmodels works in Å, Å⁻¹.

Run: ``python -m tests.analysis.saxs.make_sasmodels_grid``.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

Q_NM = np.round(np.arange(0.2, 6.0 + 1e-9, 0.01), 4)
LATTICES = ("fcc", "bcc", "sc")
RADII_NM = (2.3, 4.0)
DNN_OVER_2R = (1.065, 1.25)
D_FACTORS = (0.02, 0.05)
POLYDISPERSITIES = (0.05, 0.10)
PD_POINTS = 7
PD_SIGMAS = 3.0
SLD = {"sld": 119.0, "sld_solvent": 9.4, "scale": 1.0, "background": 0.0}
"""Au in toluene, 10⁻⁶ Å⁻²."""
TINY_RADIUS_A = 0.5
OUT = Path(__file__).with_name("data") / "sasmodels_paracrystal_grid.npz"


def grid_parameters() -> list[tuple[str, float, float, float, float]]:
    """(lattice, R nm, dnn nm, d_factor, polydispersity) of every curve, in file order."""
    return [(lat, r, round(2 * r * g, 4), d, pd)
            for lat, r, g, d, pd in itertools.product(LATTICES, RADII_NM, DNN_OVER_2R, D_FACTORS, POLYDISPERSITIES)]


def _call(model: str, q_nm: np.ndarray, **pars) -> np.ndarray:
    from sasmodels.core import load_model
    from sasmodels.direct_model import call_kernel

    kernel = load_model(model, dtype="double").make_kernel([np.asarray(q_nm, float) / 10.0])
    return np.asarray(call_kernel(kernel, {**SLD, **pars}), float)


def lattice_factor(lattice: str, dnn_nm: float, d_factor: float, q_nm: np.ndarray = Q_NM) -> np.ndarray:
    """sasmodels' lattice_scale(R) ⟨Z(q)⟩ / V(R) at R = :data:`TINY_RADIUS_A` (F² = 1 there)."""
    pars = {"dnn": dnn_nm * 10.0, "d_factor": d_factor, "radius": TINY_RADIUS_A}
    return _call(f"{lattice}_paracrystal", q_nm, **pars) / _call("sphere", q_nm, radius=TINY_RADIUS_A)


def paracrystal_curve(lattice: str, radius_nm: float, dnn_nm: float, d_factor: float, pd: float,
                      q_nm: np.ndarray = Q_NM, z: np.ndarray | None = None) -> np.ndarray:
    """I(q) (cm⁻¹) of sasmodels' polydisperse ``<lattice>_paracrystal`` (q in nm⁻¹), composed
    from its lattice factor ``z`` (:func:`lattice_factor`) and sasmodels' sphere."""
    from sasmodels.weights import get_weights

    if z is None:
        z = lattice_factor(lattice, dnn_nm, d_factor, q_nm)
    r, w = get_weights("gaussian", PD_POINTS, pd, PD_SIGMAS, radius_nm * 10.0, (0.0, np.inf), True)
    v = 4.0 / 3.0 * np.pi * r**3
    total = sum(wi * (ri / TINY_RADIUS_A) ** 3 * vi * _call("sphere", q_nm, radius=ri) for ri, wi, vi in zip(r, w, v))
    return z * total / float(np.sum(w * v))


def direct_curve(lattice: str, radius_nm: float, dnn_nm: float, d_factor: float, pd: float,
                 q_nm: np.ndarray) -> np.ndarray:
    """The same curve by sasmodels' polydisperse paracrystal model itself (slow: few q only)."""
    return _call(f"{lattice}_paracrystal", q_nm, dnn=dnn_nm * 10.0, d_factor=d_factor, radius=radius_nm * 10.0,
                 radius_pd=pd, radius_pd_n=PD_POINTS, radius_pd_nsigma=PD_SIGMAS)


def main() -> None:
    params = grid_parameters()
    factors: dict[tuple, np.ndarray] = {}
    curves = []
    for lat, r, dnn, d, pd in params:
        key = (lat, dnn, d)
        if key not in factors:
            factors[key] = lattice_factor(lat, dnn, d)
        curves.append(paracrystal_curve(lat, r, dnn, d, pd, z=factors[key]))
    OUT.parent.mkdir(exist_ok=True)
    np.savez_compressed(OUT, q_nm=Q_NM, intensity=np.stack(curves),
                        lattice=np.array([p[0] for p in params]),
                        params=np.array([p[1:] for p in params], float))


if __name__ == "__main__":
    main()
