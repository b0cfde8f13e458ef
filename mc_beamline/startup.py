"""What IPython and the queue server load: the RunEngine (runs stored in Tiled), devices, plans.

Importing this module builds the session described by the environment (see
:mod:`mc_beamline.queue_server.session` for the variables) and leaves in its namespace:

* ``RE``: the RunEngine, its ``RE.md`` (``scan_id`` included) persistent in the data
  directory's Redis and shared with every other session of it; every document is published
  on the beamline's document stream (where the analysis service analyses it) and every run goes to Tiled through a writer that keeps runs in a local
  backup while Tiled is unreachable and sends them when it answers again; a suspender
  holds the scan while the ring current is below its threshold;
* ``det``, ``stage``, ``beam``, ``reactor``, ``assembly``: the beamline's devices (connected);
* ``nanodiffraction_raster``, ``adaptive_raster``, ``flow_series``, ``adaptive_flow_series``, ``assembly_series``: the plans, with typed and range-checked parameters.

In the queue server's RE worker (``is_re_worker_active()``) that is all. In IPython the
session adds a live table and plots (``bec``), a progress bar and bluesky's magics
(``%mov``, ``%movr``, ``%ct``, ``%wa``); ``mc-beamline profile install`` creates an IPython
profile that imports this module.

This module imports the plans it offers by name only: every generator function or device
in its namespace is listed by the queue server.
"""

from dataclasses import replace as _replace

import bluesky.plan_stubs as bps  # noqa: F401  (for the console; modules are not listed as plans)
import bluesky.plans as bp  # noqa: F401
from bluesky_queueserver import is_re_worker_active

from mc_beamline.queue_server.plans import (  # noqa: F401
           adaptive_flow_series,
           adaptive_raster,
           assembly_series,
           flow_series,
           nanodiffraction_fly_raster,
           nanodiffraction_raster,
)
from mc_beamline.queue_server.session import StartupConfig, start_session

_config = StartupConfig.from_env()
if _config.log_name is None:
    _config = _replace(_config, log_name="worker" if is_re_worker_active() else "ipython")
_session = start_session(_config, ipython=not is_re_worker_active())

RE = _session.RE
det = _session.beamline.detector
stage = _session.beamline.stage
beam = _session.beamline.beam
reactor = _session.beamline.reactor
assembly = _session.beamline.assembly
bec = _session.bec

__all__ = ["RE", "det", "stage", "beam", "reactor", "assembly", "bec", "bp", "bps", "nanodiffraction_raster",
           "flow_series", "assembly_series"]
