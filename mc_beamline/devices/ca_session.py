"""The Channel Access client's end: quiet when an IOC dies and when the interpreter exits.

Two sources of traceback floods, neither of them news for the user:

* When a script that used the devices exits, Python shuts its thread pools down before
  the CA client's threads stop; every CA packet still arriving then logs "cannot schedule
  new futures after interpreter shutdown" with a traceback. :func:`close_at_exit` disconnects
  the client first (at the same stage of shutdown at which Tiled closes its clients).
  Caproto's search-retry thread may still send on a socket the disconnect closed; that
  network error ends the thread quietly (:func:`quiet_network_errors_in_threads`).
* When an IOC dies mid-run, caproto, ophyd and bluesky each log the consequences with a
  traceback, hundreds of lines around the one message that matters.
  :func:`one_line_logging` prints each warning of those libraries as one line, each
  distinct line once (the run's own error still says what failed).
"""

from __future__ import annotations

import logging
import sys
import threading

NOISY_LOGGERS = ("caproto", "ophyd", "bluesky")
"""Loggers whose records :func:`one_line_logging` shortens."""

_closing_registered = False


def _disconnect_ca() -> None:
    for name in ("caproto", "ophyd"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    from caproto.threading.pyepics_compat import PV

    quiet_network_errors_in_threads()
    PV.default_context().disconnect(wait=False)


def quiet_network_errors_in_threads() -> None:
    """From now on a caproto network error ends its thread without a traceback.

    Called as the CA client disconnects at exit: its search-retry thread may still send on a
    socket the disconnect has just closed ("Bad file descriptor"), which Python would print as
    an unhandled exception in that thread after everything else has finished cleanly. Other
    exceptions in threads still reach the previous ``threading.excepthook``.
    """
    from caproto import CaprotoNetworkError

    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is not None and issubclass(args.exc_type, CaprotoNetworkError):
            return
        previous(args)

    threading.excepthook = hook


def close_at_exit() -> None:
    """Disconnect the CA client when the interpreter exits, before its thread pools stop (idempotent)."""
    global _closing_registered
    if not _closing_registered:
        # run before concurrent.futures' exit hook: these hooks run last registered first
        threading._register_atexit(_disconnect_ca)
        _closing_registered = True


class _OneLineFormatter(logging.Formatter):
    """``logger: message (ExceptionType: reason)`` without the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text += f" ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
        return text.splitlines()[0] if text else text


class _Once(logging.Filter):
    """Let each distinct formatted line through once."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = f"{record.name}:{record.getMessage()}"[:300]
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


def one_line_logging(level: int = logging.ERROR, stream=None) -> logging.Handler:
    """Print records of :data:`NOISY_LOGGERS` at ``level`` and above as single lines, each once.

    For commands (e.g. ``mc-beamline demo``), not for sessions that configure logging
    themselves. Returns the handler (remove it from the loggers to undo).
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_OneLineFormatter())
    handler.addFilter(_Once())
    handler.setLevel(level)
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.propagate = False
    return handler


__all__ = ["NOISY_LOGGERS", "close_at_exit", "one_line_logging", "quiet_network_errors_in_threads"]
