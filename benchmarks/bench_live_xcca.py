"""Live lag and throughput of the live XCCA callback (:class:`LiveXcca`) on synthetic runs.

Run: ``python benchmarks/bench_live_xcca.py [--frames 300] [--seconds 10] [--rates 50,100,500]
[--max-events 1785] [--prefetch N] [--figure] [--cache DIR]``

A pre-generated detector file holds ``--frames`` simulator frames (seed-000 sample, 1 Mpx
uint32, Eiger gap value in the gaps, Bitshuffle/LZ4, one frame per chunk, written as the
simulated detector writes them) at positions spread over the seed raster. For each rate a
synthetic raster run is composed with event_model (start metadata as
``nanodiffraction_raster`` writes them, one Resource, a Datum + Event per point whose
``point_number`` cycles through the file) and handed to a fresh ``LiveXcca`` by a
sleep-paced producer at 50, 100, 500 frames/s, and as fast as possible (no sleep).

Reported per rate:

* lag: time from the Event document being handed to the callback until that frame is in
  the analysis (``LiveXcca.frame_latency_s``: queue, HDF5 read + decompression, XCCA of
  the frame), median / p95 / max;
* sustained frames/s: frames analysed / (last frame analysed - first event handed over);
* keeps up: the lag does not grow over the run (median lag of the last tenth of the
  frames ≤ 3 x that of the first tenth + 50 ms) and the analysis rate is ≥ 95 % of the
  offered rate;
* result s: from the later of (stop document handed over, last frame analysed) until the
  result is ready (the cross-frame analysis at the stop document, ``LiveXcca.wait``);
* selected: frames selected by the analysis (a check that the frames carry the structure);
* CPU ms/frame: CPU time of the whole process (all threads) from the first event handed
  over to the last frame analysed, per frame -- on a shared machine the number that other
  processes disturb least (the wall-clock rates need free cores).

Baseline, same run, same frames: the bare loop ``XccaAnalysis.add_frame(i, ds[i])`` over
the HDF5 file (read + decompress + per-frame XCCA, no documents, no queue, no thread);
``ratio`` = sustained frames/s of the callback as fast as possible / baseline frames/s.
A second bare loop reads the frames with the callback's reader
(:class:`~mc_beamline.io.frames.Hdf5FrameReader`: raw chunk + Bitshuffle/LZ4
decompression, no thread) instead of h5py's ``ds[i]``.
Without ``--figure`` the callback draws no live figure (set it to include the redraws of
the live figure every 5 s in the worker, as the demo does).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
from event_model import compose_run

DATASET = "/entry/data/data"
SEED_SHAPE = (35, 51)
SEED_STEP_UM = 0.4


# ------------------------------------------------------------------ detector file
def detector_file(path: Path, n_frames: int):
    """Write (or reuse) ``n_frames`` simulator frames at positions spread over the seed raster.

    Returns (simulator, path). Frame ``i`` is the one at seed raster index ``raster_index[i]``
    (row-major, snake), exposure 0.01 s, noise key ``i``.
    """
    from mc_beamline.physics.mesocrystal import (
        MesocrystalSimulator,
        seed_raster_positions,
    )

    sim = MesocrystalSimulator()
    if path.is_file():
        with h5py.File(path, "r") as f:
            if f[DATASET].shape[0] == n_frames and f.attrs.get("seed") == sim.params.seed:
                return sim, path
    ys, xs = seed_raster_positions()
    ny, nx = SEED_SHAPE
    raster_index = np.linspace(0, ny * nx - 1, n_frames).astype(int)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    t0 = time.perf_counter()
    with h5py.File(tmp, "w", libver="latest") as f:
        f.attrs["seed"] = sim.params.seed
        shape = sim.geometry.shape
        ds = f.create_dataset(DATASET, shape=(n_frames, *shape), chunks=(1, *shape), dtype="<u4",
                              **hdf5plugin.Bitshuffle(cname="lz4"))
        for i, k in enumerate(raster_index):
            row, col = divmod(int(k), nx)
            if row % 2:
                col = nx - 1 - col
            ds[i] = sim.frame(xs[col], ys[row], 0.01, noise_key=i)
    os.replace(tmp, path)
    print(f"wrote {n_frames} frames to {path} in {time.perf_counter() - t0:.0f} s "
          f"({path.stat().st_size / n_frames / 1e6:.2f} MB per frame)", flush=True)
    return sim, path


# ------------------------------------------------------------------ documents
def compose_documents(sim, path: Path, n_file: int, n_events: int):
    """A synthetic raster run of ``n_events`` points (seed raster shape), frames cycling through the file.

    Returns (start document, [(datum, event), ...], stop document); the Resource is the
    first datum's companion (emitted before the first datum).
    """
    from mc_beamline.analysis.detector.masks import encode_mask
    from mc_beamline.devices.detector import RESOURCE_SPEC

    ny, nx = SEED_SHAPE
    md = {
        "plan_name": "nanodiffraction_raster",
        "mc_beamline": {
            "experiment": "raster",
            "scan_shape": [ny, nx],
            "step_um": SEED_STEP_UM,
            "center_um": [0.0, 0.0],
            "snake": True,
            "exposure_s": 0.01,
            "image_key": "det_image",
            "detector_poni": sim.geometry.to_poni_text(),
            "detector_mask": encode_mask(sim.mask),
            "detector_shape": list(sim.geometry.shape),
        },
    }
    run = compose_run(metadata=md)
    resource = run.compose_resource(spec=RESOURCE_SPEC, root=str(path.parent), resource_path=path.name,
                                    resource_kwargs={"dataset": DATASET, "swmr": True})
    descriptor = run.compose_descriptor(
        name="primary",
        data_keys={
            "stage_x": {"source": "SIM:X", "dtype": "number", "shape": [], "units": "um"},
            "det_image": {"source": "SIM:DET", "dtype": "array", "dtype_numpy": "<u4",
                          "shape": list(sim.geometry.shape), "external": "FILESTORE:"},
        },
    )
    points = []
    for i in range(n_events):
        datum = resource.compose_datum(datum_kwargs={"point_number": i % n_file})
        event = descriptor.compose_event(data={"stage_x": 0.4 * (i % nx), "det_image": datum["datum_id"]},
                                         timestamps={"stage_x": 0.0, "det_image": 0.0})
        points.append((datum, event))
    head = [("descriptor", descriptor.descriptor_doc), ("resource", resource.resource_doc)]
    return run.start_doc, head, points, run.compose_stop(exit_status="success")


# ------------------------------------------------------------------ measurement
def baseline_fps(sim, path: Path, n: int, reader: bool = False) -> float:
    """Frames/s of the bare loop: read a frame from the HDF5 file, ``XccaAnalysis.add_frame``.

    ``reader``: read with the callback's :class:`Hdf5FrameReader` instead of h5py's ``ds[i]``.
    """
    from mc_beamline.callbacks.live_xcca import analysis_for_start

    start, *_ = compose_documents(sim, path, n, 0)
    ana = analysis_for_start(start)
    with h5py.File(path, "r") as f:
        ds = f[DATASET]
        n_file = ds.shape[0]
        if reader:
            from mc_beamline.io.frames import Hdf5FrameReader

            frames = Hdf5FrameReader()
            read = lambda i: frames.read(str(path), DATASET, i)  # noqa: E731
        else:
            read = ds.__getitem__
        ana.add_frame(0, read(0))  # warm-up (first-call allocations)
        t0 = time.perf_counter()
        for i in range(1, n):
            ana.add_frame(i, read(i % n_file))
        fps = (n - 1) / (time.perf_counter() - t0)
        if reader:
            frames.close()
        return fps


def drive(sim, path: Path, n_file: int, n_events: int, rate: float | None, figure_dir: Path | None,
          prefetch: int | None = None) -> dict:
    """Feed one synthetic run to a fresh LiveXcca at ``rate`` frames/s (None: as fast as possible)."""
    from mc_beamline.callbacks.live_xcca import LiveXcca

    start, head, points, stop = compose_documents(sim, path, n_file, n_events)
    options = {} if prefetch is None else {"prefetch": prefetch}
    live = LiveXcca(start, publish=None, figure_dir=figure_dir, **options)
    cpu = []
    live.frame_latency_s = _CpuAtLastFrame(cpu)
    for name, doc in head:
        live(name, doc)
    handed = np.empty(n_events)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for i, (datum, event) in enumerate(points):
        if rate is not None:
            wait = t0 + i / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        live("datum", datum)
        handed[i] = time.perf_counter()
        live("event", event)
    produce_s = time.perf_counter() - t0
    t_stop = time.perf_counter()
    live("stop", stop)
    if not live.wait(600):
        raise TimeoutError("the live analysis did not finish within 600 s")
    t_done = time.perf_counter()
    if live.errors:
        raise RuntimeError(f"analysis errors: {live.errors[0]['message']}")
    lag = np.asarray(live.frame_latency_s)
    if len(lag) != n_events:
        raise RuntimeError(f"{len(lag)} frames analysed of {n_events}")
    # frame_latency_s is appended in arrival order, i.e. in event order (one worker thread)
    done = handed + lag
    result_s = t_done - max(t_stop, float(done[-1]))  # the cross-frame result alone, not the backlog
    sustained = n_events / (done[-1] - handed[0])
    tenth = max(1, n_events // 10)
    first, last = np.median(lag[:tenth]), np.median(lag[-tenth:])
    offered = n_events / produce_s
    keeps_up = last <= 3 * first + 0.05 and sustained >= 0.95 * (rate if rate is not None else offered)
    return {
        "rate": rate, "n": n_events, "offered": offered, "sustained": sustained,
        "median": float(np.median(lag)), "p95": float(np.percentile(lag, 95)), "max": float(lag.max()),
        "first": float(first), "last": float(last), "keeps_up": keeps_up and rate is not None,
        "result_s": result_s, "n_selected": live.result["n_selected"],
        "cpu_ms": (cpu[0] - cpu0) / n_events * 1e3,
    }


class _CpuAtLastFrame(list):
    """``LiveXcca.frame_latency_s`` that also keeps the process CPU time when the last frame was added."""

    def __init__(self, cpu: list):
        super().__init__()
        self._cpu = cpu

    def append(self, value) -> None:
        super().append(value)
        self._cpu[:] = [time.process_time()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="distinct frames in the detector file (default 300)")
    parser.add_argument("--seconds", type=float, default=10.0, help="offered duration of each paced run (default 10 s)")
    parser.add_argument("--rates", default="50,100,500", help="paced rates in frames/s (default 50,100,500)")
    parser.add_argument("--max-events", type=int, default=SEED_SHAPE[0] * SEED_SHAPE[1],
                        help="most events per run, and the events of the as-fast-as-possible run (default 1785)")
    parser.add_argument("--prefetch", type=int, default=None,
                        help="frames the callback reads ahead (LiveXcca's prefetch; default: its default)")
    parser.add_argument("--figure", action="store_true", help="let the callback redraw its live figure (every 5 s)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "mc-bench-live-xcca",
                        help="directory of the generated detector file (reused when present)")
    args = parser.parse_args()
    load_at_start = os.getloadavg()

    sim, path = detector_file(args.cache / f"frames_{args.frames}.h5", args.frames)
    max_events = min(args.max_events, SEED_SHAPE[0] * SEED_SHAPE[1])
    base = baseline_fps(sim, path, min(args.frames, 200))
    base_reader = baseline_fps(sim, path, min(args.frames, 200), reader=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mc-bench-fig-") as figdir:
        for rate in [float(r) for r in args.rates.split(",") if r] + [None]:
            n = max_events if rate is None else min(max_events, max(50, int(rate * args.seconds)))
            row = drive(sim, path, args.frames, n, rate, Path(figdir) if args.figure else None, args.prefetch)
            rows.append(row)
            print(f"  {'afap' if rate is None else f'{rate:g}/s'}: {n} frames, sustained {row['sustained']:.1f}/s, "
                  f"lag median {row['median'] * 1e3:.0f} ms, max {row['max'] * 1e3:.0f} ms", flush=True)

    print()
    print(f"LiveXcca lag and throughput: {platform.node()}, {os.cpu_count()} CPUs, {args.frames} distinct frames "
          f"(1065 x 1030 uint32, Bitshuffle/LZ4), live figure {'on' if args.figure else 'off'}")
    print(f"baseline (bare loop: HDF5 read + XccaAnalysis.add_frame): {base:.1f} frames/s; "
          f"with the callback's frame reader instead of h5py: {base_reader:.1f} frames/s")
    print(f"prefetch: {'default' if args.prefetch is None else args.prefetch}; load average at start: "
          f"{', '.join(f'{x:.2f}' for x in load_at_start)}, at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    head = (f"{'offered':>9} {'frames':>6} {'handed/s':>9} {'analysed/s':>10} {'lag med':>8} {'p95':>8} "
            f"{'max':>8} {'1st 10%':>8} {'last 10%':>8} {'keeps up':>8} {'result s':>8} {'selected':>8} "
            f"{'CPU ms/fr':>9}")
    print(head)
    print("-" * len(head))
    for r in rows:
        label = "afap" if r["rate"] is None else f"{r['rate']:g}/s"
        keeps = "-" if r["rate"] is None else ("yes" if r["keeps_up"] else "NO")
        print(f"{label:>9} {r['n']:>6} {r['offered']:>9.0f} {r['sustained']:>10.1f} {r['median'] * 1e3:>6.0f}ms "
              f"{r['p95'] * 1e3:>6.0f}ms {r['max'] * 1e3:>6.0f}ms {r['first'] * 1e3:>6.0f}ms {r['last'] * 1e3:>6.0f}ms "
              f"{keeps:>8} {r['result_s']:>8.2f} {r['n_selected']:>8} {r['cpu_ms']:>9.2f}")
    afap = rows[-1]
    print(f"ratio, callback as fast as possible / baseline: {afap['sustained'] / base:.2f}")
    print("lag = event handed to the callback -> frame in the analysis; analysed/s = frames / "
          "(last frame analysed - first event handed); result s = last frame/stop -> result.")


if __name__ == "__main__":
    main()
