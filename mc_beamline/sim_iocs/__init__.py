"""caproto PVGroups that play the beamline's instruments, served by one IOC process.

Start it with ``python -m mc_beamline.sim_iocs`` (or ``mc-beamline iocs``), from Python
with :func:`run_iocs` (foreground) or :class:`IocProcess` (subprocess on a private
loopback Channel Access port, as the tests and the demo use).

Names are imported lazily, so ``from mc_beamline.sim_iocs import IocProcess`` does not
load caproto's server or the physics model into a client process.
"""

from importlib import import_module

_EXPORTS = {
    "IocProcess": ".process",
    "free_ca_port": ".process",
    "loopback_ca_env": ".process",
    "DEFAULT_PREFIX": ".server",
    "GEOMETRIES": ".server",
    "add_ioc_arguments": ".server",
    "build_ioc": ".server",
    "run_from_args": ".server",
    "run_iocs": ".server",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
