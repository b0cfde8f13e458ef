"""mc-beamline: Bluesky/Ophyd plugin for nanocrystal superlattice (mesocrystal) beamlines."""

__version__ = "0.1.0"
