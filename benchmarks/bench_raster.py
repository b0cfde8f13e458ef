"""Seconds per raster point on the simulated beamline, with its breakdown.

Runs the quick (7 x 9) and the full seed (35 x 51) raster through a RunEngine with the
TiledWriter subscribed, against the real simulated IOC and an embedded Tiled server, and
measures the parts of one point in isolation on the same beamline:

* move: one 0.4 µm step of the x motor through ophyd (put-completion, readback);
* frame generation: the physics model's frame, in-process;
* file write: appending one Bitshuffle/LZ4 frame to an HDF5 file and flushing, in-process;
* trigger: the detector's acquisition as ophyd sees it (generation + write + CA round trips);
* document handling: the TiledWriter fed the run's recorded documents again (new uids).

Usage: ``python benchmarks/bench_raster.py [--full] [--data-dir DIR]``. Prints a table.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
import uuid
from pathlib import Path

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
    print(f"{'raster':>8} {'points':>7} {'s/point':>8} {'move':>7} {'frame':>7} {'write':>7} {'trigger':>8} {'docs':>7} {'other':>7}")
    for label, n, total, doc_s in rows:
        per = total / n
        docs_per = doc_s / n
        other = per - move_s - trigger_s - docs_per
        print(f"{label:>8} {n:>7} {per * 1e3:>7.1f}ms {move_s * 1e3:>6.1f}ms {frame_s * 1e3:>6.1f}ms "
              f"{write_s * 1e3:>6.1f}ms {trigger_s * 1e3:>7.1f}ms {docs_per * 1e3:>6.1f}ms {other * 1e3:>6.1f}ms")
    print("trigger includes frame + write + CA; other = s/point - move - trigger - docs (RunEngine, reads).")


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
