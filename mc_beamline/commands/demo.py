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

import numpy as np

SEED_RASTER = (35, 51, 0.4)
"""Rows, columns, step (µm) of the seed-000 raster: 13.6 x 20 µm."""
QUICK_RASTER = (9, 13, 1.6)
"""The same area at four times the step: 117 points, seconds instead of a minute."""
ANALYSIS_TIMEOUT_S = 300.0
FLOW_SERIES = ((260.0, 280.0, 350.0), (260.0,), (4.5, 7.6, 14.0))
"""Nucleation temperatures (°C), growth temperatures (°C), reaction times (s) of the flow demo."""
QUICK_FLOW_SERIES = ((280.0, 350.0), (260.0,), (4.5, 14.0))
ADAPTIVE_FLOW = dict(reaction_time_s=14.0, growth_temperature_c=260.0, low_c=190.0, high_c=350.0, tolerance_c=5.0,
                     max_conditions=8, family="CdSe-437")
"""The adaptive flow demo: the T_nuc window (°C) of CdSe-437 at 14 s, both edges within ±5 °C."""
QUICK_ADAPTIVE_FLOW = {**ADAPTIVE_FLOW, "tolerance_c": 10.0, "max_conditions": 6}
FLOW_TIME_SCALE = 0.01
"""Wall-clock seconds per simulated reactor second in the flow demo (100x faster than real time)."""
MIN_TRUE_MSC_ABSORBANCE = 0.007
"""A family counts as present in the simulator's truth from this peak absorbance (the analysis' detection floor)."""


@dataclass
class RasterDemoResult:
    """What the raster demo produced."""

    uid: str
    n_points: int
    scan_s: float
    result_lag_s: float
    """Seconds from the end of the scan until the live result was computed."""
    analysis_lag_s: float
    """Seconds from the end of the scan until the result was stored in Tiled and its figure drawn."""
    result: dict | None
    truth: dict
    figures: list[Path] = field(default_factory=list)
    analysis_errors: list[dict] = field(default_factory=list)


@contextlib.contextmanager
def simulated_beamline(data_dir: Path, *, geometry: str = "offaxis", analyses: list | None = None,
                       out: TextIO | None = None):
    """Start the simulated IOC and an embedded Tiled server; yield (beamline, RunEngine, client).

    The RunEngine has the TiledWriter subscribed, prints each run's uid on ``out`` (if given)
    when it starts, and fails a run before the data directory's disk fills
    (`guard_disk_space`). Everything is stopped on exit. A run that fails or is interrupted
    (Ctrl-C) keeps what it recorded: see `ended_run`.
    ``analyses``: the caller's live analyses (anything with ``wait(timeout_s)``), filled
    while it runs; on the way out, also after a failed run, they get up to
    :data:`ANALYSIS_TIMEOUT_S` together to finish and store their results while Tiled is up.
    """
    from bluesky import RunEngine

    from mc_beamline.devices import make_devices
    from mc_beamline.devices.ca_session import one_line_logging
    from mc_beamline.sim_iocs.process import IocProcess
    from mc_beamline.storage import TiledService, tiled_writer
    from mc_beamline.storage.disk_space import guard_disk_space

    one_line_logging()
    ioc = IocProcess(data_dir=data_dir, geometry=geometry).launch()
    with contextlib.ExitStack() as services:
        services.callback(ioc.stop)
        tiled = services.enter_context(TiledService(data_dir))  # while the IOC comes up
        ioc.wait_ready()
        ioc.apply_client_env()
        beamline = make_devices(ioc.prefix).connect_all(timeout=30)
        client = tiled.client()
        with client.context:
            RE = RunEngine({}, context_managers=[])
            RE.subscribe(tiled_writer(client))
            if out is not None:
                RE.subscribe(lambda name, doc: print(f"run {doc['uid']} started (scan id {doc.get('scan_id')})",
                                                     file=out, flush=True), "start")
            RE.preprocessors.append(guard_disk_space(data_dir))
            with ended_run(RE, client, ioc):
                try:
                    yield beamline, RE, client
                finally:
                    deadline = time.monotonic() + ANALYSIS_TIMEOUT_S
                    for live in analyses or ():
                        live.wait(max(0.0, deadline - time.monotonic()))


