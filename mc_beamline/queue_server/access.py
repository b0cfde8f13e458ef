"""How a client reaches the queue of a data directory: its Redis with the data directory's
password, its RE Manager's control channel encrypted with the data directory's 0MQ key.

``queue start`` gives the RE Manager its private key and the Redis password in a
configuration file of mode 0600 (`write_manager_config`); every client of the package
(``queue start|status|stop``, the session's persistent ``RE.md``), of the tests and of the
benchmarks connects through `redis_client` and `manager_api`, which read the password and
the public key from the data directory (`~mc_beamline.storage.DataDir`).
"""

from __future__ import annotations

import json
from pathlib import Path

from mc_beamline.queue_server.redis import connect, parse_address
from mc_beamline.storage.data_dir import DataDir, write_private

MANAGER_CONFIG = "re_manager_config.yml"
"""In ``DATA_DIR/queue/``: the RE Manager's configuration with its secrets (mode 0600)."""


def redis_client(data_dir: Path, address: str, timeout: float = 5.0):
    """A ``redis.Redis`` client of the Redis at ``address`` (``HOST:PORT``) that authenticates
    with the data directory's password; every wait is bounded by ``timeout`` s."""
    host, port = parse_address(address)
    return connect(host, port, DataDir(data_dir).redis_password(), timeout)


def manager_api(data_dir: Path, control_addr: str, timeout: float = 5.0, **options):
    """A ``REManagerAPI`` (0MQ) client of the RE Manager at ``control_addr`` with the data
    directory's public key; sending and each answer wait at most ``timeout`` s.

    ``options`` go to ``REManagerAPI`` (e.g. ``request_fail_exceptions=False``). A missing or
    malformed key file is a ValueError (one sentence).
    """
    from bluesky_queueserver_api.zmq import REManagerAPI

    key = DataDir(data_dir).zmq_public_key()
    return REManagerAPI(zmq_control_addr=control_addr, zmq_public_key=key, timeout_recv=timeout,
                        timeout_send=timeout, **options)


def write_manager_config(data_dir: Path, redis_addr: str) -> Path:
    """Write the RE Manager's configuration (named by ``QSERVER_CONFIG``, mode 0600): its 0MQ
    private key and the Redis address ``HOST:PORT`` of ``redis_addr`` with the password.

    The address keeps bluesky-queueserver's form without a scheme (``:PASSWORD@HOST:PORT``;
    it adds ``redis://`` itself and hands the URL to ``redis.asyncio.from_url``). Creates the
    key pair on first use; returns the file's path.
    """
    data = DataDir(data_dir)
    _, private = data.zmq_keys()
    host, port = parse_address(redis_addr)
    config = {"network": {"zmq_private_key": private, "redis_addr": f":{data.redis_password()}@{host}:{port}"}}
    path = data.queue / MANAGER_CONFIG
    write_private(path, json.dumps(config, indent=2) + "\n")  # JSON is YAML
    return path


__all__ = ["MANAGER_CONFIG", "manager_api", "redis_client", "write_manager_config"]
