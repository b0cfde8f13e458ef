"""Simulated clock of the reactor and assembly-cell IOCs: TimeScale, SimTime_RBV, tick loop.

Times are *simulated* seconds unless said otherwise; ``TimeScale`` wall-clock seconds pass
per simulated second.
"""

from __future__ import annotations

import asyncio
import math
import time
from concurrent.futures import ThreadPoolExecutor

from caproto.server import PVGroup, pvproperty

TICK_S = 0.05
"""Wall-clock period of the simulation step and its readback updates, s."""
MIN_TIME_SCALE = 1e-4
"""Smallest accepted TimeScale (10 000 simulated seconds per wall-clock second)."""


class ScaledTimeIOC(PVGroup):
    """A simulation that runs in scaled time, with a worker thread for its measurements.

    Every :data:`TICK_S` wall-clock seconds the wall time since the last tick, divided by
    TimeScale, is handed to :meth:`step` and then :meth:`publish` writes the readbacks;
    subclasses implement both. A failing step is logged and the clock goes on.

    Parameters
    ----------
    seed : seed of the measurement noise (SimSeed_RBV).
    worker_name : thread-name prefix of the measurement worker.
    """

    time_scale = pvproperty(name="TimeScale", value=1.0, precision=5,
                            doc="Wall-clock seconds per simulated second (> 0)")
    sim_time = pvproperty(name="SimTime_RBV", value=0.0, precision=2, units="s", read_only=True)
    sim_seed = pvproperty(name="SimSeed_RBV", value=0, read_only=True)

    def __init__(self, *args, seed: int, worker_name: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.seed = int(seed)
        self.sim_seed._data["value"] = self.seed
        self.simulated_s = 0.0
        self._tick_wall: float | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=worker_name)

    @property
    def time_scale_value(self) -> float:
        """Wall-clock seconds per simulated second now (TimeScale, at least :data:`MIN_TIME_SCALE`)."""
        return max(float(self.time_scale.value), MIN_TIME_SCALE)

    def sim_now(self) -> float:
        """Simulated time now (s), between ticks extrapolated from the wall clock."""
        if self._tick_wall is None:
            return self.simulated_s
        return self.simulated_s + (time.monotonic() - self._tick_wall) / self.time_scale_value

    def run_in_worker(self, func, *args) -> asyncio.Future:
        """Run ``func(*args)`` in the worker thread (one job at a time)."""
        return asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    def step(self, dt: float) -> None:
        """Advance the simulation by ``dt`` simulated seconds."""
        raise NotImplementedError

    async def publish(self) -> None:
        """Write the readbacks that changed since the last update."""
        raise NotImplementedError

    def before_time_scale_change(self) -> None:
        """Called when a TimeScale put is accepted, before the new value applies; does nothing here."""

    @time_scale.putter
    async def time_scale(self, instance, value):
        value = float(value)
        if not math.isfinite(value) or value < MIN_TIME_SCALE:
            return instance.value
        self.before_time_scale_change()
        return value

    @sim_time.startup
    async def sim_time(self, instance, async_lib):
        self._tick_wall = time.monotonic()
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            dt = (now - self._tick_wall) / self.time_scale_value
            self._tick_wall = now
            try:
                self.step(dt)
                await self.publish()
            except Exception:  # never let the simulation die: report and go on
                self.log.exception("Simulation step of %s failed", self.prefix)

    def close(self) -> None:
        """Stop the worker thread (after the server stopped)."""
        self._executor.shutdown(wait=True)


__all__ = ["MIN_TIME_SCALE", "TICK_S", "ScaledTimeIOC"]
