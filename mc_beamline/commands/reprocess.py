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

Speed: what one run costs is mostly the Tiled server's work on the derived run's write
(about 30 requests: a container per stream, tables, arrays, the stop metadata) and the
replay (frames read and analysed in the worker); reading the raw run's documents is one
request (the server's json-seq export reads each stream's table in one go). So a worker
keeps one Tiled client and its warmed-up imports for all its tasks (`worker_client`,
`warm_worker`), every run is looked up once, and only the part of the write that touches
the server's SQLite tabular storage (the stop document: tables, arrays, stop metadata, and
the deletion of an old derived run) is serialised by the Dask lock; the derived run's
containers are created outside it. The LocalCluster's workers run one numerics thread
each and without Dask's ``MALLOC_TRIM_THRESHOLD_`` (see `dask_client`). `Reprocessed.timings`
tells where a run's time went.

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
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mc_beamline.callbacks.live_xcca import LiveXcca
from mc_beamline.callbacks.replay import replay_live
from mc_beamline.callbacks.xcca_results import ANALYSIS_NAME, RESULT_KEY
from mc_beamline.io.inputs import InputError
from mc_beamline.storage import tiled_writer
from mc_beamline.storage.runs import RunNotFoundError, plain, raw_run

logger = logging.getLogger(__name__)

REPROCESS_NAMESPACE = uuid.UUID("6f1f3f0e-5d0b-4b8e-9a57-2f6a0c1d8e42")
"""Namespace of the uids of reprocessed derived runs (uuid5 of the raw uid)."""

RUN_TIMEOUT_S = 1800.0
"""Longest replay of one run (s)."""

WRITE_LOCK_NAME = "mc-beamline-reprocess-tiled-writes"
"""Name of the Dask lock that serialises the workers' writes to Tiled."""

SCHEDULER_TIMEOUT_S = 10.0
"""Longest wait (s) for a Dask scheduler given by address to answer."""

WRITE_BATCH_SIZE = 1_000_000
"""TiledWriter batch for derived runs: more rows than any result stream has, so that every
table row is written at the stop document (one append per stream, under the write lock)."""

SINGLE_THREAD_ENV = {var: "1" for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                          "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS")}
"""Environment of the LocalCluster's workers: one BLAS/OpenMP/numba thread each (a worker runs
one run at a time; more threads per process only compete with the other workers)."""


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
        start = plain(raw_run(client, uid).metadata["start"])
        if not LiveXcca.handles(start):
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


class _KnownRuns:
    """The catalog client, answering lookups of runs already fetched from memory.

    `replay_live` looks its run up again (for the start document and for the documents):
    each lookup would be one more request for the server.
    """

    def __init__(self, client: Any, runs: dict[str, Any]) -> None:
        self._client = client
        self._runs = runs

    def __getitem__(self, key: Any) -> Any:
        run = self._runs.get(key) if isinstance(key, str) else None
        return self._client[key] if run is None else run

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _lookup(client: Any, uid: str) -> Any | None:
    """The node of full uid ``uid``, or None: one request (no partial-uid search when it is missing)."""
    from tiled.client.container import Container

    getitem = Container.__getitem__ if isinstance(client, Container) else type(client).__getitem__
    try:
        return getitem(client, uid)
    except KeyError:
        return None


