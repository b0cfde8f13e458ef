"""Reading a 1D SAXS curve (q, I [, σ] text columns), streamed and bounded.

Input: a text file with columns q, I and optionally σ(I), separated by whitespace, commas
or semicolons. Lines that start with ``#``, ``%``, ``;``, ``!`` or ``//`` are comments;
text after ``#`` on a data line is ignored; lines that are not all numbers (column
titles, instrument headers) may precede the data. The data are the longest run of rows
with the same number (≥ 2) of numbers; numeric rows before it with another count are
header (e.g. the count lines of ISIS/LOQ files), as are up to :data:`MAX_HEADER_ROWS` rows
with its count. A line that is not numbers, or has
another count, between or after data rows is bad input named by its line number. Columns
beyond the third are ignored; a third column far smaller than the scatter of I (see
:data:`SIGMA_IMPLAUSIBLE`) is not taken as σ. Rows with q ≤ 0 (a q = 0 placeholder) or
with a non-finite value are dropped; a σ column with a zero, negative or non-finite entry
is not used (σ is then estimated from the scatter of the curve). q is in nm⁻¹ unless
``q_unit="A^-1"`` (Å⁻¹, converted ×10).

Bounds: the file may have at most :data:`~mc_beamline.io.text_lines.MAX_TABLE_BYTES` and
:data:`MAX_POINTS` data rows; a curve of more than :data:`REBIN_ABOVE` points is averaged
into :data:`REBIN_TO` log-spaced q bins (with a note). Sanity: a q range that only makes sense in the other unit
(:data:`Q_MAX_MIN_NM`, :data:`Q_MIN_MAX_NM`), decimal commas, constant intensity, and
more than :data:`MAX_NEGATIVE_FRACTION` negative intensities are refused with one sentence.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mc_beamline.analysis.saxs.sizes import estimate_noise
from mc_beamline.io.inputs import InputError
from mc_beamline.io.text_lines import check_table_file, is_decimal_comma, numbered_lines

Q_UNITS = {"nm^-1": 1.0, "A^-1": 10.0}
"""Accepted q units and their factor to nm⁻¹."""
MIN_POINTS = 20
MAX_POINTS = 100_000
"""Most data rows a curve may have (a SAXS curve has 10²–10⁴; more is a mistake or needs rebinning)."""
REBIN_ABOVE = 4096
"""A curve with more usable points than this is rebinned (the analysis time grows faster than linearly)."""
REBIN_TO = 2048
"""Number of log-spaced q bins a long curve is rebinned into (empty bins are dropped)."""
MAX_HEADER_ROWS = 2
"""Numeric rows before the data that are header even with the data's count (count lines)."""
SIGMA_IMPLAUSIBLE = 10.0
"""A third column whose values are this many times smaller than the point-to-point scatter
of I (median ratio) is not an uncertainty of I (some files put a scaled I there)."""
Q_MAX_MIN_NM = 1.0
"""A curve whose largest q is below this (nm⁻¹) is taken for Å⁻¹ data labelled nm⁻¹ (a SAXS curve
in Å⁻¹ ends near 0.2–0.6; one of nanocrystal superlattices in nm⁻¹ runs past their form factor, 2–6)."""
Q_MIN_MAX_NM = 2.5
"""A curve whose smallest q is above this (nm⁻¹) is taken for nm⁻¹ data labelled Å⁻¹."""
MAX_NEGATIVE_FRACTION = 0.1
"""Largest fraction of negative intensities accepted (a few after background subtraction are normal)."""
_COMMENT = ("#", "%", ";", "!", "//")
_SPLIT = re.compile(r"[\s,;]+")
_SPLIT_NO_COMMA = re.compile(r"[\s;]+")


@dataclass(frozen=True)
class SaxsCurve:
    """A checked SAXS curve: q (nm⁻¹, increasing), I (any unit), σ(I) or None, notes for the user."""

    q_nm: np.ndarray
    intensity: np.ndarray
    sigma: np.ndarray | None
    notes: list[str] = field(default_factory=list)


def _numbers(line: str) -> list[float] | None:
    tokens = [t for t in _SPLIT.split(line.strip()) if t]
    if not tokens:
        return None
    try:
        return [float(t) for t in tokens]
    except ValueError:
        return None


def _decimal_comma_line(line: str) -> bool:
    tokens = [t for t in _SPLIT_NO_COMMA.split(line.strip()) if t]
    return len(tokens) >= 2 and all(is_decimal_comma(t) for t in tokens)


def _describe(vals: list[float] | None, n_cols: int) -> str:
    return "is not numbers" if vals is None else f"has {len(vals)} numbers where the data rows have {n_cols}"


