"""Offline analysis command ``mc-beamline msc SPECTRA.csv --out RESULT.json``.

SPECTRA.csv: comma-separated, a header row, then one row per wavelength. The first column
is the wavelength in nm (250–900 nm, strictly increasing or strictly decreasing), every
further column is the absorbance of one spectrum, labelled by its header cell. Each
spectrum goes through :func:`mc_beamline.analysis.uvvis.spectrum.analyse_spectrum`; RESULT.json
is the ``msc`` object of docs/results.md, written atomically.

Every input is checked before anything is written: bad input raises
:class:`InputError` (a :class:`ValueError`) with one sentence for the user, which
``mc_beamline.cli`` prints on stderr before exiting with status 2, and leaves no RESULT.json.
"""

from __future__ import annotations

import csv
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mc_beamline.analysis.uvvis.spectrum import (
    SpectrumAnalysis,
    SpectrumError,
    analyse_spectrum,
)
from mc_beamline.io.inputs import InputError, check_output
from mc_beamline.io.result_json import write_json

WAVELENGTH_RANGE_NM = (250.0, 900.0)
MIN_POINTS = 30


@dataclass(frozen=True)
class SpectraTable:
    """Spectra read from a CSV file: wavelengths (nm, increasing) and one column per label."""

    wavelength_nm: np.ndarray
    labels: tuple[str, ...]
    absorbance: np.ndarray  # (n_wavelengths, n_spectra)


def _number(cell: str, row: int, column: int, path: Path) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise InputError(f"{path}, row {row}, column {column}: {cell.strip()!r} is not a number.") from None
    if not math.isfinite(value):
        raise InputError(f"{path}, row {row}, column {column}: {cell.strip()!r} is not a finite number.")
    return value


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def read_spectra_csv(path: Path) -> SpectraTable:
    """Read and check a spectra CSV file.

    Raises
    ------
    InputError
        If the file is missing, empty or unreadable, has no header row, fewer than two
        columns, rows of different lengths, non-numeric, empty or non-finite cells, fewer
        than 30 rows, or wavelengths that are outside 250–900 nm or not strictly monotonic.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"Spectra file {path} does not exist.")
    if not path.is_file():
        raise InputError(f"Spectra file {path} is not a file.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"Spectra file {path} cannot be read as text ({type(exc).__name__}).") from None
    rows = [r for r in csv.reader(text.splitlines()) if any(c.strip() for c in r)]
    if not rows:
        raise InputError(f"Spectra file {path} is empty.")
    header = [c.strip() for c in rows[0]]
    if len(header) < 2:
        raise InputError(
            f"Spectra file {path} has {len(header)} column; it needs a wavelength column and at least one spectrum.")
    if all(_is_number(c) for c in header):
        raise InputError(f"Spectra file {path} has no header row (its first row holds only numbers).")
    for j, label in enumerate(header[1:], start=2):
        if not label:
            raise InputError(f"Spectra file {path}: column {j} has no label in the header row.")
    body = rows[1:]
    if len(body) < MIN_POINTS:
        raise InputError(f"Spectra file {path} has {len(body)} data rows; a spectrum needs at least {MIN_POINTS}.")
    values = np.empty((len(body), len(header)))
    for i, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise InputError(f"{path}, row {i} has {len(row)} cells but the header has {len(header)}.")
        for j, cell in enumerate(row):
            if not cell.strip():
                raise InputError(f"{path}, row {i}, column {j + 1} is empty.")
            values[i - 2, j] = _number(cell, i, j + 1, path)
    lam = values[:, 0]
    lo, hi = WAVELENGTH_RANGE_NM
    if lam.min() < lo or lam.max() > hi:
        raise InputError(
            f"Wavelengths in {path} run from {lam.min():g} to {lam.max():g} nm, outside {lo:g}–{hi:g} nm "
            "(is the first column the wavelength in nm?).")
    steps = np.diff(lam)
    if not (np.all(steps > 0) or np.all(steps < 0)):
        raise InputError(f"Wavelengths in {path} are not strictly increasing or decreasing.")
    if steps[0] < 0:
        values = values[::-1]
    return SpectraTable(values[:, 0].copy(), tuple(header[1:]), values[:, 1:].copy())


def analyse_table(table: SpectraTable) -> list[SpectrumAnalysis]:
    """Analyse every spectrum of ``table`` (in column order)."""
    results = []
    for label, column in zip(table.labels, table.absorbance.T):
        try:
            results.append(analyse_spectrum(table.wavelength_nm, column))
        except SpectrumError as exc:
            raise InputError(f"Spectrum {label!r}: {exc}") from None
    return results


def summary_line(label: str, analysis: SpectrumAnalysis) -> str:
    """One line per spectrum for stdout."""
    msc = ", ".join(f"{p.family} ({p.wavelength_nm:.1f} ± {p.wavelength_err_nm:.1f} nm)" for p in analysis.msc) \
        or "no MSC"
    nc = analysis.nc
    nc_text = "no NC exciton" if nc is None else (f"NC exciton {nc.wavelength_nm:.1f} ± {nc.wavelength_err_nm:.1f} nm "
                                                  f"→ {nc.diameter_nm:.2f} ± {nc.diameter_err_nm:.2f} nm")
    return f"{label}: {msc}; {nc_text}"


def run_msc(args, out=None) -> dict:
    """Run ``mc-beamline msc``: check the inputs, analyse each spectrum, write RESULT.json.

    ``args`` has ``spectra`` (CSV path) and ``out`` (RESULT.json path); ``out`` is the stream
    for the summary (default stdout). Returns the RESULT.json dict.

    Raises
    ------
    InputError
        For bad input; nothing is written then.
    """
    stream = sys.stdout if out is None else out
    result_path = Path(args.out)
    check_output(result_path, "--out")
    table = read_spectra_csv(Path(args.spectra))
    analyses = analyse_table(table)
    result = {"spectra": [a.as_dict(label) for label, a in zip(table.labels, analyses)]}
    write_json(result, result_path)
    for label, analysis in zip(table.labels, analyses):
        print(summary_line(label, analysis), file=stream)
    print(f"result: {result_path}", file=stream)
    return result


__all__ = ["SpectraTable", "analyse_table", "read_spectra_csv", "run_msc", "summary_line"]
