"""The ``mc-beamline`` command.

Every sub-command reports bad input as one sentence on stderr with exit status 2;
``--debug`` shows the traceback of unexpected errors instead of hiding it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_DATA_DIR = Path("mc-data")


class CommandError(Exception):
    """An error whose message is one sentence for the user."""


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="data directory (Tiled catalog, detector files, figures); default ./mc-data")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mc-beamline", description="Mesocrystal beamline: simulated IOCs, scans into Tiled, live and offline XCCA.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run an experiment on the simulated beamline and store it in Tiled")
    demo.add_argument("experiment", nargs="?", default="raster", choices=["raster", "flow", "assembly"],
                      help="which experiment: raster (default, the seed nanodiffraction map), flow "
                           "(flow-synthesis series with live MSC map) or assembly (self-assembly series "
                           "with live phase fractions and superlattice symmetry)")
    demo.add_argument("--quick", action="store_true", help="a small version that finishes in seconds")
    _add_data_dir(demo)

    xcca = sub.add_parser("xcca", help="offline XCCA of a stack of nanodiffraction frames (HDF5)")
    xcca.add_argument("frames", type=Path, metavar="FRAMES.h5", help="HDF5 file with a (n, rows, columns) frame stack")
    xcca.add_argument("--poni", type=Path, required=True, metavar="GEOM.poni", help="pyFAI PONI geometry file")
    xcca.add_argument("--mask", type=Path, default=None, metavar="MASK.npy", help=".npy mask, 1 = bad pixel")
    xcca.add_argument("--dataset", default="/entry/data/data", help="dataset path in the HDF5 file")
    xcca.add_argument("--q-sl", type=float, required=True, metavar="Q", help="superlattice ring, nm⁻¹ (e.g. 1.72)")
    xcca.add_argument("--q-al", type=float, required=True, metavar="Q", help="atomic-lattice ring, nm⁻¹ (e.g. 18.3)")
    xcca.add_argument("--scan-shape", default=None, metavar="NYxNX", help="raster shape, rows x columns (e.g. 35x51)")
    xcca.add_argument("--step-um", type=float, default=None, metavar="S", help="raster step in µm (for domain areas)")
    xcca.add_argument("--snake", action="store_true", help="odd raster rows were scanned backwards")
    xcca.add_argument("--out", type=Path, required=True, metavar="RESULT.json", help="where to write the result")
    xcca.add_argument("--plot", type=Path, default=None, metavar="DIR", help="write PNG figures into DIR")
    xcca.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    msc = sub.add_parser("msc", help="magic-size clusters and nanocrystal sizes from UV-Vis spectra (CSV)")
    msc.add_argument("spectra", type=Path, metavar="SPECTRA.csv",
                     help="CSV with a header row: wavelength (nm), then one absorbance column per spectrum")
    msc.add_argument("--out", type=Path, required=True, metavar="RESULT.json", help="where to write the result")

    saxs = sub.add_parser("saxs", help="supercrystal, fluid and size analysis of a 1D SAXS curve (text columns)")
    saxs.add_argument("curve", type=Path, metavar="CURVE.dat",
                      help="text file with columns q, I and optionally sigma (whitespace or comma separated)")
    saxs.add_argument("--q-unit", default="nm^-1", choices=["nm^-1", "A^-1"], help="unit of q (default nm^-1)")
    saxs.add_argument("--out", type=Path, required=True, metavar="RESULT.json", help="where to write the result")

    for name, text in (("results", "export the analysis computed live during a stored run"),
                       ("replay", "replay a stored run through the live analysis")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("uid", metavar="UID", help="uid of the raw run")
        source = cmd.add_mutually_exclusive_group()
        source.add_argument("--data-dir", type=Path, default=None,
                            help="data directory with the embedded catalog (default ./mc-data)")
        source.add_argument("--tiled", default=None, metavar="URI",
                            help="URI of a running Tiled server (API key from ?api_key= or TILED_API_KEY)")
        cmd.add_argument("--out", type=Path, required=True, metavar="RESULT.json")

    reprocess = sub.add_parser(
        "reprocess", help="re-analyse many stored raster runs with Dask and store the results in Tiled",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Replay stored raster runs through the live XCCA analysis, one Dask task per run, and store "
                    "each result in Tiled as a derived run marked as reprocessed (the same numbers as "
                    "`mc-beamline replay`). Runs already reprocessed are left alone unless --force.",
        epilog="Selecting runs: the UIDs given, plus the runs that match every --query term and the time\n"
               "range; with none of these every raster run is taken. Only raster runs are reprocessed.\n"
               "  --query KEY=VALUE  a start-document key, dotted for nested keys, e.g.\n"
               "                     --query sample=seed-000 --query mc_beamline.step_um=1.6\n"
               "                     (VALUE is read as JSON when it parses: numbers, true/false, lists;\n"
               "                     otherwise as text)\n"
               "  --since/--until T  start time, ISO 8601 (2025-06-01 or 2025-06-01T08:00, local time\n"
               "                     unless an offset is given) or Unix seconds; --until is exclusive\n"
               "Workers: a local Dask cluster of --workers processes, or the scheduler at --scheduler\n"
               "(e.g. tcp://10.0.0.5:8786); its workers must reach the Tiled server, so give --tiled\n"
               "with a URI they can reach when they run on other machines.")
    reprocess.add_argument("uids", nargs="*", metavar="UID", help="uids of raw raster runs (optional)")
    source = reprocess.add_mutually_exclusive_group()
    source.add_argument("--data-dir", type=Path, default=None,
                        help="data directory with the embedded catalog (default ./mc-data)")
    source.add_argument("--tiled", default=None, metavar="URI",
                        help="URI of a running Tiled server (API key from ?api_key= or TILED_API_KEY)")
    reprocess.add_argument("--query", action="append", default=[], metavar="KEY=VALUE",
                           help="start-document metadata the runs must have (repeatable; see below)")
    reprocess.add_argument("--since", default=None, metavar="T", help="runs started at or after T")
    reprocess.add_argument("--until", default=None, metavar="T", help="runs started before T")
    scheduler = reprocess.add_mutually_exclusive_group()
    scheduler.add_argument("--scheduler", default=None, metavar="ADDRESS",
                           help="address of a running Dask scheduler (default: a local cluster)")
    scheduler.add_argument("--workers", type=int, default=2, metavar="N",
                           help="worker processes of the local cluster (default 2)")
    reprocess.add_argument("--force", action="store_true", help="reprocess runs that already were")

    iocs = sub.add_parser("iocs", help="run the simulated beamline IOC in the foreground")
    iocs.add_argument("--prefix", default="MC:", help="PV prefix (default MC:)")
    iocs.add_argument("--geometry", default="offaxis", choices=["offaxis", "centered"],
                      help="detector geometry of the simulator")
    iocs.add_argument("--seed", type=int, default=None, help="sample seed of the simulator")
    _add_data_dir(iocs)

    serve = sub.add_parser("serve", help="run the Tiled server of a data directory in the foreground")
    serve.add_argument("--port", type=int, default=8000, help="TCP port on 127.0.0.1 (default 8000)")
    serve.add_argument("--catalog", default=None, metavar="URI",
                       help="catalog database, e.g. postgresql://user:pass@host:5432/db; the data directory "
                            "keeps it for later commands ('sqlite' goes back to its SQLite file)")
    _add_data_dir(serve)

    queue = sub.add_parser("queue", help="run the overnight queue (bluesky-queueserver with the package's startup)")
    queue_sub = queue.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = queue_sub.add_parser("start", help="start Redis, Tiled and the RE Manager and open the environment")
    start.add_argument("--zmq-control-addr", default="tcp://127.0.0.1:60615",
                       help="RE Manager control address (default %(default)s)")
    start.add_argument("--zmq-info-addr", default="tcp://127.0.0.1:60625",
                       help="address publishing the console output (default %(default)s)")
    start.add_argument("--redis", default=None, metavar="HOST:PORT",
                       help="a running Redis server (default: an embedded one, data in DATA_DIR/queue/redis)")
    start.add_argument("--tiled", default=None, metavar="URI",
                       help="a running Tiled server (API key: TILED_API_KEY or DATA_DIR/tiled/api_key; "
                            "default: serve DATA_DIR)")
    start.add_argument("--tiled-port", type=int, default=0, help="port of the Tiled server started (default: free)")
    start.add_argument("--prefix", default="MC:", help="PV prefix of the beamline (default MC:)")
    start.add_argument("--stop-on-failure", action="store_true",
                       help="stop the queue when a plan fails (default: go on with the next item)")
    start.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each part (default 120)")
    _add_data_dir(start)
    status = queue_sub.add_parser("status", help="show what runs and the RE Manager's state")
    _add_data_dir(status)
    stop = queue_sub.add_parser("stop", help="stop the RE Manager, Tiled and Redis started by `queue start`")
    stop.add_argument("--force", action="store_true", help="stop even while a plan runs (it is aborted)")
    _add_data_dir(stop)

    profile = sub.add_parser("profile", help="IPython profile with the beamline session")
    profile_sub = profile.add_subparsers(dest="action", required=True, metavar="ACTION")
    install = profile_sub.add_parser("install", help="create an IPython profile that loads mc_beamline.startup")
    install.add_argument("--name", default="mc_beamline", help="profile name (default %(default)s)")
    install.add_argument("--ipython-dir", type=Path, default=None, help="IPython directory (default: IPython's)")
    install.add_argument("--prefix", default="MC:", help="PV prefix of the beamline (default MC:)")
    install.add_argument("--tiled", default=None, metavar="URI", help="Tiled server (default: embedded for DATA_DIR)")
    install.add_argument("--force", action="store_true", help="replace an existing startup file")
    _add_data_dir(install)
    return parser


def _demo(args) -> int:
    from mc_beamline.commands.demo import assembly_demo, flow_demo, raster_demo

    run = {"raster": raster_demo, "flow": flow_demo, "assembly": assembly_demo}[args.experiment]
    run(args.data_dir.resolve(), quick=args.quick)
    return 0


def _xcca(args) -> int:
    from mc_beamline.commands.xcca import run_xcca

    run_xcca(args)
    return 0


def _stored(args, compute) -> int:
    from mc_beamline.io.result_json import write_json
    from mc_beamline.storage import DataDir, connect

    if args.tiled is None:
        data_dir = (args.data_dir or DEFAULT_DATA_DIR).resolve()
        if not DataDir(data_dir).has_catalog():
            raise CommandError(f"{data_dir} holds no catalog; give the data directory of the run (--data-dir).")
        source = {"data_dir": data_dir}
    else:
        source = {"uri": args.tiled}
    if not args.out.parent.resolve().is_dir():
        raise CommandError(f"Output directory {args.out.parent} does not exist.")
    with connect(**source) as client:
        result = compute(client, args.uid)
    write_json(result, args.out)
    print(f"{args.command} of run {args.uid}: {args.out}")
    return 0


def _results(args) -> int:
    from mc_beamline.callbacks.replay import stored_results

    return _stored(args, stored_results)


def _replay(args) -> int:
    from mc_beamline.callbacks.replay import replay

    return _stored(args, replay)


def _msc(args) -> int:
    from mc_beamline.commands.msc import run_msc

    run_msc(args)
    return 0


def _saxs(args) -> int:
    from mc_beamline.commands.saxs import run_saxs

    run_saxs(args)
    return 0


def _reprocess(args) -> int:
    import time

    import httpx

    from mc_beamline.commands.reprocess import RunQuery, dask_client, find_runs, reprocess_many, server_address
    from mc_beamline.storage import DataDir, connect

    query = RunQuery.parse(args.query, args.since, args.until) if (args.query or args.since or args.until) else None
    if args.workers < 1:
        raise CommandError(f"--workers must be at least 1, got {args.workers}.")
    if args.tiled is None:
        data_dir = (args.data_dir or DEFAULT_DATA_DIR).resolve()
        if not DataDir(data_dir).has_catalog():
            raise CommandError(f"{data_dir} holds no catalog; give the data directory of the runs (--data-dir).")
        source = {"data_dir": data_dir}
    else:
        from urllib.parse import urlsplit

        parts = urlsplit(args.tiled)
        health = f"{parts.scheme}://{parts.netloc}{parts.path.split('/api/', 1)[0].rstrip('/')}/healthz"
        try:  # one quick probe: the client would retry for a long while, talking on stderr
            httpx.get(health, timeout=5.0, trust_env=False).raise_for_status()
        except httpx.HTTPError as exc:
            raise CommandError(f"The Tiled server at {args.tiled} does not answer ({type(exc).__name__}: {exc}).") from None
        source = {"uri": args.tiled}
    try:
        catalog = connect(**source)
        client = catalog.__enter__()
    except httpx.HTTPError as exc:
        raise CommandError(f"The Tiled server at {args.tiled} does not answer ({type(exc).__name__}: {exc}).") from None
    try:
        uids = find_runs(client, args.uids, query)
        if not uids:
            raise CommandError("No stored raster run matches the selection.")
        uri, api_key = server_address(client)
        where = args.scheduler or f"a local cluster of {args.workers} worker(s)"
        print(f"reprocessing {len(uids)} run(s) on {where}", flush=True)

        def report(outcome) -> None:
            if outcome.status == "failed":
                print(f"failed {outcome.raw_uid}: {outcome.message}", flush=True)
                return
            result = outcome.result or {}
            print(f"{outcome.status} {outcome.raw_uid} -> {outcome.derived_uid}: {result.get('n_frames')} frames, "
                  f"{result.get('n_selected')} selected ({outcome.seconds:.1f} s)", flush=True)

        t0 = time.perf_counter()
        with dask_client(args.scheduler, args.workers) as dask:
            outcomes = reprocess_many(uri, api_key, uids, dask, force=args.force, on_done=report)
    finally:
        catalog.__exit__(None, None, None)
    counts = {status: sum(o.status == status for o in outcomes) for status in ("reprocessed", "unchanged", "failed")}
    print(f"{len(outcomes)} run(s): {counts['reprocessed']} reprocessed, {counts['unchanged']} unchanged, "
          f"{counts['failed']} failed in {time.perf_counter() - t0:.1f} s")
    return 1 if counts["failed"] else 0


def _iocs(args) -> int:
    from mc_beamline.sim_iocs.server import run_iocs

    print(f"Simulated beamline IOC, prefix {args.prefix}, detector files in {args.data_dir.resolve() / 'detector'} "
          "(Ctrl-C stops it).", flush=True)
    run_iocs(prefix=args.prefix, data_dir=args.data_dir.resolve(), geometry=args.geometry, seed=args.seed)
    return 0


def _serve(args) -> int:
    from mc_beamline.storage import DataDir, TiledService

    if args.catalog is not None:
        data_dir = DataDir(args.data_dir)
        data_dir.set_catalog_uri(None if args.catalog == "sqlite" else args.catalog)
    with TiledService(args.data_dir.resolve(), port=args.port) as service:
        print(f"Tiled server for {args.data_dir} at {service.uri}", flush=True)
        print(f"API key in {service.data_dir.api_key_file}", flush=True)
        try:
            service.wait()
        except KeyboardInterrupt:
            pass
    return 0


def _queue(args) -> int:
    from mc_beamline.queue_server import manager

    data_dir = args.data_dir.resolve()
    try:
        if args.action == "start":
            settings = manager.QueueSettings(
                data_dir=data_dir, zmq_control_addr=args.zmq_control_addr, zmq_info_addr=args.zmq_info_addr,
                redis_addr=args.redis, tiled_uri=args.tiled, tiled_port=args.tiled_port, prefix=args.prefix,
                stop_on_failure=args.stop_on_failure, timeout_s=args.timeout)
            state = manager.start_queue(settings)
            print(f"Queue running for {data_dir}: RE Manager at {state['zmq_control_addr']}, "
                  f"Redis at {state['redis_addr']}, Tiled at {state['tiled_uri']}; logs in {data_dir / 'queue' / 'logs'}.")
            return 0
        if args.action == "status":
            report = manager.queue_status(data_dir)
            state, status = report["state"], report["manager_status"]
            for name, alive in report["processes"].items():
                print(f"{name}: {'running' if alive else 'NOT RUNNING'} (pid {state[name]['pid']})")
            print(f"control address: {state['zmq_control_addr']}; Redis: {state['redis_addr']}; Tiled: {state['tiled_uri']}")
            if status is None:
                print("RE Manager: not answering")
                return 3
            print(f"RE Manager: {status['manager_state']}; environment "
                  f"{'open' if status['worker_environment_exists'] else 'closed'} ({status['worker_environment_state']}); "
                  f"RE {status['re_state']}; queue {status['items_in_queue']} items, history {status['items_in_history']}; "
                  f"running item: {status['running_item_uid'] or 'none'}; mode {status['plan_queue_mode']}")
            return 0
        manager.stop_queue(data_dir, force=args.force)
        print(f"Queue of {data_dir} stopped.")
        return 0
    except manager.QueueError as exc:
        raise CommandError(str(exc)) from None


def _profile(args) -> int:
    from mc_beamline.queue_server.ipython_profile import install_profile

    try:
        path = install_profile(args.name, data_dir=args.data_dir, prefix=args.prefix, tiled_uri=args.tiled,
                               ipython_dir=args.ipython_dir, force=args.force)
    except FileExistsError as exc:
        raise CommandError(str(exc)) from None
    print(f"IPython profile {args.name!r}: {path}; start it with `ipython --profile={args.name}`.")
    return 0


COMMANDS = {"demo": _demo, "xcca": _xcca, "msc": _msc, "saxs": _saxs, "results": _results, "replay": _replay, "reprocess": _reprocess, "iocs": _iocs, "serve": _serve,
            "queue": _queue, "profile": _profile}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("mc-beamline: interrupted.", file=sys.stderr)
        return 130
    except (CommandError, ValueError, OSError, ConnectionError, RuntimeError, LookupError) as exc:
        if args.debug:
            raise
        print(f"mc-beamline {args.command}: {_sentence(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the user gets one line, --debug gives the traceback
        if args.debug:
            raise
        print(f"mc-beamline {args.command}: unexpected {type(exc).__name__}: {_sentence(exc)} "
              "(run with --debug for the traceback).", file=sys.stderr)
        return 1


def _sentence(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if text.endswith((".", "!", "?")) else text + "."


if __name__ == "__main__":
    sys.exit(main())
