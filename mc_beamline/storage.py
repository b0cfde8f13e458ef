"""Embedded storage: a Tiled server per data directory, the TiledWriter, and replay.

A data directory holds everything a beamline session stores::

    <root>/tiled/catalog.db      SQLite catalog (metadata, run structure, data-source records)
    <root>/tiled/catalog_uri     optional: URI of a PostgreSQL catalog used instead (mode 0600)
    <root>/tiled/tables.sqlite   SQLite tabular storage (event tables written by TiledWriter)
    <root>/tiled/data/           Tiled writable file storage (zarr arrays written by TiledWriter)
    <root>/tiled/api_key         the server's single-user API key (mode 0600, reused on restart)
    <root>/detector/             detector HDF5 files; readable storage, so Tiled serves them

`TiledService` runs a real Tiled HTTP server for a data directory on 127.0.0.1 in a
background thread; `connect` gives a client either to such an embedded server or to an
existing server URI; `tiled_writer` builds the RunEngine subscriber that stores runs;
`BackedUpTiledWriter` is that subscriber with a local backup (runs Tiled could not take are
kept in JSON Lines files and sent when it answers again, `resend_backup`);
`run_documents` and `read_stream_array` read stored runs back.

The catalog is the data directory's SQLite file unless the data directory names another
catalog database (`DataDir.set_catalog_uri`, e.g. ``postgresql://user:pass@host:5432/db``
for a beamline where many processes read and write at once): then every server started for
that data directory (`TiledService`, `connect`, the command line) uses that database,
initialising it on first use. Event tables stay in the data directory's SQLite tabular
storage and arrays in its file storage with either catalog.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn

BLUESKY_CATALOG_SPEC = {"name": "CatalogOfBlueskyRuns", "version": "3.0"}
"""Spec of the catalog root, so clients get bluesky conveniences (lookup by uid, scan_id)."""

JSON_SEQ_MIMETYPE = "application/json-seq"
"""Media type of the exporter behind ``BlueskyRun.documents()``."""

DEFAULT_BATCH_SIZE = 100
"""Events and StreamDatums the TiledWriter collects before one write (see `tiled_writer`)."""

STARTUP_TIMEOUT_S = 20.0
"""Longest wait (s) for the embedded server to answer its health check."""

SHUTDOWN_TIMEOUT_S = 5.0
"""Longest wait (s) for open requests and websockets when the server stops."""

CATALOG_SCHEMES = ("sqlite", "postgresql", "postgres")
"""Database schemes a catalog URI may use (an optional ``+driver`` suffix is allowed)."""


def catalog_dialect(uri: str) -> str:
    """``"sqlite"`` or ``"postgresql"`` for a catalog URI; ValueError for anything else.

    ``postgresql://``, ``postgres://`` and ``postgresql+asyncpg://`` are all PostgreSQL (the
    server adds the asyncpg driver when none is given).
    """
    scheme = str(uri).split("://", 1)[0].split("+", 1)[0].lower() if "://" in str(uri) else ""
    if scheme not in CATALOG_SCHEMES:
        raise ValueError(f"Catalog URI {redact_uri(str(uri))} is neither sqlite:/// nor postgresql://.")
    return "postgresql" if scheme.startswith("postgres") else "sqlite"


def redact_uri(uri: str) -> str:
    """The URI with any password replaced by ``***`` (for messages and logs)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(uri)
        if parts.password is None:
            return uri
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparsable URI>"