class _Clock:
    """Seconds per phase of one run (`Reprocessed.timings`)."""

    def __init__(self) -> None:
        self.t0 = self._last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        """Count the time since the last lap as ``phase``."""
        now = time.perf_counter()
        self.laps[phase] = self.laps.get(phase, 0.0) + now - self._last
        self._last = now

    @contextlib.contextmanager
    def locked(self, lock: Any) -> Iterator[None]:
        """Hold ``lock``; the wait for it counts as ``lock_wait``."""
        self._last = time.perf_counter()
        with lock:
            self.lap("lock_wait")
            yield

    def total(self) -> float:
        return time.perf_counter() - self.t0


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
    timings : seconds per phase: ``connect`` (a Dask task's Tiled client, 0 when the worker
        had one), ``lookup`` (the raw and the derived run), ``delete`` (an earlier derived
        run), ``replay`` (documents, frames, analysis), ``lock_wait`` (waiting for the write
        lock), ``write`` (storing the derived run; its stop document under the lock).
    """

    raw_uid: str
    derived_uid: str
    status: str
    result: dict | None = None
    message: str = ""
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


def reprocess_run(client: Any, uid: str, force: bool = False, timeout_s: float = RUN_TIMEOUT_S,
                  write_lock: Any = None, prefetch: int | None = None) -> Reprocessed:
    """Replay raw run ``uid`` through the live XCCA callback and store the result as a derived run.

    The replay is `mc_beamline.callbacks.replay.replay`'s (same documents, same callback, same frames),
    so the result equals it exactly. A complete earlier reprocessing is kept unless ``force``.
    ``prefetch``: frames the callback reads ahead in threads (None: its default; Dask workers
    pass 0, their processes already fill the CPUs). ``write_lock`` (a context manager; Dask tasks share one) is held while this run changes
    the server's SQLite table storage, which takes one writer at a time ("database is
    locked" otherwise, and the writer's retries could duplicate rows): while an earlier
    derived run is deleted and while the derived run's stop document is written (the
    TiledWriter writes every table, array and the stop metadata then; the run's containers
    are created before, outside the lock).
    """
    lock = write_lock if write_lock is not None else contextlib.nullcontext()
    clock = _Clock()
    raw = raw_run(client, uid)
    start = plain(raw.metadata["start"])
    if not LiveXcca.handles(start):
        raise RunNotFoundError(f"Run {uid} is not a raster run; there is nothing to reprocess.")
    uid = start["uid"]
    duid = reprocessed_uid(uid)
    old = _lookup(client, duid)
    clock.lap("lookup")
    if old is not None:
        stop = old.metadata.get("stop")
        if stop is not None and not force:
            result = stop.get(RESULT_KEY)
            return Reprocessed(uid, duid, "unchanged", None if result is None else plain(result),
                               seconds=clock.total(), timings=dict(clock.laps))
        with clock.locked(lock):
            old.delete(recursive=True, external_only=False)
            clock.lap("delete")
    derived: list[tuple[str, dict]] = []
    try:
        options = {} if prefetch is None else {"prefetch": prefetch}
        live = replay_live(_KnownRuns(client, {uid: raw}), uid, publish=lambda name, doc: derived.append((name, doc)),
                           timeout_s=timeout_s, **options)
    except TimeoutError:
        raise TimeoutError(f"The reprocessing of run {uid} did not finish within {timeout_s:.0f} s.") from None
    clock.lap("replay")
    try:
        _store(client, duid, derived, lock, clock)
    except Exception as exc:  # noqa: BLE001 - reported as one sentence
        raise RuntimeError(f"The result of run {uid} could not be stored in Tiled ({type(exc).__name__}: {exc})") from None
    seconds = clock.total()
    if live.result is None:
        first = live.errors[0]["message"] if live.errors else "no result"
        return Reprocessed(uid, duid, "failed", None, f"the analysis produced no result: {first}", seconds,
                           dict(clock.laps))
    return Reprocessed(uid, duid, "reprocessed", live.result, seconds=seconds, timings=dict(clock.laps))


def _store(client: Any, duid: str, docs: list[tuple[str, dict]], lock: Any, clock: _Clock) -> None:
    """Write the derived run's documents under uid ``duid``; the stop document (and any after it) under ``lock``.

    With a batch larger than any stream, the TiledWriter only creates the run's containers
    (catalog records) before the stop document and writes tables and arrays at it.
    """
    publish = _AsReprocessed(tiled_writer(client, batch_size=WRITE_BATCH_SIZE), duid)
    split = next((i for i, (name, _) in enumerate(docs) if name == "stop"), len(docs))
    for name, doc in docs[:split]:
        publish(name, doc)
    clock.lap("write")
    if split < len(docs):
        with clock.locked(lock):
            for name, doc in docs[split:]:
                publish(name, doc)
            clock.lap("write")


# ------------------------------------------------------------------ Dask workers
_clients: dict[tuple[str, str | None], Any] = {}
_clients_lock = threading.Lock()
_warm = False


def worker_client(tiled_uri: str, api_key: str | None) -> Any:
    """This process's Tiled client of ``tiled_uri`` (made on first use, kept open).

    A Dask worker runs many tasks: connecting once saves each task the client's set-up
    (server info and root requests, a new HTTP connection). Its HTTP client (httpx) is
    thread-safe, so a worker's threads share it. `forget_worker_client` drops it.
    """
    from tiled.client import from_uri

    with _clients_lock:
        client = _clients.get((tiled_uri, api_key))
        if client is None:
            client = _clients[(tiled_uri, api_key)] = from_uri(tiled_uri, api_key=api_key)
    return client


def forget_worker_client(tiled_uri: str, api_key: str | None) -> None:
    """Drop this process's client of ``tiled_uri``: the next task connects again.

    Not closed here (a task in another thread may still use it); its connections close
    when it is garbage-collected.
    """
    with _clients_lock:
        _clients.pop((tiled_uri, api_key), None)


def warm_worker() -> bool:
    """Import what a reprocessing needs and load the compiled XCCA kernel, once per process.

    Otherwise the first run of each worker pays for them (pyFAI alone takes seconds to import).
    """
    global _warm
    if _warm:
        return True
    import h5py  # noqa: F401
    import hdf5plugin  # noqa: F401
    import numpy as np
    import pyFAI  # noqa: F401
    import pyFAI.detectors  # noqa: F401
    import pyFAI.integrator.azimuthal  # noqa: F401
    import tiled.client  # noqa: F401
    from bluesky_tiled_plugins import TiledWriter  # noqa: F401

    from mc_beamline.analysis.detector.ring_gather import RingGather
    from mc_beamline.analysis.xcca import pipeline  # noqa: F401

    RingGather(np.arange(4), np.zeros(4, dtype=np.int64), 1).sums(np.zeros((1, 8), dtype=np.uint32))
    _warm = True
    return True


def reprocess_task(tiled_uri: str, api_key: str | None, uid: str, force: bool = False) -> Reprocessed:
    """What a Dask worker runs: `reprocess_run` with the worker's Tiled client (see `worker_client`)."""
    from distributed import Lock, get_worker

    try:
        get_worker()
        lock = Lock(WRITE_LOCK_NAME)
    except ValueError:  # not in a Dask worker
        lock = None
    warm_worker()
    t0 = time.perf_counter()
    client = worker_client(tiled_uri, api_key)
    connect_s = time.perf_counter() - t0
    try:
        outcome = reprocess_run(client, uid, force=force, write_lock=lock, prefetch=0)
    except BaseException:
        forget_worker_client(tiled_uri, api_key)  # a broken connection is not kept for the next task
        raise
    outcome.timings = {"connect": connect_s, **outcome.timings}
    outcome.seconds += connect_s
    return outcome


