"""Adaptive vs full experiments on the same simulated beamline, in one run: flow series and raster.

Question: how many conditions and how much wall time does the adaptive flow series
(:func:`~mc_beamline.plans.adaptive_flow_series`, bisection on T_nuc) save against the full
T_nuc grid (190–350 °C in 10 °C steps, 17 conditions) for the CdSe-437 window at 14 s, and
does it find the same window?

Both series run one after the other against the same simulated IOC (reactor 100x faster
than real time, as in ``mc-beamline demo flow``) with the live flow analysis and the Tiled
writer subscribed, each as one run whose conditions are measured by the flow series' own
stub (set, settle, flush 3 reactor volumes, spectrum and SAXS). For each: conditions
measured, seconds until the RunEngine returns, the window edges (°C) (the adaptive one
from its decisions, the grid one from the longest run of grid points with CdSe-437) and
the simulator's edges.

Raster: how many exposures and how much wall time does the adaptive raster
(:func:`~mc_beamline.plans.adaptive_raster`, survey at 4x the step, refinement around the
[110] zone and domain boundaries) save against the full 35 x 51 seed raster
(:func:`~mc_beamline.plans.nanodiffraction_raster`), and does it find the same c/a, ΔΦ and
ψ spread? Both rasters run one after the other on the same simulated IOC (exposures without
wall-clock wait, as in ``mc-beamline demo raster``) with the live XCCA and the Tiled writer
subscribed. For each: exposures, seconds until the RunEngine returns, seconds until the live
result is in, c/a, ΔΦ (degrees), ψ std (degrees); and the simulator's truth.

Usage: ``python benchmarks/bench_adaptive.py [--only flow|raster] [--data-dir DIR]``. Prints one
table per experiment and the load average.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def grid_edges(spectra: list[dict], family: str) -> tuple[float | None, float | None]:
    """Window edges (°C) of a full grid: the longest run of T_nuc with ``family``, each edge the
    midpoint to the grid point outside it (None where the run reaches the end of the grid)."""
    temps = sorted((e["condition"]["nucleation_temperature_c"], any(p["family"] == family for p in e["msc"]))
                   for e in spectra)
    runs, start = [], None
    for i, (_, present) in enumerate(temps + [(None, False)]):
        if present and start is None:
            start = i
        elif not present and start is not None:
            runs.append((start, i - 1))
            start = None
    if not runs:
        return None, None
    first, last = max(runs, key=lambda r: r[1] - r[0])
    return (0.5 * (temps[first - 1][0] + temps[first][0]) if first > 0 else None,
            0.5 * (temps[last][0] + temps[last + 1][0]) if last < len(temps) - 1 else None)


def grid_series(reactor, temperatures_c: list[float], growth_c: float, reaction_time_s: float):
    """The full grid as one run, each condition measured by the flow series' own stub (oven at
    min(T_nuc, ``growth_c``) as in the adaptive series)."""
    from mc_beamline.plans.flow_series import FlowSeriesSpec, measure_conditions, prepare_flow_run

    spec = FlowSeriesSpec.build(temperatures_c, [growth_c], [reaction_time_s], allow_growth_above_nucleation=True)
    conditions = [(t, min(t, growth_c), reaction_time_s) for t in temperatures_c]
    run = yield from prepare_flow_run(reactor, spec, integration_time_s=None, saxs_exposure_s=None,
                                      sample="benchmark grid", plan_name="bench_adaptive_grid",
                                      plan_args={}, num_points=len(conditions), md=None)
    return (yield from measure_conditions(reactor, run, conditions))


ANALYSIS_WAIT_S = 600.0
"""Longest wait for the live XCCA of one raster, s."""


def bench_raster(data_dir: Path) -> None:
    """The adaptive and the full seed raster, one after the other, with live XCCA; one table."""
    from mc_beamline.callbacks.live_xcca import xcca_router
    from mc_beamline.commands.demo import SEED_RASTER, simulated_beamline
    from mc_beamline.physics.mesocrystal import MesocrystalParams, MesocrystalSimulator, raster_truth_summary
    from mc_beamline.plans import RasterSpec, adaptive_raster, nanodiffraction_raster
    from mc_beamline.sim_iocs.server import GEOMETRIES
    from mc_beamline.storage import tiled_writer

    ny, nx, step = SEED_RASTER
    rows = []
    with simulated_beamline(data_dir) as (beamline, RE, client):
        det = beamline.detector
        det.time_scale.set(0).wait(5)
        try:
            runs: list = []
            RE.subscribe(xcca_router(publish=tiled_writer(client), on_run=runs.append))
            for name, plan in (("adaptive", adaptive_raster), ("full", nanodiffraction_raster)):
                t0 = time.perf_counter()
                (uid,) = RE(plan(det, beamline.stage, ny=ny, nx=nx, step_um=step))
                scan_s = time.perf_counter() - t0
                if not runs[-1].wait(ANALYSIS_WAIT_S):
                    raise RuntimeError(f"The live XCCA of the {name} raster did not finish within "
                                       f"{ANALYSIS_WAIT_S:g} s.")
                done_s = time.perf_counter() - t0
                r = runs[-1].result
                rows.append((name, client[uid].metadata["stop"]["num_events"]["primary"], scan_s, done_s,
                             r["superlattice"]["c_over_a"], r["orientational_disorder_fwhm_deg"],
                             r["misorientation_deg"]["std"], r.get("raster_search", {}).get("stop_reason", "")))
            sim = MesocrystalSimulator(MesocrystalParams(seed=int(det.sim_seed.get())),
                                       GEOMETRIES[det.geometry_name.get()]())
            spec = RasterSpec(ny, nx, step)
            truth = raster_truth_summary(sim, spec.y_um, spec.x_um)
        finally:
            det.time_scale.set(1).wait(5)
    rows.append(("simulator truth", None, None, None, truth["c_over_a"], truth["disorder_fwhm_deg"],
                 truth["psi_std_deg"], ""))

    def fmt(v, digits=2):
        return "" if v is None else f"{v:.{digits}f}"

    print(f"Seed raster {ny} x {nx} points, {step:g} µm steps: adaptive vs full, live XCCA")
    print(f"{'raster':16s} {'exposures':>9s} {'scan s':>7s} {'result s':>8s} {'c/a':>6s} {'ΔΦ deg':>7s} "
          f"{'ψ std':>6s}  stop")
    for name, n, scan_s, done_s, ca, dphi, psi, stop in rows:
        print(f"{name:16s} {'' if n is None else n:>9} {fmt(scan_s, 1):>7s} {fmt(done_s, 1):>8s} {fmt(ca, 3):>6s} "
              f"{fmt(dphi):>7s} {fmt(psi):>6s}  {stop}")
    (_, n_a, s_a, d_a, *_), (_, n_f, s_f, d_f, *_) = rows[:2]
    print(f"adaptive / full: exposures {n_a / n_f:.2f}, scan time {s_a / s_f:.2f}, time to result {d_a / d_f:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--only", choices=("flow", "raster"), default=None)
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-adaptive-"))
    if args.only != "raster":
        bench_flow(data_dir / "flow")
    if args.only != "flow":
        bench_raster(data_dir / "raster")
    print(f"load average: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


def bench_flow(data_dir: Path) -> None:
    """The adaptive flow series and the full T_nuc grid, one after the other; one table."""
    from mc_beamline.callbacks.live_flow import flow_router
    from mc_beamline.commands.demo import ADAPTIVE_FLOW, FLOW_TIME_SCALE, flow_window_truth, simulated_beamline
    from mc_beamline.plans import adaptive_flow_series
    from mc_beamline.storage import tiled_writer

    search = ADAPTIVE_FLOW
    grid = [float(t) for t in range(int(search["low_c"]), int(search["high_c"]) + 1, 10)]
    growth = search["growth_temperature_c"]
    rows = []
    with simulated_beamline(data_dir) as (beamline, RE, client):
        reactor = beamline.reactor
        saved = reactor.run_simulation_fast(FLOW_TIME_SCALE)
        try:
            reactor.uvvis.take_dark_and_reference()
            runs: list = []
            RE.subscribe(flow_router(publish=tiled_writer(client), on_run=runs.append))
            t0 = time.perf_counter()
            RE(adaptive_flow_series(reactor, **search))
            adaptive_s = time.perf_counter() - t0
            if not runs[-1].wait(300):
                raise RuntimeError("The live analysis of the adaptive series did not finish within 300 s.")
            found = runs[-1].result["window_search"]
            rows.append(("adaptive (bisection)", found["n_conditions"], adaptive_s,
                         found["lower"]["temperature_c"], found["upper"]["temperature_c"]))
            t0 = time.perf_counter()
            RE(grid_series(reactor, grid, growth, search["reaction_time_s"]))
            grid_s = time.perf_counter() - t0
            if not runs[-1].wait(300):
                raise RuntimeError("The live analysis of the grid did not finish within 300 s.")
            spectra = runs[-1].result["spectra"]
            rows.append((f"full grid ({grid[0]:g}–{grid[-1]:g} °C, 10 °C)", len(grid), grid_s,
                         *grid_edges(spectra, search["family"])))
        finally:
            reactor.pumps.cd.running.set(0).wait(5)
            reactor.pumps.se.running.set(0).wait(5)
            reactor.restore_settings(saved)
    truth = flow_window_truth(search["family"], search["reaction_time_s"], growth, search["low_c"], search["high_c"])

    def fmt(t):
        return "n/a" if t is None else f"{t:.1f}"

    print(f"{search['family']} window at {search['reaction_time_s']:g} s, T_growth min(T_nuc, {growth:g}) °C; "
          f"simulator edges {fmt(truth[0])} / {fmt(truth[1])} °C")
    print(f"{'series':34s} {'conditions':>10s} {'wall s':>8s} {'lower °C':>9s} {'upper °C':>9s}")
    for name, n, seconds, lower, upper in rows:
        print(f"{name:34s} {n:10d} {seconds:8.1f} {fmt(lower):>9s} {fmt(upper):>9s}")
    (_, n_a, s_a, *_), (_, n_g, s_g, *_) = rows
    print(f"adaptive / full: conditions {n_a / n_g:.2f}, wall time {s_a / s_g:.2f}")


if __name__ == "__main__":
    main()
