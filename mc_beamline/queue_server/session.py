"""The RunEngine session that ``mc_beamline.startup`` builds for IPython and the queue's RE worker.

Everything is configured through environment variables, so that the queue server's worker
process (which only imports a module) and an IPython profile get the same session:

==================================  ==============================================================
MC_BEAMLINE_PREFIX                  PV prefix of the beamline (default ``MC:``)
MC_BEAMLINE_DATA_DIR                data directory (default ``./mc-data``): Tiled API key file,
                                    document backups in ``DATA_DIR/backup/documents``
MC_BEAMLINE_TILED_URI               Tiled server that stores the runs; unset: an embedded server
                                    for the data directory is started in this process
TILED_API_KEY                       API key for that server (default: ``DATA_DIR/tiled/api_key``);
                                    there is no anonymous access: no key, no session
MC_BEAMLINE_RING_CURRENT_MIN_MA     suspend below this ring current, mA (default 50; ``off``: no
                                    suspender)
MC_BEAMLINE_RING_CURRENT_RESUME_MA  resume at or above this current, mA (default: MIN x 1.1)
MC_BEAMLINE_SUSPEND_SLEEP_S         wait after the current has recovered (or the shutter opened), s
                                    (default 10)
MC_BEAMLINE_SHUTTER_SUSPENDER       ``off``: no suspender on the experiment shutter (default: the
                                    scan waits while the shutter is closed)
MC_BEAMLINE_CONNECT_TIMEOUT_S       how long to wait for the IOC at start-up, s (default 10)
MC_BEAMLINE_MOTOR_TIMEOUT_S         longest stage move before the run fails, s (default 30)
MC_BEAMLINE_BACKUP_RETRY_S          how often backed-up runs are offered to Tiled again, s (default 10)
MC_BEAMLINE_OFFLINE                 ``1``: devices are created but not connected and no Tiled
                                    client is made (to list plans and devices without a beamline)
MC_BEAMLINE_REDIS                   where the persistent run metadata (``RE.md``, ``scan_id``)
                                    lives: ``HOST:PORT``, ``data-dir`` (default: the data
                                    directory's Redis, started if it does not run) or ``off``;
                                    either with the password in ``DATA_DIR/queue/redis_password``
MC_BEAMLINE_STREAM_ADDR             ``HOST:PORT`` of the document stream to publish to (default:
                                    the stream of the queue running for the data directory)
MC_BEAMLINE_LOG                     name of the log file under ``DATA_DIR/logs`` (default
                                    ``ipython``, ``worker`` in the queue's RE worker)
==================================  ==============================================================
"""

from __future__ import annotations

import atexit
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bluesky.suspenders import SuspendBoolLow, SuspendFloor

logger = logging.getLogger(__name__)

DEFAULT_RING_CURRENT_MIN_MA = 50.0
DEFAULT_SUSPEND_SLEEP_S = 10.0
BACKUP_SUBDIR = Path("backup") / "documents"
"""Where runs that Tiled did not take are kept, relative to the data directory."""


class StartupError(RuntimeError):
    """The session cannot be built; the message is one sentence for the operator."""


