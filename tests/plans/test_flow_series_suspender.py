"""Reactor temperature leaving its band suspends a flow series, against the real IOC.

The simulated heater gets a fault it cannot correct (``Disturbance``) while a condition is
being flushed: the run suspends, resumes once the temperature is back, flushes the reactor
again and measures every condition exactly once. A heater that never settles fails the run
instead of hanging it.
"""

from __future__ import annotations

import threading
import time

import pytest
from bluesky.utils import FailedStatus
from ophyd.utils.errors import StatusTimeoutError

from mc_beamline.plans import flow_series

RESUME_S = 0.3


def _stream_events(docs, stream):
    uid = next((d["uid"] for n, d in docs if n == "descriptor" and d.get("name") == stream), None)
    return [d for n, d in docs if n == "event" and d["descriptor"] == uid]


@pytest.fixture
def disturbance(reactor):
    from ophyd import EpicsSignal

    signal = EpicsSignal(reactor.nucleation.prefix + "Disturbance", name="nuc_disturbance")
    signal.wait_for_connection(timeout=10)
    yield signal
    signal.put(0.0, wait=True)


def test_heater_fault_during_a_flush_suspends_and_each_condition_is_measured_once(reactor, RE, disturbance):
    RE.record_interruptions = True
    docs: list = []
    token = RE.subscribe(lambda name, doc: docs.append((name, doc)))
    log: dict = {}
    flushes = {"n": 0}

    def fault():
        log["fault"] = time.time()
        disturbance.put(-15.0, wait=True)
        time.sleep(1.0)
        disturbance.put(0.0, wait=True)
        log["cleared"] = time.time()

    def hook(msg):  # the heater fails while the second condition is being flushed
        if msg.command == "set" and msg.obj is reactor.flush:
            flushes["n"] += 1
            if flushes["n"] == 2:
                threading.Thread(target=fault, daemon=True).start()

    RE.msg_hook = hook
    try:
        (uid,) = RE(flow_series(reactor, [280.0], [260.0], [4.5, 14.0], temperature_band_c=2.0,
                                temperature_resume_s=RESUME_S))
    finally:
        RE.msg_hook = None
        RE.unsubscribe(token)

    events = _stream_events(docs, "primary")
    assert [e["data"][reactor.pumps.reaction_time.setpoint.name] for e in events] == pytest.approx([4.5, 14.0])
    interruptions = [d["data"]["interruption"] for d in _stream_events(docs, "interruptions")]
    assert len(interruptions) == 1 and "reactor_nucleation left 280" in interruptions[0], interruptions
    # the second condition was measured after the heater was back and a full flush later
    assert events[1]["time"] >= log["cleared"] + RESUME_S
    assert flushes["n"] == 3  # one flush per condition plus the repeat after the resume
    assert abs(events[1]["data"][reactor.nucleation.name] - 280.0) <= 2.0
    volume = reactor.pumps.volume.get()
    assert events[1]["data"][reactor.flush.flushed.name] >= 3.0 * volume - 1e-9
    stop = next(d for n, d in docs if n == "stop")
    assert stop["exit_status"] == "success" and stop["num_events"]["primary"] == 2


def test_a_heater_that_never_settles_fails_the_run_instead_of_hanging(reactor, RE, disturbance):
    disturbance.put(-30.0, wait=True)
    saved = reactor.nucleation.timeout
    reactor.nucleation.timeout = 2.0
    docs: list = []
    t0 = time.monotonic()
    try:
        with pytest.raises((FailedStatus, StatusTimeoutError)):
            RE(flow_series(reactor, [300.0], [290.0], [4.5]), lambda n, d: docs.append((n, d)))
    finally:
        reactor.nucleation.timeout = saved
    assert time.monotonic() - t0 < 60
    stop = next(d for n, d in docs if n == "stop")
    assert stop["exit_status"] == "fail"