@contextlib.contextmanager
def ended_run(RE, client, ioc):
    """Turn a failed or interrupted run into one sentence; what it recorded stays stored.

    Ctrl-C aborts the run after the point being measured (its stop document says ``abort``)
    and is re-raised as KeyboardInterrupt (one line from the command). Any other error of a run becomes a
    RuntimeError naming the run, how many events Tiled holds and, when the IOC process has
    died, that the IOC stopped answering (its abandoned detector files are then closed, so
    they open without SWMR).
    """
    import signal

    starts: list[str] = []
    RE.subscribe(lambda name, doc: starts.append(doc["uid"]), "start")

    def pause_on_ctrl_c(signum, frame):
        # bluesky's own KeyboardInterrupt path can deadlock the clean-up; a pause at the next
        # checkpoint ends RE() after the point being measured, so its frame has its event
        if RE.state != "running":
            raise KeyboardInterrupt
        RE.request_pause(defer=True)

    previous = signal.signal(signal.SIGINT, pause_on_ctrl_c)
    try:
        yield
    except KeyboardInterrupt:
        if RE.state != "idle":
            RE.abort("interrupted by Ctrl-C")
        raise
    except Exception as exc:
        from bluesky.utils import RunEngineInterrupted

        if isinstance(exc, RunEngineInterrupted):
            RE.abort("interrupted by Ctrl-C")
            raise KeyboardInterrupt from None
        if not starts or RE.state != "idle":
            raise
        ioc_died = ioc.proc.poll() is not None
        if ioc_died:  # its detector files stay open for write; make every frame readable as usual
            from mc_beamline.storage.abandoned_files import close_abandoned

            close_abandoned(Path(ioc.data_dir) / "detector")
        stop = client[starts[-1]].metadata.get("stop") or {}
        cause = ("the beamline IOC stopped answering" if ioc_died
                 else " ".join(str(exc).split())[:300] or type(exc).__name__)
        events = sum((stop.get("num_events") or {}).values())
        raise RuntimeError(f"{cause[0].upper()}{cause[1:]}; run {starts[-1]} ended with exit_status "
                           f"{stop.get('exit_status', 'unknown')} and its {events} events are stored.") from None
    finally:
        signal.signal(signal.SIGINT, previous)


