"""Re-analyse many stored raster runs with Dask and store the results in Tiled (`mc-beamline reprocess`).

Each run is replayed exactly as ``mc-beamline replay`` does (its documents from Tiled through
the live XCCA callback, frames from the detector files or, where those are not readable,
from Tiled), one run per Dask task; a task connects to the Tiled server itself, so workers
can be local processes (a ``LocalCluster``, the default) or machines behind any scheduler
address. The result is stored like the live one, as a derived run naming the raw run
(`mc_beamline.callbacks.xcca_results`), with ``mc_beamline.reprocessed = true`` in its start
document.

Reprocessing is idempotent: the derived run of a reprocessing has a uid fixed by the raw
run's uid (`reprocessed_uid`), so running it again leaves complete results alone (``force``
replaces them) and replaces a derived run left incomplete by an interrupted reprocessing.

Selecting runs (`find_runs`): explicit uids, and/or ``KEY=VALUE`` terms on the start
document (dotted keys, e.g. ``mc_beamline.scan_shape=[9,13]``, ``sample=seed-000``; a value
that parses as JSON is compared as such, anything else as text) and a time range on the
start time. Only raster runs are taken (derived runs and other experiments are never
reprocessed).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


from .callbacks.live_xcca import is_raster_run
from .callbacks.xcca_results import ANALYSIS_NAME
from .replay import RunNotFoundError, _plain, _raw_run, replay_live
from .storage import tiled_writer

logger = logging.getLogger(__name__)

REPROCESS_NAMESPACE = uuid.UUID("6f1f3f0e-5d0b-4b8e-9a57-2f6a0c1d8e42")
"""Namespace of the uids of reprocessed derived runs (uuid5 of the raw uid)."""

RUN_TIMEOUT_S = 1800.0
"""Longest replay of one run (s)."""

WRITE_LOCK_NAME = "mc-beamline-reprocess-tiled-writes"
"""Name of the Dask lock that serialises the workers' writes to Tiled."""

SCHEDULER_TIMEOUT_S = 10.0
"""Longest wait (s) for a Dask scheduler given by address to answer."""


class QueryError(ValueError):
    """A ``--query``/``--since``/``--until`` term that cannot be understood."""


# ------------------------------------------------------------------ selecting runs
@dataclass
class RunQuery:
    """Which stored runs to reprocess.

    Attributes
    ----------
    equals : start-document key (dotted) -> value the run must have.
    since, until : start time range, Unix seconds (``since`` inclusive, ``until`` exclusive).
    """

    equals: dict[str, Any] = field(default_factory=dict)
    since: float | None = None
    until: float | None = None

    @classmethod
    def parse(cls, terms: Sequence[str] = (), since: str | None = None, until: str | None = None) -> RunQuery:
        """Build a query from ``KEY=VALUE`` terms and time bounds (ISO 8601 or Unix seconds)."""
        equals: dict[str, Any] = {}
        for term in terms:
            key, sep, text = term.partition("=")
            key = key.strip()
            if not sep or not key or any(not part for part in key.split(".")):
                raise QueryError(f"Query term {term!r} is not KEY=VALUE (e.g. sample=seed-000).")
            if key.startswith(("start.", "stop.")):
                raise QueryError(f"Query key {key!r}: give the start-document key without 'start.'/'stop.'.")
            try:
                value = json.loads(text)
            except ValueError:
                value = text
            equals[key] = value
        query = cls(equals, parse_time(since, "--since"), parse_time(until, "--until"))
        if query.since is not None and query.until is not None and query.since >= query.until:
            raise QueryError("The time range is empty: --since must be before --until.")
        return query


