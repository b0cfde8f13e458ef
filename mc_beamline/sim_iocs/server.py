"""Wiring of the simulated beamline: one caproto IOC process serving every PVGroup.

``python -m mc_beamline.sim_iocs [--prefix MC:] [--data-dir DIR] [--geometry offaxis|centered]
[--seed N] [--list-pvs]`` and ``mc-beamline iocs`` both end up in :func:`run_iocs`.

PV prefixes under the beamline prefix (default ``MC:``):

* ``STAGE:`` nanofocus stage, motor records ``X``, ``Y``, ``Z`` (µm) — :mod:`.stage`
* ``DET:`` pixel detector and HDF5 writer — :mod:`.detector`
* ``BEAM:`` ring current, energy, shutter — :mod:`.beam`
* ``REACTOR:`` continuous-flow CdSe reactor: pumps, heaters, UV-Vis and SAXS flow cells —
  :mod:`.reactor`
* ``ASSEMBLY:`` self-assembly cell: NC sample, flocculant syringe pump (``FLOC:``) and a 2D
  SAXS camera (``SAXS:``) for time-resolved SAXS after the addition — :mod:`.assembly`

All groups live in one process (several IOCs behind one unicast address are not all
reachable), and the detector reads the stage's readbacks directly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from mc_beamline.instrument.geometry import HC_KEV_NM
from mc_beamline.physics.detector_model import centered_geometry, offaxis_geometry
from mc_beamline.physics.mesocrystal import MesocrystalParams, MesocrystalSimulator
from mc_beamline.sim_iocs.assembly import AssemblyCellIOC
from mc_beamline.sim_iocs.beam import BeamIOC
from mc_beamline.sim_iocs.detector import PixelDetectorIOC
from mc_beamline.sim_iocs.reactor import FlowReactorIOC
from mc_beamline.sim_iocs.stage import NanofocusStageIOC

DEFAULT_PREFIX = "MC:"
DEFAULT_DATA_DIR = "mc-data"
GEOMETRIES = {"offaxis": offaxis_geometry, "centered": centered_geometry}

log = logging.getLogger(__name__)


@dataclass
class BeamlineIOC:
    """The simulated beamline: its PV groups and the sample model behind the detector."""

    prefix: str
    """PV prefix of every group, e.g. ``MC:``."""
    stage: NanofocusStageIOC
    """The nanofocus stage's motor records."""
    detector: PixelDetectorIOC
    """The pixel detector and its HDF5 file plugin."""
    beam: BeamIOC
    """Ring current and shutter."""
    simulator: MesocrystalSimulator
    """The mesocrystal sample whose frames the detector records."""
    data_dir: Path
    """Data directory; the cameras' files (detector, assembly SAXS) go to its ``detector/`` folder."""
    reactor: FlowReactorIOC | None = None
    """The simulated flow reactor, if served."""
    assembly: AssemblyCellIOC | None = None
    """The simulated self-assembly cell, if served."""

    @property
    def pvdb(self) -> dict:
        """PV database of all groups (record fields are resolved by caproto)."""
        db: dict = {}
        for group in (self.stage, self.detector, self.beam, self.reactor, self.assembly):
            if group is not None:
                db.update(group.pvdb)
        return db

    def close(self) -> None:
        """Close the cameras' open capture files and the simulators' workers (after the server stopped)."""
        self.detector.close()
        if self.reactor is not None:
            self.reactor.close()
        if self.assembly is not None:
            self.assembly.close()


