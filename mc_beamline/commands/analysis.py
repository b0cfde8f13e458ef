"""``mc-beamline analysis serve``: the analysis service in the foreground (see
:mod:`mc_beamline.services.analysis_service`). ``queue start`` runs it in the background."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any, Iterator

from mc_beamline.io.inputs import InputError

ENV_SWEEP = "MC_BEAMLINE_ANALYSIS_SWEEP_S"
"""Environment variable: default of ``--sweep`` (s)."""
IDLE_WAIT_S = 30.0
"""At SIGTERM: how long the analyses of runs that have stopped may take to be stored (s)."""


@contextlib.contextmanager
def _catalog(data_dir: Path, tiled: str | None) -> Iterator[Any]:
    """The Tiled client: of ``tiled``, else of the queue's server for ``data_dir``, else an embedded one."""
    from mc_beamline.commands.catalog import open_catalog
    from mc_beamline.queue_server.manager import queue_processes

    if tiled is None:
        found = queue_processes(data_dir)
        if found is not None and found[1].get("tiled"):
            tiled = found[0]["tiled_uri"]
    if tiled is None:
        with open_catalog(data_dir, None, what="the runs") as client:
            yield client
        return
    from mc_beamline.commands.catalog import probe_tiled
    from mc_beamline.storage import DataDir, connect

    probe_tiled(tiled)
    key_file = DataDir(data_dir).api_key_file
    api_key = key_file.read_text().strip() if key_file.is_file() and "api_key=" not in tiled else None
    with connect(uri=tiled, api_key=api_key) as client:
        yield client


def run_analysis(args) -> int:
    """``mc-beamline analysis serve``: runs until SIGTERM or Ctrl-C."""
    from mc_beamline.services.analysis_service import SWEEP_S, AnalysisService
    from mc_beamline.services.logs import log_to_files
    from mc_beamline.services.stream import queue_stream

    data_dir = args.data_dir.expanduser().resolve()
    address = args.stream
    if address is None:
        stream = queue_stream(data_dir)
        if stream is None:
            raise InputError(f"No document stream runs for {data_dir}: start the queue (`mc-beamline queue start`) "
                             "or give the stream's address with --stream HOST:PORT.")
        address = stream.subscribe
    sweep = args.sweep
    if sweep is None:
        text = os.environ.get(ENV_SWEEP, "") or str(SWEEP_S)
        try:
            sweep = float(text)
        except ValueError:
            raise InputError(f"{ENV_SWEEP} must be a number of seconds, got {text!r}.") from None
    if not sweep > 0:
        raise InputError(f"The sweep interval must be a positive number of seconds, got {sweep:g}.")
    log = log_to_files(data_dir, "analysis") if data_dir.is_dir() else None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    with _catalog(data_dir, args.tiled) as client:
        service = AnalysisService(client, figure_dir=data_dir / "figures" if data_dir.is_dir() else None,
                                  sweep_s=sweep)
        print(f"Analysis service: stream {address}, Tiled {client.uri.split('/api/', 1)[0]}"
              + (f", log {log}" if log else "") + ".", flush=True)
        service.serve(address)
        if not service.wait_idle(IDLE_WAIT_S):
            print("Stopped with analyses unfinished; they are caught up at the next start.", flush=True)
    return 0


__all__ = ["run_analysis"]