# ------------------------------------------------------------------ many runs
@contextlib.contextmanager
def dask_client(scheduler: str | None = None, n_workers: int = 2) -> Iterator[Any]:
    """A dask.distributed client: of the scheduler at ``scheduler``, else of a new LocalCluster.

    The LocalCluster has ``n_workers`` single-threaded worker processes (the analysis of one
    run is sequential; processes keep workers from sharing one interpreter lock), each with
    one BLAS/OpenMP/numba thread (`SINGLE_THREAD_ENV`) and glibc's default malloc tuning.
    Workers of a scheduler given by address are started elsewhere: start them with
    `SINGLE_THREAD_ENV` too (and without ``MALLOC_TRIM_THRESHOLD_``) for the same speed.
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
    import dask

    # Dask sets MALLOC_TRIM_THRESHOLD_ for its workers, which turns off glibc's adaptive mmap
    # threshold: every frame-sized array (4 MB and more) is then mapped afresh and page-faulted
    # in, which made reading and analysing frames 2-3 times slower than in a plain process.
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR, env=dict(SINGLE_THREAD_ENV))
    with cluster, Client(cluster) as client:
        yield client


def warm_up(client: Any, tiled_uri: str | None = None, api_key: str | None = None) -> None:
    """`warm_worker` on every worker now, and connect each to ``tiled_uri`` if given (see `worker_client`).

    So that timings of the runs leave out start-up; without it each worker warms up in its
    first task.
    """
    client.run(_warm_and_connect, tiled_uri, api_key)


def _warm_and_connect(tiled_uri: str | None, api_key: str | None) -> bool:
    warm_worker()
    if tiled_uri is not None:
        worker_client(tiled_uri, api_key)
    return True


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
    if stop is None or stop.get(RESULT_KEY) is None:
        raise RunNotFoundError(f"The reprocessing of run {uid} stored no result.")
    return plain(stop[RESULT_KEY])


def server_address(client: Any) -> tuple[str, str | None]:
    """(base URI, API key) of the Tiled server behind ``client``, for the workers to connect with."""
    base = client.uri.split("/api/v1", 1)[0]
    return base, client.context.api_key


def run_reprocess(args) -> int:
    """What ``mc-beamline reprocess`` runs; exit status 1 if a run failed."""
    from mc_beamline.commands.catalog import open_catalog

    query = RunQuery.parse(args.query, args.since, args.until) if (args.query or args.since or args.until) else None
    if args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}.")
    with open_catalog(args.data_dir, args.tiled, what="the runs") as client:
        uids = find_runs(client, args.uids, query)
        if not uids:
            raise InputError("No stored raster run matches the selection.")
        uri, api_key = server_address(client)
        where = args.scheduler or f"a local cluster of {args.workers} worker(s)"
        print(f"reprocessing {len(uids)} run(s) on {where}", flush=True)

        def report(outcome: Reprocessed) -> None:
            if outcome.status == "failed":
                print(f"failed {outcome.raw_uid}: {outcome.message}", flush=True)
                return
            result = outcome.result or {}
            print(f"{outcome.status} {outcome.raw_uid} -> {outcome.derived_uid}: {result.get('n_frames')} frames, "
                  f"{result.get('n_selected')} selected ({outcome.seconds:.1f} s)", flush=True)

        t0 = time.perf_counter()
        with dask_client(args.scheduler, args.workers) as dask:
            outcomes = reprocess_many(uri, api_key, uids, dask, force=args.force, on_done=report)
    counts = {status: sum(o.status == status for o in outcomes) for status in ("reprocessed", "unchanged", "failed")}
    print(f"{len(outcomes)} run(s): {counts['reprocessed']} reprocessed, {counts['unchanged']} unchanged, "
          f"{counts['failed']} failed in {time.perf_counter() - t0:.1f} s")
    return 1 if counts["failed"] else 0
