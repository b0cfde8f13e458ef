"""Live MSC/NC/SAXS analysis of a flow series, stored in Tiled; `results` equals `replay`.

Against the real IOC (reactor 100x faster than real time) and the real Tiled server:

* the live analysis finds, for every condition, the MSC families and NC size of the
  simulator's kinetic model (truth from :func:`mc_beamline.commands.demo.flow_truth`);
* the result stored in Tiled and a replay from Tiled are equal exactly, and the
  ``results``/``replay`` commands write identical JSON in the ``msc`` shape;
* a failing analysis never stops the series, and its errors are stored with the result.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mc_beamline.callbacks.live_flow import LiveFlow, flow_router
from mc_beamline.callbacks.replay import replay, stored_results
from mc_beamline.commands.demo import flow_truth
from mc_beamline.materials.cdse import yu_diameter_nm
from mc_beamline.plans import flow_series
from mc_beamline.storage import tiled_writer

NUC, GROWTH, TIMES = [280.0, 350.0], [260.0], [4.5, 14.0]


@pytest.fixture(scope="module")
def live_flow(reactor, tiled):
    from bluesky import RunEngine

    RE = RunEngine({})
    RE.subscribe(tiled_writer(tiled))
    runs: list[LiveFlow] = []
    RE.subscribe(flow_router(publish=tiled_writer(tiled), on_run=runs.append))
    (uid,) = RE(flow_series(reactor, NUC, GROWTH, TIMES))
    (live,) = runs
    assert live.wait(120)
    return uid, live


def test_every_condition_is_analysed_as_the_model_says(live_flow):
    uid, live = live_flow
    assert live.errors == []
    spectra = live.result["spectra"]
    assert [(s["condition"]["nucleation_temperature_c"], s["condition"]["reaction_time_s"]) for s in spectra] == [
        (tn, t) for tn in NUC for t in TIMES]
    for entry in spectra:
        cond = entry["condition"]
        truth = flow_truth(cond["nucleation_temperature_c"], cond["growth_temperature_c"], cond["reaction_time_s"])
        assert sorted(p["family"] for p in entry["msc"]) == sorted(truth["families"]), entry["label"]
        if truth["nc_wavelength_nm"] is None:
            assert entry["nc"] is None
        else:
            # the live NC size is the Yu curve at the model's exciton within 0.06 nm
            assert abs(entry["nc"]["diameter_nm"] - yu_diameter_nm(truth["nc_wavelength_nm"])) <= 0.06, entry
        sizes = entry["saxs"]["size_distribution"]
        assert abs(sum(sizes["volume_fraction"]) - 1.0) < 1e-6 and sizes["mean_radius_nm"] > 0


def test_live_result_equals_stored_result_and_replay_exactly(live_flow, tiled):
    uid, live = live_flow
    stored = stored_results(tiled, uid)
    assert stored == live.result
    assert replay(tiled, uid) == stored


def test_results_and_replay_commands_write_identical_msc_json(live_flow, sim_ioc, tmp_path):
    uid, live = live_flow
    data_dir = str(sim_ioc.data_dir)
    outputs = {}
    for command in ("results", "replay"):
        proc = subprocess.run([sys.executable, "-m", "mc_beamline.cli", command, uid, "--data-dir", data_dir,
                               "--out", f"{command}.json"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        outputs[command] = (tmp_path / f"{command}.json").read_text()
    assert outputs["results"] == outputs["replay"]
    result = json.loads(outputs["results"])
    assert result == live.result
    for entry in result["spectra"]:
        assert set(entry) >= {"label", "msc", "nc"}
        for peak in entry["msc"]:
            assert set(peak) == {"family", "wavelength_nm", "wavelength_nm_err", "fwhm_nm", "absorbance"}
            assert 0 < peak["wavelength_nm_err"] < peak["fwhm_nm"]


def test_a_failing_analysis_never_stops_the_series_and_its_errors_are_stored(reactor, tiled, monkeypatch):
    from bluesky import RunEngine

    from mc_beamline.analysis.series import flow_conditions

    def broken(*args, **kwargs):
        raise RuntimeError("spectrum fit exploded")

    monkeypatch.setattr(flow_conditions, "analyse_spectrum", broken)
    RE = RunEngine({})
    RE.subscribe(tiled_writer(tiled))
    runs: list[LiveFlow] = []
    RE.subscribe(flow_router(publish=tiled_writer(tiled), on_run=runs.append))
    (uid,) = RE(flow_series(reactor, [280.0], [260.0], [4.5, 14.0]))
    assert tiled[uid].metadata["stop"]["exit_status"] == "success"
    assert tiled[uid].metadata["stop"]["num_events"]["primary"] == 2
    (live,) = runs
    assert live.wait(60)
    assert [e["seq_num"] for e in live.errors] == [1, 2]
    assert "spectrum fit exploded" in live.errors[0]["message"]
    assert stored_results(tiled, uid) == {"spectra": []}
    derived = [tiled[k] for k in tiled if tiled[k].metadata["start"].get("mc_beamline", {}).get("raw_uid") == uid]
    assert derived and derived[0].metadata["stop"]["analysis_errors"][0]["seq_num"] == 1


def test_yu_curve_reference_values():
    """The sizing curve the tolerance above is measured against (SCIENCE.md §2)."""
    assert yu_diameter_nm(467.0) == pytest.approx(2.075, abs=0.005)
    assert yu_diameter_nm(572.0) == pytest.approx(3.57, abs=0.01)

