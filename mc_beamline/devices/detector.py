"""2D pixel detector (Eiger-1M-like) that writes frames to HDF5 and emits Resource/Datum.

Its frames (uint32, ``/entry/data/data`` of one capture file per stage) are announced as
Resource/Datum documents with spec ``AD_HDF5_SWMR`` by the file-plugin mixin
:class:`~mc_beamline.devices.file_writer.Hdf5FileFrames`, whose docstring gives the document
model: ``describe()`` gives the data key ``{name}_image`` (``det_image`` for the default
name) as external, ``stage()`` opens the file, each ``trigger()`` adds one Datum.

:class:`PixelDetector` holds only what the real detector has; :class:`SimPixelDetector`
adds the simulator-only time scale, seed and geometry name.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from ophyd import Component as Cpt
from ophyd import EpicsSignal, EpicsSignalRO, Signal
from ophyd.status import DeviceStatus

from mc_beamline.devices.file_writer import DATASET, RESOURCE_SPEC, Hdf5FileFrames


class PixelDetector(Hdf5FileFrames):
    """Eiger-1M-like pixel detector with its HDF5 file writer (``{prefix}`` = ``MC:DET:``).

    Parameters
    ----------
    prefix : PV prefix.
    name : device name; the image data key is ``{name}_image``.
    write_path_template : directory of capture files relative to the IOC's data
        directory, passed through ``time.strftime`` at each stage (default ``%Y/%m/%d``).

    Read at every point: the frame (a Datum of the capture file) and ``{name}_total``, its
    summed counts (hinted: the live table shows it and plots it as a map during a raster).
    Configuration (``read_configuration``): exposure time (s), PONI and mask file paths;
    ``poni_text`` holds the PONI file content that plans put into the start document.
    """

    acquire = Cpt(EpicsSignal, "Acquire", kind="omitted", put_complete=True)
    acquire_busy = Cpt(EpicsSignalRO, "Acquire_RBV", kind="omitted")
    acquire_time = Cpt(EpicsSignal, "AcquireTime_RBV", write_pv="AcquireTime", kind="config", auto_monitor=True,
                       doc="exposure per frame (s)")
    num_images = Cpt(EpicsSignal, "NumImages_RBV", write_pv="NumImages", kind="omitted", auto_monitor=True)
    # Per-frame PVs are not monitored: fewer CA updates per point; read them on demand.
    array_counter = Cpt(EpicsSignal, "ArrayCounter_RBV", write_pv="ArrayCounter", kind="omitted")
    detector_state = Cpt(EpicsSignalRO, "DetectorState_RBV", string=True, kind="omitted")
    status_message = Cpt(EpicsSignalRO, "StatusMessage_RBV", string=True, kind="omitted")
    poni_file = Cpt(EpicsSignalRO, "PoniFile_RBV", string=True, kind="config")
    mask_file = Cpt(EpicsSignalRO, "MaskFile_RBV", string=True, kind="config")
    poni_text = Cpt(EpicsSignalRO, "PoniText_RBV", string=True, kind="omitted")
    array_size_x = Cpt(EpicsSignalRO, "ArraySizeX_RBV", kind="omitted")
    array_size_y = Cpt(EpicsSignalRO, "ArraySizeY_RBV", kind="omitted")
    total = Cpt(EpicsSignalRO, "TotalCounts_RBV", kind="hinted",
                doc="summed counts of the frame (module gaps left out): the live table's column and map")
    rewindable = Cpt(Signal, value=False, kind="omitted",
                     doc="False: after a suspension bluesky never replays this detector's trigger "
                         "(trigger_and_read honours it); a replayed trigger would write a second frame for the point")

    frame_dtype = np.dtype("<u4")

    def __init__(self, prefix: str = "", *, name: str, write_path_template: str = "%Y/%m/%d",
                 put_timeout: float = 10.0, **kwargs):
        super().__init__(prefix, name=name, write_path_template=write_path_template, put_timeout=put_timeout,
                         **kwargs)
        self.time_scale_signal = None
        self.stage_sigs = OrderedDict([("num_images", 1)])

    # ------------------------------------------------------------- acquiring
    def trigger(self) -> DeviceStatus:
        """Take one frame; the status completes when the IOC has written it (put-completion)."""
        expected = self.require_staged()
        scale = float(self.time_scale_signal.get()) if self.time_scale_signal is not None else 1.0
        timeout = self.put_timeout + float(self.acquire_time.get()) * scale
        status = DeviceStatus(self, timeout=timeout)

        def why() -> str:
            state = self.detector_state.get(use_monitor=False)
            return f"(state {state}) {self.status_message.get(use_monitor=False)}"

        def acquired(*args, **kwargs):
            try:
                self._frame_written(expected, why)
            except Exception as exc:
                status.set_exception(exc)
            else:
                status.set_finished()

        self.acquire.put(1, use_complete=True, callback=acquired)
        return status

    def stop(self, *, success: bool = False) -> None:
        if self.connected:
            self.acquire.put(0, use_complete=False)
        super().stop(success=success)


class SimPixelDetector(PixelDetector):
    """:class:`PixelDetector` on the simulated IOC (``{prefix}`` = ``MC:DET:``).

    Adds the simulator-only configuration: ``time_scale`` (wall-clock seconds per exposure
    second, 0: no waiting; the trigger timeout is scaled with it), ``sim_seed`` and
    ``geometry_name``, from which ``MesocrystalSimulator`` rebuilds the frames the IOC serves.
    """

    time_scale = Cpt(EpicsSignal, "TimeScale", kind="config", auto_monitor=True,
                     doc="wall-clock seconds per exposure second (0: no waiting)")
    sim_seed = Cpt(EpicsSignalRO, "SimSeed_RBV", kind="config")
    geometry_name = Cpt(EpicsSignalRO, "Geometry_RBV", string=True, kind="config")

    def __init__(self, prefix: str = "", *, name: str, **kwargs):
        super().__init__(prefix, name=name, **kwargs)
        self.time_scale_signal = self.time_scale


__all__ = ["PixelDetector", "SimPixelDetector", "DATASET", "RESOURCE_SPEC"]
