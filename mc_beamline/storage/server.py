"""The embedded Tiled server of a data directory, and clients of it or of any server.

`TiledService` runs a real Tiled HTTP server for a data directory on 127.0.0.1 in a
background thread (the catalog: the data directory's SQLite file or the PostgreSQL database
it names, initialised on first use); `connect` gives a client either to such an embedded
server or to an existing server URI.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from mc_beamline.storage.data_dir import DataDir, catalog_dialect, redact_password, redact_uri
from mc_beamline.storage.key_guard import KeyGuard

BLUESKY_CATALOG_SPEC = {"name": "CatalogOfBlueskyRuns", "version": "3.0"}
"""Spec of the catalog root, so clients get bluesky conveniences (lookup by uid, scan_id)."""

JSON_SEQ_MIMETYPE = "application/json-seq"
"""Media type of the exporter behind ``BlueskyRun.documents()``."""

STARTUP_TIMEOUT_S = 20.0
"""Longest wait (s) for the embedded server to answer its health check."""

SHUTDOWN_TIMEOUT_S = 5.0
"""Longest wait (s) for open requests and websockets when the server stops."""

CATALOG_INIT_TIMEOUT_S = 60.0
"""Longest wait (s) for a new catalog's tables to be created (a PostgreSQL server may not answer)."""

CATALOG_MAX_OVERFLOW = 10
"""Connections a catalog's pool may open beyond its 5 (Tiled's default)."""

_pool_slots: set[tuple[str, int]] = set()
_pool_slots_lock = threading.Lock()


def _claim_pool_slot(catalog_uri: str) -> int:
    """A ``max_overflow`` for a new server on ``catalog_uri`` that no running server here uses.

    Tiled keeps one connection pool per database settings and process, and an asyncpg pool
    belongs to the event loop of the server that opened it: two servers of this process on
    one PostgreSQL catalog (each runs its own loop) must not share it. Distinct settings give
    each its own pool. Release with `_release_pool_slot`.
    """
    with _pool_slots_lock:
        overflow = CATALOG_MAX_OVERFLOW
        while (catalog_uri, overflow) in _pool_slots:
            overflow += 1
        _pool_slots.add((catalog_uri, overflow))
        return overflow


def _release_pool_slot(catalog_uri: str, overflow: int) -> None:
    with _pool_slots_lock:
        _pool_slots.discard((catalog_uri, overflow))


def _build_app(data_dir: DataDir, catalog_uri: str, api_key: str, max_overflow: int = CATALOG_MAX_OVERFLOW):
    """Build the Tiled ASGI app for a data directory (see `TiledService`)."""
    import hdf5plugin  # noqa: F401 - registers the Bitshuffle/LZ4 filter, so Tiled can serve detector frames
    from bluesky_tiled_plugins.exporters import json_seq_exporter
    from tiled.catalog import from_uri as catalog_from_uri
    from tiled.config import Authentication, StreamingCacheConfig
    from tiled.media_type_registration import default_serialization_registry
    from tiled.server.app import build_app

    if _needs_init(data_dir, catalog_uri):
        _initialise_catalog(catalog_uri)
    catalog = catalog_from_uri(
        catalog_uri,
        specs=[BLUESKY_CATALOG_SPEC],
        writable_storage=[data_dir.data, f"sqlite:///{data_dir.tables}"],
        readable_storage=[data_dir.detector],
        # In-memory cache of recent writes: enables live subscriptions over websockets.
        cache_config=StreamingCacheConfig(uri="memory").model_dump(),
        catalog_max_overflow=max_overflow,
    )
    serialization_registry = copy.deepcopy(default_serialization_registry)
    serialization_registry.register("BlueskyRun", JSON_SEQ_MIMETYPE, json_seq_exporter)
    logging.getLogger("tiled.server.app").setLevel(logging.WARNING)  # no version banner on stderr
    app = build_app(
        catalog,
        authentication=Authentication(single_user_api_key=api_key),
        serialization_registry=serialization_registry,
    )
    return KeyGuard(app, api_key, data_dir.readonly_keys_file)


def _needs_init(data_dir: DataDir, catalog_uri: str) -> bool:
    """Whether to run Tiled's catalog initialisation (`_initialise_catalog`).

    It is skipped only for the data directory's own SQLite catalog once that exists;
    any other catalog URI (e.g. PostgreSQL) is initialised if it is not yet.
    """
    own = catalog_uri == data_dir.sqlite_catalog_uri
    return not (own and data_dir.catalog.is_file() and data_dir.catalog.stat().st_size > 0)