@dataclass(frozen=True)
class DataDir:
    """Layout of a data directory (all paths absolute).

    Parameters
    ----------
    root
        Top directory; relative paths are resolved against the working directory and
        symbolic links are resolved, so paths stored in the catalog are canonical.
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())

    @property
    def tiled(self) -> Path:
        """Directory of the Tiled server's own files."""
        return self.root / "tiled"

    @property
    def catalog(self) -> Path:
        """SQLite catalog database file."""
        return self.tiled / "catalog.db"

    @property
    def tables(self) -> Path:
        """SQLite tabular storage file (event tables)."""
        return self.tiled / "tables.sqlite"

    @property
    def data(self) -> Path:
        """Tiled writable file storage (arrays written through Tiled)."""
        return self.tiled / "data"

    @property
    def detector(self) -> Path:
        """Where detectors write their HDF5 files; served by Tiled as readable storage."""
        return self.root / "detector"

    @property
    def api_key_file(self) -> Path:
        """File holding the server's API key."""
        return self.tiled / "api_key"

    @property
    def sqlite_catalog_uri(self) -> str:
        """URI of the data directory's own SQLite catalog file."""
        return f"sqlite:///{self.catalog}"

    @property
    def catalog_uri_file(self) -> Path:
        """File naming another catalog database (see `set_catalog_uri`); absent: SQLite."""
        return self.tiled / "catalog_uri"

    @property
    def catalog_uri(self) -> str:
        """Catalog URI of this data directory: the one set by `set_catalog_uri`, else its SQLite file."""
        path = self.catalog_uri_file
        if path.is_file():
            uri = path.read_text().strip()
            if uri:
                return uri
        return self.sqlite_catalog_uri

    def set_catalog_uri(self, uri: str | None) -> DataDir:
        """Make ``uri`` (e.g. ``postgresql://user:pass@host:5432/db``) this data directory's catalog.

        The URI is kept in ``tiled/catalog_uri`` (mode 0600: it may hold a password); None or
        the SQLite URI of the data directory goes back to the SQLite catalog. The database
        itself must exist; the server initialises Tiled's tables in it on first use.
        Returns self.
        """
        path = self.catalog_uri_file
        if uri is None or uri == self.sqlite_catalog_uri:
            path.unlink(missing_ok=True)
            return self
        catalog_dialect(uri)
        self.tiled.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(uri.strip() + "\n")
        os.replace(tmp, path)
        return self

    def has_catalog(self) -> bool:
        """Whether this data directory has a catalog (its SQLite file, or a catalog URI set)."""
        return self.catalog_uri != self.sqlite_catalog_uri or (
            self.catalog.is_file() and self.catalog.stat().st_size > 0
        )

    def create(self) -> DataDir:
        """Create the directories if missing; return self."""
        for directory in (self.data, self.detector):
            directory.mkdir(parents=True, exist_ok=True)
        return self

    def api_key(self) -> str:
        """Return the API key, generating it (hex, 256 bit, file mode 0600) on first use."""
        path = self.api_key_file
        if not path.exists():
            self.tiled.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        return path.read_text().strip()


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
    from bluesky_tiled_plugins.exporters import json_seq_exporter
    from tiled.catalog import from_uri as catalog_from_uri
    from tiled.catalog.adapter import DatabaseInitializationError
    from tiled.config import Authentication, StreamingCacheConfig
    from tiled.media_type_registration import default_serialization_registry
    from tiled.server.app import build_app

    dialect = catalog_dialect(catalog_uri)
    try:
        catalog = catalog_from_uri(
            catalog_uri,
            specs=[BLUESKY_CATALOG_SPEC],
            init_if_not_exists=_needs_init(data_dir, catalog_uri),
            writable_storage=[data_dir.data, f"sqlite:///{data_dir.tables}"],
            readable_storage=[data_dir.detector],
            # In-memory cache of recent writes: enables live subscriptions over websockets.
            cache_config=StreamingCacheConfig(uri="memory").model_dump(),
            catalog_max_overflow=max_overflow,
        )
    except DatabaseInitializationError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else "no reason given"
        raise ConnectionError(f"The {dialect} catalog {redact_uri(catalog_uri)} could not be opened "
                              f"or initialised ({reason})") from None
    serialization_registry = copy.deepcopy(default_serialization_registry)
    serialization_registry.register("BlueskyRun", JSON_SEQ_MIMETYPE, json_seq_exporter)
    logging.getLogger("tiled.server.app").setLevel(logging.WARNING)  # no version banner on stderr
    return build_app(
        catalog,
        authentication=Authentication(single_user_api_key=api_key),
        serialization_registry=serialization_registry,
    )


