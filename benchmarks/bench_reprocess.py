"""Reprocessing many stored runs with Dask: 1 vs 2 workers, against the sequential replay; replay frames/s.

Run: ``python benchmarks/bench_reprocess.py [--runs 20] [--ny 9] [--nx 13] [--workers 1,2]
[--catalog sqlite|postgresql://...] [--server embedded|process] [--data-dir DIR]``

``--runs`` synthetic raster runs (``--ny`` x ``--nx`` points, 1.6 µm, the seed area; simulator
frames, 1 Mpx uint32, Bitshuffle/LZ4, in one detector file that all runs point to) are stored
with the TiledWriter, as a scan stores them, in a Tiled server: embedded in this process
(default; `mc_beamline.storage.TiledService`) or, with ``--server process``, in its own
process (``mc-beamline serve``, as at a facility). Then, each time rewriting every result
(``force``):

* sequential: `mc_beamline.commands.reprocess.reprocess_sequential` in this process, no Dask (the
  reference; the same replay as ``mc-beamline replay``, plus storing the derived run);
* Dask with 1 and with 2 worker processes (a ``LocalCluster``, started and warmed up before
  the clock starts; the start-up is reported apart).

Reported: wall seconds, runs/s, ratio to the 1-worker time, whether every result equals
the sequential one (exactly), the CPU time of the Tiled server's process per run, and the
mean seconds per run of each phase (`mc_beamline.commands.reprocess.Reprocessed.timings`: connect,
lookup, delete of the earlier result, replay, waiting for the write lock, write). Replay
alone: `mc_beamline.callbacks.replay.replay` of one stored run (documents from Tiled, frames from the
detector file), frames/s; and frames read through Tiled's HTTP array API one by one (the
path of a replay where the files are not readable), frames/s. numpy runs single-threaded
throughout (as in Dask workers). The machine's load average is printed: the server and the
workers share the CPUs, so other work on them slows the 2-worker case most.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Dask workers run numpy with one BLAS/OpenMP thread; so does the sequential reference here.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's mc_beamline, also in the Dask workers (spawned with this sys.path)

import h5py  # noqa: E402
import hdf5plugin  # noqa: E402
import numpy as np  # noqa: E402

DATASET = "/entry/data/data"


def make_frames(ny: int, nx: int, step_um: float) -> np.ndarray:
    """Simulator frames of a snake raster centred on the seed area."""
    from mc_beamline.physics.mesocrystal import MesocrystalSimulator

    sim = MesocrystalSimulator()
    frames = np.empty((ny * nx, *sim.geometry.shape), dtype=np.uint32)
    for k in range(ny * nx):
        row, col = divmod(k, nx)
        if row % 2:
            col = nx - 1 - col
        frames[k] = sim.frame((col - (nx - 1) / 2) * step_um, (row - (ny - 1) / 2) * step_um, 0.01, noise_key=k)
    return sim, frames


def store_runs(client, data_dir, sim, frames: np.ndarray, n_runs: int, ny: int, nx: int, step_um: float) -> list[str]:
    """Store ``n_runs`` raster runs whose events point at one detector file; return their uids."""
    from event_model import compose_run

    from mc_beamline.analysis.detector.masks import encode_mask
    from mc_beamline.devices.detector import RESOURCE_SPEC
    from mc_beamline.storage import tiled_writer

    name = "bench_raster.h5"
    with h5py.File(data_dir.detector / name, "w") as f:
        f.create_dataset(DATASET, data=frames, chunks=(1, *frames.shape[1:]), **hdf5plugin.Bitshuffle(cname="lz4"))
    md = {"plan_name": "nanodiffraction_raster", "mc_beamline": {
        "experiment": "raster", "scan_shape": [ny, nx], "step_um": step_um, "center_um": [0.0, 0.0], "snake": True,
        "exposure_s": 0.01, "image_key": "det_image", "detector_poni": sim.geometry.to_poni_text(),
        "detector_mask": encode_mask(sim.mask), "detector_shape": list(sim.geometry.shape)}}
    uids = []
    for r in range(n_runs):
        run = compose_run(metadata={**md, "scan_id": r + 1})
        resource = run.compose_resource(spec=RESOURCE_SPEC, root=str(data_dir.root), resource_path=f"detector/{name}",
                                        resource_kwargs={"dataset": DATASET, "swmr": True})
        descriptor = run.compose_descriptor(name="primary", data_keys={
            "stage_x": {"source": "SIM:X", "dtype": "number", "shape": [], "units": "um"},
            "det_image": {"source": "SIM:DET", "dtype": "array", "dtype_numpy": "<u4",
                          "shape": list(frames.shape[1:]), "external": "FILESTORE:"}})
        writer = tiled_writer(client)
        writer("start", run.start_doc)
        writer("descriptor", descriptor.descriptor_doc)
        writer("resource", resource.resource_doc)
        for i in range(len(frames)):
            datum = resource.compose_datum(datum_kwargs={"point_number": i})
            writer("datum", datum)
            writer("event", descriptor.compose_event(data={"stage_x": step_um * (i % nx), "det_image": datum["datum_id"]},
                                                     timestamps={"stage_x": 0.0, "det_image": 0.0}))
        writer("stop", run.compose_stop(exit_status="success"))
        uids.append(run.start_doc["uid"])
    return uids


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) used so far by process ``pid`` (Linux /proc)."""
    if pid == os.getpid():
        t = os.times()
        return t.user + t.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def tiled_server(data_dir, how: str):
    """Yield (client, pid of the server's process): embedded in this process, or `mc-beamline serve`."""
    from mc_beamline.storage import TiledService

    if how == "embedded":
        with TiledService(data_dir) as service:
            client = service.client()
            with client.context:
                yield client, os.getpid()
        return
    import httpx
    from tiled.client import from_uri

    data_dir.create()
    api_key = data_dir.api_key()
    uri = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "mc_beamline.cli", "serve", "--data-dir", str(data_dir.root),
                             "--port", uri.rsplit(":", 1)[1]], stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                            env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{uri}/healthz", timeout=1.0, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mc-beamline serve did not start")
            time.sleep(0.2)
        client = from_uri(uri, api_key=api_key)
        with client.context:
            yield client, proc.pid
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


