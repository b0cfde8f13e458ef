"""Input a user gives the commands: the one error type for it, and the output-file check.

Every command reports unusable input (a missing file, a wrong shape, an output directory
that does not exist) by raising :class:`InputError` with one sentence for the user;
``mc_beamline.cli`` prints it on stderr and exits with 2. :func:`check_output` runs before
anything is read or computed, so a bad ``--out`` costs nothing.
"""

from __future__ import annotations

import os
from pathlib import Path


class InputError(ValueError):
    """Input that cannot be used; the message is one sentence saying why."""


def check_output(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a Path if a result file can be written there; InputError if not.

    ``what`` names the file in the message (e.g. ``"--out"``).
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {path} is a directory, not a file name.")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"Output directory {parent} of {what} {path} does not exist.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"Output directory {parent} is not writable.")
    return path


def short_reason(exc: BaseException) -> str:
    """An exception's message on one line without its final full stop (to quote in a sentence)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text.rstrip(".")


__all__ = ["InputError", "check_output", "short_reason"]
