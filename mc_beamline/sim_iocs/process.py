"""Run the simulated beamline IOC in a subprocess on a private loopback CA port.

Used by the tests and by commands that need a beamline (``mc-beamline demo``)::

    with IocProcess(data_dir="mc-data") as ioc:
        ioc.apply_client_env()          # before the first ophyd/caproto PV is created
        devices = make_devices(ioc.prefix); connect_all(devices, timeout=10)

The caproto client reads the EPICS_CA_* variables when its first PV is created, so
:meth:`IocProcess.apply_client_env` must run before that, once per process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def _port_free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_ca_port() -> int:
    """A port P such that TCP and UDP P and P+1 (server and repeater) are free on loopback."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 65535 and _port_free(port) and _port_free(port + 1):
            return port
    raise RuntimeError("Could not find a free Channel Access port on 127.0.0.1.")


def loopback_ca_env(port: int) -> dict[str, str]:
    """EPICS environment for a client and server talking only over 127.0.0.1:``port``."""
    return {
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_ADDR_LIST": "127.0.0.1",
        "EPICS_CA_SERVER_PORT": str(port),
        "EPICS_CA_REPEATER_PORT": str(port + 1),
        "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
        "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1",
    }


class IocProcess:
    """The simulated beamline IOC (``python -m mc_beamline.sim_iocs``) as a child process.

    Parameters
    ----------
    prefix : PV prefix.
    data_dir : data directory of the IOC (detector files in ``<data_dir>/detector``).
    geometry, seed : passed to the IOC.
    port : CA server port; default: a free one (loopback only).
    """

    def __init__(self, prefix: str = "MC:", data_dir: str | os.PathLike = "mc-data", *,
                 geometry: str = "offaxis", seed: int | None = None, port: int | None = None):
        self.prefix = prefix
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.geometry = geometry
        self.seed = seed
        self.port = port or free_ca_port()
        self.client_env = loopback_ca_env(self.port)
        self.proc: subprocess.Popen | None = None
        self._tmp = None
        self._log = None
        self.info: dict = {}

    def command(self, ready_file: Path) -> list[str]:
        cmd = [sys.executable, "-m", "mc_beamline.sim_iocs", "--prefix", self.prefix,
               "--data-dir", str(self.data_dir), "--geometry", self.geometry, "--ready-file", str(ready_file)]
        if self.seed is not None:
            cmd += ["--seed", str(self.seed)]
        return cmd

    def start(self, timeout: float = 60.0) -> "IocProcess":
        """Start the IOC and wait until it serves; raise RuntimeError (with its stderr) if it fails."""
        return self.launch().wait_ready(timeout)

    def launch(self) -> "IocProcess":
        """Start the IOC process and return at once; :meth:`wait_ready` waits until it serves.

        Between the two the caller can set up what does not need the IOC (the IOC takes ~1.5 s
        to come up); it must :meth:`stop` it if that fails.
        """
        self._tmp = tempfile.TemporaryDirectory(prefix="mc-ioc-")
        tmp = Path(self._tmp.name)
        env = dict(os.environ)
        env.update(self.client_env)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
        self._log = open(tmp / "ioc.log", "w+b")
        self.proc = subprocess.Popen(self.command(tmp / "ready.json"), env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, cwd=str(_PACKAGE_ROOT))
        return self

    def wait_ready(self, timeout: float = 60.0) -> "IocProcess":
        """Wait until the launched IOC serves; raise RuntimeError (with its stderr) if it fails."""
        ready = Path(self._tmp.name) / "ready.json"
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.proc.poll() is not None:
                output = self.output()
                self.stop()
                raise RuntimeError(f"The simulated IOC exited with status {self.proc.returncode}: "
                                   f"{output.strip().splitlines()[-1] if output.strip() else 'no output'}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"The simulated IOC did not start within {timeout:.0f} s.")
            time.sleep(0.05)
        self.info = json.loads(ready.read_text())
        return self

    def output(self) -> str:
        """What the IOC printed so far."""
        if self._log is None or self._log.closed:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def apply_client_env(self) -> None:
        """Point this process's CA client at the IOC (before the first PV is created)."""
        os.environ.update(self.client_env)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the IOC (SIGTERM: it closes its capture file), kill it if it hangs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None) is not None and not self._log.closed:
            self._log.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "IocProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = ["IocProcess", "free_ca_port", "loopback_ca_env"]
