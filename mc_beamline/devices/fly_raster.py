"""Fly-scan raster: the stage controller's gated rows and the detector, as one bluesky flyer.

:class:`FlyRaster` composes the pixel detector (its HDF5 file and Resource/Datum documents,
:class:`~mc_beamline.devices.file_writer.Hdf5FileFrames`), the nanofocus stage and the
stage controller's fly mode (:class:`FlyController`, PVs ``{stage prefix}FLY:``). It follows
bluesky's Preparable, Flyable and Collectable protocols, one row at a time:

* ``stage()`` opens the detector's capture file and puts it in External Gate mode;
* ``prepare(FlyRow)`` sets the row on the controller and moves y to the row and x to the
  row's run-up start (outside the map); the first row arms the detector for the whole map;
* ``kickoff()`` starts the row; ``complete()`` finishes when the row's gates have fired and
  their encoder positions are read back (the last row: also when every frame is written);
* ``collect_asset_docs()`` / ``collect()`` give, for every frame the detector has written
  since the last collect, one Datum (the mixin's) and one event in the ``primary`` stream
  with the image's datum id and the measured position: ``{x}`` the mean x encoder over the
  gate, ``{y}`` the y encoder (µm), from the controller's latched values, not set points.

The detector works while the stage goes on to the next row, and a plan may collect while
a row flies, so a row's frames may come with a later collect; the frames of a run keep the order of the gates, so event
``seq_num`` = frame index + 1 as in the step raster.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ophyd import Component as Cpt
from ophyd import Device, EpicsSignal, EpicsSignalRO
from ophyd import FormattedComponent as FCpt
from ophyd.status import AndStatus, DeviceStatus

from mc_beamline.physics.fly_motion import FlyRowProfile

STREAM = "primary"
FRAME_TIMEOUT_S = 0.5
"""Longest a map's acquisition may take per frame before the flyer reports it failed, s."""


@dataclass(frozen=True)
class FlyRow:
    """One row of a fly raster, in travel order."""

    index: int
    """Row number, from 0."""
    y_um: float
    """Row position, µm."""
    first_center_um: float
    """x centre of the first pixel in travel order, µm."""
    step_um: float
    """x distance between pixel centres, µm; negative for a row travelled backwards."""
    n_pixels: int
    """Pixels (gates, frames) in the row."""
    exposure_s: float
    """Gate length per pixel, s."""
    velocity_um_s: float
    """x velocity across the row, µm/s."""
    accel_time_s: float
    """Acceleration time of the x axis (its ACCL), s."""
    frames_total: int
    """Frames of the whole map (the detector is armed for them with row 0)."""
    last: bool
    """Whether this is the map's last row."""

    def profile(self) -> FlyRowProfile:
        """The row's move: run-up start, gates, run-down end."""
        return FlyRowProfile(self.first_center_um, self.step_um, self.n_pixels, self.exposure_s,
                             self.velocity_um_s, self.accel_time_s)


class FlyController(Device):
    """The stage controller's fly mode (``{prefix}`` e.g. ``MC:STAGE:FLY:``); µm, s."""

    first_center = Cpt(EpicsSignal, "FirstCenter", kind="omitted")
    step = Cpt(EpicsSignal, "Step", kind="omitted")
    num_pulses = Cpt(EpicsSignal, "NumPulses", kind="omitted")
    gate_time = Cpt(EpicsSignal, "GateTime", kind="omitted")
    velocity = Cpt(EpicsSignal, "Velocity", kind="omitted")
    go = Cpt(EpicsSignal, "Go", kind="omitted", put_complete=True)
    busy = Cpt(EpicsSignalRO, "Busy_RBV", kind="omitted")
    pulse_count = Cpt(EpicsSignalRO, "PulseCount_RBV", kind="omitted")
    encoder_x_open = Cpt(EpicsSignalRO, "EncoderXOpen_RBV", kind="omitted")
    encoder_x_close = Cpt(EpicsSignalRO, "EncoderXClose_RBV", kind="omitted")
    encoder_y = Cpt(EpicsSignalRO, "EncoderY_RBV", kind="omitted")
    gate_stamp = Cpt(EpicsSignalRO, "GateTimeStamp_RBV", kind="omitted")
    message = Cpt(EpicsSignalRO, "Message_RBV", string=True, kind="omitted")


