"""Offline analysis command ``mc-beamline msc SPECTRA.csv --out RESULT.json``.

SPECTRA.csv: comma-separated, a header row, then one row per wavelength: the wavelength in
nm, then one absorbance column per spectrum (read and checked by
:func:`mc_beamline.io.spectra_table.read_spectra_csv`). Each
spectrum goes through :func:`mc_beamline.analysis.uvvis.spectrum.analyse_spectrum`; RESULT.json
is the ``msc`` object of docs/results.md, written atomically.

Every input is checked before anything is written: bad input raises
:class:`InputError` (a :class:`ValueError`) with one sentence for the user, which
``mc_beamline.cli`` prints on stderr before exiting with status 2, and leaves no RESULT.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mc_beamline.analysis.uvvis.spectrum import (
    SpectrumAnalysis,
    SpectrumError,
    analyse_spectrum,
)
from mc_beamline.io.inputs import InputError, check_output
from mc_beamline.io.result_json import write_json
from mc_beamline.io.spectra_table import SpectraTable, read_spectra_csv


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