def parse_time(text: str | None, what: str = "time") -> float | None:
    """Unix seconds from ``text``: a number, or an ISO 8601 date or date-time (local time unless it says)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise QueryError(f"{what} {text!r} is neither an ISO 8601 date/time nor Unix seconds.") from None


def find_runs(client: Any, uids: Sequence[str] = (), query: RunQuery | None = None) -> list[str]:
    """Uids of the raster runs to reprocess, oldest first.

    Explicit ``uids`` must all be raster runs in the catalog (else RunNotFoundError); a
    ``query`` adds the raster runs it matches (with neither, every raster run is taken).
    """
    from tiled.queries import Comparison, Key

    chosen: dict[str, float] = {}
    for uid in uids:
        start = _plain(_raw_run(client, uid).metadata["start"])
        if not is_raster_run(start):
            raise RunNotFoundError(f"Run {uid} is not a raster run; there is nothing to reprocess.")
        chosen[start["uid"]] = float(start["time"])
    if query is not None or not uids:
        query = query or RunQuery()
        found = client.search(Key("start.mc_beamline.experiment") == "raster")
        for key, value in query.equals.items():
            found = found.search(Key(f"start.{key}") == value)
        if query.since is not None:
            found = found.search(Comparison("ge", "start.time", query.since))
        if query.until is not None:
            found = found.search(Comparison("lt", "start.time", query.until))
        for uid, run in found.items():
            start = run.metadata["start"]
            if start.get("mc_beamline", {}).get("analysis") is None:  # never a derived run
                chosen[start["uid"]] = float(start["time"])
    return sorted(chosen, key=lambda uid: (chosen[uid], uid))


# ------------------------------------------------------------------ one run
def reprocessed_uid(raw_uid: str) -> str:
    """Uid of the derived run that a reprocessing of raw run ``raw_uid`` writes (always the same)."""
    return str(uuid.uuid5(REPROCESS_NAMESPACE, f"{raw_uid}/{ANALYSIS_NAME}"))


class _AsReprocessed:
    """Passes the derived run's documents to ``target`` under a fixed uid, marked as reprocessed."""

    def __init__(self, target, run_uid: str) -> None:
        self._target = target
        self._uid = run_uid
        self._old: str | None = None

    def __call__(self, name: str, doc: dict) -> None:
        if name == "start":
            self._old = doc["uid"]
            md = dict(doc.get("mc_beamline", {}))
            md.update(reprocessed=True, reprocessed_from=md.get("raw_uid"))
            doc = {**doc, "uid": self._uid, "mc_beamline": md}
        elif doc.get("run_start") == self._old:
            doc = {**doc, "run_start": self._uid}
        self._target(name, doc)


@dataclass
class Reprocessed:
    """Outcome of reprocessing one run.

    Attributes
    ----------
    raw_uid, derived_uid : the raw run and the derived run holding the result.
    status : ``"reprocessed"``, ``"unchanged"`` (complete results were there) or ``"failed"``.
    result : the ``mc-beamline xcca`` result (None if the analysis produced none).
    message : why it failed (one sentence), else "".
    seconds : time spent on the run (s).
    """

    raw_uid: str
    derived_uid: str
    status: str
    result: dict | None = None
    message: str = ""
    seconds: float = 0.0


def reprocess_run(client: Any, uid: str, force: bool = False, timeout_s: float = RUN_TIMEOUT_S,
                  write_lock: Any = None) -> Reprocessed:
    """Replay raw run ``uid`` through the live XCCA callback and store the result as a derived run.

    The replay is `mc_beamline.replay.replay`'s (same documents, same callback, same frames),
    so the result equals it exactly. A complete earlier reprocessing is kept unless ``force``.
    ``write_lock`` (a context manager; Dask tasks share one) is held while writing to Tiled:
    the server's SQLite table storage takes one writer at a time ("database is locked"
    otherwise, and the writer's retries could duplicate rows), and the writes are a small
    part of the work.
    """
    lock = write_lock if write_lock is not None else contextlib.nullcontext()
    t0 = time.perf_counter()
    raw = _raw_run(client, uid)
    start = _plain(raw.metadata["start"])
    if not is_raster_run(start):
        raise RunNotFoundError(f"Run {uid} is not a raster run; there is nothing to reprocess.")
    uid = start["uid"]
    duid = reprocessed_uid(uid)
    if duid in client:
        old = client[duid]
        stop = old.metadata.get("stop")
        if stop is not None and not force:
            result = stop.get("xcca_result")
            return Reprocessed(uid, duid, "unchanged", None if result is None else _plain(result),
                               seconds=time.perf_counter() - t0)
        with lock:
            old.delete(recursive=True, external_only=False)
    derived: list[tuple[str, dict]] = []
    try:
        live = replay_live(client, uid, publish=lambda name, doc: derived.append((name, doc)), timeout_s=timeout_s)
    except TimeoutError:
        raise TimeoutError(f"The reprocessing of run {uid} did not finish within {timeout_s:.0f} s.") from None
    try:
        with lock:
            publish = _AsReprocessed(tiled_writer(client), duid)
            for name, doc in derived:
                publish(name, doc)
    except Exception as exc:  # noqa: BLE001 - reported as one sentence
        raise RuntimeError(f"The result of run {uid} could not be stored in Tiled ({type(exc).__name__}: {exc})") from None
    seconds = time.perf_counter() - t0
    if live.result is None:
        first = live.errors[0]["message"] if live.errors else "no result"
        return Reprocessed(uid, duid, "failed", None, f"the analysis produced no result: {first}", seconds)
    return Reprocessed(uid, duid, "reprocessed", live.result, seconds=seconds)