def _env_float(env: dict, name: str, default: float | None) -> float | None:
    text = env.get(name, "").strip()
    if not text:
        return default
    if text.lower() in ("off", "none", "no"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise StartupError(f"{name} must be a number, got {text!r}.") from None
    if not math.isfinite(value) or value < 0:
        raise StartupError(f"{name} must be a finite number >= 0, got {text!r}.")
    return value


@dataclass(frozen=True)
class StartupConfig:
    """What the session is built from (see the module docstring for the variables)."""

    prefix: str = "MC:"
    data_dir: Path = Path("mc-data")
    tiled_uri: str | None = None
    tiled_api_key: str | None = None
    ring_current_min_ma: float | None = DEFAULT_RING_CURRENT_MIN_MA
    ring_current_resume_ma: float | None = None
    suspend_sleep_s: float = DEFAULT_SUSPEND_SLEEP_S
    connect_timeout_s: float = 10.0
    motor_timeout_s: float = 30.0
    backup_retry_s: float = 10.0
    offline: bool = False
    shutter_suspender: bool = False
    """Suspend while the experiment shutter is closed."""
    md_redis: str | None = None
    """Persistent ``RE.md``: ``HOST:PORT`` of a Redis, ``"data-dir"`` (the data directory's), or None (a plain dict)."""
    stream_addr: str | None = None
    """``HOST:PORT`` of the document stream the session publishes to, or None."""
    log_name: str | None = None
    """Log file ``DATA_DIR/logs/<log_name>.log``, or None for no log file."""

    @classmethod
    def from_env(cls, env: dict | None = None) -> StartupConfig:
        env = dict(os.environ if env is None else env)
        minimum = _env_float(env, "MC_BEAMLINE_RING_CURRENT_MIN_MA", DEFAULT_RING_CURRENT_MIN_MA)
        resume = _env_float(env, "MC_BEAMLINE_RING_CURRENT_RESUME_MA", None)
        if minimum is not None and resume is not None and resume < minimum:
            raise StartupError(f"MC_BEAMLINE_RING_CURRENT_RESUME_MA ({resume:g} mA) must not be below "
                               f"MC_BEAMLINE_RING_CURRENT_MIN_MA ({minimum:g} mA).")
        return cls(
            prefix=env.get("MC_BEAMLINE_PREFIX", "MC:") or "MC:",
            data_dir=Path(env.get("MC_BEAMLINE_DATA_DIR", "mc-data") or "mc-data").expanduser().resolve(),
            tiled_uri=env.get("MC_BEAMLINE_TILED_URI") or None,
            tiled_api_key=env.get("TILED_API_KEY") or None,
            ring_current_min_ma=minimum,
            ring_current_resume_ma=resume,
            suspend_sleep_s=_env_float(env, "MC_BEAMLINE_SUSPEND_SLEEP_S", DEFAULT_SUSPEND_SLEEP_S) or 0.0,
            connect_timeout_s=_env_float(env, "MC_BEAMLINE_CONNECT_TIMEOUT_S", 10.0) or 10.0,
            motor_timeout_s=_env_float(env, "MC_BEAMLINE_MOTOR_TIMEOUT_S", 30.0) or 30.0,
            backup_retry_s=_env_float(env, "MC_BEAMLINE_BACKUP_RETRY_S", 10.0) or 10.0,
            offline=env.get("MC_BEAMLINE_OFFLINE", "").strip().lower() in ("1", "yes", "true", "on"),
            shutter_suspender=env.get("MC_BEAMLINE_SHUTTER_SUSPENDER", "on").strip().lower() not in ("off", "0", "no"),
            md_redis=None if env.get("MC_BEAMLINE_REDIS", "").strip().lower() == "off"
            else (env.get("MC_BEAMLINE_REDIS") or "data-dir"),
            stream_addr=env.get("MC_BEAMLINE_STREAM_ADDR") or None,
            log_name=env.get("MC_BEAMLINE_LOG") or None,
        )

    @property
    def backup_dir(self) -> Path:
        return self.data_dir / BACKUP_SUBDIR


# ------------------------------------------------------------------ suspenders
# Every raster point is stored exactly once without any help here: the detector declares
# itself not rewindable (``PixelDetector.rewindable``), so bluesky's ``trigger_and_read``
# turns off the RunEngine's message cache while a frame is taken and read, and a suspension
# that falls into an exposure completes that point once instead of replaying its trigger.


def ring_current_suspender(signal, minimum_ma: float, resume_ma: float | None = None,
                           sleep_s: float = DEFAULT_SUSPEND_SLEEP_S) -> SuspendFloor:
    """Suspend while ``signal`` (ring current, mA) is below ``minimum_ma``; resume at ``resume_ma``."""
    resume = resume_ma if resume_ma is not None else minimum_ma * 1.1
    return SuspendFloor(
        signal, minimum_ma, resume_thresh=resume, sleep=sleep_s,
        tripped_message=f"ring current below {minimum_ma:g} mA; the scan resumes {sleep_s:g} s after it is "
                        f"back at {resume:g} mA",
    )


def shutter_suspender(signal, sleep_s: float = DEFAULT_SUSPEND_SLEEP_S) -> SuspendBoolLow:
    """Suspend while the experiment shutter (``signal``: 1 open, 0 closed) is closed; resume
    ``sleep_s`` s after it opens again."""
    return SuspendBoolLow(signal, sleep=sleep_s,
                          tripped_message=f"the shutter is closed; the scan resumes {sleep_s:g} s after it opens")


# -------------------------------------------------------------------- session
@dataclass
class Session:
    """What the startup built: the RunEngine, the devices, the storage and what to close."""

    config: StartupConfig
    """What the session was started with."""
    RE: Any
    """The RunEngine (bluesky.RunEngine)."""
    beamline: Any
    """The devices (:class:`mc_beamline.devices.Beamline`)."""
    writer: Any | None = None
    """The RunEngine's storage subscriber (a BackedUpTiledWriter), or None without Tiled."""
    client: Any | None = None
    """Tiled client of the catalog, or None."""
    tiled_service: Any | None = None
    """The embedded Tiled server this session started, or None when it uses another server."""
    suspenders: list = field(default_factory=list)
    """The RunEngine's suspenders (ring current, reactor temperatures)."""
    bec: Any | None = None
    """The BestEffortCallback (live table and plots), or None."""
    stream_addr: str | None = None
    """The document stream the RunEngine publishes to, or None."""

    def close(self) -> None:
        """Stop the backup thread, close the Tiled client and the embedded server (idempotent)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.client is not None:
            try:
                self.client.context.close()
            except Exception:  # noqa: BLE001
                pass
            self.client = None
        if self.tiled_service is not None:
            self.tiled_service.stop()
            self.tiled_service = None


def tiled_api_key(config: StartupConfig) -> str:
    """The API key for the session's Tiled server; refuses to go on without one."""
    if config.tiled_api_key:
        return config.tiled_api_key
    from mc_beamline.storage import DataDir

    key_file = DataDir(config.data_dir).api_key_file
    if key_file.is_file():
        return key_file.read_text().strip()
    raise StartupError(
        f"No API key for the Tiled server at {config.tiled_uri}: set TILED_API_KEY or give the data "
        f"directory that holds it (MC_BEAMLINE_DATA_DIR, {key_file} does not exist); runs are never "
        "written anonymously."
    )


def start_session(config: StartupConfig, *, ipython: bool = False) -> Session:
    """Build the RunEngine, the devices and the storage of a beamline session.

    Parameters
    ----------
    config
        See :class:`StartupConfig`.
    ipython
        Add what a person at the console wants: a live table and plots
        (BestEffortCallback), a progress bar for moves and bluesky's magics.
    """
    from bluesky import RunEngine

    from mc_beamline.devices import make_devices

    beamline = make_devices(config.prefix)
    # Labels for bluesky's magics (%ct, %wa).
    beamline.detector._ophyd_labels_ = set(beamline.detector._ophyd_labels_) | {"detectors"}
    for motor in (beamline.stage.x, beamline.stage.y, beamline.stage.z):
        motor._ophyd_labels_ = set(motor._ophyd_labels_) | {"motors"}
        # A stage move to a dead IOC never completes: fail the run instead of hanging.
        motor.timeout = config.motor_timeout_s

    RE = RunEngine({"beamline_id": "mc-beamline", "mc_beamline_prefix": config.prefix})
    RE.record_interruptions = True  # suspensions and pauses are stored in the run ("interruptions" stream)
    session = Session(config=config, RE=RE, beamline=beamline)
    if config.offline:
        return session

    try:
        if config.log_name:
            from mc_beamline.services.logs import log_to_files

            log_to_files(config.data_dir, config.log_name)
        if config.md_redis:
            _persistent_metadata(session)
        beamline.connect_all(timeout=config.connect_timeout_s)
        _connect_storage(session)
        _publish_documents(session)
        if config.ring_current_min_ma is not None:
            suspender = ring_current_suspender(beamline.beam.ring_current, config.ring_current_min_ma,
                                               config.ring_current_resume_ma, config.suspend_sleep_s)
            RE.install_suspender(suspender)
            session.suspenders.append(suspender)
        if config.shutter_suspender:
            suspender = shutter_suspender(beamline.beam.shutter, config.suspend_sleep_s)
            RE.install_suspender(suspender)
            session.suspenders.append(suspender)
        _record_beamline_state(session)
        _guard_disk_space(session)
        if ipython:
            _ipython_extras(session)
    except BaseException:
        session.close()
        raise
    return session


def _connect_storage(session: Session) -> None:
    from mc_beamline.storage import BackedUpTiledWriter, TiledService

    config = session.config
    uri, key = config.tiled_uri, config.tiled_api_key
    if uri is None:
        session.tiled_service = TiledService(config.data_dir).start()
        atexit.register(session.close)  # the embedded server would keep the process alive
        uri, key = session.tiled_service.uri, session.tiled_service.api_key
    else:
        key = tiled_api_key(config)
    session.writer = BackedUpTiledWriter(uri, config.backup_dir, api_key=key, retry_s=config.backup_retry_s)
    session.client = session.writer.client
    session.RE.subscribe(session.writer)
    if session.writer.pending():
        logger.warning("%d runs wait in %s to be sent to Tiled.", len(session.writer.pending()), config.backup_dir)


def _record_beamline_state(session: Session) -> None:
    """What every run of the session records besides what its plan reads: a ``baseline`` stream
    (ring current, energy, shutter, stage z, reactor and cell state, read at the start and the
    end of each run, :class:`bluesky.preprocessors.SupplementalData`) and the ring current in
    every primary event (an I0 to normalise each point by)."""
    from bluesky.preprocessors import SupplementalData

    bl = session.beamline
    baseline = [bl.beam.ring_current, bl.beam.energy, bl.beam.shutter, bl.stage.z]
    if bl.reactor is not None:
        baseline += [bl.reactor.nucleation, bl.reactor.growth, bl.reactor.pumps]
    if bl.assembly is not None:
        baseline += [bl.assembly.concentration, bl.assembly.floc.dispensed]
    session.RE.preprocessors.append(SupplementalData(baseline=baseline))
    session.RE.preprocessors.append(read_with_every_point(bl.beam.ring_current))


def _guard_disk_space(session: Session) -> None:
    """Fail a run, with its stop document and frames stored, before it fills the data directory
    (:func:`mc_beamline.storage.disk_space.guard_disk_space`, as in the demo)."""
    from mc_beamline.storage.disk_space import guard_disk_space

    session.RE.preprocessors.append(guard_disk_space(session.config.data_dir))


def read_with_every_point(signal, stream: str = "primary"):
    """A RunEngine preprocessor that adds ``signal``'s reading to every event of ``stream`` whose
    plan did not read it itself (plans need not know about the beam monitor)."""
    from bluesky.preprocessors import plan_mutator
    from bluesky.utils import Msg

    def add_reading(plan):
        state = {"open": False, "read": False}

        def mutate(msg):
            if msg.command == "create":
                state.update(open=msg.kwargs.get("name", "primary") == stream, read=False)
            elif msg.command == "read" and msg.obj is signal:
                state["read"] = True
            elif msg.command == "save" and state["open"]:
                state["open"] = False
                if not state["read"]:
                    def read_then_save():
                        yield Msg("read", signal)
                        return (yield msg)
                    return read_then_save(), None
            return None, None

        return (yield from plan_mutator(plan, mutate))

    return add_reading


def _persistent_metadata(session: Session) -> None:
    """``RE.md`` in Redis (:class:`~mc_beamline.services.persistent_md.RedisMetadata`): ``scan_id``
    and the other persistent keys are shared by every session of the data directory."""
    import redis

    from mc_beamline.queue_server.access import redis_client
    from mc_beamline.queue_server.redis import ensure_redis
    from mc_beamline.services.persistent_md import RedisMetadata, metadata_key
    from mc_beamline.storage import DataDir

    config = session.config
    address = config.md_redis
    if address == "data-dir":
        data_dir = DataDir(config.data_dir)
        entry, started = ensure_redis(data_dir.queue / "redis", data_dir.redis_password(),
                                      log_file=config.data_dir / "logs" / "redis.log")
        address = f"127.0.0.1:{entry['port']}"
        if started:
            logger.info("Started the data directory's Redis on %s (pid %d).", address, entry["pid"])
    client = redis_client(config.data_dir, address)
    try:
        md = RedisMetadata(client, metadata_key(config.data_dir))
    except redis.RedisError as exc:
        raise StartupError(f"The persistent run metadata in Redis at {address} cannot be read ({exc}).") from None
    md.update(session.RE.md)  # beamline_id, prefix and versions of this session
    session.RE.md = md
    session.RE.scan_id_source = md.next_scan_id


def _publish_documents(session: Session) -> None:
    """Every document of the session also goes to the beamline's document stream (if there is one)."""
    from mc_beamline.services.stream import publish_to, queue_stream

    address = session.config.stream_addr
    if address is None:
        stream = queue_stream(session.config.data_dir)
        address = stream.publish if stream else None
    if address is None:
        logger.info("No document stream runs for %s: documents go to Tiled only.", session.config.data_dir)
        return
    publish_to(session.RE, address)
    session.stream_addr = address


def _ipython_extras(session: Session) -> None:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with bluesky-queueserver
        return
    shell = get_ipython()
    if shell is None:
        return
    from bluesky.callbacks.best_effort import BestEffortCallback
    from bluesky.magics import BlueskyMagics
    from bluesky.utils import ProgressBarManager

    session.bec = BestEffortCallback()
    session.RE.subscribe(session.bec)
    session.RE.waiting_hook = ProgressBarManager()
    shell.register_magics(BlueskyMagics)


__all__ = ["StartupConfig", "StartupError", "Session", "start_session", "read_with_every_point", "shutter_suspender",
           "ring_current_suspender", "tiled_api_key"]
