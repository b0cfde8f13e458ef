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
    parser = argparse.ArgumentParser(prog="mc-beamline", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run an experiment on the simulated beamline and store it in Tiled")
    demo.add_argument("experiment", nargs="?", default="raster", choices=["raster"],
                      help="which experiment (default: raster, the seed nanodiffraction map)")
    demo.add_argument("--quick", action="store_true", help="a small version that finishes in seconds")
    _add_data_dir(demo)

    iocs = sub.add_parser("iocs", help="run the simulated beamline IOC in the foreground")
    iocs.add_argument("--prefix", default="MC:", help="PV prefix (default MC:)")
    iocs.add_argument("--geometry", default="offaxis", choices=["offaxis", "centered"],
                      help="detector geometry of the simulator")
    iocs.add_argument("--seed", type=int, default=None, help="sample seed of the simulator")
    _add_data_dir(iocs)

    serve = sub.add_parser("serve", help="run the Tiled server of a data directory in the foreground")
    serve.add_argument("--port", type=int, default=8000, help="TCP port on 127.0.0.1 (default 8000)")
    _add_data_dir(serve)
    return parser


def _demo(args) -> int:
    from .demo import raster_demo

    raster_demo(args.data_dir.resolve(), quick=args.quick)
    return 0


def _iocs(args) -> int:
    from .sim_iocs.server import run_iocs

    print(f"Simulated beamline IOC, prefix {args.prefix}, detector files in {args.data_dir.resolve() / 'detector'} "
          "(Ctrl-C stops it).", flush=True)
    run_iocs(prefix=args.prefix, data_dir=args.data_dir.resolve(), geometry=args.geometry, seed=args.seed)
    return 0


def _serve(args) -> int:
    from .storage import TiledService

    with TiledService(args.data_dir.resolve(), port=args.port) as service:
        print(f"Tiled server for {args.data_dir} at {service.uri}", flush=True)
        print(f"API key in {service.data_dir.api_key_file}", flush=True)
        try:
            service.wait()
        except KeyboardInterrupt:
            pass
    return 0


COMMANDS = {"demo": _demo, "iocs": _iocs, "serve": _serve}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("mc-beamline: interrupted.", file=sys.stderr)
        return 130
    except (CommandError, ValueError, OSError, ConnectionError, RuntimeError) as exc:
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
