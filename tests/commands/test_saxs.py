"""`mc-beamline saxs`: simulated curves with known truth, real measured curves, bad input."""

import json
import subprocess
import sys
from importlib import resources

import numpy as np
import pytest

from mc_beamline.cli import main
from mc_beamline.physics.assembly import AssemblyModel, default_q_nm

KEYS = {"crystal", "fluid", "size_distribution", "form_factor", "mesophase"}


def write_curve(path, q, i, s=None, header=("# simulated self-assembly SAXS", "q_nm I sigma"), sep=" "):
    with open(path, "w") as fh:
        for line in header:
            fh.write(line + "\n")
        for row in zip(*([q, i] + ([s] if s is not None else []))):
            fh.write(sep.join(f"{v:.8g}" for v in row) + "\n")
    return path


def run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("lattice, pathway, t, sep, unit", [
    ("fcc", "one-step", 900.0, " ", "nm^-1"),
    ("bcc", "two-step", 400.0, ",", "A^-1"),
    ("hcp", "one-step", 900.0, "\t", "nm^-1"),
])
def test_simulated_curve_gives_lattice_a_and_fractions(tmp_path, capsys, lattice, pathway, t, sep, unit):
    model = AssemblyModel(pathway=pathway, lattice=lattice)
    q = default_q_nm()
    c = model.measure(t, q, rng=11)
    q_file = q / 10.0 if unit == "A^-1" else q
    src = write_curve(tmp_path / "curve.dat", q_file, c.intensity, c.sigma, sep=sep)
    out = tmp_path / "RESULT.json"
    code, stdout, err = run(["saxs", str(src), "--q-unit", unit, "--out", str(out)], capsys)
    assert code == 0, err
    res = json.loads(out.read_text())
    assert set(res) == KEYS
    truth = model.truth(t)
    assert res["crystal"]["lattice"] == lattice
    assert res["crystal"]["a_nm"] == pytest.approx(model.a_nm, rel=0.01)
    assert res["crystal"]["fraction"] == pytest.approx(truth["crystal"], abs=0.05)
    assert res["fluid"]["dense_fraction"] == pytest.approx(truth["dense"], abs=0.05)
    assert res["fluid"]["dilute_fraction"] == pytest.approx(truth["dilute"], abs=0.05)
    sd = res["size_distribution"]
    assert sum(sd["volume_fraction"]) == pytest.approx(1.0)
    assert len(sd["radius_nm"]) == len(sd["volume_fraction"])
    assert res["mesophase"] is None
    assert lattice in stdout
    cr = res["crystal"]
    assert 0 < cr["a_nm_err"] < 0.01 * cr["a_nm"]  # several indexed peaks fix a to well below 1 %
    assert len(cr["hkl"]) == len(cr["peaks_q_nm"]) == cr["n_peaks_indexed"]
    assert 0 < cr["score"] <= 1
    assert sd["mean_radius_nm_err"] > 0
    assert f"a = {cr['a_nm']:.3f} ± {cr['a_nm_err']:.3f} nm" in stdout


def test_fluid_curve_has_no_crystal(tmp_path, capsys):
    model = AssemblyModel(pathway="two-step")
    q = default_q_nm()
    c = model.measure(0.0, q, rng=3)
    src = write_curve(tmp_path / "c.dat", q, c.intensity, header=())
    out = tmp_path / "r.json"
    assert run(["saxs", str(src), "--out", str(out)], capsys)[0] == 0
    res = json.loads(out.read_text())
    assert res["crystal"] is None
    assert res["fluid"]["dilute_fraction"] == pytest.approx(1.0, abs=0.05)
    # size distribution of 2.3 nm spheres with a 6 % spread
    assert res["size_distribution"]["mean_radius_nm"] == pytest.approx(2.3, rel=0.1)


EXAMPLES = resources.files("sasdata") / "example_data" / "1d_data"
REAL = ["APS_DND-CAT.TXT", "ISIS_83404.TXT", "ISIS_98929.TXT", "apoferritin.txt", "conalbumin.txt",
        "98929.txt", "Alumina_usaxs.csv", "PolySpheres.txt"]


@pytest.mark.parametrize("name", REAL)
def test_real_measured_curves_run_and_find_no_lattice(tmp_path, capsys, name):
    # measured SAS curves of proteins, polymers, alumina and latex spheres: no supercrystal
    src = EXAMPLES / name
    out = tmp_path / "RESULT.json"
    code, stdout, err = run(["saxs", str(src), "--q-unit", "A^-1", "--out", str(out)], capsys)
    assert code == 0, err
    res = json.loads(out.read_text())
    assert set(res) == KEYS
    assert res["crystal"] is None
    fl = res["fluid"]
    assert 0 <= fl["dense_fraction"] <= 1 and 0 <= fl["dilute_fraction"] <= 1
    assert fl["dense_fraction"] + fl["dilute_fraction"] == pytest.approx(1.0)
    if res["size_distribution"] is not None:
        assert res["size_distribution"]["mean_radius_nm"] > 0


def test_console_script_entry_point(tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "mc_beamline.cli", "saxs", str(EXAMPLES / "ISIS_83404.TXT"),
                           "--q-unit", "A^-1", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["crystal"] is None


@pytest.mark.parametrize("content, words", [
    (None, "does not exist"),
    ("just words\nno numbers here\n", "no rows of numbers"),
    ("0.1 1\n0.2 2\n0.3 3\n", "at least 20"),
    ("".join(f"{0.1 + 0.01 * k} {1.0 + k}\n" for k in range(30)) + "0.5 1 2\n", "has 3 numbers"),
    ("".join(f"{0.1 + 0.01 * k} {1.0 + k}\n" for k in range(30)) + "trailer text\n", "not numbers"),
    ("".join(f"{0.1 + 0.01 * (k // 2)} {1.0 + k}\n" for k in range(40)), "repeated q"),
])
def test_bad_input_is_one_sentence_exit_2_and_no_result(tmp_path, capsys, content, words):
    src = tmp_path / "curve.dat"
    if content is not None:
        src.write_text(content)
    out = tmp_path / "RESULT.json"
    code, _, err = run(["saxs", str(src), "--out", str(out)], capsys)
    assert code == 2
    assert words in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_missing_output_directory_and_bad_unit(tmp_path, capsys):
    src = write_curve(tmp_path / "c.dat", np.linspace(0.2, 5, 50), np.linspace(5, 1, 50))
    code, _, err = run(["saxs", str(src), "--out", str(tmp_path / "no" / "r.json")], capsys)
    assert code == 2 and "does not exist" in err
    with pytest.raises(SystemExit):
        main(["saxs", str(src), "--q-unit", "furlongs", "--out", str(tmp_path / "r.json")])
