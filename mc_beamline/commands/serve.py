"""Services that run in the foreground until Ctrl-C: ``mc-beamline serve`` and ``mc-beamline iocs``."""

from __future__ import annotations

import sys


def run_serve(args) -> None:
    """``mc-beamline serve``: the Tiled server of a data directory (``--catalog`` records its catalog)."""
    from mc_beamline.storage import DataDir, TiledService

    if args.create_readonly_key:
        key = DataDir(args.data_dir).create().create_readonly_key()
        print(f"Read-only API key of {args.data_dir} (shown once; it reads and replays runs, writes nothing):",
              file=sys.stderr)
        print(key, flush=True)
        return
    if args.catalog is not None:
        DataDir(args.data_dir).set_catalog_uri(None if args.catalog == "sqlite" else args.catalog)
    with TiledService(args.data_dir.resolve(), port=args.port) as service:
        print(f"Tiled server for {args.data_dir} at {service.uri}", flush=True)
        print(f"API key in {service.data_dir.api_key_file}", flush=True)
        try:
            service.wait()
        except KeyboardInterrupt:
            pass


def run_iocs(args) -> None:
    """``mc-beamline iocs``: the simulated beamline IOC, detector files in the data directory."""
    from mc_beamline.sim_iocs.server import run_iocs as serve_iocs

    print(f"Simulated beamline IOC, prefix {args.prefix}, detector files in {args.data_dir.resolve() / 'detector'} "
          "(Ctrl-C stops it).", flush=True)
    serve_iocs(prefix=args.prefix, data_dir=args.data_dir.resolve(), geometry=args.geometry, seed=args.seed,
               interfaces=args.interfaces)


__all__ = ["run_iocs", "run_serve"]
