"""Seconds per raster point on the simulated beamline, with its breakdown.

Runs the quick (7 x 9) and the full seed (35 x 51) raster through a RunEngine with the
TiledWriter subscribed, against the real simulated IOC and an embedded Tiled server, and
measures the parts of one point in isolation on the same beamline:

* move: one 0.4 µm step of the x motor through ophyd (put-completion, readback);
* frame generation: the physics model's frame, in-process;
* file write: appending one Bitshuffle/LZ4 frame to an HDF5 file and flushing, in-process;
* trigger: the detector's acquisition as ophyd sees it (generation + write + CA round trips);
* document handling: the TiledWriter fed the run's recorded documents again (new uids).

Then the step raster and the fly raster (``nanodiffraction_fly_raster``) of the same map run
one after the other on the same beamline, each with the live XCCA in its own process as in
``mc-beamline demo raster [--fly]``: seconds until the RunEngine returns (every frame
stored), the ratio to the exposure floor (points x exposure), and how long the analysis
took after that. For the fly raster also the part spent flying: from the first gate to the
last (motion, rows and turnarounds) and the median turnaround between rows, from the gate
time stamps in the detector file.

Usage: ``python benchmarks/bench_raster.py [--full] [--data-dir DIR]``. Prints two tables
and the load average.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import unquote, urlparse

import h5py
import hdf5plugin


def time_frames(n: int = 50) -> float:
    """Mean seconds to generate one 1 Mpx frame with the physics model."""
    from mc_beamline.physics.mesocrystal import (
        MesocrystalSimulator,
        seed_raster_positions,
    )

    sim = MesocrystalSimulator()
    ys, xs = seed_raster_positions()
    sim.frame(0.0, 0.0)
    t0 = time.perf_counter()
    for i in range(n):
        sim.frame(xs[i % len(xs)], ys[i % len(ys)], noise_key=i)
    return (time.perf_counter() - t0) / n


def time_file_write(n: int = 50) -> float:
    """Mean seconds to append and flush one 1 Mpx Bitshuffle/LZ4 frame (SWMR file)."""
    from mc_beamline.physics.mesocrystal import MesocrystalSimulator

    sim = MesocrystalSimulator()
    frames = [sim.frame(0.4 * i, 0.0, noise_key=i) for i in range(8)]
    with tempfile.TemporaryDirectory() as tmp:
        with h5py.File(Path(tmp) / "bench.h5", "w", libver="latest") as f:
            shape = frames[0].shape
            ds = f.create_dataset("/entry/data/data", shape=(0, *shape), maxshape=(None, *shape),
                                  chunks=(1, *shape), dtype="<u4", **hdf5plugin.Bitshuffle(cname="lz4"))
            f.swmr_mode = True
            t0 = time.perf_counter()
            for i in range(n):
                ds.resize(i + 1, axis=0)
                ds[i] = frames[i % len(frames)]
                f.flush()
            return (time.perf_counter() - t0) / n


def time_moves(beamline, n: int = 40) -> float:
    """Mean seconds for one 0.4 µm x step through ophyd."""
    motor = beamline.stage.x
    motor.set(0.0).wait(10)
    t0 = time.perf_counter()
    for i in range(n):
        motor.set(0.4 * ((i % 10) + 1)).wait(10)
    return (time.perf_counter() - t0) / n


def time_triggers(beamline, n: int = 40) -> float:
    """Mean seconds for one detector trigger (acquisition + write) through ophyd."""
    det = beamline.detector
    det.stage()
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            det.trigger().wait(30)
            det.read()
            list(det.collect_asset_docs())
        return (time.perf_counter() - t0) / n
    finally:
        det.unstage()


def time_documents(client, docs: list[tuple[str, dict]]) -> float:
    """Seconds for a fresh TiledWriter to store the recorded documents of one run again."""
    from mc_beamline.storage import tiled_writer

    writer = tiled_writer(client)
    renamed = _with_new_uids(docs)
    t0 = time.perf_counter()
    for name, doc in renamed:
        writer(name, doc)
    return time.perf_counter() - t0


def _with_new_uids(docs):
    new_run = str(uuid.uuid4())
    mapping = {}
    out = []
    for name, doc in docs:
        doc = copy.deepcopy(doc)
        if name == "start":
            mapping[doc["uid"]] = new_run
            doc["uid"] = new_run
        elif name in ("descriptor", "stop", "event", "resource"):
            old = doc["uid"]
            mapping[old] = doc["uid"] = str(uuid.uuid4())
        for key in ("run_start", "descriptor"):
            if key in doc:
                doc[key] = mapping.get(doc[key], doc[key])
        if name == "datum":
            res = mapping.get(doc["resource"], doc["resource"])
            doc["datum_id"] = doc["datum_id"].replace(doc["resource"], res)
            doc["resource"] = res
        if name == "event":
            doc["data"] = {k: (v.replace(k_old, mapping[k_old]) if isinstance(v, str) and (k_old := v.split("/")[0]) in mapping else v)
                           for k, v in doc["data"].items()}
        out.append((name, doc))
    return out


def fly_motion(client, uid: str) -> tuple[float, float]:
    """(first gate to last gate, median turnaround between rows) of a fly raster run, s,
    from the gate time stamps its detector file holds."""
    from mc_beamline.storage import run_documents

    for name, doc in run_documents(client, uid):
        if name == "stream_resource":
            path = unquote(urlparse(doc["uri"]).path)
            break
    with h5py.File(path, "r", swmr=True) as f:
        stamps = f["/entry/instrument/NDAttributes/NDArrayTimeStamp"][:]
    ny, nx = client[uid].metadata["start"]["mc_beamline"]["scan_shape"]
    rows = stamps.reshape(ny, nx)
    turnarounds = rows[1:, 0] - rows[:-1, -1]
    return float(stamps[-1] - stamps[0]), float(statistics.median(turnarounds)) if len(turnarounds) else 0.0


def step_versus_fly(beamline, RE, client, shape: tuple[int, int], analysis_timeout_s: float = 600.0) -> dict:
    """Run the step and the fly raster of ``shape`` (0.4 µm, 10 ms) with live XCCA in its own
    process; seconds to store every frame, analysis lag after that, fly motion and turnaround."""
    from mc_beamline.callbacks.analysis_process import AnalysisProcess, report_lags_s
    from mc_beamline.plans import nanodiffraction_fly_raster, nanodiffraction_raster

    ny, nx = shape
    det = beamline.detector
    out = {"points": ny * nx, "floor_s": ny * nx * 0.01}
    with AnalysisProcess(client.uri, client.context.api_key) as analysis:
        token = RE.subscribe(analysis)
        det.time_scale.set(0).wait(5)  # as in the demo: the step raster's frames need no wall-clock wait
        try:
            for label, plan in (("step", nanodiffraction_raster), ("fly", nanodiffraction_fly_raster)):
                t0 = time.perf_counter()
                (uid,) = RE(plan(det, beamline.stage, ny=ny, nx=nx, step_um=0.4, exposure_s=0.01))
                out[f"{label}_s"] = time.perf_counter() - t0
                scan_end = time.time()
                report = analysis.summary(uid, analysis_timeout_s)
                out[f"{label}_result_lag_s"], out[f"{label}_lag_s"] = report_lags_s(report, scan_end)
                out[f"{label}_errors"] = len(report["errors"])
                if label == "fly":
                    out["fly_motion_s"], out["turnaround_s"] = fly_motion(client, uid)
        finally:
            det.time_scale.set(1).wait(5)
            RE.unsubscribe(token)
    return out


def run(full: bool, data_dir: Path) -> None:
    from mc_beamline.commands.demo import simulated_beamline
    from mc_beamline.plans import nanodiffraction_raster

    frame_s = time_frames()
    write_s = time_file_write()
    rows = []
    with simulated_beamline(data_dir) as (beamline, RE, client):
        move_s = time_moves(beamline)
        trigger_s = time_triggers(beamline)
        shapes = [(7, 9)] + ([(35, 51)] if full else [])
        for ny, nx in shapes:
            docs: list[tuple[str, dict]] = []
            token = RE.subscribe(lambda name, doc: docs.append((name, copy.deepcopy(doc))))
            t0 = time.perf_counter()
            RE(nanodiffraction_raster(beamline.detector, beamline.stage, ny=ny, nx=nx))
            total = time.perf_counter() - t0
            RE.unsubscribe(token)
            doc_s = time_documents(client, docs)
            rows.append((f"{ny} x {nx}", ny * nx, total, doc_s))
        compared = [(shape, step_versus_fly(beamline, RE, client, shape)) for shape in shapes]
    print(f"{'raster':>8} {'points':>7} {'s/point':>8} {'move':>7} {'frame':>7} {'write':>7} {'trigger':>8} {'docs':>7} {'other':>7}")
    for label, n, total, doc_s in rows:
        per = total / n
        docs_per = doc_s / n
        other = per - move_s - trigger_s - docs_per
        print(f"{label:>8} {n:>7} {per * 1e3:>7.1f}ms {move_s * 1e3:>6.1f}ms {frame_s * 1e3:>6.1f}ms "
              f"{write_s * 1e3:>6.1f}ms {trigger_s * 1e3:>7.1f}ms {docs_per * 1e3:>6.1f}ms {other * 1e3:>6.1f}ms")
    print("trigger includes frame + write + CA; other = s/point - move - trigger - docs (RunEngine, reads).")
    print()
    print(f"{'raster':>8} {'floor':>7} {'step':>8} {'x floor':>8} {'fly':>8} {'x floor':>8} {'flying':>8} "
          f"{'turn':>7} {'lag step':>11} {'lag fly':>11}")
    for (ny, nx), r in compared:
        print(f"{ny:>3} x {nx:<3} {r['floor_s']:>6.1f}s {r['step_s']:>7.1f}s {r['step_s'] / r['floor_s']:>7.2f}x "
              f"{r['fly_s']:>7.1f}s {r['fly_s'] / r['floor_s']:>7.2f}x {r['fly_motion_s']:>7.1f}s "
              f"{r['turnaround_s'] * 1e3:>5.0f}ms {r['step_result_lag_s']:>4.1f}s/{r['step_lag_s']:>4.1f}s "
              f"{r['fly_result_lag_s']:>4.1f}s/{r['fly_lag_s']:>4.1f}s")
        if r["step_errors"] or r["fly_errors"]:
            print(f"  analysis errors: step {r['step_errors']}, fly {r['fly_errors']}")
    print("floor = points x 10 ms exposure; step raster with the demo's zero exposure wait; flying = first to "
          "last gate (rows and turnarounds); turn = median turnaround between rows; lag = result computed / "
          "result stored with its figure, after the RunEngine returned (every frame stored).")
    print(f"load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also run the full 35 x 51 seed raster")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    if args.data_dir is None:
        with tempfile.TemporaryDirectory(prefix="mc-bench-") as tmp:
            run(args.full, Path(tmp))
    else:
        run(args.full, args.data_dir)


if __name__ == "__main__":
    main()