def _data_rows(path: Path) -> list[list[float]]:
    """The data rows of the file: the last run of rows with one count (≥ 2) of numbers.

    Earlier runs with another count, or of at most :data:`MAX_HEADER_ROWS` rows, are header;
    a longer earlier run with the data's count (data cut by a stray line), or anything but
    comments after the data, is a malformed line named by its number.
    """
    run: list[list[float]] = []
    run_start = n_cols = 0
    broken_at: tuple[int, list[float] | None] | None = None  # first line after the run that is not data
    earlier: dict[int, tuple[int, int, list[float] | None]] = {}  # count -> (run start, breaking line, its values)
    for number, line in numbered_lines(path, "Curve file"):
        stripped = line.strip()
        if not stripped or stripped.startswith(_COMMENT):
            continue
        if "#" in stripped:
            stripped = stripped.split("#", 1)[0].strip()
            if not stripped:
                continue
        if _decimal_comma_line(stripped):
            raise InputError(f"Line {number} of {path} writes numbers with a decimal comma ({stripped[:40]!r}); "
                             "save the curve with decimal points.")
        vals = _numbers(stripped)
        if vals is not None and len(vals) >= 2:
            if run and len(vals) == n_cols and broken_at is None:
                run.append(vals[:3])
                if len(run) > MAX_POINTS:
                    raise InputError(f"Curve file {path} has more than {MAX_POINTS} data rows; rebin it "
                                     "(e.g. to a few thousand log-spaced q) first.")
                continue
            if len(run) > MAX_HEADER_ROWS and broken_at is None and len(vals) != n_cols:
                broken_at = (number, vals)
                continue
            if len(run) > MAX_HEADER_ROWS:
                brk = broken_at or (number, vals)
                earlier.setdefault(n_cols, (run_start, brk[0], brk[1]))
            run, run_start, n_cols, broken_at = [vals[:3]], number, len(vals), None
        elif run and broken_at is None:
            broken_at = (number, vals)
    if not run:
        raise InputError(f"Curve file {path} holds no rows of numbers (expected columns q, I [, sigma]).")
    if broken_at is not None:
        raise InputError(f"Line {broken_at[0]} of {path} {_describe(broken_at[1], n_cols)}, after the data "
                         f"started at line {run_start}.")
    if n_cols in earlier:
        first, bad, bad_vals = earlier[n_cols]
        raise InputError(f"Line {bad} of {path} {_describe(bad_vals, n_cols)}, between data rows (from line "
                         f"{first} on).")
    return run


def read_curve(path: str | os.PathLike, q_unit: str = "nm^-1") -> SaxsCurve:
    """Read and check a q, I [, σ] text file (see the module docstring).

    Raises
    ------
    InputError
        Missing, oversized or unreadable file, no data block, a malformed line (named by
        its number), decimal commas, too few or too many points, repeated q, a q range
        for the other unit, constant intensity, mostly negative or no positive intensity.
    """
    if q_unit not in Q_UNITS:
        raise InputError(f"--q-unit must be one of {', '.join(Q_UNITS)}, got {q_unit!r}.")
    path = check_table_file(path, "Curve file")
    data = np.array(_data_rows(path), dtype=float)
    notes: list[str] = []
    q = data[:, 0] * Q_UNITS[q_unit]
    i = data[:, 1]
    s = data[:, 2] if data.shape[1] >= 3 else None
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
    _check_q_unit(path, q, q_unit)
    if float(np.ptp(i)) <= 1e-12 * max(float(np.max(np.abs(i))), 1e-300):
        raise InputError(f"Curve file {path} has the same intensity {i[0]:g} at every q; there is nothing "
                         "to analyse.")
    if not np.any(i > 0):
        raise InputError(f"Curve file {path} has no positive intensity.")
    negative = float(np.mean(i < 0))
    if negative > MAX_NEGATIVE_FRACTION:
        raise InputError(f"Curve file {path} has {negative:.0%} negative intensities (at most "
                         f"{MAX_NEGATIVE_FRACTION:.0%} are accepted); check the background subtraction.")
    if negative > 0:
        notes.append(f"{int(np.sum(i < 0))} negative intensities (background subtraction) are kept")
    if s is not None and float(np.median(estimate_noise(i) / s)) > SIGMA_IMPLAUSIBLE:
        notes.append("the third column is far smaller than the scatter of the data, so it is not taken as "
                     "sigma")
        s = None
    if q.size > REBIN_ABOVE:
        notes.append(f"rebinned {q.size} points into log-spaced q bins")
        q, i, s = rebin_log(q, i, s, REBIN_TO)
    return SaxsCurve(q, i, s, notes)


def rebin_log(q: np.ndarray, i: np.ndarray, s: np.ndarray | None,
              n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Average an increasing curve into ``n_bins`` log-spaced q bins; empty bins are dropped.

    q and I are bin means; σ of a bin of n points is sqrt(Σσ²)/n (None stays None).
    """
    edges = np.geomspace(q[0], q[-1] * (1 + 1e-12), n_bins + 1)
    which = np.searchsorted(edges, q, side="right") - 1
    counts = np.bincount(which, minlength=n_bins)
    full = counts > 0
    n = counts[full]
    q_b = np.bincount(which, weights=q, minlength=n_bins)[full] / n
    i_b = np.bincount(which, weights=i, minlength=n_bins)[full] / n
    s_b = None if s is None else np.sqrt(np.bincount(which, weights=s * s, minlength=n_bins)[full]) / n
    return q_b, i_b, s_b


def _check_q_unit(path: Path, q_nm: np.ndarray, q_unit: str) -> None:
    """InputError if the q range (nm⁻¹) only makes sense in the unit other than ``q_unit``."""
    lo, hi = float(q_nm[0]), float(q_nm[-1])
    given = q_unit.replace("^-1", "⁻¹").replace("A", "Å")
    if hi < Q_MAX_MIN_NM:
        raise InputError(f"q in {path} runs from {lo / Q_UNITS[q_unit]:.3g} to {hi / Q_UNITS[q_unit]:.3g} {given}, "
                         f"below {Q_MAX_MIN_NM} nm⁻¹ where no superlattice peak lies; is q in Å⁻¹ "
                         "(--q-unit A^-1)?")
    if lo > Q_MIN_MAX_NM:
        raise InputError(f"q in {path} runs from {lo / Q_UNITS[q_unit]:.3g} to {hi / Q_UNITS[q_unit]:.3g} {given}, "
                         f"which starts above {Q_MIN_MAX_NM} nm⁻¹, beyond the small-angle range; is q in "
                         "nm⁻¹ (--q-unit nm^-1)?")


__all__ = ["MAX_POINTS", "Q_UNITS", "REBIN_ABOVE", "SaxsCurve", "read_curve", "rebin_log"]
