"""Shared fixtures: the real simulated beamline IOC over Channel Access on loopback.

``sim_ioc`` starts ``python -m mc_beamline.sim_iocs`` once per session in a subprocess on
a free Channel Access port (127.0.0.1 only) with a temporary data directory, and points
this process's CA client at it (EPICS_CA_AUTO_ADDR_LIST=NO, EPICS_CA_ADDR_LIST=127.0.0.1,
EPICS_CA_SERVER_PORT/EPICS_CA_REPEATER_PORT) before any PV is created. ``beamline`` gives
the connected ophyd devices (``stage``, ``detector``, ``beam``).
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OPHYD_CONTROL_LAYER", "caproto")


@pytest.fixture(scope="session")
def sim_ioc(tmp_path_factory):
    """The simulated beamline IOC (prefix ``MC:``) running in a subprocess."""
    from mc_beamline.sim_iocs.process import IocProcess

    data_dir = tmp_path_factory.mktemp("mc-data")
    ioc = IocProcess(prefix="MC:", data_dir=data_dir)
    ioc.start(timeout=60)
    ioc.apply_client_env()
    yield ioc
    ioc.stop()


@pytest.fixture(scope="session")
def beamline(sim_ioc):
    """Connected devices of the simulated beamline (a :class:`mc_beamline.devices.Beamline`)."""
    from mc_beamline.devices import make_devices

    bl = make_devices(sim_ioc.prefix)
    bl.connect_all(timeout=30)
    yield bl
    from ophyd.device import Staged

    if bl.detector._staged != Staged.no:  # a failed test may leave it staged
        bl.detector.unstage()


@pytest.fixture(scope="session")
def ca_context(sim_ioc):
    """A plain caproto threading client context (for IOC-level tests without ophyd)."""
    from caproto.threading.client import Context

    ctx = Context()
    yield ctx
    ctx.disconnect()


@pytest.fixture
def RE():
    """A fresh RunEngine without persistent metadata."""
    from bluesky import RunEngine

    return RunEngine({})


@pytest.fixture(scope="session")
def simulator(beamline):
    """The model the IOC serves, rebuilt from what the detector reports (seed, geometry)."""
    det = beamline.detector
    from mc_beamline.physics.mesocrystal import MesocrystalParams, MesocrystalSimulator
    from mc_beamline.sim_iocs.server import GEOMETRIES

    params = MesocrystalParams(seed=int(det.sim_seed.get()))
    return MesocrystalSimulator(params, GEOMETRIES[det.geometry_name.get()]())


@pytest.fixture
def fast_detector(beamline):
    """Detector with a short exposure and no wall-clock waiting."""
    det = beamline.detector
    det.acquire_time.set(0.05).wait(5)
    det.time_scale.set(0).wait(5)
    yield det
    det.time_scale.set(1).wait(5)
    det.acquire_time.set(0.01).wait(5)


@pytest.fixture(scope="module")
def tiled(sim_ioc):
    """A client of a real Tiled server on the IOC's data directory (detector files readable)."""
    from mc_beamline.storage import TiledService

    with TiledService(sim_ioc.data_dir) as service:
        client = service.client()
        with client.context:
            yield client


# ------------------------------------------------------------------ flow reactor
REACTOR_TIME_SCALE = 0.01
"""Wall-clock seconds per simulated second in reactor tests (100x faster than real time)."""


@pytest.fixture(scope="session")
def reactor(beamline):
    """The simulated flow reactor, 100x faster than real time, with quick heaters.

    Heaters ramp at up to 600 °C/min with a 2 s time constant and settle for 10 s
    (simulated); the UV-Vis has a valid dark and reference. The IOC settings are restored
    at the end of the session.
    """
    r = beamline.reactor
    saved = r.run_simulation_fast(REACTOR_TIME_SCALE)
    r.uvvis.take_dark_and_reference()
    yield r
    r.restore_settings(saved)
