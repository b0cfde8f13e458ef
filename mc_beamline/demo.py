"""`mc-beamline demo`: the simulated beamline end to end on embedded defaults.

Starts the simulated IOC and an embedded Tiled server for a data directory, runs the
experiment through a RunEngine whose documents go to Tiled and to the live analysis,
prints a summary (live results next to the simulator's truth) and one ``uid: <uid>``
line per run, and writes figures.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

SEED_RASTER = (35, 51, 0.4)
"""Rows, columns, step (µm) of the seed-000 raster: 13.6 x 20 µm."""
QUICK_RASTER = (9, 13, 1.6)
"""The same area at four times the step: 117 points, seconds instead of a minute."""
ANALYSIS_TIMEOUT_S = 300.0


@dataclass
class RasterDemoResult:
    """What the raster demo produced."""

    uid: str
    n_points: int
    scan_s: float
    analysis_lag_s: float
    result: dict | None
    truth: dict
    figures: list[Path] = field(default_factory=list)
    analysis_errors: list[dict] = field(default_factory=list)


@contextlib.contextmanager
def simulated_beamline(data_dir: Path, *, geometry: str = "offaxis"):
    """Start the simulated IOC and an embedded Tiled server; yield (beamline, RunEngine, client).

    The RunEngine has the TiledWriter subscribed. Everything is stopped on exit.
    """
    from bluesky import RunEngine

    from .devices import make_devices
    from .sim_iocs.process import IocProcess
    from .storage import TiledService, tiled_writer

    with IocProcess(data_dir=data_dir, geometry=geometry) as ioc:
        ioc.apply_client_env()
        beamline = make_devices(ioc.prefix).connect_all(timeout=30)
        with TiledService(data_dir) as tiled:
            client = tiled.client()
            with client.context:
                RE = RunEngine({}, context_managers=[])
                RE.subscribe(tiled_writer(client))
                yield beamline, RE, client


def raster_demo(data_dir: Path, quick: bool = False, out: TextIO = sys.stdout) -> RasterDemoResult:
    """Run the seed-000 raster (or the quick one) with live XCCA and store both in Tiled."""
    from .callbacks.analysis_process import AnalysisProcess
    from .physics.mesocrystal import MesocrystalParams, MesocrystalSimulator, raster_truth_summary
    from .plans import RasterSpec, nanodiffraction_raster
    from .sim_iocs.server import GEOMETRIES

    ny, nx, step = QUICK_RASTER if quick else SEED_RASTER
    figdir = Path(data_dir) / "figures"
    with simulated_beamline(data_dir) as (beamline, RE, client):
        det = beamline.detector
        with AnalysisProcess(client.uri, client.context.api_key, figure_dir=figdir) as analysis:
            RE.subscribe(analysis)
            # Simulated exposures need no wall-clock wait: the demo measures the software, not the shutter.
            det.time_scale.set(0).wait(5)
            print(f"Raster {ny} x {nx} points, {step} µm steps ({(ny - 1) * step:.1f} x {(nx - 1) * step:.1f} µm), "
                  f"{det.acquire_time.get():g} s exposures, live XCCA; data in {data_dir}", file=out, flush=True)
            t0 = time.perf_counter()
            (uid,) = RE(nanodiffraction_raster(det, beamline.stage, ny=ny, nx=nx, step_um=step))
            scan_s = time.perf_counter() - t0
            report = analysis.summary(uid, ANALYSIS_TIMEOUT_S)
            lag_s = time.perf_counter() - t0 - scan_s
        stop = client[uid].metadata["stop"]
        if stop["exit_status"] != "success":
            raise RuntimeError(f"The raster ended with status {stop['exit_status']}: {stop.get('reason')}")
        n_events = stop["num_events"].get("primary", 0)
        sim = MesocrystalSimulator(MesocrystalParams(seed=int(det.sim_seed.get())),
                                   GEOMETRIES[det.geometry_name.get()]())
        spec = RasterSpec(ny, nx, step)
        truth = raster_truth_summary(sim, spec.y_um, spec.x_um)
        det.time_scale.set(1).wait(5)
    result = RasterDemoResult(uid, n_events, scan_s, lag_s, report["result"], truth,
                              [Path(report["figure"])] if report["figure"] else [], report["errors"])
    _print_summary(result, out)
    return result


def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _print_summary(demo: RasterDemoResult, out: TextIO) -> None:
    n = max(demo.n_points, 1)
    print(f"Stored {demo.n_points} frames in {demo.scan_s:.1f} s ({1000 * demo.scan_s / n:.1f} ms per point); "
          f"live analysis finished {demo.analysis_lag_s:.1f} s after the last point.", file=out)
    r, t = demo.result, demo.truth
    if r is not None:
        sl = r["superlattice"]
        mis = r["misorientation_deg"]
        rows = [
            ("superlattice", f"{sl['lattice']}", "bct"),
            ("c/a", _fmt(sl["c_over_a"], 3), _fmt(t["c_over_a"], 3)),
            ("ΔΦ FWHM (deg)", _fmt(r["orientational_disorder_fwhm_deg"]), _fmt(t["disorder_fwhm_deg"])),
            ("ψ mean ± std (deg)", f"{_fmt(mis['mean'])} ± {_fmt(mis['std'])}",
             f"{_fmt(t['psi_mean_deg'])} ± {_fmt(t['psi_std_deg'])}"),
            ("frames with {111} / selected", str(r["n_selected"]), str(t["n_zone_positions"])),
            ("grains (domains)", str(r["domains"]["count"]), str(t["grains"])),
            ("mean grain area (µm²)", _fmt(r["domains"]["mean_area_um2"]), _fmt(t["mean_grain_area_um2"])),
        ]
        print(f"  {'':30s} {'live XCCA':>16s} {'simulator truth':>16s}", file=out)
        for label, live, true in rows:
            print(f"  {label:30s} {live:>16s} {true:>16s}", file=out)
        peaks = ", ".join(f"{p:+.1f}" for p in r["ccf_peaks_deg"])
        print(f"  CCF peaks (deg): {peaks or 'none'}", file=out)
    for err in demo.analysis_errors[:3]:
        print(f"  analysis error: {err['message']}", file=out)
    for path in demo.figures:
        print(f"figure: {path}", file=out)
    print(f"uid: {demo.uid}", file=out)
