"""Plan-argument validation shared by all plans.

A plan refuses bad arguments before it opens a run or moves anything, with one sentence
that says what is wrong and what would be accepted.
"""

from __future__ import annotations

import math


class PlanArgumentError(ValueError):
    """A plan argument that cannot be run; the message is one sentence for the operator."""


def require_finite(name: str, value: float, unit: str = "") -> float:
    """Return ``value`` as float, or refuse a NaN/inf/non-number."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise PlanArgumentError(f"{name} must be a number, got {value!r}.") from None
    if not math.isfinite(value):
        raise PlanArgumentError(f"{name} must be finite, got {value}{unit}.")
    return value


def require_positive(name: str, value: float, unit: str = "") -> float:
    """Return ``value`` as float, or refuse anything that is not a finite number > 0."""
    value = require_finite(name, value, unit)
    if value <= 0:
        raise PlanArgumentError(f"{name} must be positive, got {value:g}{unit}.")
    return value


def require_count(name: str, value: int, minimum: int = 1, maximum: int | None = None) -> int:
    """Return ``value`` as int, or refuse a non-integer or one outside [minimum, maximum]."""
    if isinstance(value, bool) or not float(value).is_integer():
        raise PlanArgumentError(f"{name} must be a whole number, got {value!r}.")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and at most {maximum}"
        raise PlanArgumentError(f"{name} must be at least {minimum}{upper}, got {value}.")
    return value


def require_within(name: str, low: float, high: float, limits: tuple[float, float], unit: str = "") -> None:
    """Refuse a travel range [low, high] that leaves the soft limits ``limits`` = (min, max)."""
    lo_lim, hi_lim = limits
    if lo_lim < hi_lim and (low < lo_lim or high > hi_lim):
        raise PlanArgumentError(
            f"{name} would travel {low:g}…{high:g}{unit}, outside its limits {lo_lim:g}…{hi_lim:g}{unit}; "
            "nothing was moved."
        )
