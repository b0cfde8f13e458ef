"""Log files of a data directory: one rotating file per process kind under ``DATA_DIR/logs``.

IPython sessions, the queue's RE worker and the analysis service each call
:func:`log_to_files` once; the loggers of mc_beamline, bluesky, ophyd and caproto write to
``DATA_DIR/logs/<name>.log`` (10 MB, five old files kept). Several processes of one kind
(two IPython sessions) append to the same file; each line names its process id.
"""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

LOGGERS = {"mc_beamline": logging.INFO, "bluesky": logging.INFO, "ophyd": logging.WARNING,
           "caproto": logging.WARNING}
"""The loggers that go to the file, and the level of each."""
MAX_BYTES = 10_000_000
"""Size of a log file before it is rotated (bytes)."""
BACKUPS = 5
"""Rotated files kept per log."""
FORMAT = "%(asctime)s %(levelname)s [%(process)d %(threadName)s] %(name)s: %(message)s"


def log_dir(data_dir: Path) -> Path:
    return Path(data_dir).expanduser().resolve() / "logs"


def log_to_files(data_dir: Path, name: str) -> Path:
    """Send the beamline's loggers to ``DATA_DIR/logs/<name>.log`` (rotating); returns the file.

    Calling it again for the same file adds no second handler.
    """
    path = log_dir(data_dir) / f"{name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    for logger_name, level in LOGGERS.items():
        logger = logging.getLogger(logger_name)
        if any(getattr(h, "baseFilename", None) == str(path) for h in logger.handlers):
            continue
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS)
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.setLevel(level)
        logger.addHandler(handler)
        if logger.getEffectiveLevel() > level or logger.level == logging.NOTSET:
            logger.setLevel(level)
    return path


__all__ = ["BACKUPS", "LOGGERS", "MAX_BYTES", "log_dir", "log_to_files"]