def reprocess_task(tiled_uri: str, api_key: str | None, uid: str, force: bool = False) -> Reprocessed:
    """What a Dask worker runs: connect to Tiled, `reprocess_run`, disconnect."""
    from distributed import Lock, get_worker
    from tiled.client import from_uri

    try:
        get_worker()
        lock = Lock(WRITE_LOCK_NAME)
    except ValueError:  # not in a Dask worker
        lock = None
    client = from_uri(tiled_uri, api_key=api_key)
    with client.context:
        return reprocess_run(client, uid, force=force, write_lock=lock)


# ------------------------------------------------------------------ many runs
@contextlib.contextmanager
def dask_client(scheduler: str | None = None, n_workers: int = 2) -> Iterator[Any]:
    """A dask.distributed client: of the scheduler at ``scheduler``, else of a new LocalCluster.

    The LocalCluster has ``n_workers`` single-threaded worker processes (the analysis of one
    run is sequential; processes keep workers from sharing one interpreter lock).
    ConnectionError if no scheduler answers at the address.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise RuntimeError("Reprocessing needs dask.distributed: install mc-beamline[dask].") from None

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=SCHEDULER_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - OSError, TimeoutError, ValueError for a bad address
            raise ConnectionError(f"No Dask scheduler answers at {scheduler} ({type(exc).__name__}: {exc})") from None
        with client:
            yield client
        return
    if n_workers < 1:
        raise ValueError(f"The number of workers must be at least 1, got {n_workers}.")
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


def warm_up(client: Any) -> None:
    """Import the analysis on every worker (so that timings of the runs leave out start-up)."""

    def _import() -> bool:
        import mc_beamline.reprocess  # noqa: F401
        import tiled.client  # noqa: F401

        return True

    client.run(_import)


def reprocess_many(tiled_uri: str, api_key: str | None, uids: Sequence[str], client: Any,
                   force: bool = False, on_done=None) -> list[Reprocessed]:
    """Reprocess ``uids`` as Dask tasks on ``client`` (see `dask_client`); results in the order of ``uids``.

    A run whose task raises comes back as status ``"failed"`` with the error as message;
    ``on_done(Reprocessed)`` is called as each run finishes.
    """
    from distributed import as_completed

    futures = {client.submit(reprocess_task, tiled_uri, api_key, uid, force, pure=False, key=f"reprocess-{uid}"): uid
               for uid in uids}
    done: dict[str, Reprocessed] = {}
    for future in as_completed(futures):
        uid = futures[future]
        try:
            outcome = future.result()
        except Exception as exc:  # noqa: BLE001 - one run failing does not stop the others
            outcome = Reprocessed(uid, reprocessed_uid(uid), "failed", message=f"{type(exc).__name__}: {exc}")
        done[uid] = outcome
        if on_done is not None:
            on_done(outcome)
    return [done[uid] for uid in uids]


def reprocess_sequential(client: Any, uids: Sequence[str], force: bool = False) -> list[Reprocessed]:
    """Reprocess ``uids`` one after the other in this process (no Dask): the reference."""
    return [reprocess_run(client, uid, force=force) for uid in uids]


def reprocessed_result(client: Any, uid: str) -> dict:
    """The stored result of the reprocessing of raw run ``uid``."""
    duid = reprocessed_uid(uid)
    if duid not in client:
        raise RunNotFoundError(f"Run {uid} has not been reprocessed.")
    stop = client[duid].metadata.get("stop")
    if stop is None or stop.get("xcca_result") is None:
        raise RunNotFoundError(f"The reprocessing of run {uid} stored no result.")
    return _plain(stop["xcca_result"])


def server_address(client: Any) -> tuple[str, str | None]:
    """(base URI, API key) of the Tiled server behind ``client``, for the workers to connect with."""
    base = client.uri.split("/api/v1", 1)[0]
    return base, client.context.api_key
