"""Plan stubs that make sure the beamline answers before a plan moves anything."""

from __future__ import annotations

import time

import bluesky.plan_stubs as bps


class BeamlineNotReadyError(RuntimeError):
    """Devices a plan needs do not answer; the message is one sentence for the operator."""


def wait_for_devices(*devices, timeout_s: float = 30.0, poll_s: float = 0.2):
    """Wait (without blocking the RunEngine) until every device is connected.

    After an IOC restart the Channel Access client needs a moment to find the new
    server; a queued plan waits for it instead of failing on its first put.

    Raises
    ------
    BeamlineNotReadyError
        If some device is still disconnected after ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        missing = [d.name for d in devices if not d.connected]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise BeamlineNotReadyError(
                f"{', '.join(missing)} did not answer within {timeout_s:g} s; is the IOC running?")
        yield from bps.sleep(poll_s)
