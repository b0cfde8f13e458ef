"""The catalog a command reads stored runs from: a data directory's or a running Tiled server's.

Commands that read stored runs (``results``, ``replay``, ``reprocess``) take either
``--data-dir DIR`` (an embedded Tiled server is started for it) or ``--tiled URI``. Both are
checked before any work: a data directory without a catalog, or a server that does not
answer its health check within a few seconds, is one sentence for the user instead of a
client that retries for half a minute.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

from mc_beamline.io.inputs import InputError

PROBE_TIMEOUT_S = 5.0
"""Longest wait (s) for a Tiled server's health check before a command gives up on it."""


def probe_tiled(uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """InputError unless the Tiled server of ``uri`` answers its health check."""
    import httpx

    parts = urlsplit(uri)
    health = f"{parts.scheme}://{parts.netloc}{parts.path.split('/api/', 1)[0].rstrip('/')}/healthz"
    try:
        httpx.get(health, timeout=timeout_s, trust_env=False).raise_for_status()
    except httpx.HTTPError as exc:
        raise InputError(f"The Tiled server at {uri} does not answer ({type(exc).__name__}: {exc}).") from None


@contextlib.contextmanager
def open_catalog(data_dir: Path | None, tiled: str | None, what: str = "the run") -> Iterator[Any]:
    """A Tiled client of ``tiled`` (a server URI) if given, else of data directory ``data_dir``.

    ``what`` names what the user looks for, in the message for a data directory without a
    catalog (e.g. ``"the runs"``).
    """
    import httpx

    from mc_beamline.storage import DataDir, connect

    if tiled is None:
        data_dir = Path(data_dir).resolve()
        if not DataDir(data_dir).has_catalog():
            raise InputError(f"{data_dir} holds no catalog; give the data directory of {what} (--data-dir).")
        source = {"data_dir": data_dir}
    else:
        probe_tiled(tiled)
        source = {"uri": tiled}
    try:
        catalog = connect(**source)
        client = catalog.__enter__()
    except httpx.HTTPError as exc:
        raise InputError(f"The Tiled server at {tiled} does not answer ({type(exc).__name__}: {exc}).") from None
    try:
        yield client
    finally:
        catalog.__exit__(None, None, None)


__all__ = ["PROBE_TIMEOUT_S", "open_catalog", "probe_tiled"]
