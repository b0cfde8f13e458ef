"""Bounded, streamed reading of the text tables users give the commands.

A table file is read line by line (never whole into memory) after its size is checked
against :data:`MAX_TABLE_BYTES`; each line comes with its 1-based number so every
complaint can name the line. Bytes that are not UTF-8 are replaced, not fatal: a column
of numbers survives a Latin-1 degree sign in a header.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from mc_beamline.io.inputs import InputError

MAX_TABLE_BYTES = 64 * 2**20
"""Largest text table a command reads, bytes (64 MiB: some 2·10⁶ rows of three numbers)."""

_DECIMAL_COMMA = re.compile(r"^[-+]?\d+,\d+(?:[eE][-+]?\d+)?$")


def check_table_file(path: str | os.PathLike, what: str, max_bytes: int = MAX_TABLE_BYTES) -> Path:
    """``path`` as a Path if it is a readable file of at most ``max_bytes``; InputError if not.

    ``what`` names the file in the message (e.g. ``"Curve file"``).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} {path} does not exist.")
    if not path.is_file():
        raise InputError(f"{what} {path} is not a file.")
    size = path.stat().st_size
    if size > max_bytes:
        raise InputError(f"{what} {path} is {size / 2**20:.0f} MiB, more than the {max_bytes / 2**20:.0f} MiB "
                         "a text table may have; rebin or split it first.")
    if not os.access(path, os.R_OK):
        raise InputError(f"{what} {path} cannot be read (permission denied).")
    return path


def numbered_lines(path: Path, what: str) -> Iterator[tuple[int, str]]:
    """(line number, line without its end) for each line of the text file ``path``, streamed.

    A NUL byte in the first 4 KiB (a binary file) is an InputError; a leading UTF-8 byte
    order mark is dropped; undecodable bytes become U+FFFD.
    """
    try:
        with open(path, "rb") as f:
            if b"\x00" in f.read(4096):
                raise InputError(f"{what} {path} is binary, not a text table.")
            f.seek(0)
            for number, raw in enumerate(f, start=1):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if number == 1:
                    line = line.removeprefix("\ufeff")
                yield number, line
    except OSError as exc:
        raise InputError(f"{what} {path} cannot be read ({exc.strerror or exc}).") from None


def is_decimal_comma(token: str) -> bool:
    """Whether ``token`` is a number written with a decimal comma (``1,5``, ``-0,25e-3``)."""
    return bool(_DECIMAL_COMMA.match(token.strip()))


__all__ = ["MAX_TABLE_BYTES", "check_table_file", "is_decimal_comma", "numbered_lines"]
