"""The bounded, streamed table readers: each bad input named in one sentence, before any analysis."""

from __future__ import annotations

import resource

import numpy as np
import pytest

from mc_beamline.io.inputs import InputError
from mc_beamline.io.saxs_curve import MAX_POINTS, REBIN_TO, read_curve
from mc_beamline.io.spectra_table import read_spectra_csv
from mc_beamline.io.text_lines import MAX_TABLE_BYTES


def curve_lines(n: int = 200, q0: float = 0.1, q1: float = 3.0, scale: float = 1.0) -> list[str]:
    q = np.linspace(q0, q1, n) * scale
    i = 100 * np.exp(-q / scale) + 1
    return [f"{a:.6g} {b:.6g}" for a, b in zip(q, i)]


def write(tmp_path, name: str, lines: list[str]):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_good_curve_reads_back(tmp_path):
    curve = read_curve(write(tmp_path, "c.dat", ["# q I", *curve_lines()]))
    assert curve.q_nm.size == 200 and curve.sigma is None and curve.notes == []


def test_a_text_line_inside_the_data_is_named_by_its_line(tmp_path):
    lines = curve_lines()
    path = write(tmp_path, "c.dat", lines[:50] + ["detector reset"] + lines[50:])
    with pytest.raises(InputError, match=r"^Line 51 of .* is not numbers, between data rows \(from line 1 on\)\.$"):
        read_curve(path)


def test_decimal_commas_are_named(tmp_path):
    path = write(tmp_path, "c.dat", [line.replace(".", ",") for line in curve_lines()])
    with pytest.raises(InputError, match="Line 1 of .* writes numbers with a decimal comma"):
        read_curve(path)


def test_a_q_range_of_the_other_unit_is_refused(tmp_path):
    angstrom = write(tmp_path, "a.dat", curve_lines(q0=0.05, q1=5.0, scale=0.1))  # 0.005–0.5 Å⁻¹ read as nm⁻¹
    with pytest.raises(InputError, match=r"is q in Å⁻¹ \(--q-unit A\^-1\)\?"):
        read_curve(angstrom)
    assert read_curve(angstrom, "A^-1").q_nm[-1] == pytest.approx(5.0)
    nanometre = write(tmp_path, "n.dat", curve_lines(q0=1.0, q1=3.0))
    with pytest.raises(InputError, match=r"is q in nm⁻¹ \(--q-unit nm\^-1\)\?"):
        read_curve(nanometre, "A^-1")


def test_mostly_negative_and_constant_intensities_are_one_sentence(tmp_path):
    lines = curve_lines()
    negative = [f"{line.split()[0]} {-1.0 if k % 3 == 0 else 5.0}" for k, line in enumerate(lines)]
    with pytest.raises(InputError, match="34% negative intensities"):
        read_curve(write(tmp_path, "neg.dat", negative))
    few = [f"{line.split()[0]} {-1.0 if k == 7 else 5.0 + k}" for k, line in enumerate(lines)]
    assert read_curve(write(tmp_path, "few.dat", few)).notes == ["1 negative intensities (background subtraction) are kept"]
    constant = [f"{line.split()[0]} 7.5" for line in lines]
    with pytest.raises(InputError, match="has the same intensity 7.5 at every q; there is nothing to analyse"):
        read_curve(write(tmp_path, "const.dat", constant))


def test_long_curves_are_rebinned_and_huge_ones_refused_while_streaming(tmp_path):
    curve = read_curve(write(tmp_path, "long.dat", curve_lines(20_000)))
    assert REBIN_TO // 2 < curve.q_nm.size <= REBIN_TO
    assert np.all(np.diff(curve.q_nm) > 0) and "rebinned 20000 points" in curve.notes[0]
    with pytest.raises(InputError, match=f"more than {MAX_POINTS} data rows; rebin it"):
        read_curve(write(tmp_path, "huge.dat", curve_lines(MAX_POINTS + 10)))


def test_oversized_files_are_refused_before_reading(tmp_path):
    big = tmp_path / "big.csv"
    with open(big, "wb") as f:  # sparse: 2 GiB on paper, nothing on disk
        f.truncate(2 * 2**30)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for reader, what in ((read_curve, "Curve file"), (read_spectra_csv, "Spectra file")):
        with pytest.raises(InputError, match=f"{what} .* is 2048 MiB, more than the {MAX_TABLE_BYTES // 2**20} MiB"):
            reader(big)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 50_000  # KiB: nothing was read


def spectra_lines() -> list[str]:
    lam = np.arange(300, 700, 2)
    return ["wavelength,A"] + [f"{x},{0.1 + 0.001 * k:.4f}" for k, x in enumerate(lam)]


def test_spectra_rows_are_named_by_their_line(tmp_path):
    lines = spectra_lines()
    lines[40] = "380,abc"
    with pytest.raises(InputError, match=r"row 41, column 2: 'abc' is not a number"):
        read_spectra_csv(write(tmp_path, "s.csv", lines))
    semicolons = [line.replace(",", ";").replace(".", ",") for line in spectra_lines()]
    with pytest.raises(InputError, match="separates cells with semicolons or tabs"):
        read_spectra_csv(write(tmp_path, "s2.csv", semicolons))
    table = read_spectra_csv(write(tmp_path, "s3.csv", spectra_lines()))
    assert table.absorbance.shape == (200, 1) and table.labels == ("A",)
