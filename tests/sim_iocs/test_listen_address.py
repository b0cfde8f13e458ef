"""`mc-beamline iocs` listens on loopback unless told otherwise: nobody on the network moves the stage."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import psutil
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening_addresses(pid: int, timeout: float = 120.0) -> set[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = {c.laddr.ip for c in psutil.Process(pid).net_connections(kind="tcp") if c.status == "LISTEN"}
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("the IOC did not listen")


@pytest.mark.parametrize("interfaces, expected", [([], {"127.0.0.1"}), (["--interfaces", "0.0.0.0"], {"0.0.0.0"})])
def test_iocs_listen_on_loopback_by_default(tmp_path, interfaces, expected):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    env.update(EPICS_CAS_SERVER_PORT=str(port), EPICS_CA_REPEATER_PORT=str(free_port()))
    proc = subprocess.Popen([sys.executable, "-m", "mc_beamline.cli", "iocs", "--data-dir", str(tmp_path), *interfaces],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        assert listening_addresses(proc.pid) == expected
    finally:
        proc.terminate()
        proc.wait(30)
