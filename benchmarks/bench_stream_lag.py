"""Live lag through the document stream: publisher -> bluesky 0MQ proxy -> the analysis service's router.

Run: ``python benchmarks/bench_stream_lag.py [--rates 100,500] [--seconds 10] [--frames 300] [--cache DIR]``

The synthetic raster run of ``bench_live_xcca.py`` (simulator frames in a Bitshuffle/LZ4
HDF5 file, a Datum + Event per point) is published at each rate with
:class:`bluesky.callbacks.zmq.Publisher` to bluesky's 0MQ proxy (its own process, as
``mc-beamline queue start`` runs it); in a third process, as in the analysis service, a
:class:`bluesky.callbacks.zmq.RemoteDispatcher` hands it to the live router the service runs
(:func:`mc_beamline.callbacks.experiments.live_router`, no Tiled storage). Times are
``time.monotonic()`` (one clock for all processes of the machine).

Reported per rate: transit (Event published -> arrived at the router: serialisation, proxy,
deserialisation), lag (Event published -> its frame analysed: transit + queue + HDF5 read +
XCCA of the frame), median / p95 / max, frames analysed per second, and whether the lag stays
bounded (median of the last tenth <= 3 x the first tenth + 50 ms). Baseline in the same run:
the same documents handed to the same router in-process (no stream), the demo's path.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_live_xcca import SEED_SHAPE, compose_documents, detector_file  # noqa: E402

MAX_EVENTS = SEED_SHAPE[0] * SEED_SHAPE[1]
"""Points of the seed raster: the most events one run may have."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Arrivals:
    """The router behind a clock: when each primary event arrived (``time.monotonic()`` s), by seq_num;
    ``report(uid, timeout)`` waits for run ``uid``'s analysis and returns the arrivals, frame latencies, errors."""

    def __init__(self):
        from mc_beamline.callbacks.experiments import live_router

        self.arrived: dict[str, dict[int, float]] = {}
        self.runs: dict[str, object] = {}
        self._descriptors: dict[str, str] = {}
        self.router = live_router(on_run=lambda live: self.runs.__setitem__(live.start_doc["uid"], live))

    def __call__(self, name, doc):
        if name == "descriptor":
            self._descriptors[doc["uid"]] = doc["run_start"]
        elif name == "event":
            self.arrived.setdefault(self._descriptors[doc["descriptor"]], {})[doc["seq_num"]] = time.monotonic()
        self.router(name, doc)

    def report(self, uid: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while uid not in self.runs:
            if time.monotonic() > deadline:
                raise TimeoutError("the run never reached the router")
            time.sleep(0.01)
        live = self.runs.pop(uid)
        if not live.wait(max(0.0, deadline - time.monotonic())):
            raise TimeoutError(f"the analysis did not finish within {timeout:g} s")
        return {"arrived": self.arrived.pop(uid, {}), "latency": list(live.frame_latency_s),
                "errors": [e["message"] for e in live.errors]}


def consumer(address: str, requests, replies) -> None:
    """The analysis-service side in its own process: stream -> router; one report per requested run uid."""
    from bluesky.callbacks.zmq import RemoteDispatcher

    arrivals = Arrivals()
    dispatcher = RemoteDispatcher(address, loop=asyncio.new_event_loop())
    dispatcher.subscribe(arrivals)

    def answer():
        while (uid := requests.get()) is not None:
            try:
                replies.put(arrivals.report(uid, 600))
            except Exception as exc:  # noqa: BLE001 - reported to the parent
                replies.put({"failed": f"{type(exc).__name__}: {exc}"})

    threading.Thread(target=answer, daemon=True).start()
    replies.put("ready")
    dispatcher.start()


def measure(sim, path, n_file: int, n: int, rate: float, send, report) -> dict:
    """Publish one run of ``n`` points at ``rate`` frames/s with ``send(name, doc)``; the lags
    (``report(uid)``: the consumer's arrivals and frame latencies of the run)."""
    start, head, points, stop = compose_documents(sim, path, n_file, n)
    send("start", start)
    for name, doc in head:
        send(name, doc)
    sent = np.empty(n)
    t0 = time.monotonic()
    for i, (datum, event) in enumerate(points):
        wait = t0 + i / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        send("datum", datum)
        sent[i] = time.monotonic()
        send("event", event)
    send("stop", stop)
    got = report(start["uid"])
    if got.get("failed") or got["errors"]:
        raise RuntimeError(f"analysis failed: {got.get('failed') or got['errors'][0]}")
    if len(got["arrived"]) < n or len(got["latency"]) != n:
        raise RuntimeError(f"{len(got['arrived'])} events arrived, {len(got['latency'])} frames analysed of {n}")
    arrived = np.array([got["arrived"][i + 1] for i in range(n)])
    transit = arrived - sent
    lag = transit + np.asarray(got["latency"])
    tenth = max(1, n // 10)
    first, last = np.median(lag[:tenth]), np.median(lag[-tenth:])
    return {"rate": rate, "n": n, "transit_med": float(np.median(transit)), "transit_max": float(transit.max()),
            "median": float(np.median(lag)), "p95": float(np.percentile(lag, 95)), "max": float(lag.max()),
            "analysed_per_s": n / (float((sent + lag)[-1]) - sent[0]),
            "bounded": bool(last <= 3 * first + 0.05)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="100,500", help="frames/s (default 100,500)")
    parser.add_argument("--seconds", type=float, default=10.0, help="offered duration per rate (default 10 s)")
    parser.add_argument("--frames", type=int, default=300, help="distinct frames in the detector file (default 300)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "mc-bench-live-xcca")
    args = parser.parse_args()
    import multiprocessing

    from bluesky.callbacks.zmq import Publisher

    from mc_beamline.services.stream import StreamAddresses, proxy_command

    load_at_start = os.getloadavg()
    sim, path = detector_file(args.cache / f"frames_{args.frames}.h5", args.frames)
    stream = StreamAddresses.on_loopback(free_port(), free_port())
    proxy = subprocess.Popen(proxy_command(stream), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    ctx = multiprocessing.get_context("spawn")
    requests, replies = ctx.Queue(), ctx.Queue()
    child = ctx.Process(target=consumer, args=(stream.subscribe, requests, replies), daemon=True)
    child.start()
    try:
        if replies.get(timeout=120) != "ready":
            raise RuntimeError("the consumer process did not start")
        publisher = Publisher(stream.publish)
        time.sleep(2.0)  # 0MQ subscriptions propagate before the first document (else it is dropped)

        def remote(uid):
            requests.put(uid)
            return replies.get(timeout=660)

        local = Arrivals()

        def in_process(uid):
            return local.report(uid, 600)

        paths = (("stream", publisher, remote), ("in-process", local, in_process))
        for _, send, report in paths:  # warm-up (imports, first-call allocations)
            measure(sim, path, args.frames, 50, 100.0, send, report)
        for rate in [float(r) for r in args.rates.split(",") if r]:
            n = min(MAX_EVENTS, max(50, int(rate * args.seconds)))
            for path_name, send, report in paths:
                row = measure(sim, path, args.frames, n, rate, send, report)
                row["path"] = path_name
                rows.append(row)
                print(f"  {rate:g}/s {path_name}: lag median {row['median'] * 1e3:.0f} ms, "
                      f"max {row['max'] * 1e3:.0f} ms", flush=True)
    finally:
        requests.put(None)
        child.terminate()
        child.join(10)
        proxy.terminate()
        proxy.wait(10)
    print()
    print(f"Live lag through the document stream: {platform.node()}, {os.cpu_count()} CPUs, load average at start "
          f"{', '.join(f'{x:.2f}' for x in load_at_start)}, at end {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    head = (f"{'rate':>6} {'path':>10} {'frames':>6} {'transit med':>11} {'transit max':>11} {'lag med':>8} "
            f"{'p95':>8} {'max':>8} {'analysed/s':>10} {'bounded':>7}")
    print(head)
    print("-" * len(head))
    for r in rows:
        transit = (f"{r['transit_med'] * 1e3:>9.2f}ms {r['transit_max'] * 1e3:>9.2f}ms" if r["path"] == "stream"
                   else f"{'-':>11} {'-':>11}")
        print(f"{r['rate']:>5g}/s {r['path']:>10} {r['n']:>6} {transit} {r['median'] * 1e3:>6.0f}ms "
              f"{r['p95'] * 1e3:>6.0f}ms {r['max'] * 1e3:>6.0f}ms {r['analysed_per_s']:>10.1f} "
              f"{'yes' if r['bounded'] else 'NO':>7}")
    print("lag = Event published -> its frame analysed; transit = Event published -> arrived at the router.")
    print("baseline: the same documents handed to the same router in this process (no stream).")


if __name__ == "__main__":
    main()
