"""The ``mc-beamline`` command.

Every sub-command reports bad input as one sentence on stderr with exit status 2;
``--debug`` shows the traceback of unexpected errors instead of hiding it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_DATA_DIR = Path("mc-data")


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="data directory (Tiled catalog, detector files, figures); default ./mc-data")


def _add_catalog_source(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="data directory with the embedded catalog (default ./mc-data)")
    source.add_argument("--tiled", default=None, metavar="URI",
                        help="URI of a running Tiled server (API key from ?api_key= or TILED_API_KEY)")


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
    demo.add_argument("--fly", action="store_true",
                      help="raster: fly the stage along each row with one gated exposure per point")
    demo.add_argument("--adaptive", action="store_true",
                      help="raster: survey at 4x the step and let the live XCCA choose where to refine (at most "
                           "40 %% of the points); flow: let the live analysis choose each nucleation temperature "
                           "until both edges of the CdSe-437 window at 14 s are located")
    _add_data_dir(demo)

    xcca = sub.add_parser(
        "xcca", help="offline XCCA of the frames of a scan (HDF5 file, Eiger master, or CBF/EDF/TIFF series)",
        description="FRAMES: an HDF5 file with a (n, rows, columns) frame stack; an Eiger master file "
                    "(NAME_master.h5) with its linked data files; or a series of CBF, EDF or TIFF images, one frame "
                    "per file: a directory, a glob pattern in quotes ('scan/img_*.cbf') or the files themselves, "
                    "taken in natural order of their names.")
    xcca.add_argument("frames", type=Path, nargs="+", metavar="FRAMES",
                      help="HDF5 file, Eiger master file, or image series (directory, pattern or files)")
    xcca.add_argument("--poni", type=Path, default=None, metavar="GEOM.poni",
                      help="pyFAI PONI geometry file (the calibrated geometry; without it, an Eiger master's "
                           "header gives an untilted one)")
    xcca.add_argument("--mask", type=Path, default=None, metavar="MASK",
                      help="mask file: .npy array or EDF/TIFF image (e.g. from pyFAI-drawmask), nonzero = bad pixel; "
                           "added to an Eiger master's pixel mask")
    xcca.add_argument("--dataset", default=None,
                      help="dataset path in an HDF5 file (default /entry/data/data, or an Eiger master's linked data)")
    xcca.add_argument("--q-sl", type=float, required=True, metavar="Q", help="superlattice ring, nm⁻¹ (e.g. 1.72)")
    xcca.add_argument("--q-al", type=float, required=True, metavar="Q", help="atomic-lattice ring, nm⁻¹ (e.g. 18.3)")
    xcca.add_argument("--scan-shape", default=None, metavar="NYxNX", help="raster shape, rows x columns (e.g. 35x51)")
    xcca.add_argument("--step-um", type=float, default=None, metavar="S", help="raster step in µm (for domain areas)")
    xcca.add_argument("--snake", action="store_true", help="odd raster rows were scanned backwards")
    xcca.add_argument("--out", type=Path, required=True, metavar="RESULT.json", help="where to write the result")
    xcca.add_argument("--plot", type=Path, default=None, metavar="DIR", help="write PNG figures into DIR")
    xcca.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    xcca.add_argument("--no-solid-angle", action="store_true",
                      help="do not correct intensities for the solid angle of each pixel (corrected by default)")
    xcca.add_argument("--polarization", type=float, default=None, metavar="FACTOR",
                      help="correct for the beam's polarisation, (Ih-Iv)/(Ih+Iv) in -1..1 as in pyFAI "
                           "(default: no polarisation correction)")
    xcca.add_argument("--hot-pixel-frames", type=int, default=None, metavar="K",
                      help="search the first K frames for hot pixels on the rings and mask them "
                           "(default 32; 0: no search)")

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
        _add_catalog_source(cmd)
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
    _add_catalog_source(reprocess)
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
    iocs.add_argument("--interfaces", nargs="+", default=None, metavar="ADDR",
                      help="addresses to listen on (default 127.0.0.1: only this machine can reach the IOC; "
                           "0.0.0.0 for every network)")
    _add_data_dir(iocs)

    serve = sub.add_parser("serve", help="run the Tiled server of a data directory in the foreground")
    serve.add_argument("--port", type=int, default=8000, help="TCP port on 127.0.0.1 (default 8000)")
    serve.add_argument("--catalog", default=None, metavar="URI",
                       help="catalog database, e.g. postgresql://user:pass@host:5432/db; the data directory "
                            "keeps it for later commands ('sqlite' goes back to its SQLite file)")
    serve.add_argument("--create-readonly-key", action="store_true",
                       help="print a new read-only API key of the data directory (for replay and results) and exit")
    _add_data_dir(serve)

    queue = sub.add_parser("queue", help="run the overnight queue (bluesky-queueserver with the package's startup)")
    queue_sub = queue.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = queue_sub.add_parser("start", help="start Redis, Tiled and the RE Manager and open the environment")
    start.add_argument("--zmq-control-addr", default="tcp://127.0.0.1:60615",
                       help="RE Manager control address (default %(default)s)")
    start.add_argument("--zmq-info-addr", default="tcp://127.0.0.1:60625",
                       help="address publishing the console output (default %(default)s)")
    start.add_argument("--redis", default=None, metavar="HOST:PORT",
                       help="a running Redis server whose requirepass is DATA_DIR/queue/redis_password "
                            "(default: an embedded one, data in DATA_DIR/queue/redis)")
    start.add_argument("--tiled", default=None, metavar="URI",
                       help="a running Tiled server (API key: TILED_API_KEY or DATA_DIR/tiled/api_key; "
                            "default: serve DATA_DIR)")
    start.add_argument("--tiled-port", type=int, default=0, help="port of the Tiled server started (default: free)")
    start.add_argument("--prefix", default="MC:", help="PV prefix of the beamline (default MC:)")
    start.add_argument("--stop-on-failure", action="store_true",
                       help="stop the queue when a plan fails (default: go on with the next item)")
    start.add_argument("--no-analysis", action="store_true",
                       help="do not start the analysis service (start it with `mc-beamline analysis serve`)")
    start.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each part (default 120)")
    _add_data_dir(start)
    status = queue_sub.add_parser("status", help="show what runs and the RE Manager's state")
    _add_data_dir(status)
    stop = queue_sub.add_parser("stop", help="stop the RE Manager, Tiled and Redis started by `queue start`")
    stop.add_argument("--force", action="store_true", help="stop even while a plan runs (it is aborted)")
    _add_data_dir(stop)

    analysis = sub.add_parser("analysis", help="the analysis service on the beamline's document stream")
    analysis_sub = analysis.add_subparsers(dest="action", required=True, metavar="ACTION")
    serve_analysis = analysis_sub.add_parser(
        "serve", help="analyse every run on the document stream and store derived runs in Tiled; catch up on "
                      "stored runs that have none")
    serve_analysis.add_argument("--tiled", default=None, metavar="URI",
                                help="Tiled server (default: the queue's for DATA_DIR, else an embedded one)")
    serve_analysis.add_argument("--stream", default=None, metavar="HOST:PORT",
                                help="output of the document stream's proxy (default: the queue's for DATA_DIR)")
    serve_analysis.add_argument("--sweep", type=float, default=None,
                                help="seconds between two searches for runs without results (default "
                                     "$MC_BEAMLINE_ANALYSIS_SWEEP_S, else 60)")
    _add_data_dir(serve_analysis)

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


def _run(module: str, function: str):
    """The command ``module.function(args)``, imported only when it runs (a fast ``--help``);
    its exit status is the int it returns, else 0."""

    def command(args) -> int:
        from importlib import import_module

        status = getattr(import_module(f"mc_beamline.commands.{module}"), function)(args)
        return status if isinstance(status, int) else 0

    return command


COMMANDS = {
    "demo": _run("demo", "run_demo"), "xcca": _run("xcca", "run_xcca"), "msc": _run("msc", "run_msc"),
    "saxs": _run("saxs", "run_saxs"), "results": _run("results", "run_results"),
    "replay": _run("results", "run_replay"), "reprocess": _run("reprocess", "run_reprocess"),
    "iocs": _run("serve", "run_iocs"), "serve": _run("serve", "run_serve"), "queue": _run("queue", "run_queue"),
    "profile": _run("queue", "run_profile"), "analysis": _run("analysis", "run_analysis"),
}
"""Every sub-command and the function in ``mc_beamline.commands`` that runs it."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("mc-beamline: interrupted.", file=sys.stderr)
        return 130
    except (ValueError, OSError, ConnectionError, RuntimeError, LookupError) as exc:
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