def _needs_init(data_dir: DataDir, catalog_uri: str) -> bool:
    """Whether to run Tiled's catalog initialisation (a ~3 s subprocess).

    It is skipped only for the data directory's own SQLite catalog once that exists;
    any other catalog URI (e.g. PostgreSQL) is initialised if it is not yet.
    """
    own = catalog_uri == data_dir.sqlite_catalog_uri
    return not (own and data_dir.catalog.is_file() and data_dir.catalog.stat().st_size > 0)


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

    The server requires the data directory's API key for every request (no anonymous
    access), serves detector files under ``data_dir/detector`` and exports BlueskyRuns
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


def tiled_writer(client: Any, batch_size: int = DEFAULT_BATCH_SIZE):
    """Return a TiledWriter that stores every run it receives through ``client``.

    Subscribe it to a RunEngine (``RE.subscribe(tiled_writer(client))``); it is called
    synchronously, so every write delays the scan by one HTTP round trip.

    Parameters
    ----------
    client
        Authenticated Tiled client of the catalog root.
    batch_size
        Events (table rows) and StreamDatums collected before one write. Each write costs
        about 30-40 ms per stream (table) and per external field (data-source update);
        everything left is written at the stop document. Use 1 when readers must see
        every point while the scan runs (live subscriptions).

    Notes
    -----
    ``max_array_size=0`` stores every array-valued field of an event (e.g. a 4-element
    ROI) as its own zarr array: the SQLite tabular storage has no list columns (HTTP 500
    "Unsupported PyArrow type: list<...>" with the TiledWriter default of 16).
    """
    from bluesky_tiled_plugins import TiledWriter

    return TiledWriter(client, batch_size=batch_size, max_array_size=0)


def run_documents(client: Any, uid: str) -> Iterator[tuple[str, dict]]:
    """Yield the ``(name, doc)`` pairs of stored run ``uid``, start first and stop last.

    External data come back as StreamResource/StreamDatum even if written as
    Resource/Datum; event uids are synthesised by the server.
    """
    yield from client[uid].documents()


def read_stream_array(
    client: Any, uid: str, field: str, stream: str = "primary"
) -> np.ndarray:
    """Read one field of a stored stream as an array, first axis = event (seq_num - 1).

    For external detector data (e.g. ``det_image``) this is the frame stack as the
    detector wrote it, e.g. shape (n_events, ny, nx) and its native dtype.
    """
    return np.asarray(client[uid][stream][field].read())


# --------------------------------------------------------------------------- backups
BACKUP_RETRY_S = 10.0
"""Seconds between two attempts to resend backed-up runs while Tiled is unreachable."""

PROBE_TIMEOUT_S = 2.0
"""Longest wait (s) for Tiled's health check before a run is started in the backup."""

logger = logging.getLogger(__name__)


def _json_default(value: Any) -> Any:
    """JSON encoding of what documents may carry besides JSON types: numpy values and bytes."""
    if isinstance(value, bytes):
        import base64

        return {"__bytes__": base64.b64encode(value).decode("ascii")}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class _BackupFile:
    """The documents of one run, one JSON object ``{"name", "doc"}`` per line, fsynced at the stop."""

    def __init__(self, path: Path) -> None:
        import json

        self._dumps = lambda obj: json.dumps(obj, default=_json_default)
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")

    def __call__(self, name: str, doc: dict) -> None:
        self._file.write(self._dumps({"name": name, "doc": doc}) + "\n")
        self._file.flush()
        if name == "stop":
            self.close()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()


