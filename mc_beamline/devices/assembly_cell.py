"""Self-assembly cell: NC sample, flocculant syringe pump and a 2D SAXS camera.

``AssemblyCell("MC:ASSEMBLY:", name="assembly")`` groups

* the sample: ``sample`` (``"colloid"``, ``"monolayer"`` or ``"binary"``), ``colloid_volume``
  (µL), ``reset`` (put 1 with put-completion: a fresh sample), ``concentration``
  (flocculant in the cell, mM), ``elapsed`` (simulated s since the addition started, −1
  before);
* ``floc``: :class:`FlocculantPump`; ``rate`` (µL/s) and ``volume`` (µL) are set points with
  readbacks; ``add`` is put with put-completion: ``yield from bps.abs_set(cell.floc.add, 1,
  group="add")`` starts the addition and the status completes when the dispensing ends
  (``stop_add`` ends it early). One addition per sample: reset first.
* ``saxs``: :class:`AssemblySaxs`, triggerable once staged; each trigger records one frame
  into the capture file that ``stage()`` opened, and its azimuthally averaged I(q).
  Triggering the cell itself triggers ``saxs`` (and staging it stages ``saxs``), so
  ``bps.trigger_and_read([cell])`` records a frame together with concentration, elapsed
  time and dispensed volume.

Data keys of ``saxs.read()`` for a cell named ``assembly`` (:func:`saxs_data_keys`):

=============================  =============================================================
``assembly_saxs_intensity``    I(q), cm⁻¹, float64 [600] (hinted)
``assembly_saxs_sigma``        σ of I(q), cm⁻¹, float64 [600]
``assembly_saxs_q``            q, nm⁻¹, float64 [600] (0.2–6 nm⁻¹)
``assembly_saxs_image``        the frame, counts, int32 [rows, cols] = [512, 512], external:
                               the event holds a datum id, the frame is in the HDF5 file
``assembly_saxs_elapsed``      time since the addition started at mid-exposure, s (−1: the
                               frame was taken before any addition)
``assembly_saxs_acquire_count``  frame number
=============================  =============================================================

The camera writes its frames through its HDF5 file plugin, like the raster's pixel
detector, and ``saxs`` announces them the same way
(:class:`~mc_beamline.devices.file_writer.Hdf5FileFrames`): ``stage()`` opens a capture file
``<data-dir>/detector/%Y/%m/%d/assembly_saxs_<12 hex>_00000.h5``, the Resource (spec
``AD_HDF5_SWMR``) and one Datum per frame come through ``collect_asset_docs()`` (also of the
cell), and the image data key is ``external``. The 1D curve stays in the events.

Configuration of ``saxs``: ``acquire_time`` (s), ``poni_text`` (pyFAI PONI of the camera:
``DetectorGeometry.from_poni_text`` gives the q and φ maps of the image),
``array_size_x`` (columns), ``array_size_y`` (rows).

These classes hold only what the real cell has. :class:`SimAssemblyCell` adds the
simulator-only parts: the supercrystal ``lattice`` the simulation produces, its seed and
its clock. The simulated cell runs on simulated time, ``time_scale`` wall-clock seconds per
simulated second, and acquisition timeouts are scaled with it (on real hardware the scale
is 1).
"""

from __future__ import annotations

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, EpicsSignal, EpicsSignalRO
from ophyd.status import DeviceStatus

from mc_beamline.devices.file_writer import Hdf5FileFrames
from mc_beamline.devices.flow_reactor import _FlowCellInstrument

SAXS_FIELDS = ("intensity", "sigma", "q", "image", "elapsed", "acquire_count")
"""Reading fields of :class:`AssemblySaxs`; the data key is ``f"{cell name}_saxs_{field}"``."""


def saxs_data_keys(name: str = "assembly") -> dict[str, str]:
    """Data keys of the SAXS readings of a cell named ``name``: field → key.

    >>> saxs_data_keys("assembly")["image"]
    'assembly_saxs_image'
    """
    return {field: f"{name}_saxs_{field}" for field in SAXS_FIELDS}