class FlyRaster(Device):
    """Flyer of a gated fly raster (see the module docstring).

    Parameters
    ----------
    detector : the pixel detector (``PixelDetector``; its ``{prefix}TriggerMode`` selects
        External Gate).
    stage : the nanofocus stage (``NanofocusStage``); its controller's fly PVs are
        ``{stage.prefix}FLY:``.
    name : device name.
    """

    controller = FCpt(FlyController, "{stage_prefix}FLY:")
    trigger_mode = FCpt(EpicsSignal, "{detector_prefix}TriggerMode", string=True, kind="omitted")
    x_max_velocity = FCpt(EpicsSignalRO, "{stage_prefix}X.VMAX", kind="omitted")

    def __init__(self, detector, stage, *, name: str = "fly", **kwargs):
        self.detector = detector
        self.stage_device = stage
        self.stage_prefix = stage.prefix
        self.detector_prefix = detector.prefix
        super().__init__("", name=name, **kwargs)
        self.stage_sigs = {"trigger_mode": "External Gate"}
        self._row: FlyRow | None = None
        self._row_status: DeviceStatus | None = None
        self._acquisition: DeviceStatus | None = None
        self._positions: list[tuple[float, float, float]] = []  # (x, y, time) per gate of the run
        self._first_frame = 0  # file index of the run's first frame
        self._gathered = 0  # frames of the run that have a Datum
        self._events: list[dict] = []
        self._lock = threading.Lock()
        self._row_settings: dict = {}  # what the controller holds already (fewer puts per row)

    # ------------------------------------------------------------ stage
    def stage(self):
        staged = super().stage()
        try:
            self.detector.stage()
        except Exception:
            super().unstage()
            raise
        return staged

    def unstage(self):
        try:
            if self._row_status is not None and not self._row_status.done and self.connected:
                self.controller.go.put(0, use_complete=False)  # stop an aborted row
            if self._acquisition is not None and not self._acquisition.done:
                self.detector.acquire.put(0, use_complete=False)  # disarm an aborted map
            self.detector.unstage()
        finally:
            self._acquisition = None
            super().unstage()

    def stop(self, *, success: bool = False) -> None:
        if self.connected:
            self.controller.go.put(0, use_complete=False)
        self.detector.stop(success=success)
        super().stop(success=success)

    # ------------------------------------------------------------ rows
    def prepare(self, row: FlyRow) -> DeviceStatus:
        """Set the row, arm the detector for the map (row 0) and move to the row's run-up start."""
        ctl, put_timeout = self.controller, self.detector.put_timeout
        if row.index == 0:
            self._arm(row)
            self._row_settings = {}
        for signal, value in ((ctl.first_center, row.first_center_um), (ctl.step, row.step_um),
                              (ctl.num_pulses, row.n_pixels), (ctl.gate_time, row.exposure_s),
                              (ctl.velocity, row.velocity_um_s)):
            if self._row_settings.get(signal.attr_name) != value:
                signal.put(value, use_complete=True, wait=True, timeout=put_timeout)
                self._row_settings[signal.attr_name] = value
        self._row = row
        x, y = self.stage_device.x, self.stage_device.y
        start = row.profile().start_um
        if abs(x.position - start) < 1e-4:  # a snake's next row starts where the last one ended
            return y.set(row.y_um)
        return AndStatus(y.set(row.y_um), x.set(start))

    def _arm(self, row: FlyRow) -> None:
        det = self.detector
        det.require_staged()
        det.num_images.put(row.frames_total, use_complete=True, wait=True, timeout=det.put_timeout)
        self._first_frame = int(det.num_captured.get(use_monitor=False))
        self._positions, self._gathered, self._events = [], 0, []
        # The acquisition ends when every gate of the map has its frame; a detector that falls
        # behind (a busy simulator) may take longer than the rows, hence the generous bound.
        timeout = det.put_timeout + row.frames_total * FRAME_TIMEOUT_S
        status = self._acquisition = DeviceStatus(det, timeout=timeout)

        def acquired(*args, **kwargs):
            written = int(det.num_captured.get(use_monitor=False)) - self._first_frame
            if written < row.frames_total:
                state = det.detector_state.get(use_monitor=False)
                status.set_exception(RuntimeError(
                    f"{det.name} wrote {written} of {row.frames_total} frames (state {state}): "
                    f"{det.status_message.get(use_monitor=False)}"))
            else:
                status.set_finished()

        det.acquire.put(1, use_complete=True, callback=lambda *a, **k: threading.Thread(target=acquired).start())

    def kickoff(self) -> DeviceStatus:
        """Start the prepared row; the status is done once the controller was told to go."""
        row = self._row
        if row is None:
            raise RuntimeError(f"{self.name}: prepare a row before kickoff.")
        timeout = self.detector.put_timeout + 2 * row.profile().duration_s + 1.0
        status = self._row_status = DeviceStatus(self, timeout=timeout)

        def row_done():
            try:
                self._read_gates(row)
            except Exception as exc:  # noqa: BLE001 - handed to the plan through the status
                status.set_exception(exc)
            else:
                status.set_finished()

        self.controller.go.put(1, use_complete=True,
                               callback=lambda *a, **k: threading.Thread(target=row_done).start())
        started = DeviceStatus(self)
        started.set_finished()
        return started

    def _read_gates(self, row: FlyRow) -> None:
        ctl = self.controller
        fired = int(ctl.pulse_count.get(use_monitor=False))
        if fired != row.n_pixels:
            raise RuntimeError(f"Row {row.index} fired {fired} of {row.n_pixels} gates: "
                               f"{ctl.message.get(use_monitor=False)}")
        n = row.n_pixels
        x_open = ctl.encoder_x_open.get(use_monitor=False)[:n]
        x_close = ctl.encoder_x_close.get(use_monitor=False)[:n]
        y = ctl.encoder_y.get(use_monitor=False)[:n]
        stamps = ctl.gate_stamp.get(use_monitor=False)[:n]
        with self._lock:
            self._positions.extend((0.5 * (a + b), float(c), float(t)) for a, b, c, t in zip(x_open, x_close, y, stamps))

    def complete(self):
        """Done when the row's gates are recorded; after the last row, also every frame written."""
        if self._row_status is None:
            raise RuntimeError(f"{self.name}: kickoff before complete.")
        if self._row is not None and self._row.last and self._acquisition is not None:
            return AndStatus(self._row_status, self._acquisition)
        return self._row_status

    # ------------------------------------------------------------ documents
    def describe_collect(self) -> dict:
        image = self.detector.describe()[self.detector.image_key]
        x, y = self.stage_device.x.name, self.stage_device.y.name
        position = {"dtype": "number", "shape": [], "units": "um", "precision": 4}
        return {STREAM: {
            self.detector.image_key: image,
            x: {**position, "source": f"PV:{self.stage_prefix}FLY:EncoderXOpen_RBV"},
            y: {**position, "source": f"PV:{self.stage_prefix}FLY:EncoderY_RBV"},
        }}

    def _gather(self) -> None:
        """A Datum and a pending event for every frame written and recorded since the last call."""
        det = self.detector
        written = int(det.num_captured.get(use_monitor=False)) - self._first_frame
        x, y = self.stage_device.x.name, self.stage_device.y.name
        with self._lock:
            available = min(written, len(self._positions))
            for i in range(self._gathered, available):
                datum_id = det.new_datum(self._first_frame + i)
                xi, yi, t = self._positions[i]
                self._events.append({
                    "data": {det.image_key: datum_id, x: xi, y: yi},
                    "timestamps": {det.image_key: t, x: t, y: t},
                    "filled": {det.image_key: False},
                })
            self._gathered = max(self._gathered, available)

    def collect_asset_docs(self):
        self._gather()
        yield from self.detector.collect_asset_docs()

    def collect(self):
        """The events of the frames whose Datum the last :meth:`collect_asset_docs` gave (the
        RunEngine asks for the asset documents first, so every event follows its Datum)."""
        with self._lock:
            events, self._events = self._events, []
        yield from events


def fly_raster_flyer(detector, stage) -> FlyRaster:
    """The :class:`FlyRaster` of ``detector`` and ``stage`` (one per pair, reused)."""
    key = (detector.prefix, detector.name, stage.prefix, stage.name)
    flyer = _FLYERS.get(key)
    if flyer is None or flyer.detector is not detector or flyer.stage_device is not stage:
        flyer = _FLYERS[key] = FlyRaster(detector, stage, name=f"{stage.name}_fly")
    return flyer


_FLYERS: dict[tuple[str, str, str, str], FlyRaster] = {}

__all__ = ["FlyController", "FlyRaster", "FlyRow", "STREAM", "fly_raster_flyer"]
