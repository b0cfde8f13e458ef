"""Storing runs: the TiledWriter, and the writer with a local backup.

`tiled_writer` builds the RunEngine subscriber that stores runs; `BackedUpTiledWriter` is
that subscriber with a local backup (runs Tiled could not take are kept in JSON Lines files
and sent when it answers again, `resend_backup`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np

DEFAULT_BATCH_SIZE = 100
"""Events and StreamDatums the TiledWriter collects before one write (see `tiled_writer`)."""


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
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._file = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a", encoding="utf-8")
        self._unwritten: list[str] = []

    def __call__(self, name: str, doc: dict) -> None:
        """Append one document; if the disk refuses, it is kept and written with the next one.

        Raises OSError while documents wait (a full disk): they are lost only if the
        process ends before space returns, and no partial line is left in the file.
        """
        self._unwritten.append(self._dumps({"name": name, "doc": doc}) + "\n")
        self.flush()
        if name == "stop":
            self.close()

    def flush(self) -> None:
        """Write the documents kept back (OSError if the disk still refuses them)."""
        while self._unwritten:
            line = self._unwritten[0]
            offset = self._file.tell()
            try:
                self._file.write(line)
                self._file.flush()
            except OSError:
                self._file = _truncated(self._file, self.path, offset)
                raise
            self._unwritten.pop(0)

    def close(self) -> None:
        if not self._file.closed and not self._unwritten:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()


def _truncated(file, path: Path, size: int):
    """``file`` reopened on ``path`` cut back to ``size`` bytes (a line the disk took only in part is removed)."""
    try:
        file.close()
    except OSError:  # its buffer could not be written either; that is the part cut off
        pass
    os.truncate(path, size)
    return open(path, "a", encoding="utf-8")


class _GuardedRun:
    """One run: documents go to Tiled; from the first failure on, the whole run goes to a backup file."""

    def __init__(self, owner: "BackedUpTiledWriter", uid: str, primary: Any | None) -> None:
        self._owner = owner
        self.uid = uid
        self.primary = primary
        self._seen: list[tuple[str, dict]] = []
        self.backup: _BackupFile | None = None
        self._file_error = False
        if primary is None:
            self._to_backup()

    def _to_backup(self) -> None:
        self.backup = _BackupFile(self._owner.backup_dir / f"{self.uid}.jsonl")
        seen, self._seen = self._seen, []
        for name, doc in seen:
            self._to_file(name, doc)

    def _to_file(self, name: str, doc: dict) -> None:
        try:
            self.backup(name, doc)
        except OSError as exc:  # a full disk must not stop the scan; the documents wait in memory
            if not self._file_error:
                logger.error("The backup of run %s cannot be written (%s); its documents are kept in memory "
                             "until the disk takes them.", self.uid[:8], exc)
                self._file_error = True
        else:
            self._file_error = False

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
        self._to_file(name, doc)

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
        """Backup files of finished runs that are not yet in Tiled, oldest first.

        An empty file (its run's documents never reached the disk) holds nothing to send:
        it is removed with one warning instead of being tried again forever.
        """
        active = {run.uid for run in list(self._open.values())}
        files = []
        for path in self.backup_dir.glob("*.jsonl"):
            if path.stem in active:
                continue
            if path.stat().st_size == 0:
                logger.warning("The backup %s is empty (the disk took none of its run's documents); removed.", path)
                path.unlink(missing_ok=True)
                continue
            files.append(path)
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
