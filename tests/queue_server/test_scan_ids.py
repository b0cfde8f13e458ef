"""``scan_id`` is persistent per data directory: it keeps increasing across restarts of the
queue and in an IPython session in between (RE.md in the data directory's Redis)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bluesky_queueserver_api import BPlan

from mc_beamline.queue_server.plans import nanodiffraction_raster
from mc_beamline.queue_server.redis import running_redis
from mc_beamline.queue_server.session import StartupConfig, start_session
from mc_beamline.storage import DataDir

from .test_queue import QUICK, run_queue, running_queue

pytestmark = pytest.mark.slow


def queued_scan_id(data_dir: Path) -> int:
    """Start the queue, run one raster, stop the queue; the run's scan_id."""
    from tiled.client import from_uri

    from mc_beamline.queue_server.manager import read_state

    with running_queue(data_dir, "--no-analysis") as api:
        (entry,) = run_queue(api, [BPlan("nanodiffraction_raster", "det", "stage", **QUICK)])
        client = from_uri(read_state(data_dir)["tiled_uri"], api_key=DataDir(data_dir).api_key(), trust_env=False)
        with client.context:
            return client[entry["result"]["run_uids"][0]].metadata["start"]["scan_id"]


def ipython_scan_ids(data_dir: Path, prefix: str, n: int) -> list[int]:
    """What an IPython session (the startup's session, persistent RE.md) gives ``n`` rasters."""
    config = StartupConfig(prefix=prefix, data_dir=data_dir, ring_current_min_ma=None, md_redis="data-dir")
    session = start_session(config)
    try:
        session.beamline.detector.time_scale.set(0).wait(5)
        uids = [session.RE(nanodiffraction_raster(session.beamline.detector, session.beamline.stage, ny=2, nx=2,
                                                  exposure_s=0.01))[0] for _ in range(n)]
        return [session.client[uid].metadata["start"]["scan_id"] for uid in uids]
    finally:
        session.beamline.detector.time_scale.set(1).wait(5)
        session.close()


def test_scan_ids_never_repeat_across_queue_restarts_and_an_ipython_session(sim_ioc):
    data_dir = Path(sim_ioc.data_dir)
    first = queued_scan_id(data_dir)
    password = DataDir(data_dir).redis_password()
    assert running_redis(data_dir / "queue" / "redis", password) is None  # `queue stop` stopped the Redis
    in_ipython = ipython_scan_ids(data_dir, sim_ioc.prefix, 2)
    second = queued_scan_id(data_dir)  # the queue takes over the Redis the session started
    ids = [first, *in_ipython, second]
    assert ids == sorted(set(ids)), ids
    assert running_redis(data_dir / "queue" / "redis", password) is None
