"""Reading UV-Vis spectra from a CSV table, streamed and bounded.

SPECTRA.csv: comma-separated, a header row, then one row per wavelength. The first column
is the wavelength in nm (250–900 nm, strictly increasing or strictly decreasing), every
further column is the absorbance of one spectrum, labelled by its header cell. The file
is read row by row after its size is checked
(:data:`~mc_beamline.io.text_lines.MAX_TABLE_BYTES`); every complaint names its row
(the line number in the file).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mc_beamline.io.inputs import InputError
from mc_beamline.io.text_lines import check_table_file, is_decimal_comma, numbered_lines

WAVELENGTH_RANGE_NM = (250.0, 900.0)
MIN_POINTS = 30
MAX_SPECTRA = 10_000
"""Most spectrum columns a table may have."""
MAX_CELLS = 10_000_000
"""Most numbers a table may hold (80 MB as floats; a spectrometer gives some 10³ rows per spectrum)."""


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
        raise InputError(f"{path}, row {row}, column {column}: {cell.strip()[:40]!r} is not a number.") from None
    if not math.isfinite(value):
        raise InputError(f"{path}, row {row}, column {column}: {cell.strip()!r} is not a finite number.")
    return value


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _rows(path: Path):
    """(line number, cells) of the non-blank CSV rows of ``path``, streamed."""
    lines = numbered_lines(path, "Spectra file")
    numbers: list[int] = []

    def text():
        for number, line in lines:
            numbers.append(number)
            yield line

    for cells in csv.reader(text()):
        if any(c.strip() for c in cells):
            yield numbers[-1], cells
        numbers.clear()


def _check_decimal_comma(path: Path, number: int, cells: list[str]) -> None:
    joined = ",".join(cells)
    parts = [p for p in joined.replace("\t", ";").split(";") if p.strip()]
    if len(parts) >= 2 and any(is_decimal_comma(p) for p in parts):
        raise InputError(f"{path}, row {number} separates cells with semicolons and writes decimal commas "
                         f"({joined[:40]!r}); save it as CSV with commas between cells and decimal points.")


def read_spectra_csv(path: str | Path) -> SpectraTable:
    """Read and check a spectra CSV file.

    Raises
    ------
    InputError
        If the file is missing, empty, oversized or unreadable, has no header row, fewer
        than two or more than :data:`MAX_SPECTRA` + 1 columns, rows of different lengths,
        semicolons with decimal commas, non-numeric, empty or non-finite cells, fewer than
        30 rows, or wavelengths that are outside 250–900 nm or not strictly monotonic.
    """
    path = check_table_file(path, "Spectra file")
    rows = _rows(path)
    try:
        header_line, header = next(rows)
    except StopIteration:
        raise InputError(f"Spectra file {path} is empty.") from None
    except csv.Error as exc:
        raise InputError(f"Spectra file {path} is not CSV ({exc}).") from None
    header = [c.strip() for c in header]
    if len(header) < 2:
        if ";" in header[0] or "\t" in header[0]:
            raise InputError(f"Spectra file {path} separates cells with semicolons or tabs (row {header_line}); "
                             "save it as CSV with commas between cells and decimal points.")
        raise InputError(
            f"Spectra file {path} has {len(header)} column; it needs a wavelength column and at least one spectrum.")
    if len(header) > MAX_SPECTRA + 1:
        raise InputError(f"Spectra file {path} has {len(header) - 1} spectrum columns; at most {MAX_SPECTRA} are read.")
    if all(_is_number(c) for c in header):
        raise InputError(f"Spectra file {path} has no header row (its first row holds only numbers).")
    for j, label in enumerate(header[1:], start=2):
        if not label:
            raise InputError(f"Spectra file {path}: column {j} has no label in the header row.")
    lo, hi = WAVELENGTH_RANGE_NM
    body: list[np.ndarray] = []
    try:
        for number, row in rows:
            if len(row) != len(header):
                _check_decimal_comma(path, number, row)
                raise InputError(f"{path}, row {number} has {len(row)} cells but the header has {len(header)}.")
            values = np.empty(len(header))
            for j, cell in enumerate(row):
                if not cell.strip():
                    raise InputError(f"{path}, row {number}, column {j + 1} is empty.")
                values[j] = _number(cell, number, j + 1, path)
            if not lo <= values[0] <= hi:
                raise InputError(
                    f"{path}, row {number}: wavelength {values[0]:g} nm is outside {lo:g}–{hi:g} nm "
                    "(is the first column the wavelength in nm?).")
            body.append(values)
            if len(body) * len(header) > MAX_CELLS:
                raise InputError(f"Spectra file {path} holds more than {MAX_CELLS} numbers (at row {number}); "
                                 "bin the spectra to fewer wavelengths first.")
    except csv.Error as exc:
        raise InputError(f"Spectra file {path} is not CSV ({exc}).") from None
    if len(body) < MIN_POINTS:
        raise InputError(f"Spectra file {path} has {len(body)} data rows; a spectrum needs at least {MIN_POINTS}.")
    values = np.array(body)
    steps = np.diff(values[:, 0])
    if not (np.all(steps > 0) or np.all(steps < 0)):
        raise InputError(f"Wavelengths in {path} are not strictly increasing or decreasing.")
    if steps[0] < 0:
        values = values[::-1]
    return SpectraTable(values[:, 0].copy(), tuple(header[1:]), values[:, 1:].copy())


__all__ = ["MAX_CELLS", "MAX_SPECTRA", "MIN_POINTS", "SpectraTable", "WAVELENGTH_RANGE_NM", "read_spectra_csv"]
