"""How live analyses record an exception: an entry stored with the results, and a log line.

An error in a live analysis never reaches the RunEngine; it is kept (``where`` it happened,
the event's ``seq_num``, the message and a short traceback) and stored next to the results.
"""

from __future__ import annotations

import logging
import traceback


def record_error(errors: list[dict], logger: logging.Logger, what: str, where: str, exc: BaseException,
                 seq_num: int | None = None) -> dict:
    """Append the entry for ``exc`` (raised in ``where``, event ``seq_num``) to ``errors`` and log it.

    Call from the ``except`` block, so that the traceback is the exception's. ``what`` names
    the analysis and run in the log line (e.g. "XCCA of run 1a2b3c4d").
    """
    entry = {"where": where, "seq_num": seq_num, "message": f"{type(exc).__name__}: {exc}",
             "traceback": traceback.format_exc(limit=5)}
    errors.append(entry)
    logger.error("%s, %s%s: %s", what, where, "" if seq_num is None else f" (event {seq_num})", entry["message"])
    return entry
