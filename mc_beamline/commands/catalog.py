"""The catalog a command reads stored runs from: a data directory's or a running Tiled server's.

Commands that read stored runs (``results``, ``replay``, ``reprocess``) take either
``--data-dir DIR`` (an embedded Tiled server is started for it) or ``--tiled URI``. Both are
checked before any work: a data directory without a catalog, or a server that does not
answer within a few seconds, speaks another scheme, is not Tiled, or refuses (or was given
no) API key, is one sentence for the user saying what to fix, instead of a client that
retries for half a minute.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qsl, urlsplit

from mc_beamline.io.inputs import InputError

PROBE_TIMEOUT_S = 5.0
"""Longest wait (s) for a Tiled server's health check before a command gives up on it."""


def _api_key_of(uri: str) -> str | None:
    """The key a client of ``uri`` sends: its ``?api_key=``, else TILED_API_KEY (as `connect` does)."""
    for name, value in parse_qsl(urlsplit(uri).query):
        if name == "api_key":
            return value
    return os.environ.get("TILED_API_KEY") or None


def probe_tiled(uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """InputError, one sentence saying what to fix, unless ``uri`` is a Tiled server that takes our key.

    Checks in turn: the scheme (http/https), that something answers at the address within
    ``timeout_s``, that it speaks the scheme given, that it is a Tiled server, that a key is
    given, and that the server accepts it.
    """
    import httpx

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"--tiled {uri} is not an http:// or https:// address of a Tiled server "
                         "(e.g. http://127.0.0.1:8000, as `mc-beamline serve` prints it).")
    base = f"{parts.scheme}://{parts.netloc}{parts.path.split('/api/', 1)[0].rstrip('/')}"
    where = f"{parts.scheme}://{parts.netloc}"
    key = _api_key_of(uri)
    with httpx.Client(timeout=timeout_s, trust_env=False) as http:
        try:
            health = http.get(f"{base}/healthz")
        except httpx.ConnectError as exc:
            text = str(exc)
            if "SSL" in text or "TLS" in text:
                raise InputError(f"The server at {where} does not speak https; give --tiled http://"
                                 f"{parts.netloc}.") from None
            raise InputError(f"Nothing answers at {where} ({text or 'connection refused'}); check the host and "
                             "port of --tiled (`mc-beamline serve` prints its address).") from None
        except httpx.TimeoutException:
            raise InputError(f"The server at {where} did not answer within {timeout_s:g} s; check the host and "
                             "port of --tiled.") from None
        except httpx.RemoteProtocolError:
            raise InputError(f"The server at {where} does not speak {parts.scheme}; check the scheme and port "
                             "of --tiled.") from None
        except httpx.HTTPError as exc:
            raise InputError(f"The server at {where} cannot be reached ({type(exc).__name__}: {exc}).") from None
        if health.status_code != 200:
            raise InputError(f"{where} answers but is not a Tiled server (HTTP {health.status_code} for /healthz); "
                             "check the port of --tiled.")
        if key is None:
            raise InputError(f"The Tiled server at {where} needs an API key: add ?api_key=KEY to --tiled or set "
                             "TILED_API_KEY (the key is in DATA_DIR/tiled/api_key, or ask for a read-only one).")
        try:
            answer = http.get(f"{base}/api/v1/metadata/", headers={"Authorization": f"Apikey {key}"})
        except httpx.HTTPError as exc:
            raise InputError(f"The Tiled server at {where} stopped answering ({type(exc).__name__}).") from None
        if answer.status_code in (401, 403):
            raise InputError(f"The Tiled server at {where} refuses the API key given; use the key of its data "
                             "directory (DATA_DIR/tiled/api_key) or a read-only key from "
                             "`mc-beamline serve --create-readonly-key`.")


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
