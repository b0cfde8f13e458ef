"""Indexing and sizing over the whole sasmodels paracrystal grid (a report, not a test yet).

Runs :func:`~mc_beamline.analysis.saxs.sq_indexing.index_structure_factor` on every curve of
``data/sasmodels_paracrystal_grid.npz`` (noise as in ``test_sasmodels_validation.py``) and
prints each case, the confusion matrix of the lattice type, and the errors of a (curves
with the right lattice) and of the form factor's mean radius. Targets: lattice right in
≥ 95 % of the grid, a within 1.5 %, radius within 10 %.
Run: ``python -m tests.analysis.saxs.report_sasmodels_grid``.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from mc_beamline.analysis.saxs.sq_indexing import index_structure_factor
from tests.analysis.saxs.test_sasmodels_validation import A_PER_DNN, NOISE, _grid, _noisy


def main() -> None:
    q, curves, lattices, params = _grid()
    counts: Counter = Counter()
    a_err, r_err = [], []
    for k, (lat, (radius, dnn, d_factor, pd)) in enumerate(zip(lattices, params)):
        i, s = _noisy(curves[k], NOISE[k % 2], seed=k)
        found = index_structure_factor(q, i, s)
        best, ff = found.indexing.best, found.form_factor
        name = "none" if best is None else best.lattice
        counts[(lat, name)] += 1
        da = None if best is None or name != lat else best.a_nm / (A_PER_DNN[lat] * dnn) - 1
        dr = None if ff is None else ff.radius_nm / radius - 1
        if da is not None:
            a_err.append(da)
        if dr is not None:
            r_err.append(dr)
        print(f"{lat} R {radius} dnn {dnn} d {d_factor} pd {pd} noise {NOISE[k % 2]}: {name}, "
              f"a error {'-' if da is None else f'{da:+.2%}'}, R error {'-' if dr is None else f'{dr:+.1%}'}")
    found_names = sorted({f for _, f in counts}, key=lambda x: (x not in A_PER_DNN, x))
    print("true \\ found " + " ".join(f"{f:>6}" for f in found_names))
    for t in A_PER_DNN:
        print(f"{t:>13} " + " ".join(f"{counts[(t, f)]:>6}" for f in found_names))
    right = sum(v for (t, f), v in counts.items() if t == f)
    a, r = np.abs(a_err), np.abs(r_err)
    print(f"lattice right {right}/{len(lattices)}; a: rms {np.sqrt(np.mean(a**2)):.2%}, max {a.max():.2%}, "
          f"within 1.5 % {np.mean(a <= 0.015):.0%}; R: rms {np.sqrt(np.mean(r**2)):.1%}, max {r.max():.1%}, "
          f"within 10 % {np.mean(r <= 0.10):.0%}")


if __name__ == "__main__":
    main()
