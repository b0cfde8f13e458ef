"""Time-resolved SAXS of NC self-assembly after a flocculant addition (seeds 004, 003, 001).

The plan puts a fresh sample in the assembly cell, takes ``baseline_frames`` SAXS frames
of it, starts the syringe pump (the flocculant reaches ``flocculant_mm`` in the cell over
``addition_time_s``) and, from the start of the addition, takes one frame every
``interval_s`` seconds, ``n_frames`` in all, while the addition goes on and after it.
Every event carries the 1D curve I(q) ± σ, the 2D image (a datum id: the camera writes
the frame into the HDF5 capture file it opens when the plan stages it), the time since the
addition began (the middle of the exposure, s) and the flocculant concentration; the start
document carries the q axis, the 2D detector's PONI and the data keys, so the live
analysis (and a replay) needs nothing else but the frames (from the file, or from Tiled,
which serves them from it). A gentle addition (small concentration ramp)
is the one-step route of seed 004, a rapid one to ≥ 80 mM the two-step route.

If the plan ends early (an error, a stop or an abort) the pump is stopped; the frames
taken so far are in the run.
"""

from __future__ import annotations

import time

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp

from mc_beamline.physics.flocculation import volume_for
from mc_beamline.plans.readiness import wait_for_devices
from mc_beamline.plans.validation import (
    PlanArgumentError,
    require_count,
    require_positive,
)

SAMPLES = ("colloid", "monolayer", "binary")
"""Samples of the assembly cell: a 3D colloid (Au NCs), a PbSe monolayer (hex → square), a binary NC mixture."""
LATTICES = ("fcc", "bcc", "hcp")
"""Supercrystal lattices the colloid can be prepared to form."""
MAX_FRAMES = 100_000
DEVICE_WAIT_S = 30.0
"""How long the plan waits for the cell to answer before it fails, s."""


def _read_float(signal):
    value = yield from bps.rd(signal)
    return float(value)


