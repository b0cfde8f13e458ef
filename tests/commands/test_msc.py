"""`mc-beamline msc` as a user runs it: spectra simulated by the flow-reactor model in a CSV
file, the real command in a subprocess, RESULT.json checked against the docs/results.md contract
and the model's truth; bad input ends with one line on stderr, exit 2 and no RESULT.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mc_beamline.materials.cdse import yu_diameter_nm
from mc_beamline.physics.absorption import (
    absorbance,
    msc_peak_absorbance,
    nc_exciton_peak_nm,
    noisy_absorbance,
)
from mc_beamline.physics.cdse import MSC_FAMILIES
from mc_beamline.physics.flow_reactor import ReactorConditions, simulate

LAM = np.arange(300.0, 700.01, 0.5)
# (label, T_nuc, T_growth, reaction time): the seed-002 conditions
CONDITIONS = [
    ("window 280 C 4.5 s", 280.0, 280.0, 4.5),
    ("window 280 C 14 s", 280.0, 280.0, 14.0),
    ("window 290/220 C 14 s", 290.0, 220.0, 14.0),
    ("mild 260 C 4.5 s", 260.0, 260.0, 4.5),
    ("mild 250 C 14 s", 250.0, 250.0, 14.0),
    ("high 350 C 4.5 s", 350.0, 350.0, 4.5),
    ("high 350 C 7.6 s", 350.0, 350.0, 7.6),
    ("high 320/250 C 14 s", 320.0, 250.0, 14.0),
]


def run_msc(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    return subprocess.run([sys.executable, "-m", "mc_beamline.cli", "msc", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def write_csv(path: Path, header: list[str], rows) -> Path:
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n")
    return path


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """The CSV of eight simulated in-situ spectra and the truth behind each."""
    states = [simulate(ReactorConditions.at_reaction_time(tn, tg, t)) for _, tn, tg, t in CONDITIONS]
    columns = [noisy_absorbance(absorbance(s.population, LAM), seed) for seed, s in enumerate(states)]
    path = tmp_path_factory.mktemp("msc") / "spectra.csv"
    rows = [[f"{lam:.1f}"] + [f"{c[i]:.6f}" for c in columns] for i, lam in enumerate(LAM)]
    write_csv(path, ["wavelength_nm"] + [c[0] for c in CONDITIONS], rows)
    return path, states


@pytest.fixture(scope="module")
def result(simulated, tmp_path_factory):
    path, _ = simulated
    out = tmp_path_factory.mktemp("msc-out") / "RESULT.json"
    proc = run_msc(path, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "result:" in proc.stdout
    return json.loads(out.read_text())


def test_result_follows_the_design_contract(result):
    assert set(result) == {"spectra"}
    assert [s["label"] for s in result["spectra"]] == [c[0] for c in CONDITIONS]
    for spectrum in result["spectra"]:
        assert set(spectrum) == {"label", "msc", "nc"}
        for peak in spectrum["msc"]:
            assert set(peak) == {"family", "wavelength_nm", "wavelength_nm_err", "fwhm_nm", "absorbance"}
            assert all(isinstance(peak[k], float) for k in ("wavelength_nm", "fwhm_nm", "absorbance"))
            assert 0 < peak["wavelength_nm_err"] < 2.0  # nm: a narrow peak well above the noise
        if spectrum["nc"] is not None:
            nc = spectrum["nc"]
            assert set(nc) == {"wavelength_nm", "wavelength_nm_err", "diameter_nm", "diameter_nm_err", "fwhm_nm"}
            assert 0 < nc["wavelength_nm_err"] < 3.0 and 0 < nc["diameter_nm_err"] < 0.06


def test_families_match_the_simulated_clusters(result, simulated):
    _, states = simulated
    for spectrum, state in zip(result["spectra"], states):
        present = {f.name for f in MSC_FAMILIES if msc_peak_absorbance(state.population, f.name) >= 0.01}
        trace = {f.name for f in MSC_FAMILIES if msc_peak_absorbance(state.population, f.name) >= 0.003}
        found = {p["family"] for p in spectrum["msc"]}
        assert present <= found <= trace, spectrum["label"]


def test_seed_002_families_at_the_named_conditions(result):
    families = {s["label"]: {p["family"] for p in s["msc"]} for s in result["spectra"]}
    assert "CdSe-437" in families["window 280 C 4.5 s"] and "CdSe-437" in families["window 280 C 14 s"]
    assert "CdSe-437" in families["window 290/220 C 14 s"]
    assert families["mild 260 C 4.5 s"] and families["high 350 C 4.5 s"]  # MSCs at 4.5 s outside the window
    assert "CdSe-437" not in families["mild 250 C 14 s"] | families["high 320/250 C 14 s"]


def test_nc_diameters_match_the_yu_curve_at_the_true_exciton(result, simulated):
    _, states = simulated
    for spectrum, state in zip(result["spectra"], states):
        true_peak = nc_exciton_peak_nm(state.population)
        if true_peak is None:
            assert spectrum["nc"] is None
            continue
        assert spectrum["nc"] is not None, spectrum["label"]
        assert spectrum["nc"]["diameter_nm"] == pytest.approx(yu_diameter_nm(true_peak), abs=0.06), spectrum["label"]
    nc = {s["label"]: s["nc"] for s in result["spectra"]}
    assert nc["window 280 C 4.5 s"]["wavelength_nm"] == pytest.approx(490, abs=5)
    assert nc["window 280 C 14 s"]["wavelength_nm"] == pytest.approx(527, abs=5)
    assert nc["high 350 C 7.6 s"]["diameter_nm"] == pytest.approx(3.6, abs=0.1)


def test_descending_wavelengths_are_accepted(tmp_path):
    rows = [[f"{lam:.1f}", f"{0.01 + 0.05 * np.exp(-0.5 * ((lam - 437) / 4.7) ** 2):.5f}"] for lam in LAM[::-1]]
    path = write_csv(tmp_path / "desc.csv", ["nm", "A"], rows)
    out = tmp_path / "r.json"
    proc = run_msc(path, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert [p["family"] for p in json.loads(out.read_text())["spectra"][0]["msc"]] == ["CdSe-437"]


def good_rows(n: int = 100):
    return [[f"{300 + 2 * i:.1f}", "0.1", "0.2"] for i in range(n)]


BAD = {
    "missing file": (None, "does not exist"),
    "empty file": ("", "is empty"),
    "no header": ("\n".join(",".join(r) for r in good_rows()), "no header row"),
    "one column": ("nm\n" + "\n".join(f"{300 + i}" for i in range(100)), "column"),
    "text cell": ("nm,a,b\n" + "\n".join(",".join(r) for r in good_rows(50)) + "\n400,abc,0.1\n"
                  + "\n".join(",".join(r) for r in good_rows(100)[51:]), "'abc' is not a number"),
    "nan cell": ("nm,a,b\n" + "\n".join(",".join(r if i != 10 else [r[0], "nan", r[2]])
                                        for i, r in enumerate(good_rows())), "not a finite number"),
    "empty cell": ("nm,a,b\n" + "\n".join(",".join(r if i != 10 else [r[0], "", r[2]])
                                          for i, r in enumerate(good_rows())), "is empty"),
    "ragged row": ("nm,a,b\n" + "\n".join(",".join(r if i != 10 else r[:2]) for i, r in enumerate(good_rows())),
                   "cells but the header has"),
    "not monotonic": ("nm,a,b\n" + "\n".join(",".join(r) for r in good_rows(50) + good_rows(50)),
                      "not strictly increasing or decreasing"),
    "out of range": ("nm,a,b\n" + "\n".join(f"{100 + 2 * i},0.1,0.2" for i in range(100)), "outside 250–900 nm"),
    "too few rows": ("nm,a,b\n" + "\n".join(",".join(r) for r in good_rows(10)), "at least 30"),
    "unlabelled column": ("nm,a,\n" + "\n".join(",".join(r) for r in good_rows()), "no label"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_sentence_and_no_result(case, tmp_path):
    text, message = BAD[case]
    path = tmp_path / "spectra.csv"
    if text is not None:
        path.write_text(text)
    out = tmp_path / "RESULT.json"
    proc = run_msc(path, "--out", out)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mc-beamline msc: ") and lines[0].endswith(".")
    assert message in lines[0]
    assert not out.exists()
    assert not list(tmp_path.glob(".RESULT.json*"))


def test_missing_output_directory_is_refused_before_reading(tmp_path):
    path = write_csv(tmp_path / "s.csv", ["nm", "a", "b"], good_rows())
    proc = run_msc(path, "--out", tmp_path / "nowhere" / "RESULT.json")
    assert proc.returncode == 2 and "does not exist" in proc.stderr
