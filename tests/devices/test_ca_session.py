"""The CA client's end at interpreter exit: caproto's threads end quietly after the disconnect."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import threading
from caproto import CaprotoNetworkError
from mc_beamline.devices.ca_session import quiet_network_errors_in_threads

def fail(exc):
    def run():
        raise exc
    t = threading.Thread(target=run, name="retry")
    t.start()
    t.join()

fail(CaprotoNetworkError("before: Bad file descriptor while sending"))
quiet_network_errors_in_threads()
fail(CaprotoNetworkError("after: Bad file descriptor while sending"))
fail(ValueError("not a network error"))
"""


def test_network_errors_in_threads_are_quiet_after_the_disconnect_and_others_are_not():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "before: Bad file descriptor" in done.stderr  # Python's own report, until the hook is set
    assert "after: Bad file descriptor" not in done.stderr
    assert "ValueError: not a network error" in done.stderr