_catalog_init_lock = threading.Lock()


def _initialise_catalog(catalog_uri: str) -> None:
    """Create Tiled's tables in a catalog database that has none and stamp their schema revision.

    What ``tiled catalog init --if-not-exists`` does, done in this process: Tiled itself runs
    that command as a Python subprocess, ~3 s of start-up for a new data directory or every
    start on PostgreSQL. It runs in a short-lived thread (its own event loop, whatever the
    caller's thread runs), one at a time (alembic's migration context is module state). A
    catalog that is already initialised is left as it is; one that cannot be reached or is
    of another schema version, or does not answer within :data:`CATALOG_INIT_TIMEOUT_S`,
    raises ConnectionError with the reason (password redacted).
    """
    failure: list[BaseException] = []

    def initialise() -> None:
        import asyncio

        from sqlalchemy.ext.asyncio import create_async_engine
        from tiled.alembic_utils import UninitializedDatabase, check_database, stamp_head
        from tiled.catalog.alembic_constants import ALEMBIC_DIR, ALEMBIC_INI_TEMPLATE_PATH
        from tiled.catalog.core import ALL_REVISIONS, REQUIRED_REVISION, initialize_database
        from tiled.utils import ensure_specified_sql_driver

        uri = ensure_specified_sql_driver(catalog_uri)

        async def create_if_missing() -> bool:
            engine = create_async_engine(uri)
            try:
                await check_database(engine, REQUIRED_REVISION, ALL_REVISIONS)
                return False
            except UninitializedDatabase:
                await initialize_database(engine)
                return True
            finally:
                await engine.dispose()

        try:
            if asyncio.run(create_if_missing()):
                stamp_head(ALEMBIC_INI_TEMPLATE_PATH, ALEMBIC_DIR, uri)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            failure.append(exc)

    with _catalog_init_lock:
        worker = threading.Thread(target=initialise, name="tiled-catalog-init", daemon=True)
        worker.start()
        worker.join(CATALOG_INIT_TIMEOUT_S)
    if worker.is_alive():
        failure.append(TimeoutError(f"no answer within {CATALOG_INIT_TIMEOUT_S:.0f} s"))
    if failure:
        lines = [line.strip() for line in str(failure[0]).splitlines() if line.strip()]
        reason = redact_password(lines[-1] if lines else type(failure[0]).__name__, catalog_uri)
        raise ConnectionError(f"The {catalog_dialect(catalog_uri)} catalog {redact_uri(catalog_uri)} could not "
                              f"be opened or initialised ({reason})") from None


class _ThreadedServer(uvicorn.Server):
    """A uvicorn server that runs in a thread and leaves signal handling to the main thread."""

    def install_signal_handlers(self) -> None:
        pass


