"""The ``mc-beamline saxs`` command: phase analysis of one 1D SAXS curve.

Input: a text file with columns q, I and optionally σ(I), separated by whitespace, commas
or semicolons. Lines that start with ``#``, ``%``, ``;``, ``!`` or ``//`` are comments;
text after ``#`` on a data line is ignored; lines that are not all numbers (column
titles, instrument headers) may precede the data. The data are the longest run of rows
with the same number (≥ 2) of numbers; numeric rows before it with another count are
header (e.g. the count lines of ISIS/LOQ files), a row after it with another count is
bad input. Columns beyond the third are ignored; a third column far smaller than the
scatter of I (see :data:`SIGMA_IMPLAUSIBLE`) is not taken as σ. Rows with q ≤ 0 (a q = 0 placeholder) or
with a non-finite value are dropped; a σ column with a zero, negative or non-finite entry
is not used (σ is then estimated from the scatter of the curve). q is in nm⁻¹ unless
``--q-unit A^-1`` (Å⁻¹, converted ×10).

Output: RESULT.json, written atomically, is :func:`mc_beamline.analysis.saxs.curve.analyse_curve`
of the curve (crystal, fluid, size_distribution, mesophase; described there).

Bad input raises :class:`InputError` (a :class:`ValueError`) with one sentence.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from mc_beamline.analysis.saxs.curve import analyse_curve
from mc_beamline.analysis.saxs.sizes import estimate_noise
from mc_beamline.io.inputs import InputError, check_output
from mc_beamline.io.result_json import write_json

Q_UNITS = {"nm^-1": 1.0, "A^-1": 10.0}
"""Accepted ``--q-unit`` values and their factor to nm⁻¹."""
MIN_POINTS = 20
SIGMA_IMPLAUSIBLE = 10.0
"""A third column whose values are this many times smaller than the point-to-point scatter
of I (median ratio) is not an uncertainty of I (some files put a scaled I there)."""
_COMMENT = ("#", "%", ";", "!", "//")
_SPLIT = re.compile(r"[\s,;]+")


def _numbers(line: str) -> list[float] | None:
    tokens = [t for t in _SPLIT.split(line.strip()) if t]
    if not tokens:
        return None
    try:
        return [float(t) for t in tokens]
    except ValueError:
        return None


def read_curve(path: str | os.PathLike, q_unit: str = "nm^-1") -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str]]:
    """Read a q, I [, σ] text file (see the module docstring).

    Returns q (nm⁻¹, increasing), I, σ (or None) and notes for the user (dropped rows,
    unused σ column).

    Raises
    ------
    InputError
        Missing or unreadable file, no data block, too few points, repeated q.
    """
    path = Path(path)
    if q_unit not in Q_UNITS:
        raise InputError(f"--q-unit must be one of {', '.join(Q_UNITS)}, got {q_unit!r}.")
    if not path.exists():
        raise InputError(f"Curve file {path} does not exist.")
    if not path.is_file():
        raise InputError(f"Curve file {path} is not a file.")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"Curve file {path} cannot be read ({exc.strerror or exc}).") from None
    if b"\x00" in raw[:4096]:
        raise InputError(f"Curve file {path} is binary, not a text table of q, I [, sigma].")
    text = raw.decode("utf-8", errors="replace")
    rows: list[tuple[int, list[float] | None]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith(_COMMENT):
            continue
        if "#" in stripped:
            stripped = stripped.split("#", 1)[0].strip()
            if not stripped:
                continue
        rows.append((number, _numbers(stripped)))
    # runs of numeric rows with the same column count
    best = None
    start = 0
    while start < len(rows):
        vals = rows[start][1]
        if vals is None or len(vals) < 2:
            start += 1
            continue
        end = start
        while end + 1 < len(rows) and rows[end + 1][1] is not None and len(rows[end + 1][1]) == len(vals):
            end += 1
        if best is None or end - start > best[1] - best[0]:
            best = (start, end)
        start = end + 1
    if best is None:
        raise InputError(f"Curve file {path} holds no rows of numbers (expected columns q, I [, sigma]).")
    first, last = best
    n_cols = len(rows[first][1])
    for number, vals in rows[last + 1 :]:
        if vals is not None:
            raise InputError(f"Line {number} of {path} has {len(vals)} numbers but the data rows above "
                                   f"have {n_cols}.")
        raise InputError(f"Line {number} of {path} is not numbers, after the data started at line "
                               f"{rows[first][0]}.")
    data = np.array([vals for _, vals in rows[first : last + 1]], dtype=float)
    notes: list[str] = []
    q = data[:, 0] * Q_UNITS[q_unit]
    i = data[:, 1]
    s = data[:, 2] if n_cols >= 3 else None
    good = np.isfinite(q) & np.isfinite(i) & (q > 0)
    if not good.all():
        notes.append(f"dropped {int((~good).sum())} rows with q <= 0 or a value that is not finite")
    q, i = q[good], i[good]
    if s is not None:
        s = s[good]
        if not (np.all(np.isfinite(s)) and np.all(s > 0)):
            notes.append("the sigma column has zero, negative or non-finite entries and is not used")
            s = None
    if q.size < MIN_POINTS:
        raise InputError(f"Curve file {path} has {q.size} usable points; at least {MIN_POINTS} are needed.")
    order = np.argsort(q, kind="stable")
    q, i = q[order], i[order]
    s = s[order] if s is not None else None
    if np.any(np.diff(q) <= 0):
        raise InputError(f"Curve file {path} has repeated q values.")
    if s is not None and float(np.median(estimate_noise(i) / s)) > SIGMA_IMPLAUSIBLE:
        notes.append("the third column is far smaller than the scatter of the data, so it is not taken as "
                     "sigma")
        s = None
    if not np.any(i > 0):
        raise InputError(f"Curve file {path} has no positive intensity.")
    return q, i, s, notes


def run_saxs(args) -> dict:
    """What ``mc-beamline saxs`` runs: read, check the output, analyse, write; returns the result."""
    out = check_output(args.out, "--out")
    q, i, s, notes = read_curve(args.curve, args.q_unit)
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
