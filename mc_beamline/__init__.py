"""mc-beamline: Bluesky/Ophyd plugin for nanocrystal superlattice (mesocrystal) beamlines."""

from mc_beamline.numba_cache import configure as _configure_numba_cache

_configure_numba_cache()  # before any module imports numba

__version__ = "0.1.0"