PHASES = ("connect", "lookup", "delete", "replay", "lock_wait", "write")


def mean_timings(outcomes) -> dict[str, float]:
    """Mean seconds per run of each phase (`Reprocessed.timings`)."""
    return {p: sum(o.timings.get(p, 0.0) for o in outcomes) / max(len(outcomes), 1) for p in PHASES}


def run(args, data_dir) -> None:
    from mc_beamline.callbacks.replay import replay
    from mc_beamline.commands.reprocess import (
        dask_client,
        reprocess_many,
        reprocess_sequential,
        reprocessed_result,
        reprocessed_uid,
        server_address,
        warm_up,
        warm_worker,
    )
    from mc_beamline.storage import DataDir, read_stream_array

    data_dir = DataDir(data_dir)
    if args.catalog != "sqlite":
        data_dir.set_catalog_uri(args.catalog)
    t0 = time.perf_counter()
    sim, frames = make_frames(args.ny, args.nx, 1.6)
    gen_s = time.perf_counter() - t0
    n = len(frames)
    with tiled_server(data_dir, args.server) as (client, server_pid):
        t0 = time.perf_counter()
        uids = store_runs(client, data_dir, sim, frames, args.runs, args.ny, args.nx, 1.6)
        store_s = time.perf_counter() - t0
        print(f"{args.runs} runs of {n} frames stored in {store_s:.1f} s (frames generated in {gen_s:.1f} s); "
              f"Tiled server {args.server}", flush=True)

        # replay alone, and frames through Tiled's array API
        warm_worker()
        replay(client, uids[0])  # warm-up
        t0 = time.perf_counter()
        reference_one = replay(client, uids[0])
        replay_fps = n / (time.perf_counter() - t0)
        node = client[uids[0]]["primary"]["det_image"]
        t0 = time.perf_counter()
        for i in range(min(n, 60)):
            np.asarray(node[i])
        http_fps = min(n, 60) / (time.perf_counter() - t0)

        rows = []  # (how, wall, same, load, server CPU s, timings)
        load = os.getloadavg()
        cpu0 = process_cpu_s(server_pid)
        t0 = time.perf_counter()
        sequential = reprocess_sequential(client, uids, force=True)
        seq_s = time.perf_counter() - t0
        # embedded: this process is client and server at once, so its CPU is not the server's alone
        seq_cpu = process_cpu_s(server_pid) - cpu0 if args.server == "process" else float("nan")
        reference = {o.raw_uid: o.result for o in sequential}
        assert reference[uids[0]] == reference_one
        assert all(o.status == "reprocessed" for o in sequential), [o.message for o in sequential]
        rows.append(("sequential", seq_s, None, load[0], seq_cpu, mean_timings(sequential)))
        print(f"sequential: {seq_s:.1f} s", flush=True)

        uri, api_key = server_address(client)
        startups = []
        for workers in [int(w) for w in args.workers.split(",")]:
            t0 = time.perf_counter()
            with dask_client(n_workers=workers) as dask:
                warm_up(dask, uri, api_key)
                startup_s = time.perf_counter() - t0
                ld = os.getloadavg()[0]
                cpu0 = process_cpu_s(server_pid)
                t0 = time.perf_counter()
                outcomes = reprocess_many(uri, api_key, uids, dask, force=True)
                wall = time.perf_counter() - t0
                server_cpu = process_cpu_s(server_pid) - cpu0
            problems = [f"{o.raw_uid[:8]}: {o.status} {o.message}" for o in outcomes
                        if o.status != "reprocessed" or o.result != reference[o.raw_uid]]
            # what is stored, not only what was computed: the result and a complete frames table
            for u in uids:
                if reprocessed_result(client, u) != reference[u]:
                    problems.append(f"{u[:8]}: the stored result differs")
                rows_stored = len(read_stream_array(client, reprocessed_uid(u), "index", stream="frames"))
                if rows_stored != n:
                    problems.append(f"{u[:8]}: {rows_stored} rows stored in the frames table, not {n}")
            same = not problems
            for problem in problems:
                print(f"  NOT IDENTICAL {problem}", flush=True)
            rows.append((f"dask {workers} worker(s)", wall, same, ld, server_cpu, mean_timings(outcomes)))
            startups.append((workers, startup_s))
            print(f"{workers} worker(s): {wall:.1f} s (+{startup_s:.1f} s start-up), identical: {same}", flush=True)

    print()
    print(f"Reprocessing {args.runs} runs of {n} frames (1065 x 1030 uint32): {platform.node()}, {os.cpu_count()} CPUs, "
          f"catalog {data_dir.catalog_uri.split(':', 1)[0]}, Tiled server {args.server}, "
          f"load average before {load[0]:.1f} {load[1]:.1f}")
    base = next((wall for how, wall, *_ in rows if how == "dask 1 worker(s)"), None)
    head = (f"{'how':>17} {'wall s':>7} {'runs/s':>6} {'frames/s':>8} {'vs 1 worker':>11} {'identical':>9} {'load':>5} "
            f"{'server CPU s/run':>16} | mean s/run: " + " ".join(f"{p:>9}" for p in PHASES))
    print(head)
    print("-" * len(head))
    for how, wall, same, ld, server_cpu, timings in rows:
        ratio = base / wall if base else float("nan")
        print(f"{how:>17} {wall:>7.1f} {args.runs / wall:>6.2f} {args.runs * n / wall:>8.0f} {ratio:>10.2f}x "
              f"{'(ref)' if same is None else 'yes' if same else 'NO':>9} {ld:>5.1f} {server_cpu / args.runs:>16.2f} |"
              f"             " + " ".join(f"{timings[p]:>9.2f}" for p in PHASES))
    print("vs 1 worker = (1-worker wall time) / (this wall time); cluster start-up not included "
          f"({', '.join(f'{w}: {s:.1f} s' for w, s in startups)}). Server CPU: CPU time of the Tiled server's process "
          "during the reprocessing (embedded: this process, idle but for the server during the Dask runs; "
          "not separable in the sequential run).")
    print(f"replay of one run from Tiled (documents over HTTP, frames from the file): {replay_fps:.0f} frames/s; "
          f"frames through Tiled's array API one by one: {http_fps:.1f} frames/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--ny", type=int, default=9)
    parser.add_argument("--nx", type=int, default=13)
    parser.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    parser.add_argument("--catalog", default="sqlite", help="sqlite (default) or a postgresql:// URI of an empty database")
    parser.add_argument("--server", choices=("embedded", "process"), default="embedded",
                        help="Tiled server in this process (default) or in its own (`mc-beamline serve`)")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    if args.data_dir is None:
        with tempfile.TemporaryDirectory(prefix="mc-bench-reprocess-") as tmp:
            run(args, Path(tmp))
    else:
        run(args, args.data_dir)


if __name__ == "__main__":
    sys.exit(main())