def build_ioc(
    prefix: str = DEFAULT_PREFIX,
    data_dir: str | os.PathLike = DEFAULT_DATA_DIR,
    geometry: str = "offaxis",
    seed: int | None = None,
) -> BeamlineIOC:
    """Create the PV groups; writes the PONI and mask files into ``<data_dir>/detector``.

    Parameters
    ----------
    prefix : beamline PV prefix, e.g. ``"MC:"``.
    data_dir : data directory; detector files go to ``<data_dir>/detector``.
    geometry : ``"offaxis"`` (seed 000 setup) or ``"centered"``.
    seed : sample seed of :class:`MesocrystalParams` (default: its default, 2019).

    Raises
    ------
    ValueError
        For an unknown geometry or a negative seed.
    OSError
        If the data directory cannot be created or written.
    """
    if geometry not in GEOMETRIES:
        raise ValueError(f"Unknown geometry {geometry!r}; choose one of {', '.join(GEOMETRIES)}.")
    if seed is not None and int(seed) < 0:
        raise ValueError(f"The seed must be a non-negative integer, got {seed}.")
    data_dir = Path(data_dir).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    params = MesocrystalParams() if seed is None else MesocrystalParams(seed=int(seed))
    sim = MesocrystalSimulator(params, GEOMETRIES[geometry]())
    stage = NanofocusStageIOC(prefix=f"{prefix}STAGE:")
    detector = PixelDetectorIOC(
        prefix=f"{prefix}DET:", simulator=sim, data_dir=data_dir, geometry_name=geometry,
        position_source=stage.positions,
    )
    stage.fly.gate_listeners.append(detector.gate)  # the controller's gates expose the detector
    energy_kev = HC_KEV_NM / sim.geometry.wavelength_nm
    beam = BeamIOC(prefix=f"{prefix}BEAM:", energy_kev=energy_kev)
    reactor = FlowReactorIOC(prefix=f"{prefix}REACTOR:")
    assembly = AssemblyCellIOC(prefix=f"{prefix}ASSEMBLY:", data_dir=data_dir)
    return BeamlineIOC(prefix, stage, detector, beam, sim, data_dir, reactor, assembly)


def pv_listing(ioc: BeamlineIOC) -> list[str]:
    """Served PV names, one line each; records are marked with their type."""
    lines = []
    for name, pv in ioc.pvdb.items():
        record = getattr(pv, "record_type", None)
        lines.append(f"{name}  ({record} record)" if record else name)
    return lines


SUBSCRIPTION_BATCH_WAIT_S = 0.0005
"""How long caproto's server waits for more monitor updates to batch (its default: 10 ms).

caproto sends the first update of a burst at once but holds the rest until no update
came for ``HIGH_LOAD_TIMEOUT`` seconds, doubling its latency limit while bursts go on.
A motor move or a detector frame publishes a burst of field updates, so with the default
every move or trigger waited ~10-50 ms for its last monitor (DMOV) to be sent.
"""


def tune_caproto_server() -> None:
    """Low-latency monitor batching unless CAPROTO_SERVER_HIGH_LOAD_TIMEOUT_SEC is set."""
    import caproto.server.common as common

    if "CAPROTO_SERVER_HIGH_LOAD_TIMEOUT_SEC" not in os.environ:
        common.HIGH_LOAD_TIMEOUT = SUBSCRIPTION_BATCH_WAIT_S


def _low_latency_context_class():
    """caproto's asyncio server Context with TCP_NODELAY on every client connection.

    caproto creates its listening socket as ``socket(AF_INET, SOCK_STREAM)`` (proto 0),
    and asyncio only sets TCP_NODELAY on sockets whose proto is IPPROTO_TCP. Without it,
    a put-completion sent right after a monitor update waits for the client's delayed
    ACK (Nagle): every other put took ~43 ms instead of ~1 ms.
    """
    from caproto.asyncio.server import Context

    class LowLatencyContext(Context):
        async def tcp_handler(self, client, addr):
            sock = client.writer.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:  # pragma: no cover - not a TCP socket
                    pass
            return await super().tcp_handler(client, addr)

    return LowLatencyContext


def _drop_beacon_failures(record: logging.LogRecord) -> bool:
    """Beacons to a host without a CA repeater fail every few seconds; that is harmless noise."""
    return not str(record.msg).startswith("Failed to send beacon")


LOOPBACK = ["127.0.0.1"]
"""Where the IOC listens unless told otherwise: only this machine can move the stage."""


def listen_interfaces(interfaces: list[str] | None) -> list[str]:
    """The addresses to listen on: ``interfaces`` if given, else EPICS_CAS_INTF_ADDR_LIST, else loopback."""
    if interfaces:
        return list(interfaces)
    configured = os.environ.get("EPICS_CAS_INTF_ADDR_LIST", "").split()
    return configured or list(LOOPBACK)