class _GuardedRun:
    """One run: documents go to Tiled; from the first failure on, the whole run goes to a backup file."""

    def __init__(self, owner: "BackedUpTiledWriter", uid: str, primary: Any | None) -> None:
        self._owner = owner
        self.uid = uid
        self.primary = primary
        self._seen: list[tuple[str, dict]] = []
        self.backup: _BackupFile | None = None
        if primary is None:
            self._to_backup()

    def _to_backup(self) -> None:
        self.backup = _BackupFile(self._owner.backup_dir / f"{self.uid}.jsonl")
        for name, doc in self._seen:
            self.backup(name, doc)
        self._seen.clear()

    def __call__(self, name: str, doc: dict) -> None:
        if self.primary is not None:
            self._seen.append((name, doc))
            try:
                self.primary(name, doc)
            except Exception as exc:  # noqa: BLE001 - the scan must go on; the run is kept locally
                logger.error("Tiled did not take the %s document of run %s (%s: %s); the run is kept in %s "
                             "and will be sent when Tiled answers again.", name, self.uid[:8],
                             type(exc).__name__, exc, self._owner.backup_dir)
                self.primary = None
                self._to_backup()
            return
        try:
            self.backup(name, doc)
        except Exception:  # noqa: BLE001 - a full disk must not stop the scan either
            logger.exception("Could not write the %s document of run %s to the backup.", name, self.uid[:8])

    def close(self) -> None:
        if self.backup is not None:
            self.backup.close()