def raster_demo(data_dir: Path, quick: bool = False, out: TextIO = sys.stdout, fly: bool = False,
                adaptive: bool = False) -> RasterDemoResult:
    """Run the seed-000 raster (or the quick one) with live XCCA and store both in Tiled.

    With ``fly`` the raster is a fly scan (:func:`~mc_beamline.plans.nanodiffraction_fly_raster`):
    the stage moves continuously along each row and the detector takes one gated exposure
    per point, so the scan takes about the exposure time per point. With ``adaptive`` it is
    :func:`~mc_beamline.plans.adaptive_raster` on the same grid: the live XCCA of each frame
    chooses the next point, within 40 % of the grid's points.
    """
    from mc_beamline.callbacks.analysis_process import AnalysisProcess, report_lags_s
    from mc_beamline.physics.mesocrystal import (
        MesocrystalParams,
        MesocrystalSimulator,
        raster_truth_summary,
    )
    from mc_beamline.plans import (
        RasterSpec,
        adaptive_raster,
        nanodiffraction_fly_raster,
        nanodiffraction_raster,
    )
    from mc_beamline.sim_iocs.server import GEOMETRIES

    ny, nx, step = QUICK_RASTER if quick else SEED_RASTER
    figdir = Path(data_dir) / "figures"
    with simulated_beamline(data_dir, out=out) as (beamline, RE, client):
        det = beamline.detector
        with AnalysisProcess(client.uri, client.context.api_key, figure_dir=figdir) as analysis:
            RE.subscribe(analysis)
            # Simulated exposures need no wall-clock wait: the demo measures the software, not the shutter.
            det.time_scale.set(0).wait(5)
            kind = "Fly raster" if fly else "Adaptive raster on" if adaptive else "Raster"
            print(f"{kind} {ny} x {nx} points, {step} µm steps ({(ny - 1) * step:.1f} x {(nx - 1) * step:.1f} µm), "
                  f"{det.acquire_time.get():g} s exposures, live XCCA; data in {data_dir}", file=out, flush=True)
            plan = nanodiffraction_fly_raster if fly else adaptive_raster if adaptive else nanodiffraction_raster
            t0 = time.perf_counter()
            (uid,) = RE(plan(det, beamline.stage, ny=ny, nx=nx, step_um=step))
            scan_s = time.perf_counter() - t0
            scan_end = time.time()
            report = analysis.summary(uid, ANALYSIS_TIMEOUT_S)
        result_lag_s, stored_lag_s = report_lags_s(report, scan_end)
        stop = client[uid].metadata["stop"]
        if stop["exit_status"] != "success":
            raise RuntimeError(f"The raster ended with status {stop['exit_status']}: {stop.get('reason')}")
        n_events = stop["num_events"].get("primary", 0)
        sim = MesocrystalSimulator(MesocrystalParams(seed=int(det.sim_seed.get())),
                                   GEOMETRIES[det.geometry_name.get()]())
        spec = RasterSpec(ny, nx, step)
        truth = raster_truth_summary(sim, spec.y_um, spec.x_um)
        det.time_scale.set(1).wait(5)
    result = RasterDemoResult(uid, n_events, scan_s, result_lag_s, stored_lag_s, report["result"], truth,
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
          f"live result {demo.result_lag_s:.1f} s after the last point, stored with its figure "
          f"{demo.analysis_lag_s:.1f} s after.", file=out)
    r, t = demo.result, demo.truth
    search = (r or {}).get("raster_search")
    if search is not None:
        full = search["spec"]["ny"] * search["spec"]["nx"]
        rounds = len(search["statistics"])
        print(f"Adaptive search: {search['n_points']} of {full} points ({100 * search['fraction']:.1f} %) "
              f"in {rounds} rounds, stopped: {search['stop_reason']}.", file=out)
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


@dataclass
class FlowDemoResult:
    """What the flow demo produced."""

    uid: str
    n_conditions: int
    scan_s: float
    result: dict | None
    truth: list[dict]
    figures: list[Path] = field(default_factory=list)
    analysis_errors: list[dict] = field(default_factory=list)


def flow_truth(nucleation_c: float, growth_c: float, reaction_time_s: float) -> dict:
    """What the simulator's kinetic model holds for one condition: MSC families, NC exciton and size."""
    from mc_beamline.physics.absorption import msc_peak_absorbance, nc_exciton_peak_nm
    from mc_beamline.physics.cdse import MSC_FAMILIES
    from mc_beamline.physics.flow_reactor import ReactorConditions, simulate

    population = simulate(ReactorConditions.at_reaction_time(nucleation_c, growth_c, reaction_time_s)).population
    families = [f.name for f in MSC_FAMILIES if msc_peak_absorbance(population, f.name) >= MIN_TRUE_MSC_ABSORBANCE]
    peak = nc_exciton_peak_nm(population)
    return {"families": families, "nc_wavelength_nm": peak,
            "nc_diameter_nm": population.nc_mean_diameter_nm if peak is not None else None}


def flow_window_truth(family: str, reaction_time_s: float, growth_c: float, low_c: float, high_c: float,
                      step_c: float = 1.0) -> tuple[float | None, float | None]:
    """Edges (°C) of the simulator's T_nuc window of ``family`` at ``reaction_time_s`` (s).

    T_nuc runs from ``low_c`` to ``high_c`` in ``step_c`` steps with the oven at
    min(T_nuc, ``growth_c``), as the adaptive flow series sets it; the window is the longest
    run of temperatures whose truth holds the family, each edge the midpoint between its
    last temperature and the next one outside (None where the window reaches the range limit).
    """
    temps = np.arange(low_c, high_c + 0.5 * step_c, step_c)
    present = [family in flow_truth(float(t), min(float(t), growth_c), reaction_time_s)["families"] for t in temps]
    runs, start = [], None
    for i, p in enumerate(present + [False]):
        if p and start is None:
            start = i
        elif not p and start is not None:
            runs.append((start, i - 1))
            start = None
    if not runs:
        return None, None
    first, last = max(runs, key=lambda r: r[1] - r[0])
    lower = None if first == 0 else float(temps[first] - 0.5 * step_c)
    upper = None if last == len(temps) - 1 else float(temps[last] + 0.5 * step_c)
    return lower, upper


