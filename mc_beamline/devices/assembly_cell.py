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
* ``saxs``: :class:`AssemblySaxs`, triggerable; each trigger records one frame and its
  azimuthally averaged I(q). Triggering the cell itself triggers ``saxs``, so
  ``bps.trigger_and_read([cell])`` records a frame together with concentration, elapsed
  time and dispensed volume.

Data keys of ``saxs.read()`` for a cell named ``assembly`` (:func:`saxs_data_keys`):

=============================  =============================================================
``assembly_saxs_intensity``    I(q), cm⁻¹, float64 [600] (hinted)
``assembly_saxs_sigma``        σ of I(q), cm⁻¹, float64 [600]
``assembly_saxs_q``            q, nm⁻¹, float64 [600] (0.2–6 nm⁻¹)
``assembly_saxs_image``        the frame, counts, int32 [rows, cols] = [512, 512]
``assembly_saxs_elapsed``      time since the addition started at mid-exposure, s (−1: the
                               frame was taken before any addition)
``assembly_saxs_acquire_count``  frame number
=============================  =============================================================

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

from mc_beamline.devices.flow_reactor import _FlowCellInstrument

SAXS_FIELDS = ("intensity", "sigma", "q", "image", "elapsed", "acquire_count")
"""Reading fields of :class:`AssemblySaxs`; the data key is ``f"{cell name}_saxs_{field}"``."""


def saxs_data_keys(name: str = "assembly") -> dict[str, str]:
    """Data keys of the SAXS readings of a cell named ``name``: field → key.

    >>> saxs_data_keys("assembly")["image"]
    'assembly_saxs_image'
    """
    return {field: f"{name}_saxs_{field}" for field in SAXS_FIELDS}


class ImageSignal(EpicsSignalRO):
    """A flattened image waveform read as a 2D array of shape (rows, columns).

    The shape comes from the parent's ``array_size_y`` (rows) and ``array_size_x`` (columns)
    readbacks; ``describe()`` declares it (``shape [rows, cols]``) with the numpy dtype of
    the frame (``dtype_numpy``, e.g. ``"<i4"``).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._image_shape: tuple[int, int] | None = None

    @property
    def image_shape(self) -> tuple[int, int]:
        """(rows, columns) of the frame."""
        if self._image_shape is None:
            rows = int(self.parent.array_size_y.get())
            cols = int(self.parent.array_size_x.get())
            self._image_shape = (rows, cols)
        return self._image_shape

    def _fix_type(self, value):
        value = super()._fix_type(value)
        arr = np.asarray(value)
        if not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        rows, cols = self.image_shape
        if arr.size == rows * cols:
            return arr.reshape(rows, cols)
        return arr

    def describe(self):
        res = super().describe()
        key = res[self.name]
        key["shape"] = list(self.image_shape)
        key["dtype"] = "array"
        raw = self._readback
        dtype = np.asarray(raw).dtype if raw is not None and np.size(raw) > 1 else np.dtype(np.int32)
        key["dtype_numpy"] = dtype.newbyteorder("=").str
        return res


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


class AssemblySaxs(_FlowCellInstrument):
    """The cell's 2D SAXS camera with on-line azimuthal reduction (``{prefix}`` e.g. ``MC:ASSEMBLY:SAXS:``).

    ``trigger()`` puts Acquire = 1 and completes on put-completion (after the exposure; on
    the simulated cell in simulated time, timeout scaled with the cell's ``time_scale``).
    Readings: see the module docstring; ``image`` is read as a (rows, columns) array.
    """

    intensity = Cpt(EpicsSignalRO, "Intensity_RBV", kind="hinted", auto_monitor=False,
                    doc="azimuthally averaged I(q) (cm⁻¹)")
    sigma = Cpt(EpicsSignalRO, "Sigma_RBV", kind="normal", auto_monitor=False, doc="σ of I(q) (cm⁻¹)")
    q = Cpt(EpicsSignalRO, "Q_RBV", kind="normal", auto_monitor=False, doc="scattering vector (nm⁻¹)")
    image = Cpt(ImageSignal, "Image_RBV", kind="normal", auto_monitor=False, doc="frame (counts), rows x cols")
    elapsed = Cpt(EpicsSignalRO, "Elapsed_RBV", kind="normal", auto_monitor=False,
                  doc="time since the addition started at mid-exposure (s); -1 before")
    acquire_time = Cpt(EpicsSignal, "AcquireTime_RBV", write_pv="AcquireTime", kind="config", auto_monitor=True,
                       doc="exposure (simulated s)")
    poni_text = Cpt(EpicsSignalRO, "PoniText_RBV", string=True, kind="config", doc="pyFAI PONI of the camera")
    array_size_x = Cpt(EpicsSignalRO, "ArraySizeX_RBV", kind="config", doc="columns of a frame")
    array_size_y = Cpt(EpicsSignalRO, "ArraySizeY_RBV", kind="config", doc="rows of a frame")

    def _exposure_s(self) -> float:
        return float(self.acquire_time.get())

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
    >>> cell.saxs.trigger().wait(30); cell.saxs.read()["assembly_saxs_intensity"]["value"]
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


__all__ = ["AssemblyCell", "AssemblySaxs", "FlocculantPump", "ImageSignal", "SAXS_FIELDS", "SimAssemblyCell",
           "saxs_data_keys"]
