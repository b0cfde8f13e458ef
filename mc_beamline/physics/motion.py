"""Trapezoidal motion profile of a positioning axis (the simulated piezo stage).

The axis accelerates at a constant rate to ``velocity`` in ``accel_time`` seconds, cruises,
and decelerates at the same rate; a move too short to reach ``velocity`` is triangular.
Lengths in any one unit (the stage: µm), velocities in that unit per second, times in s.
Pure Python, no I/O.
"""

from __future__ import annotations

import math


def move_duration(distance: float, velocity: float, accel_time: float) -> float:
    """Time (s) of a trapezoidal (or triangular) move of ``distance`` at ``velocity``.

    Parameters
    ----------
    distance : length of the move (≥ 0; 0 or less takes no time).
    velocity : cruise velocity, length per s (> 0).
    accel_time : time to reach ``velocity`` from rest, s (≤ 0: instantaneous).
    """
    if distance <= 0:
        return 0.0
    if accel_time <= 0:
        return distance / velocity
    accel = velocity / accel_time
    ramp = velocity * accel_time  # distance covered by acceleration + deceleration
    if distance >= ramp:
        return distance / velocity + accel_time
    return 2.0 * math.sqrt(distance / accel)


def move_progress(t: float, distance: float, velocity: float, accel_time: float) -> float:
    """Distance travelled ``t`` s after the start of the move of :func:`move_duration`.

    Same units as ``distance``; ``distance`` itself once the move has ended.
    """
    total = move_duration(distance, velocity, accel_time)
    if t >= total:
        return distance
    if accel_time <= 0:
        return velocity * t
    accel = velocity / accel_time
    ramp = velocity * accel_time
    if distance >= ramp:
        if t < accel_time:
            return 0.5 * accel * t * t
        if t < total - accel_time:
            return 0.5 * ramp + velocity * (t - accel_time)
        rem = total - t
        return distance - 0.5 * accel * rem * rem
    half = total / 2.0
    if t < half:
        return 0.5 * accel * t * t
    rem = total - t
    return distance - 0.5 * accel * rem * rem


__all__ = ["move_duration", "move_progress"]