def flow_demo(data_dir: Path, quick: bool = False, out: TextIO = sys.stdout, adaptive: bool = False) -> FlowDemoResult:
    """Run a flow series (T_nuc x T_growth x reaction time) with live MSC/SAXS analysis into Tiled.

    With ``adaptive`` the series is :func:`~mc_beamline.plans.adaptive_flow_series`: the live
    analysis picks each nucleation temperature until both edges of the CdSe-437 window at 14 s
    are located (:data:`ADAPTIVE_FLOW`); the summary sets the edges beside the simulator's.
    """
    from mc_beamline.callbacks.live_flow import flow_router
    from mc_beamline.plans import adaptive_flow_series, flow_series
    from mc_beamline.storage import tiled_writer

    nuc, growth, times = QUICK_FLOW_SERIES if quick else FLOW_SERIES
    search = QUICK_ADAPTIVE_FLOW if quick else ADAPTIVE_FLOW
    figdir = Path(data_dir) / "figures"
    runs: list = []
    with simulated_beamline(data_dir, analyses=runs, out=out) as (beamline, RE, client):
        reactor = beamline.reactor
        saved = reactor.run_simulation_fast(FLOW_TIME_SCALE)
        try:
            reactor.uvvis.take_dark_and_reference()
            RE.subscribe(flow_router(publish=tiled_writer(client), figure_dir=figdir, on_run=runs.append))
            if adaptive:
                print(f"Adaptive flow series: {search['family']} window in T_nuc {search['low_c']:g}–"
                      f"{search['high_c']:g} °C at {search['reaction_time_s']:g} s (T_growth "
                      f"min(T_nuc, {search['growth_temperature_c']:g}) °C), edges within "
                      f"±{search['tolerance_c']:g} °C "
                      f"in at most {search['max_conditions']} conditions; simulated reactor "
                      f"{1 / FLOW_TIME_SCALE:g}x faster than real time; data in {data_dir}", file=out, flush=True)
                plan = adaptive_flow_series(reactor, **search)
            else:
                print(f"Flow series: T_nuc {', '.join(f'{t:g}' for t in nuc)} °C x T_growth "
                      f"{', '.join(f'{t:g}' for t in growth)} °C x reaction time {', '.join(f'{t:g}' for t in times)} "
                      f"s; simulated reactor {1 / FLOW_TIME_SCALE:g}x faster than real time; live MSC map; data in "
                      f"{data_dir}", file=out, flush=True)
                plan = flow_series(reactor, list(nuc), list(growth), list(times))
            t0 = time.perf_counter()
            (uid,) = RE(plan)
            scan_s = time.perf_counter() - t0
            live = runs[-1]
            if not live.wait(ANALYSIS_TIMEOUT_S):
                raise RuntimeError(f"The live flow analysis did not finish within {ANALYSIS_TIMEOUT_S:.0f} s.")
        finally:
            reactor.pumps.cd.running.set(0).wait(5)
            reactor.pumps.se.running.set(0).wait(5)
            reactor.restore_settings(saved)
        stop = client[uid].metadata["stop"]
        if stop["exit_status"] != "success":
            raise RuntimeError(f"The flow series ended with status {stop['exit_status']}: {stop.get('reason')}")
        n_events = stop["num_events"].get("primary", 0)
    if adaptive:
        conditions = [(e["condition"]["nucleation_temperature_c"], e["condition"]["growth_temperature_c"],
                       e["condition"]["reaction_time_s"]) for e in (live.result or {}).get("spectra", [])]
    else:
        conditions = [(tn, tg, t) for tn in nuc for tg in growth for t in times]
    truth = [flow_truth(*condition) for condition in conditions]
    result = FlowDemoResult(uid, n_events, scan_s, live.result, truth,
                            [live.figure_path] if live.figure_path else [], live.errors)
    if adaptive:
        print(f"uid: {uid}", file=out)
        _print_window_search(result, search, out)
    _print_flow_summary(result, out, uid_line=not adaptive)
    return result