async def serve(ioc: BeamlineIOC, *, interfaces: list[str] | None = None,
                ready_file: str | os.PathLike | None = None) -> None:
    """Serve the IOC until cancelled (SIGINT/SIGTERM cancel it cleanly); see `listen_interfaces`."""
    tune_caproto_server()
    ctx = _low_latency_context_class()(ioc.pvdb, listen_interfaces(interfaces))

    async def _ready(async_lib):
        if ready_file is not None:
            info = {"pid": os.getpid(), "port": ctx.port, "prefix": ioc.prefix, "data_dir": str(ioc.data_dir),
                    "pvs": len(ioc.pvdb)}
            tmp = Path(f"{ready_file}.tmp")
            tmp.write_text(json.dumps(info))
            os.replace(tmp, ready_file)

    logging.getLogger("caproto.ctx").addFilter(_drop_beacon_failures)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, task.cancel)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-main thread / Windows
            pass
    try:
        await ctx.run(log_pv_names=False, startup_hook=_ready)
    except asyncio.CancelledError:
        pass


def run_iocs(
    prefix: str = DEFAULT_PREFIX,
    data_dir: str | os.PathLike = DEFAULT_DATA_DIR,
    geometry: str = "offaxis",
    seed: int | None = None,
    *,
    interfaces: list[str] | None = None,
    ready_file: str | os.PathLike | None = None,
    list_pvs: bool = False,
) -> None:
    """Run the simulated beamline IOC in the foreground until SIGINT/SIGTERM.

    It listens on loopback unless ``interfaces`` (or EPICS_CAS_INTF_ADDR_LIST) says otherwise,
    and creates its files readable by their owner only (umask 077).

    With ``list_pvs`` the PV names are printed and nothing is served. ``ready_file``
    (if given) is written as JSON (pid, port, prefix, data_dir) once the server listens.
    The capture file open at exit is closed cleanly.
    """
    os.umask(0o077)  # detector files: readable by their owner only (the data directory's Tiled serves them)
    ioc = build_ioc(prefix, data_dir, geometry, seed)
    if list_pvs:
        print("\n".join(pv_listing(ioc)))
        ioc.close()
        return
    try:
        asyncio.run(serve(ioc, interfaces=interfaces, ready_file=ready_file))
    except KeyboardInterrupt:  # pragma: no cover - signal arrived before the handler was set
        pass
    finally:
        ioc.close()


def add_ioc_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the IOC options (shared by ``python -m mc_beamline.sim_iocs`` and ``mc-beamline iocs``)."""
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="PV prefix (default %(default)s)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                        help="data directory; detector files go to DATA_DIR/detector (default ./%(default)s)")
    parser.add_argument("--geometry", choices=sorted(GEOMETRIES), default="offaxis",
                        help="detector geometry (default %(default)s)")
    parser.add_argument("--seed", type=int, default=None, help="sample seed (default: the seed-000 sample)")
    parser.add_argument("--list-pvs", action="store_true", help="print the PV names and exit")
    parser.add_argument("--interfaces", nargs="+", default=None,
                        help="interfaces to listen on (default: EPICS_CAS_INTF_ADDR_LIST, else 127.0.0.1; "
                             "0.0.0.0 for all)")
    parser.add_argument("--ready-file", default=None,
                        help="write this JSON file (pid, port, prefix) once the IOC is serving")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log caproto activity")
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run from parsed :func:`add_ioc_arguments` options; bad input gives one sentence on stderr."""
    if args.verbose:
        from caproto import set_handler

        set_handler(level="DEBUG" if args.verbose > 1 else "INFO")
    try:
        run_iocs(args.prefix, args.data_dir, args.geometry, args.seed, interfaces=args.interfaces,
                 ready_file=args.ready_file, list_pvs=args.list_pvs)
    except (ValueError, OSError) as exc:
        print(f"mc-beamline iocs: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mc_beamline.sim_iocs",
        description="Simulated nanofocus beamline IOC (stage, pixel detector, beam, flow reactor, "
                    "self-assembly cell) over Channel Access.",
    )
    add_ioc_arguments(parser)
    return run_from_args(parser.parse_args(argv))


__all__ = ["BeamlineIOC", "build_ioc", "run_iocs", "serve", "add_ioc_arguments", "run_from_args", "main",
           "GEOMETRIES", "DEFAULT_PREFIX", "LOOPBACK", "listen_interfaces"]