class FlocculantPump(Device):
    """The flocculant syringe pump (``{prefix}`` e.g. ``MC:ASSEMBLY:FLOC:``).

    ``rate`` (µL/s) and ``volume`` (µL) read back the accepted set points (refused puts,
    outside ``rate_min``–``rate_max`` or (0, 1000] µL, keep the old value). ``add``: put 1
    starts dispensing ``volume`` at ``rate``; with put-completion the status completes when
    the dispensing ends. ``stop_add``: put 1 ends a running addition.
    """

    rate = Cpt(EpicsSignal, "Rate_RBV", write_pv="Rate", kind="config", auto_monitor=True,
               doc="dispensing rate (µL/s)")
    volume = Cpt(EpicsSignal, "Volume_RBV", write_pv="Volume", kind="config", auto_monitor=True,
                 doc="volume of the next addition (µL)")
    add = Cpt(EpicsSignal, "Add", kind="omitted", put_complete=True,
              doc="put 1: dispense; completes when the dispensing ends")
    stop_add = Cpt(EpicsSignal, "Stop", kind="omitted", put_complete=True, doc="put 1: stop dispensing")
    dispensing = Cpt(EpicsSignalRO, "Dispensing_RBV", kind="normal", auto_monitor=True, doc="1 while dispensing")
    dispensed = Cpt(EpicsSignalRO, "Dispensed_RBV", kind="normal", auto_monitor=True,
                    doc="volume added to this sample (µL)")
    stock = Cpt(EpicsSignalRO, "Stock_RBV", kind="config", doc="flocculant concentration in the syringe (mM)")
    rate_min = Cpt(EpicsSignalRO, "RateMin_RBV", kind="config", doc="smallest rate (µL/s)")
    rate_max = Cpt(EpicsSignalRO, "RateMax_RBV", kind="config", doc="largest rate (µL/s)")

    @property
    def limits(self) -> tuple[float, float]:
        """(smallest, largest) rate in µL/s."""
        return (float(self.rate_min.get()), float(self.rate_max.get()))


class AssemblySaxs(Hdf5FileFrames, _FlowCellInstrument):
    """The cell's 2D SAXS camera with on-line azimuthal reduction (``{prefix}`` e.g. ``MC:ASSEMBLY:SAXS:``).

    ``stage()`` opens a capture file; ``trigger()`` puts Acquire = 1 and completes on
    put-completion (after the exposure; on the simulated cell in simulated time, timeout
    scaled with the cell's ``time_scale``) once the frame is in the file. Readings: see
    the module docstring; the image (data key ``{name}_image``) is a datum id.
    """

    intensity = Cpt(EpicsSignalRO, "Intensity_RBV", kind="hinted", auto_monitor=False,
                    doc="azimuthally averaged I(q) (cm⁻¹)")
    sigma = Cpt(EpicsSignalRO, "Sigma_RBV", kind="normal", auto_monitor=False, doc="σ of I(q) (cm⁻¹)")
    q = Cpt(EpicsSignalRO, "Q_RBV", kind="normal", auto_monitor=False, doc="scattering vector (nm⁻¹)")
    elapsed = Cpt(EpicsSignalRO, "Elapsed_RBV", kind="normal", auto_monitor=False,
                  doc="time since the addition started at mid-exposure (s); -1 before")
    acquire_time = Cpt(EpicsSignal, "AcquireTime_RBV", write_pv="AcquireTime", kind="config", auto_monitor=True,
                       doc="exposure (simulated s)")
    poni_text = Cpt(EpicsSignalRO, "PoniText_RBV", string=True, kind="config", doc="pyFAI PONI of the camera")
    array_size_x = Cpt(EpicsSignalRO, "ArraySizeX_RBV", kind="config", doc="columns of a frame")
    array_size_y = Cpt(EpicsSignalRO, "ArraySizeY_RBV", kind="config", doc="rows of a frame")

    frame_dtype = np.dtype("<i4")

    def _exposure_s(self) -> float:
        return float(self.acquire_time.get())

    def trigger(self) -> DeviceStatus:
        """Take one frame; completes when the IOC has published it and written it to the capture file."""
        expected = self.require_staged()
        before = int(self.acquire_count.get(use_monitor=False))

        def check():
            message = self.status_message.get(use_monitor=False)
            if int(self.acquire_count.get(use_monitor=False)) <= before:
                return f"{self.name} recorded nothing: {message}"
            self._frame_written(expected, lambda: message)
            return None

        return self._put_and_check(self.acquire, check)

    def geometry(self):
        """The camera's :class:`~mc_beamline.instrument.geometry.DetectorGeometry` (from the PONI)."""
        from mc_beamline.instrument.geometry import DetectorGeometry

        return DetectorGeometry.from_poni_text(self.poni_text.get())