def _print_window_search(demo: FlowDemoResult, search: dict, out: TextIO) -> None:
    found = (demo.result or {}).get("window_search")
    if found is None:
        print("  the decisions could not be re-derived from the analysed spectra (see the analysis errors)", file=out)
        return
    truth = flow_window_truth(search["family"], search["reaction_time_s"], search["growth_temperature_c"],
                              search["low_c"], search["high_c"])
    print(f"Decisions ({found['n_conditions']} conditions; stopped: {found['stop_reason']}):", file=out)
    for d in found["decisions"]:
        print(f"  {d['index'] + 1}. T_nuc {d['temperature_c']:6.1f} °C  {d['reason']:13s}  {search['family']} "
              f"{'found' if d['present'] else 'absent'}, NCs {'found' if d['nc_present'] else 'absent'}", file=out)
    for name, true in (("lower", truth[0]), ("upper", truth[1])):
        edge = found[name]
        if edge["temperature_c"] is not None:
            live = f"{edge['temperature_c']:.1f} ± {edge['temperature_c_err']:.1f} °C"
        else:
            live = "beyond the range" if edge["inside_c"] is not None else "not found"
        print(f"  {name} edge: {live} (simulator: {_fmt(true, 1)} °C)", file=out)
    nc = found["nc_first_seen_c"]
    below = found["nc_absent_below_c"]
    print(f"  NCs first seen at T_nuc {_fmt(nc, 1)} °C" + (f", absent at {below:g} °C" if below is not None else
                                                            ", at every condition measured"), file=out)


def _print_flow_summary(demo: FlowDemoResult, out: TextIO, uid_line: bool = True) -> None:
    print(f"Stored {demo.n_conditions} conditions in {demo.scan_s:.1f} s (settle, flush 3 reactor volumes, "
          "spectrum and SAXS each).", file=out)
    spectra = (demo.result or {}).get("spectra", [])
    print(f"  {'condition':44s} {'MSC families (live / truth)':46s} {'NC nm (live / truth)':>22s} {'SAXS <r> nm':>11s}",
          file=out)
    for entry, truth in zip(spectra, demo.truth):
        live_fam = ",".join(p["family"].removeprefix("CdSe-") for p in entry["msc"]) or "-"
        true_fam = ",".join(f.removeprefix("CdSe-") for f in truth["families"]) or "-"
        nc = entry["nc"]
        live_nc = f"{nc['diameter_nm']:.2f}" if nc else "-"
        true_nc = _fmt(truth["nc_diameter_nm"]) if truth["nc_diameter_nm"] is not None else "-"
        saxs = entry.get("saxs")
        radius = _fmt(saxs["size_distribution"]["mean_radius_nm"]) if saxs else "n/a"
        print(f"  {entry['label']:44s} {live_fam + ' / ' + true_fam:46s} {live_nc + ' / ' + true_nc:>22s} "
              f"{radius:>11s}", file=out)
    for err in demo.analysis_errors[:3]:
        print(f"  analysis error: {err['message']}", file=out)
    for path in demo.figures:
        print(f"figure: {path}", file=out)
    if uid_line:
        print(f"uid: {demo.uid}", file=out)


