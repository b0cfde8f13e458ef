"""Processes the queue starts: whether one still runs, and whether it is still the one we started.

Each started process is recorded as ``{"pid": PID, "marker": TEXT}``, the marker a piece of
its command line (an address, a port), so that a pid reused by another program after a
reboot or a crash is not taken for ours.
"""

from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int | None) -> bool:
    """Whether process ``pid`` runs (a zombie does not; one of ours is reaped)."""
    if not pid:
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    except OSError:  # pragma: no cover - no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True


def command_line(pid: int) -> str:
    """The command line of process ``pid`` (arguments joined by spaces; empty if it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def open_log(path: Path):
    """``path`` opened for appending a process's console, mode 0600 (also an older log): the
    RE Manager's console shows the Redis address with its password."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")


def is_ours(entry: dict | None) -> bool:
    """The recorded process still runs and is the one we started (the pid was not reused)."""
    return bool(entry) and alive(entry.get("pid")) and entry.get("marker", "") in command_line(entry["pid"])


__all__ = ["alive", "command_line", "is_ours", "open_log"]
