"""The simulated flow reactor over Channel Access: pumps, heaters, flushing, UV-Vis and SAXS."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mc_beamline.physics import absorption, saxs_models
from mc_beamline.physics.flow_reactor import ReactorConditions, simulate

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- helpers
def consistent(*signals, attempts: int = 50):
    """Values of ``signals`` read within one simulation tick (SimTime unchanged around them)."""
    sim_time = signals[0]
    for _ in range(attempts):
        before = sim_time.get(use_monitor=False)
        values = [s.get(use_monitor=False) for s in signals[1:]]
        if sim_time.get(use_monitor=False) == before:
            return before, values
    raise AssertionError("The reactor clock never held still for a read.")


def settle_at(reactor, t_nuc, t_growth, reaction_time, flush_volumes=3.0):
    """Pumps running at ``reaction_time`` s, heaters settled, then ``flush_volumes`` flushed."""
    reactor.pumps.start().wait(5)
    status = reactor.pumps.reaction_time.set(reaction_time)
    status &= reactor.nucleation.set(t_nuc)
    status &= reactor.growth.set(t_growth)
    status.wait(60)
    reactor.flush.set(flush_volumes * reactor.volume_ml).wait(60)


def model_absorbance(t_nuc, t_growth, reaction_time, wavelength):
    state = simulate(ReactorConditions.at_reaction_time(t_nuc, t_growth, reaction_time))
    return absorption.absorbance(state.population, wavelength, path_cm=0.1)


def photon_sigma(clean, reference_counts):
    return math.log10(math.e) * np.sqrt((10.0 ** clean + 1.0) / reference_counts)


def measure(reactor):
    """One spectrum and one SAXS curve; returns (wavelength, absorbance, q, I, sigma)."""
    reactor.uvvis.trigger().wait(10)
    reactor.saxs.trigger().wait(10)
    uv = reactor.uvvis.read()
    sx = reactor.saxs.read()
    return (uv["reactor_uvvis_wavelength"]["value"], uv["reactor_uvvis_absorbance"]["value"],
            sx["reactor_saxs_q"]["value"], sx["reactor_saxs_intensity"]["value"],
            sx["reactor_saxs_sigma"]["value"])


# --------------------------------------------------------------------------------- IOC
def test_reactor_pvs_are_served_by_the_beamline_ioc(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "mc_beamline.sim_iocs", "--prefix", "T:", "--data-dir", str(tmp_path), "--list-pvs"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    lines = set(run.stdout.splitlines())
    for name in ("TimeScale", "Volume_RBV", "ReactionTime_RBV", "Dispensed_RBV", "FlushedVolume_RBV",
                 "CD:Rate", "CD:Rate_RBV", "CD:Run", "CD:Dispensed_RBV", "SE:RateMax_RBV",
                 "NUC:SP", "NUC:T_RBV", "NUC:Settled_RBV", "GROW:RampRate",
                 "UVVIS:Wavelength_RBV", "UVVIS:Absorbance_RBV", "UVVIS:TakeReference",
                 "SAXS:Q_RBV", "SAXS:Intensity_RBV", "SAXS:Sigma_RBV", "SAXS:Acquire"):
        assert f"T:REACTOR:{name}" in lines


def test_pump_rates_set_the_reaction_time(reactor):
    pumps = reactor.pumps
    volume = reactor.volume_ml
    assert volume == pytest.approx(0.25)
    pumps.start().wait(5)
    pumps.reaction_time.set(4.5).wait(5)
    total = 60.0 * volume / 4.5  # 3.33 mL/min
    assert pumps.cd.position == pytest.approx(total / 2) and pumps.se.position == pytest.approx(total / 2)
    assert pumps.reaction_time.position == pytest.approx(4.5)
    deadline = time.monotonic() + 5
    while abs(reactor.reaction_time.get(use_monitor=False) - 4.5) > 1e-6 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert reactor.reaction_time.get(use_monitor=False) == pytest.approx(4.5)
    assert pumps.cd.flow.get(use_monitor=False) == pytest.approx(total / 2)

    pumps.cd_fraction.put(0.25)
    try:
        pumps.reaction_time.set(1.5).wait(5)
        assert pumps.cd.position == pytest.approx(2.5) and pumps.se.position == pytest.approx(7.5)
        assert pumps.reaction_time.position == pytest.approx(1.5)
    finally:
        pumps.cd_fraction.put(0.5)
    assert pumps.reaction_time_limits() == pytest.approx((0.75, 150.0))


def test_every_pump_move_finishes_once_and_quietly(reactor, capfd, caplog):
    """New rates and repeated ones: each status completes once, with no ophyd error in the log."""
    pumps = reactor.pumps
    pumps.start().wait(5)
    pumps.reaction_time.set(4.5).wait(5)
    capfd.readouterr()
    caplog.clear()
    for t in (14.0, 4.5, 4.5, 9.0, 14.0, 14.0, 4.5) * 3:
        status = pumps.reaction_time.set(t)
        status.wait(5)
        assert status.success
        status = pumps.cd.set(pumps.cd.position)
        status.wait(5)
        assert status.success
    time.sleep(0.5)  # late monitor updates of the repeated puts arrive here
    err = capfd.readouterr().err
    assert "set_finished" not in err and "Traceback" not in err, err
    assert not [r for r in caplog.records if r.levelno >= 40], [r.getMessage() for r in caplog.records]
    assert pumps.reaction_time.position == pytest.approx(4.5)


def test_pump_refuses_a_rate_beyond_its_limits(reactor, ca_context):
    pumps = reactor.pumps
    assert pumps.cd.limits == (0.05, 10.0)
    before = pumps.cd.setpoint.get(use_monitor=False)
    with pytest.raises(ValueError):
        pumps.cd.set(25.0)
    with pytest.raises(ValueError):
        pumps.reaction_time.set(0.2)  # would need 37.5 mL/min in total
    from caproto import AlarmSeverity, AlarmStatus, ChannelType

    (pv,) = ca_context.get_pvs(pumps.cd.setpoint.pvname, timeout=5)
    pv.wait_for_connection(timeout=10)
    pv.write([25.0], wait=True, timeout=5)  # bypassing ophyd: the IOC refuses it itself
    reading = pv.read(data_type=ChannelType.TIME_DOUBLE, timeout=5)
    assert reading.data[0] == before
    assert reading.metadata.severity == AlarmSeverity.MINOR_ALARM and reading.metadata.status == AlarmStatus.HIGH
    assert pumps.cd.setpoint.get(use_monitor=False) == before
    pv.write([before], wait=True, timeout=5)
    assert pv.read(data_type=ChannelType.TIME_DOUBLE, timeout=5).metadata.severity == AlarmSeverity.NO_ALARM


def test_dispensed_volume_integrates_the_flow_in_simulated_time(reactor):
    pumps = reactor.pumps
    pumps.start().wait(5)
    pumps.reaction_time.set(1.5).wait(5)  # 5 mL/min per pump
    sim = reactor.sim_time
    t0, (cd0, se0, total0) = consistent(sim, pumps.cd.dispensed, pumps.se.dispensed, reactor.flush.dispensed)
    time.sleep(0.3)
    t1, (cd1, se1, total1) = consistent(sim, pumps.cd.dispensed, pumps.se.dispensed, reactor.flush.dispensed)
    assert t1 - t0 == pytest.approx(0.3 / 0.01, rel=0.5)  # simulated time runs 100x faster
    assert cd1 - cd0 == pytest.approx(5.0 * (t1 - t0) / 60.0, rel=1e-6)
    assert se1 - se0 == pytest.approx(5.0 * (t1 - t0) / 60.0, rel=1e-6)
    assert total1 - total0 == pytest.approx((cd1 - cd0) + (se1 - se0), rel=1e-6)

    pumps.se.running.set(0).wait(5)
    try:
        assert pumps.se.flow.get(use_monitor=False) == 0.0
        _, (se2,) = consistent(sim, pumps.se.dispensed)
        time.sleep(0.2)
        _, (se3,) = consistent(sim, pumps.se.dispensed)
        assert se3 == se2
    finally:
        pumps.se.running.set(1).wait(5)


def test_temperature_ramps_at_the_ramp_rate_and_settles(reactor):
    heater = reactor.growth
    heater.set(100.0).wait(60)
    heater.ramp_rate.set(120.0).wait(5)  # 2 °C per simulated s
    heater.time_constant.set(5.0).wait(5)
    samples: dict[float, float] = {}
    try:
        t_start = reactor.sim_time.get(use_monitor=False)
        status = heater.set(200.0)
        while not status.done:  # 100 °C at 2 °C/s: ~45 s linear + approach, ~0.6 s wall
            t, (value,) = consistent(reactor.sim_time, heater.readback)
            samples[t] = value
            time.sleep(0.01)
        status.wait(60)
        t_done = reactor.sim_time.get(use_monitor=False)
    finally:
        heater.ramp_rate.set(600.0).wait(5)
        heater.time_constant.set(2.0).wait(5)
    assert abs(heater.position - 200.0) <= heater.atol
    assert heater.settled.get(use_monitor=False) == 1
    # linear part (knee at 2 °C/s x 5 s = 10 °C) then first-order approach to within 0.5 °C
    ramp_s = (100.0 - 10.0) / 2.0 + 5.0 * math.log(10.0 / 0.5)
    assert t_done - t_start >= ramp_s + 10.0 - 5.0  # ramp + settle time, less one tick
    series = sorted(samples.items())
    ramping = [(t, v) for t, v in series if 105.0 < v < 185.0]
    assert len(ramping) >= 3
    slope = np.polyfit([t for t, _ in ramping], [v for _, v in ramping], 1)[0]
    assert slope == pytest.approx(2.0, rel=0.02)
    values = [v for _, v in series]
    assert all(b >= a - 0.05 for a, b in zip(values, values[1:]))  # monotonic up to sensor noise


def test_flow_cell_instruments_describe_array_readings(reactor):
    uv = reactor.uvvis.describe()
    assert uv["reactor_uvvis_absorbance"]["shape"] == [401] and uv["reactor_uvvis_absorbance"]["dtype"] == "array"
    assert uv["reactor_uvvis_wavelength"]["shape"] == [401]
    assert uv["reactor_uvvis_absorbance"]["dtype_numpy"] == "<f8"
    sx = reactor.saxs.describe()
    for key in ("reactor_saxs_intensity", "reactor_saxs_sigma", "reactor_saxs_q"):
        assert sx[key]["shape"] == [500] and sx[key]["dtype"] == "array"
    wl = reactor.uvvis.wavelength.get()
    assert wl[0] == 300.0 and wl[-1] == 700.0
    q = reactor.saxs.q.get()
    assert q[0] == pytest.approx(0.1) and q[-1] == pytest.approx(5.0)


def test_spectrum_and_saxs_at_a_settled_condition_equal_the_model_within_noise(reactor):
    settle_at(reactor, 280.0, 270.0, 4.5)
    wl, a, q, intensity, sigma = measure(reactor)
    clean = model_absorbance(280.0, 270.0, 4.5, wl)
    z = (a - clean) / photon_sigma(clean, reactor.uvvis.reference_counts.get())
    assert np.mean(z**2) == pytest.approx(1.0, abs=0.3) and np.max(np.abs(z)) < 5.5
    # CdSe-437 of the 260–300 °C window: a narrow peak at 437 nm
    assert abs(wl[np.argmax(np.where((wl > 420) & (wl < 450), a, 0))] - 437) <= 2

    state = simulate(ReactorConditions.at_reaction_time(280.0, 270.0, 4.5))
    clean_i = saxs_models.reaction_intensity(state, q)
    z = (intensity - clean_i) / sigma
    assert np.mean(z**2) == pytest.approx(1.0, abs=0.3) and np.max(np.abs(z)) < 5.5


def test_flow_cell_keeps_the_old_product_until_the_reactor_is_flushed(reactor):
    settle_at(reactor, 280.0, 270.0, 4.5)
    pumps = reactor.pumps
    pumps.cd.running.set(0).wait(5)
    pumps.se.running.set(0).wait(5)
    try:
        # New conditions while nothing flows: the cells still hold the 4.5 s product.
        pumps.reaction_time.set(14.0).wait(5)
        wl, a, *_ = measure(reactor)
        old = model_absorbance(280.0, 270.0, 4.5, wl)
        new = model_absorbance(280.0, 270.0, 14.0, wl)
        sig = photon_sigma(old, reactor.uvvis.reference_counts.get())
        assert np.mean(((a - old) / sig) ** 2) < 1.5
        assert np.mean(((a - new) / sig) ** 2) > 10.0
    finally:
        pumps.start().wait(5)
    reactor.flush.set(3.0 * reactor.volume_ml).wait(60)
    assert reactor.cell_flushed.get(use_monitor=False) >= 3.0 * reactor.volume_ml - 1e-9
    wl, a, *_ = measure(reactor)
    sig = photon_sigma(new, reactor.uvvis.reference_counts.get())
    assert np.mean(((a - new) / sig) ** 2) == pytest.approx(1.0, abs=0.3)


def test_acquire_without_dark_and_reference_fails_with_the_reason(reactor):
    uvvis = reactor.uvvis
    before = uvvis.integration_time.get()
    uvvis.integration_time.set(0.02).wait(5)
    try:
        assert uvvis.reference_valid.get(use_monitor=False) == 0
        with pytest.raises(RuntimeError, match="No valid dark and reference spectrum"):
            uvvis.trigger().wait(10)
        uvvis.take_dark_and_reference()
        uvvis.trigger().wait(10)
        assert uvvis.reference_counts.get(use_monitor=False) == pytest.approx(2e7 * 0.02)
    finally:
        uvvis.integration_time.set(before).wait(5)
        uvvis.take_dark_and_reference()