ASSEMBLY_FRAME_WALL_S = 0.5
"""Wall-clock seconds between two frames in the assembly demo: the simulated cell runs
``interval_s / 0.5`` times faster than real time (30x for 15 s frames), leaving each frame
time to be written (the image to the camera's file), stored and analysed before the next."""
ASSEMBLY_SERIES = (
    # label, plan arguments
    ("Au NCs, gentle addition to 50 mM", dict(sample="colloid", flocculant_mm=50.0, addition_time_s=60.0,
                                               n_frames=28, interval_s=15.0)),
    ("Au NCs, rapid addition of 110 mM", dict(sample="colloid", flocculant_mm=110.0, addition_time_s=5.0,
                                              n_frames=28, interval_s=15.0)),
    ("PbSe monolayer, oriented attachment", dict(sample="monolayer", flocculant_mm=20.0, addition_time_s=2.0,
                                                 n_frames=30, interval_s=2.0)),
    ("binary NC mixture, quasicrystal", dict(sample="binary", flocculant_mm=20.0, addition_time_s=2.0,
                                             n_frames=12, interval_s=4.0)),
)
"""The assembly demo's four series: one-step and two-step supercrystal nucleation (seed 004),
hexagonal → square attachment (seed 003), a 12-fold quasicrystal (seed 001)."""
QUICK_FRAMES = {"colloid": (14, 30.0), "monolayer": (15, 4.0), "binary": (6, 8.0)}
"""--quick: frames and interval (s) per sample, the same span of time in half the frames."""


@dataclass
class AssemblySeriesReport:
    """One series of the assembly demo: its live result next to the simulator's truth."""

    label: str
    uid: str
    sample: str
    result: dict | None
    truth: dict
    figure: Path | None
    analysis_errors: list[dict] = field(default_factory=list)


def assembly_truth(sample: str, plan_kwargs: dict, times_s, colloid_volume_ul: float, stock_mm: float,
                   lattice: str = "fcc") -> dict:
    """What the simulated cell holds for a series: pathway, lattice constant and phase fractions
    per frame time (colloid), symmetry change (monolayer), order (binary)."""
    from mc_beamline.physics.assembly_cell import (
        COLLOID_GAP_NM,
        COLLOID_RADIUS_NM,
        MONOLAYER_TRANSITION_S,
    )
    from mc_beamline.physics.flocculation import (
        Flocculation,
        assembly_model,
        truth,
        volume_for,
    )

    if sample == "monolayer":
        return {"change": {"from_order": 6, "to_order": 4, "time_s": MONOLAYER_TRANSITION_S}}
    if sample == "binary":
        return {"order": 12}
    volume = volume_for(plan_kwargs["flocculant_mm"], colloid_volume_ul, stock_mm)
    floc = Flocculation(colloid_volume_ul, stock_mm, volume, volume / plan_kwargs["addition_time_s"])
    model = assembly_model(floc, lattice, radius_nm=COLLOID_RADIUS_NM, gap_nm=COLLOID_GAP_NM)
    fractions = [truth(floc, lattice, t, radius_nm=COLLOID_RADIUS_NM, gap_nm=COLLOID_GAP_NM) for t in times_s]
    return {"pathway": floc.pathway, "lattice": lattice, "a_nm": model.a_nm, "fractions": fractions}


def assembly_demo(data_dir: Path, quick: bool = False, out: TextIO = sys.stdout) -> list[AssemblySeriesReport]:
    """Run the four assembly series with live phase and symmetry analysis into Tiled."""
    from mc_beamline.callbacks.live_assembly import assembly_router
    from mc_beamline.plans import assembly_series
    from mc_beamline.storage import tiled_writer

    figdir = Path(data_dir) / "figures"
    reports: list[AssemblySeriesReport] = []
    runs: list = []
    with simulated_beamline(data_dir, analyses=runs, out=out) as (beamline, RE, client):
        cell = beamline.assembly
        saved_scale = cell.time_scale.get()
        RE.subscribe(assembly_router(publish=tiled_writer(client), figure_dir=figdir, on_run=runs.append))
        print(f"Assembly series in the simulated cell, {ASSEMBLY_FRAME_WALL_S:g} s (wall clock) per frame; "
              f"live phase fractions and superlattice symmetry; data in {data_dir}", file=out, flush=True)
        try:
            for label, kwargs in ASSEMBLY_SERIES:
                kwargs = dict(kwargs)
                if quick:
                    kwargs["n_frames"], kwargs["interval_s"] = QUICK_FRAMES[kwargs["sample"]]
                cell.time_scale.set(ASSEMBLY_FRAME_WALL_S / kwargs["interval_s"]).wait(5)
                t0 = time.perf_counter()
                (uid,) = RE(assembly_series(cell, description=label, **kwargs))
                live = runs[-1]
                if not live.wait(ANALYSIS_TIMEOUT_S):
                    raise RuntimeError(f"The live assembly analysis did not finish within {ANALYSIS_TIMEOUT_S:.0f} s.")
                run = client[uid]
                stop = run.metadata["stop"]
                if stop["exit_status"] != "success":
                    raise RuntimeError(f"The series {label!r} ended with status {stop['exit_status']}: "
                                       f"{stop.get('reason')}")
                md = run.metadata["start"]["mc_beamline"]
                times = np.asarray(run["primary"][md["keys"]["elapsed"]].read(), dtype=float)
                truth = assembly_truth(kwargs["sample"], kwargs, times, md["colloid_volume_ul"], md["stock_mm"])
                reports.append(AssemblySeriesReport(label, uid, kwargs["sample"], live.result, truth,
                                                    live.figure_path, live.errors))
                print(f"  {label}: {len(times)} frames in {time.perf_counter() - t0:.1f} s", file=out, flush=True)
        finally:
            cell.time_scale.set(saved_scale).wait(5)
    _print_assembly_summary(reports, out)
    return reports


