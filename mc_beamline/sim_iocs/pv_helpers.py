"""Building blocks of the simulated IOCs' PVs: enums, strings, waveforms and limited set points."""

from __future__ import annotations

import math
from collections.abc import Sequence

from caproto import AlarmSeverity, AlarmStatus, ChannelType, SkipWrite
from caproto.server import PvpropertyDouble, pvproperty


class LimitedSetpoint(PvpropertyDouble):
    """A set point that reports its control limits but refuses an out-of-range put itself.

    A put outside [lower_ctrl_limit, upper_ctrl_limit] (or not finite) completes without
    changing the value, and the PV goes into a MINOR alarm (status LOW or HIGH) until the
    next accepted put. (caproto's own limit check leaves a put-callback unanswered.)
    """

    async def verify_value(self, value):
        value = float(value)
        lo, hi = self.lower_ctrl_limit, self.upper_ctrl_limit
        if not math.isfinite(value) or (lo < hi and not lo <= value <= hi):
            status = AlarmStatus.HIGH if value > hi else AlarmStatus.LOW
            await self.alarm.write(status=status, severity=AlarmSeverity.MINOR_ALARM)
            return SkipWrite
        if self.alarm.severity != AlarmSeverity.NO_ALARM:
            await self.alarm.write(status=AlarmStatus.NO_ALARM, severity=AlarmSeverity.NO_ALARM)
        if self.putter is not None:
            return await self.putter(self, value)
        return value


def enum_pv(name: str, value: str, strings: tuple[str, ...], *, read_only: bool = False,
            doc: str | None = None) -> pvproperty:
    """An enum PV ``name`` with states ``strings``, starting at ``value``."""
    return pvproperty(name=name, value=value, dtype=ChannelType.ENUM, enum_strings=strings,
                      read_only=read_only, doc=doc)


def text_pv(name: str, value: str = "", *, max_length: int = 256, read_only: bool = True,
            doc: str | None = None) -> pvproperty:
    """A string PV longer than 40 characters (char waveform of ``max_length`` bytes), read-only by default."""
    return pvproperty(name=name, value=value, dtype=ChannelType.CHAR, max_length=max_length,
                      read_only=read_only, doc=doc)


def waveform_pv(name: str, length: int, units: str, doc: str, value: Sequence[float] | None = None) -> pvproperty:
    """A read-only float waveform of ``length`` points in ``units``: ``value``, or zeros."""
    return pvproperty(name=name, value=[0.0] * length if value is None else [float(v) for v in value], dtype=float,
                      max_length=length, read_only=True, units=units, doc=doc)


__all__ = ["LimitedSetpoint", "enum_pv", "text_pv", "waveform_pv"]