def _choice(name: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise PlanArgumentError(f"{name} must be one of {', '.join(choices)}, got {value!r}; nothing was moved.")
    return value


def _stop_addition(cell):
    """Stop the syringe pump if it still runs (the plan ended early)."""
    dispensing = yield from bps.rd(cell.floc.dispensing)
    if dispensing:
        yield from bps.abs_set(cell.floc.stop_add, 1, wait=True)


def assembly_series(
    cell,
    *,
    sample: str = "colloid",
    lattice: str = "fcc",
    flocculant_mm: float = 50.0,
    addition_time_s: float = 60.0,
    n_frames: int = 30,
    interval_s: float = 10.0,
    exposure_s: float = 1.0,
    baseline_frames: int = 1,
    ring_q_nm: float | None = None,
    description: str = "",
    md: dict | None = None,
):
    """Add flocculant to a fresh sample and follow its assembly with SAXS frames.

    Parameters
    ----------
    cell : the assembly cell (:class:`mc_beamline.devices.assembly_cell.AssemblyCell`).
    sample : "colloid" (4.6 nm Au NCs, 3D supercrystals), "monolayer" (PbSe, hexagonal →
        square) or "binary" (binary NC mixture, dodecagonal quasicrystal).
    lattice : supercrystal lattice the colloid forms: "fcc", "bcc" or "hcp".
    flocculant_mm : flocculant concentration in the cell after the addition, mM (> 0,
        below the stock concentration).
    addition_time_s : duration of the addition, s (> 0; sets the pump rate).
    n_frames : frames from the start of the addition on (≥ 1).
    interval_s : time between two frames, s (≥ ``exposure_s``).
    exposure_s : exposure per frame, s.
    baseline_frames : frames of the sample before the addition (≥ 0).
    ring_q_nm : the superlattice ring for the symmetry analysis, nm⁻¹ (default: the
        strongest Bragg peak of the first frame that has one).
    description : free text for the start document.
    md : extra start-document metadata.

    Bad arguments, and a dose the pump cannot deliver (volume or rate outside its limits
    read from the IOC), raise :class:`~mc_beamline.plans.PlanArgumentError` with one
    sentence before anything moves. Times are simulated seconds on the simulated cell
    (the plan waits ``time_scale`` wall-clock seconds per second).
    """
    sample = _choice("sample", sample, SAMPLES)
    lattice = _choice("lattice", lattice, LATTICES)
    flocculant_mm = require_positive("flocculant_mm", flocculant_mm, " mM")
    addition_time_s = require_positive("addition_time_s", addition_time_s, " s")
    n_frames = require_count("n_frames", n_frames, 1, MAX_FRAMES)
    baseline_frames = require_count("baseline_frames", baseline_frames, 0, MAX_FRAMES)
    interval_s = require_positive("interval_s", interval_s, " s")
    exposure_s = require_positive("exposure_s", exposure_s, " s")
    if exposure_s > interval_s:
        raise PlanArgumentError(f"exposure_s {exposure_s:g} s is longer than interval_s {interval_s:g} s: frames "
                                "would overlap; nothing was moved.")
    if ring_q_nm is not None:
        ring_q_nm = require_positive("ring_q_nm", ring_q_nm, " nm⁻¹")

    yield from wait_for_devices(cell, timeout_s=DEVICE_WAIT_S)
    floc = cell.floc
    stock = yield from _read_float(floc.stock)
    colloid_ul = yield from _read_float(cell.colloid_volume)
    if not flocculant_mm < stock:
        raise PlanArgumentError(f"flocculant_mm {flocculant_mm:g} mM cannot be reached with a {stock:g} mM stock; "
                                "nothing was moved.")
    volume_ul = volume_for(flocculant_mm, colloid_ul, stock)
    rate_ul_s = volume_ul / addition_time_s
    volume_limits = floc.volume.limits
    if volume_limits[0] < volume_limits[1] and not volume_limits[0] < volume_ul <= volume_limits[1]:
        raise PlanArgumentError(
            f"{flocculant_mm:g} mM needs {volume_ul:.4g} µL of the {stock:g} mM stock in {colloid_ul:g} µL of colloid, "
            f"outside the syringe's {volume_limits[0]:g}–{volume_limits[1]:g} µL; nothing was moved.")
    rate_limits = ((yield from _read_float(floc.rate_min)), (yield from _read_float(floc.rate_max)))
    if not rate_limits[0] <= rate_ul_s <= rate_limits[1]:
        t_lo, t_hi = volume_ul / rate_limits[1], volume_ul / rate_limits[0]
        raise PlanArgumentError(
            f"Adding {volume_ul:.4g} µL in {addition_time_s:g} s needs {rate_ul_s:.4g} µL/s, outside the pump's "
            f"{rate_limits[0]:g}–{rate_limits[1]:g} µL/s (addition times {t_lo:.3g}–{t_hi:.3g} s); nothing was moved.")

    # Everything is valid: from here on the plan changes the instrument.
    yield from bps.mv(cell.reset, 1)
    yield from bps.mv(cell.sample, sample, cell.lattice, lattice, cell.saxs.acquire_time, exposure_s,
                      floc.rate, rate_ul_s, floc.volume, volume_ul)
    time_scale = yield from _read_float(cell.time_scale)
    q = yield from bps.rd(cell.saxs.q)
    poni = yield from bps.rd(cell.saxs.poni_text)
    shape = [int((yield from _read_float(cell.saxs.array_size_y))),
             int((yield from _read_float(cell.saxs.array_size_x)))]

    saxs = cell.saxs
    plan_md = {
        "plan_name": "assembly_series",
        "detectors": [saxs.name],
        "num_points": baseline_frames + n_frames,
        "num_intervals": baseline_frames + n_frames - 1,
        "plan_args": {"sample": sample, "lattice": lattice, "flocculant_mm": flocculant_mm,
                      "addition_time_s": addition_time_s, "n_frames": n_frames, "interval_s": interval_s,
                      "exposure_s": exposure_s, "baseline_frames": baseline_frames, "ring_q_nm": ring_q_nm},
        "hints": {"dimensions": [([saxs.elapsed.name], "primary")]},
        "description": description,
        "mc_beamline": {
            "experiment": "assembly",
            "sample": sample,
            "lattice": lattice,
            "flocculant_mm": flocculant_mm,
            "addition_time_s": addition_time_s,
            "flocculant_volume_ul": volume_ul,
            "flocculant_rate_ul_s": rate_ul_s,
            "stock_mm": stock,
            "colloid_volume_ul": colloid_ul,
            "n_frames": n_frames,
            "baseline_frames": baseline_frames,
            "interval_s": interval_s,
            "exposure_s": exposure_s,
            "ring_q_nm": ring_q_nm,
            "q_nm": [float(v) for v in q],
            "poni": str(poni),
            "image_shape": shape,
            "keys": {"intensity": saxs.intensity.name, "sigma": saxs.sigma.name, "image": saxs.image_key,
                     "elapsed": saxs.elapsed.name, "q": saxs.q.name, "concentration": cell.concentration.name},
        },
    }
    plan_md.update(md or {})
    readers = [saxs, cell.concentration, floc.dispensed]

    @bpp.stage_decorator([saxs])
    @bpp.run_decorator(md=plan_md)
    def series():
        for _ in range(baseline_frames):
            yield from bps.trigger_and_read(readers)
        yield from bps.abs_set(floc.add, 1, group="addition")
        started = time.monotonic()
        for k in range(n_frames):
            wait = started + k * interval_s * time_scale - time.monotonic()
            if wait > 0:
                yield from bps.sleep(wait)
            yield from bps.trigger_and_read(readers)
        yield from bps.wait(group="addition")  # the whole dose goes in even if the frames end first

    return (yield from bpp.finalize_wrapper(series(), _stop_addition(cell)))


__all__ = ["LATTICES", "SAMPLES", "assembly_series"]