class TiledService:
    """A Tiled HTTP server for one data directory, on 127.0.0.1, in a background thread.

    Use it as a context manager; leaving the context stops the server (otherwise the
    process would not exit).

    Parameters
    ----------
    data_dir
        Data directory (created if missing).
    port
        TCP port; 0 lets the operating system choose a free one.
    catalog_uri
        Catalog database URI, e.g. ``postgresql://user:pass@host/db`` (or
        ``postgresql+asyncpg://...``); default: the data directory's catalog
        (`DataDir.catalog_uri`: the one set with `DataDir.set_catalog_uri`, else its SQLite
        file). Tiled's tables are created in it if missing; a PostgreSQL database that cannot
        be reached or initialised raises ConnectionError at `start`.

    The server requires the data directory's API key, or a read-only key for reading, for
    every request but ``/healthz`` (`~mc_beamline.storage.key_guard.KeyGuard`), serves detector files under ``data_dir/detector`` and exports BlueskyRuns
    as ``application/json-seq`` so that ``run.documents()`` works.
    """

    def __init__(
        self, data_dir: str | Path | DataDir, port: int = 0, catalog_uri: str | None = None
    ) -> None:
        self.data_dir = data_dir if isinstance(data_dir, DataDir) else DataDir(data_dir)
        self.data_dir.create()
        self._api_key = self.data_dir.api_key()
        self._catalog_uri = catalog_uri or self.data_dir.catalog_uri
        if catalog_dialect(self._catalog_uri) == "postgresql" and self._catalog_uri.startswith("postgres://"):
            self._catalog_uri = "postgresql://" + self._catalog_uri[len("postgres://"):]
        self._port = port
        self._server: _ThreadedServer | None = None
        self._thread: threading.Thread | None = None
        self._uri: str | None = None
        self._pool_slot: int | None = None

    @property
    def uri(self) -> str:
        """Base URI of the running server, e.g. ``http://127.0.0.1:8000`` (no key in it)."""
        if self._uri is None:
            raise RuntimeError("The Tiled server is not running.")
        return self._uri

    @property
    def api_key(self) -> str:
        """API key that authorises reads and writes."""
        return self._api_key

    @property
    def catalog_uri(self) -> str:
        """URI of the catalog database this server uses (may hold a password)."""
        return self._catalog_uri

    @property
    def catalog_dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return catalog_dialect(self._catalog_uri)

    def client(self):
        """Return an authenticated Tiled client (a CatalogOfBlueskyRuns) for this server.

        Close it with ``client.context.close()`` (or ``with client.context:``) when done.
        """
        from tiled.client import from_uri

        return from_uri(self.uri, api_key=self.api_key, trust_env=False)

    def start(self) -> TiledService:
        """Start the server and wait until it answers; return self."""
        if self._thread is not None:
            raise RuntimeError("The Tiled server is already running.")
        self._pool_slot = _claim_pool_slot(self._catalog_uri)
        try:
            app = _build_app(self.data_dir, self._catalog_uri, self._api_key, self._pool_slot)
        except BaseException:
            self._release_pool()
            raise
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self._port,
            loop="asyncio",
            log_config=None,  # leave logging to the application; errors reach stderr
            access_log=False,
            timeout_graceful_shutdown=SHUTDOWN_TIMEOUT_S,
        )
        self._server = _ThreadedServer(config)
        self._thread = threading.Thread(
            target=self._server.run, name="tiled-server", daemon=True
        )
        self._thread.start()
        try:
            self._uri = self._wait_until_ready()
            self.data_dir.restrict()  # the catalog files the server just created
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> str:
        """Wait for the socket and for ``/healthz``; return the base URI."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        server, thread = self._server, self._thread
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("The Tiled server thread exited during start-up.")
            if time.monotonic() > deadline:
                raise TimeoutError("The Tiled server did not start in time.")
            time.sleep(0.02)
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        uri = f"http://{host}:{port}"
        with httpx.Client(trust_env=False) as http:
            while True:
                with contextlib.suppress(httpx.RequestError):
                    if http.get(f"{uri}/healthz", timeout=1.0).status_code == 200:
                        return uri
                if time.monotonic() > deadline:
                    raise TimeoutError("The Tiled server did not become ready in time.")
                time.sleep(0.02)

    def wait(self) -> None:
        """Block until the server stops; Ctrl-C in the main thread interrupts the wait."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)

    def stop(self) -> None:
        """Stop the server and wait for its thread to end (idempotent)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = self._uri = None
        self._release_pool()

    def _release_pool(self) -> None:
        if self._pool_slot is not None:
            _release_pool_slot(self._catalog_uri, self._pool_slot)
            self._pool_slot = None

    def __enter__(self) -> TiledService:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self._uri or "stopped"
        return f"<TiledService {self.data_dir.root} {state}>"


@contextlib.contextmanager
def connect(
    data_dir: str | Path | None = None, uri: str | None = None, api_key: str | None = None
) -> Iterator[Any]:
    """Yield a Tiled client for an existing server or for an embedded one.

    Parameters
    ----------
    data_dir
        Data directory to serve with an embedded `TiledService` for the duration of the
        context.
    uri
        URI of a running Tiled server (e.g. from ``mc-beamline serve``); exclusive with
        ``data_dir``.
    api_key
        API key for ``uri``; default: an ``?api_key=`` query in ``uri``, else the
        ``TILED_API_KEY`` environment variable.
    """
    if (data_dir is None) == (uri is None):
        raise ValueError("Give exactly one of data_dir and uri.")
    with contextlib.ExitStack() as stack:
        if uri is None:
            service = stack.enter_context(TiledService(data_dir))
            client = service.client()
        else:
            from tiled.client import from_uri

            if api_key is None and "api_key=" not in uri:
                api_key = os.environ.get("TILED_API_KEY")
            client = from_uri(uri, api_key=api_key)
        with client.context:  # closes the HTTP connections before the server stops
            yield client