class AssemblyCell(Device):
    """The self-assembly cell (``{prefix}`` = ``MC:ASSEMBLY:``); see the module docstring.

    The simulator-only parts are in :class:`SimAssemblyCell`.

    Example
    -------
    >>> cell = AssemblyCell("MC:ASSEMBLY:", name="assembly")
    >>> cell.wait_for_connection(timeout=10)
    >>> cell.sample.set("colloid").wait(5); cell.reset.set(1).wait(5)
    >>> cell.floc.rate.set(100.0).wait(5); cell.floc.volume.set(141.0).wait(5)
    >>> cell.floc.add.set(1).wait(30)          # rapid addition to 110 mM
    >>> cell.saxs.stage(); cell.saxs.trigger().wait(30)   # the frame goes into a capture file
    >>> cell.saxs.read()["assembly_saxs_intensity"]["value"]; cell.saxs.unstage()
    """

    sample = Cpt(EpicsSignal, "Sample", string=True, kind="config", auto_monitor=True,
                 doc="colloid, monolayer or binary")
    colloid_volume = Cpt(EpicsSignalRO, "ColloidVolume_RBV", kind="config",
                         doc="sample volume before the addition (µL)")
    concentration = Cpt(EpicsSignalRO, "Concentration_RBV", kind="normal", auto_monitor=True,
                        doc="flocculant concentration in the cell (mM)")
    elapsed = Cpt(EpicsSignalRO, "Elapsed_RBV", kind="normal", auto_monitor=True,
                  doc="simulated s since the addition started; -1 before")
    reset = Cpt(EpicsSignal, "Reset", kind="omitted", put_complete=True, doc="put 1: load a fresh sample")
    status_message = Cpt(EpicsSignalRO, "Status_RBV", string=True, kind="omitted", auto_monitor=True)
    floc = Cpt(FlocculantPump, "FLOC:", doc="flocculant syringe pump")
    saxs = Cpt(AssemblySaxs, "SAXS:", doc="2D SAXS camera")

    def trigger(self):
        """Take one SAXS frame (``saxs.trigger()``).

        ``bps.trigger_and_read([cell])`` and ``[cell.saxs, cell]`` (bluesky keeps only the
        parent) both record a frame and read it with the cell's state.
        """
        return self.saxs.trigger()

    def collect_asset_docs(self):
        """The camera's Resource and Datum documents (bluesky asks the device it read, the cell)."""
        yield from self.saxs.collect_asset_docs()


class SimAssemblyCell(AssemblyCell):
    """:class:`AssemblyCell` on the simulated IOC (``{prefix}`` = ``MC:ASSEMBLY:``).

    Adds the simulator-only parts: ``time_scale`` (wall-clock seconds per simulated second;
    the SAXS acquisition timeout is scaled with it), ``sim_time``, ``sim_seed`` and
    ``lattice`` (``"fcc"``, ``"bcc"`` or ``"hcp"``: the supercrystal the simulated colloid
    forms, set before the addition).
    """

    time_scale = Cpt(EpicsSignal, "TimeScale", kind="config", auto_monitor=True,
                     doc="wall-clock seconds per simulated second")
    sim_time = Cpt(EpicsSignalRO, "SimTime_RBV", kind="omitted", auto_monitor=True, doc="simulated time (s)")
    lattice = Cpt(EpicsSignal, "Lattice", string=True, kind="config", auto_monitor=True,
                  doc="supercrystal lattice of the colloid: fcc, bcc or hcp")
    sim_seed = Cpt(EpicsSignalRO, "SimSeed_RBV", kind="config", doc="seed of the noise and orientations")

    def __init__(self, prefix: str = "", *, name: str, **kwargs):
        super().__init__(prefix, name=name, **kwargs)
        self.saxs.time_scale_signal = self.time_scale


__all__ = ["AssemblyCell", "AssemblySaxs", "FlocculantPump", "SAXS_FIELDS", "SimAssemblyCell", "saxs_data_keys"]
