"""The ``mc-beamline saxs`` command: phase analysis of one 1D SAXS curve.

Input: a text file with columns q, I and optionally σ(I), read and checked by
:func:`mc_beamline.io.saxs_curve.read_curve` (format, size bounds and sanity checks are
described there). q is in nm⁻¹ unless ``--q-unit A^-1`` (Å⁻¹, converted ×10).

Output: RESULT.json, written atomically, is :func:`mc_beamline.analysis.saxs.curve.analyse_curve`
of the curve (crystal, fluid, size_distribution, mesophase; described there).

Bad input raises :class:`InputError` (a :class:`ValueError`) with one sentence.
"""

from __future__ import annotations

from mc_beamline.analysis.saxs.curve import analyse_curve
from mc_beamline.io.inputs import check_output
from mc_beamline.io.result_json import write_json
from mc_beamline.io.saxs_curve import Q_UNITS, read_curve


def run_saxs(args) -> dict:
    """What ``mc-beamline saxs`` runs: read, check the output, analyse, write; returns the result."""
    out = check_output(args.out, "--out")
    curve = read_curve(args.curve, args.q_unit)
    q, i, s, notes = curve.q_nm, curve.intensity, curve.sigma, curve.notes
    result = analyse_curve(q, i, s)
    write_json(result, out)
    cr = result["crystal"]
    what = (f"{cr['lattice']} a = {cr['a_nm']:.3f} ± {cr['a_nm_err']:.3f} nm ({len(cr['peaks_q_nm'])} peaks on "
            f"{cr['indexed_on']}, score {cr['score']:.2f}), crystal fraction {cr['fraction']:.2f}" if cr else "no lattice")
    if cr and cr["c_over_a_err"] is not None:
        what += f", c/a = {cr['c_over_a']:.3f} ± {cr['c_over_a_err']:.3f}"
    sd = result["size_distribution"]
    if sd is not None:
        what += f"; mean radius {sd['mean_radius_nm']:.2f} ± {sd['mean_radius_nm_err']:.2f} nm"
    fl = result["fluid"]
    print(f"saxs {args.curve}: {q.size} points, {what}; dense fluid {fl['dense_fraction']:.2f}, dilute fluid "
          f"{fl['dilute_fraction']:.2f}" + (f"; {'; '.join(notes)}" if notes else "") + f"; wrote {out}")
    return result


__all__ = ["Q_UNITS", "analyse_curve", "read_curve", "run_saxs"]