class BackedUpTiledWriter:
    """A RunEngine subscriber that stores runs in Tiled and never loses one when Tiled is away.

    Each run goes through its own TiledWriter (see `tiled_writer`). If Tiled does not answer
    its health check when the run starts, or a write fails during the run, every document of
    that run (those already sent too) is appended to ``backup_dir/<start uid>.jsonl``; the
    scan itself is never interrupted. Backed-up runs are sent again by :meth:`resend`, which
    a background thread calls every ``retry_s`` seconds and after each run; a partial copy of
    the run left in Tiled is replaced. Sent files move to ``backup_dir/sent/``.

    Parameters
    ----------
    client
        Authenticated Tiled client of the catalog root, or the server's URI: then the
        client is made (with ``api_key``) when the server first answers, so that a session
        can start while Tiled is down.
    backup_dir
        Directory of the backup files (created if missing).
    api_key
        API key, with a URI for ``client``.
    batch_size
        Passed to `tiled_writer`.
    retry_s
        Seconds between resend attempts; ``None``: no background thread (call :meth:`resend`).
    """

    def __init__(self, client: Any, backup_dir: str | Path, *, api_key: str | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE, retry_s: float | None = BACKUP_RETRY_S) -> None:
        from event_model import RunRouter

        if isinstance(client, str):
            self._root, self._api_key, self._client = client.rstrip("/"), api_key, None
            with contextlib.suppress(Exception):
                if self.reachable():
                    self._connect()
        else:
            self._root, self._api_key, self._client = client.uri.split("/api/v1", 1)[0], None, client
        self.backup_dir = Path(backup_dir).expanduser().resolve()
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        self.batch_size = batch_size
        self._router = RunRouter([self._factory])
        self._open: dict[str, _GuardedRun] = {}
        self._resend_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        if retry_s is not None:
            self._thread = threading.Thread(target=self._resend_loop, args=(float(retry_s),),
                                            name="tiled-backup-resend", daemon=True)
            self._thread.start()

    # ----------------------------------------------------------------- writing
    @property
    def client(self) -> Any | None:
        """The Tiled client (None while the server has not answered yet)."""
        return self._client

    def _connect(self) -> Any:
        if self._client is None:
            from tiled.client import from_uri

            self._client = from_uri(self._root, api_key=self._api_key, trust_env=False)
        return self._client

    def _factory(self, name: str, start_doc: dict):
        try:
            primary = tiled_writer(self._connect(), self.batch_size) if self.reachable() else None
            if primary is None:
                logger.warning("Tiled is not reachable: run %s is kept in %s until it is.", start_doc["uid"][:8],
                               self.backup_dir)
        except Exception:  # noqa: BLE001 - never abort the scan because of storage
            logger.exception("Could not set up the TiledWriter for run %s.", start_doc["uid"][:8])
            primary = None
        run = _GuardedRun(self, start_doc["uid"], primary)
        self._open[run.uid] = run
        return [run], []

    def __call__(self, name: str, doc: dict) -> None:
        try:
            self._router(name, doc)
        except Exception:  # noqa: BLE001 - storage never aborts a scan
            logger.exception("The %s document could not be routed to storage.", name)
        if name == "stop":
            run = self._open.pop(doc.get("run_start"), None)
            if run is not None:
                run.close()
                if run.backup is None and self.pending():
                    self._wake.set()  # Tiled took this run: a good moment to send the older ones

    def reachable(self, timeout: float = PROBE_TIMEOUT_S) -> bool:
        """Whether the Tiled server answers its health check within ``timeout`` seconds."""
        try:
            with httpx.Client(trust_env=False, timeout=timeout) as http:
                return http.get(f"{self._root}/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    # --------------------------------------------------------------- resending
    def pending(self) -> list[Path]:
        """Backup files of finished runs that are not yet in Tiled, oldest first."""
        active = {run.uid for run in list(self._open.values())}
        files = [p for p in self.backup_dir.glob("*.jsonl") if p.stem not in active]
        return sorted(files, key=lambda p: p.stat().st_mtime)

    def resend(self) -> list[str]:
        """Send the pending backups to Tiled; return the uids now stored (the others stay pending)."""
        sent: list[str] = []
        with self._resend_lock:
            files = self.pending()
            if not files or not self.reachable():
                return sent
            for path in files:
                try:
                    uid = resend_backup(self._connect(), path, batch_size=self.batch_size)
                except Exception as exc:  # noqa: BLE001 - stays pending, tried again later
                    logger.warning("Resending %s failed (%s: %s); it stays in the backup.", path.name,
                                   type(exc).__name__, exc)
                    break
                done = self.backup_dir / "sent"
                done.mkdir(exist_ok=True)
                os.replace(path, done / path.name)
                logger.info("Run %s was sent from the backup to Tiled.", uid[:8])
                sent.append(uid)
        return sent

    def _resend_loop(self, period: float) -> None:
        while not self._stop.is_set():
            self._wake.wait(period)
            self._wake.clear()
            if self._stop.is_set():
                return
            with contextlib.suppress(Exception):
                self.resend()

    def close(self) -> None:
        """Stop the resend thread and close open backup files (runs in progress stay resumable)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for run in self._open.values():
            run.close()


def read_backup(path: str | Path) -> list[tuple[str, dict]]:
    """The ``(name, doc)`` pairs of a backup file written by `BackedUpTiledWriter`."""
    import base64
    import json

    def decode(obj: dict) -> Any:
        if len(obj) == 1 and "__bytes__" in obj:
            return base64.b64decode(obj["__bytes__"])
        return obj

    docs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                item = json.loads(line, object_hook=decode)
                docs.append((item["name"], item["doc"]))
    return docs


def resend_backup(client: Any, path: str | Path, *, batch_size: int = DEFAULT_BATCH_SIZE) -> str:
    """Write the run of backup file ``path`` to Tiled; return its uid.

    A copy of the run already in Tiled is kept if it is complete (has its stop document)
    and is otherwise deleted and written again from the backup. Detector files are never
    deleted (they are external data in the readable storage).
    """
    docs = read_backup(path)
    if not docs or docs[0][0] != "start":
        raise ValueError(f"{path} does not start with a start document.")
    uid = docs[0][1]["uid"]
    if uid in client:
        if client[uid].metadata.get("stop") is not None:
            return uid
        client[uid].delete(recursive=True, external_only=False)
    writer = tiled_writer(client, batch_size)
    for name, doc in docs:
        writer(name, doc)
    return uid
