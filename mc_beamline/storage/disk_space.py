"""Free space in the data directory, checked before a run and watched during it.

A detector that meets a full disk mid-run fails in ways that bury the cause (and the
frames written so far). :func:`guard_disk_space` is a RunEngine preprocessor that checks
the data directory's free space when a run opens (against its expected size: the points
it declares times ``bytes_per_point``) and before every trigger (against
:func:`min_free_bytes`): when space runs short the plan raises :class:`NoSpaceLeftError`
("no space left in DIR ..."), so the run ends with exit_status "fail", its stop document
written and every event recorded so far stored, before any write fails.

Use::

    RE.preprocessors.append(guard_disk_space(data_dir, bytes_per_point=200e3))
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

DEFAULT_MIN_FREE_MIB = 256
"""Free space (MiB) a run must leave in the data directory; ``MC_BEAMLINE_MIN_FREE_MIB`` overrides it."""
FRAME_BYTES_ESTIMATE = 200_000
"""Bytes one simulated detector frame takes on disk (1065 x 1030 counts, Bitshuffle/LZ4: ~190 kB)."""


class NoSpaceLeftError(OSError):
    """The data directory's filesystem has not enough free space for the run; one sentence."""


def min_free_bytes() -> int:
    """Free space (bytes) a run must leave: ``MC_BEAMLINE_MIN_FREE_MIB`` or :data:`DEFAULT_MIN_FREE_MIB`."""
    return int(float(os.environ.get("MC_BEAMLINE_MIN_FREE_MIB", DEFAULT_MIN_FREE_MIB)) * 2**20)


def check_free_space(directory: str | os.PathLike, needed_bytes: int = 0) -> int:
    """Free bytes in ``directory``'s filesystem; NoSpaceLeftError if fewer than ``needed_bytes`` + the minimum."""
    directory = Path(directory)
    free = shutil.disk_usage(directory).free
    floor = min_free_bytes()
    if free < needed_bytes + floor:
        need = f"the run needs about {needed_bytes / 2**20:.0f} MiB and " if needed_bytes else ""
        raise NoSpaceLeftError(f"no space left in {directory}: {free / 2**20:.0f} MiB free, {need}"
                               f"{floor / 2**20:.0f} MiB must stay free; free some space or use another "
                               "--data-dir")
    return free


def _check(msg, directory: Path, bytes_per_point: float) -> None:
    if msg.command == "open_run":
        points = msg.kwargs.get("num_points") or 0
        check_free_space(directory, int(points * bytes_per_point))
    elif msg.command == "trigger":
        check_free_space(directory)


def guard_disk_space(directory: str | os.PathLike, bytes_per_point: float = FRAME_BYTES_ESTIMATE):
    """A RunEngine preprocessor that fails a run before the data directory's disk fills (see module).

    The error is thrown into the plan in place of the message that would have run, so the
    plan's own clean-up (unstaging, closing the run with its reason) happens as for any
    failure.
    """
    directory = Path(directory)

    def guarded(plan):
        reply, error = None, None
        while True:
            try:
                msg = plan.throw(error) if error is not None else plan.send(reply)
            except StopIteration as stop:
                return stop.value
            error = None
            try:
                _check(msg, directory, bytes_per_point)
            except NoSpaceLeftError as exc:
                error = exc
                continue
            try:
                reply = yield msg
            except GeneratorExit:
                plan.close()
                raise
            except BaseException as exc:  # what the RunEngine throws in belongs to the plan
                error = exc

    return guarded


__all__ = ["DEFAULT_MIN_FREE_MIB", "FRAME_BYTES_ESTIMATE", "NoSpaceLeftError", "check_free_space",
           "guard_disk_space", "min_free_bytes"]