def _assembly_line(report: AssemblySeriesReport) -> str:
    result, truth = report.result or {}, report.truth
    if report.sample == "colloid":
        series, crystal = result.get("series") or {}, result.get("crystal")
        fitted = np.array([series.get(k, []) for k in ("dilute", "dense", "crystal")], dtype=float).T
        expected = np.array([[f[k] for k in ("dilute", "dense", "crystal")] for f in truth["fractions"]])
        err = float(np.nanmax(np.abs(fitted - expected))) if fitted.shape == expected.shape else float("nan")
        lattice = f"{crystal['lattice']} a = {crystal['a_nm']:.2f} nm" if crystal else "no lattice"
        return (f"pathway {series.get('pathway', '-')} (truth {truth['pathway']}); {lattice} "
                f"(truth {truth['lattice']} a = {truth['a_nm']:.2f} nm); phase fractions within {err:.3f} of truth")
    symmetry = result.get("symmetry") or {}
    if report.sample == "monolayer":
        change, expected = symmetry.get("change"), truth["change"]
        if not change:
            return f"no symmetry change found (truth {expected['from_order']}-fold → {expected['to_order']}-fold)"
        when = "-" if change["time_s"] is None else f"{change['time_s']:.1f} s"
        return (f"{change['from_order']}-fold → {change['to_order']}-fold at {when} "
                f"(truth {expected['from_order']} → {expected['to_order']} at {expected['time_s']:.1f} s)")
    return f"ring order {symmetry.get('final_order', '-')} (truth {truth['order']})"


def _print_assembly_summary(reports: list[AssemblySeriesReport], out: TextIO) -> None:
    for report in reports:
        print(f"{report.label}: {_assembly_line(report)}", file=out)
        for err in report.analysis_errors[:3]:
            print(f"  analysis error: {err['message']}", file=out)
    for report in reports:
        if report.figure:
            print(f"figure: {report.figure}", file=out)
    for report in reports:
        print(f"uid: {report.uid}", file=out)


def run_demo(args) -> None:
    """What ``mc-beamline demo [raster|flow|assembly] [--quick] [--data-dir DIR]`` runs."""
    if getattr(args, "adaptive", False):
        if args.experiment not in ("raster", "flow") or getattr(args, "fly", False):
            raise ValueError(f"--adaptive applies to the raster and flow demos, not to {args.experiment}"
                             f"{' with --fly' if getattr(args, 'fly', False) else ''}.")
        run = {"raster": raster_demo, "flow": flow_demo}[args.experiment]
        run(args.data_dir.resolve(), quick=args.quick, adaptive=True)
        return
    if getattr(args, "fly", False):
        if args.experiment != "raster":
            raise ValueError(f"--fly applies to the raster demo, not to {args.experiment}.")
        raster_demo(args.data_dir.resolve(), quick=args.quick, fly=True)
        return
    run = {"raster": raster_demo, "flow": flow_demo, "assembly": assembly_demo}[args.experiment]
    run(args.data_dir.resolve(), quick=args.quick)
