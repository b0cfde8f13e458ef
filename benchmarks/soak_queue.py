"""Unattended queue soak: N items (rasters, flow and assembly series) with three injected faults.

    python benchmarks/soak_queue.py [--items 50] [--ny 3 --nx 4] [--tiled-down-s 10] [--data-dir DIR]

Starts the simulated IOC (own loopback CA port; the flow reactor runs 100x faster than real
time), a Tiled server (in this process, so that it can be restarted) and
``mc-beamline queue start --tiled URI`` (embedded Redis, document stream, analysis service
with a 10 s catch-up sweep), queues N items (every fourth a flow series of 1 x 1 x 2
conditions, every sixth a binary assembly series of 3 frames, the others rasters), kills and
restarts the IOC during item N/3, kills the analysis service (SIGKILL) during item N/2 and
starts it again, stops Tiled for ``--tiled-down-s`` s during item 2N/3, waits for the queue,
for the backups to be resent and for the analysis service to catch up, and reports: items
completed/failed, raw runs stored, derived runs stored, raw runs without exactly one
derived run, runs lost (an item's run missing in Tiled, or a stored run whose frames or
spectra cannot be read), wall time. Exit status 1 if a run was lost or a raw run lacks its
derived run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def speed_up_reactor(prefix: str) -> None:
    """Run the simulated reactor 100x faster than real time, with quick heaters."""
    from caproto.sync.client import write

    write(f"{prefix}REACTOR:TimeScale", 0.01)
    for heater in ("NUC", "GROW"):
        write(f"{prefix}REACTOR:{heater}:RampRate", 600.0)
        write(f"{prefix}REACTOR:{heater}:TimeConstant", 2.0)
        write(f"{prefix}REACTOR:{heater}:SettleTime", 10.0)


def is_flow_item(i: int) -> bool:
    return i % 4 == 3


def is_assembly_item(i: int) -> bool:
    return i % 6 == 5 and not is_flow_item(i)


def cli(*args, env):
    return subprocess.run([sys.executable, "-m", "mc_beamline.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def derived_report(client, raw_uids: list[str], timeout: float) -> dict:
    """Wait (up to ``timeout`` s) until every raw run has its derived run; count them."""
    from mc_beamline.callbacks.experiments import experiment_of
    from mc_beamline.storage.runs import derived_runs, plain

    t0 = time.monotonic()
    analyses = {u: experiment_of(plain(client[u].metadata["start"])).analysis_name for u in raw_uids}
    while True:
        counts = {u: len(derived_runs(client, u, name)) for u, name in analyses.items()}
        if all(n == 1 for n in counts.values()) or time.monotonic() - t0 > timeout:
            break
        time.sleep(2)
    return {"raw_runs": len(raw_uids), "derived_runs": sum(counts.values()),
            "derived_wait_s": round(time.monotonic() - t0, 1),
            "raw_runs_without_one_derived_run": [u for u, n in counts.items() if n != 1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--tiled-down-s", type=float, default=10.0)
    parser.add_argument("--ny", type=int, default=3)
    parser.add_argument("--nx", type=int, default=4)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()

    from bluesky_queueserver_api import BPlan

    from mc_beamline.queue_server.access import manager_api
    from mc_beamline.queue_server.manager import read_state, start_analysis_service
    from mc_beamline.sim_iocs.process import IocProcess
    from mc_beamline.storage import TiledService, read_stream_array

    data_dir = (args.data_dir or Path(tempfile.mkdtemp(prefix="mc-soak-"))).resolve()
    ioc = IocProcess(data_dir=data_dir).start()
    os.environ.update(ioc.client_env)
    speed_up_reactor(ioc.prefix)
    tiled_port = free_port()
    tiled = TiledService(data_dir, port=tiled_port).start()
    control = f"tcp://127.0.0.1:{free_port()}"
    env = dict(os.environ, **ioc.client_env, MC_BEAMLINE_BACKUP_RETRY_S="2", MC_BEAMLINE_ANALYSIS_SWEEP_S="10")
    report: dict = {"items": args.items, "raster": [args.ny, args.nx], "data_dir": str(data_dir)}
    t0 = time.perf_counter()
    proc = cli("queue", "start", "--data-dir", str(data_dir), "--tiled", tiled.uri, "--zmq-control-addr", control,
               "--zmq-info-addr", f"tcp://127.0.0.1:{free_port()}", env=env)
    if proc.returncode:
        print(proc.stderr, file=sys.stderr)
        return 2
    report["queue_start_s"] = round(time.perf_counter() - t0, 1)
    api = manager_api(data_dir, control)
    try:
        item_uids = []
        for i in range(args.items):
            if is_flow_item(i) and i != args.items // 3:
                item = BPlan("flow_series", "reactor", [280.0], [260.0], [4.5, 14.0], md={"soak_index": i})
            elif is_assembly_item(i) and i != args.items // 3:
                item = BPlan("assembly_series", "assembly", sample="binary", flocculant_mm=20.0, addition_time_s=1.0,
                             n_frames=3, interval_s=1.0, exposure_s=0.1, md={"soak_index": i})
            else:
                item = BPlan("nanodiffraction_raster", "det", "stage", ny=args.ny, nx=args.nx,
                             exposure_s=0.2 if i == args.items // 3 else 0.01, md={"soak_index": i})
            item_uids.append(api.item_add(item)["item"]["item_uid"])
        t1 = time.perf_counter()
        api.queue_start()
        faults = []

        def running(uid):
            while api.status(reload=True)["running_item_uid"] != uid:
                time.sleep(0.05)

        running(item_uids[args.items // 3])
        time.sleep(1.0)
        os.kill(ioc.proc.pid, signal.SIGKILL)
        ioc.proc.wait()
        port = ioc.port
        ioc.stop()
        ioc = IocProcess(data_dir=data_dir, port=port).start()
        speed_up_reactor(ioc.prefix)
        faults.append(f"IOC killed during item {args.items // 3} and restarted")
        running(item_uids[args.items // 2])
        time.sleep(0.5)
        os.kill(read_state(data_dir)["analysis"]["pid"], signal.SIGKILL)
        time.sleep(2.0)
        start_analysis_service(data_dir, read_state(data_dir), env=env)
        faults.append(f"analysis service killed (SIGKILL) during item {args.items // 2} and restarted 2 s later")
        running(item_uids[2 * args.items // 3])
        tiled.stop()
        time.sleep(args.tiled_down_s)
        tiled = TiledService(data_dir, port=tiled_port).start()
        faults.append(f"Tiled stopped for {args.tiled_down_s:g} s during item {2 * args.items // 3}")
        api.wait_for_idle(timeout=1800)
        report["queue_run_s"] = round(time.perf_counter() - t1, 1)
        report["faults"] = faults
        history = {h["item_uid"]: h for h in api.history_get()["items"]}
        results = [history[u]["result"] for u in item_uids]
        report["completed"] = sum(r["exit_status"] == "completed" for r in results)
        report["failed"] = sum(r["exit_status"] == "failed" for r in results)
        run_uids = [u for r in results for u in r["run_uids"]]
        client = tiled.client()
        with client.context:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                missing = [u for u in run_uids if u not in client or client[u].metadata.get("stop") is None]
                if not missing:
                    break
                time.sleep(1)
            report["resend_wait_s"] = round(time.monotonic() - (deadline - 120), 1)
            lost, statuses = [], {}
            for u in run_uids:
                try:
                    stop = client[u].metadata["stop"]
                    n = stop["num_events"].get("primary", 0)
                    md = client[u].metadata["start"].get("mc_beamline", {})
                    key = {"flow": md.get("keys", {}).get("absorbance"),
                           "assembly": "assembly_saxs_image"}.get(md.get("experiment"), "det_image")
                    if n and read_stream_array(client, u, key).shape[0] != n:
                        raise ValueError(f"{key} missing")
                    statuses[stop["exit_status"]] = statuses.get(stop["exit_status"], 0) + 1
                except Exception as exc:  # noqa: BLE001
                    lost.append(f"{u}: {type(exc).__name__}: {exc}")
            report["runs"] = len(run_uids)
            report["runs_in_tiled_by_exit_status"] = statuses
            report["items_without_run"] = sum(1 for r in results if not r["run_uids"])
            report["lost_runs"] = lost
            report.update(derived_report(client, [u for u in run_uids if u in client], timeout=600))
        report["backups_sent"] = len(list((data_dir / "backup" / "documents" / "sent").glob("*.jsonl")))
    finally:
        api.close()
        cli("queue", "stop", "--data-dir", str(data_dir), "--force", env=env)
        tiled.stop()
        ioc.stop()
    report["total_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(report, indent=2))
    return 1 if report["lost_runs"] or report["raw_runs_without_one_derived_run"] else 0


if __name__ == "__main__":
    sys.exit(main())
