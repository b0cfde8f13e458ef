"""Reading stored runs back: their documents and the arrays of their streams."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


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


class RunNotFoundError(LookupError):
    """A run uid (or its stored results) that the catalog does not hold."""


def raw_run(client: Any, uid: str) -> Any:
    """The stored run ``uid`` (a BlueskyRun client); RunNotFoundError if the catalog has none."""
    try:
        return client[uid]
    except KeyError:
        raise RunNotFoundError(f"No run {uid} in the catalog.") from None


def plain(value: Any) -> Any:
    """Tiled metadata as plain Python containers (its DictView/ListView are read-only wrappers)."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or (hasattr(value, "__iter__") and not isinstance(value, (str, bytes))):
        return [plain(v) for v in value]
    return value


def derived_runs(client: Any, raw_uid: str, analysis: str) -> list[Any]:
    """The finished derived runs (with a stop document) of analysis ``analysis`` of raw run ``raw_uid``."""
    from tiled.queries import Key

    found = client.search(Key("mc_beamline.raw_uid") == raw_uid).search(Key("mc_beamline.analysis") == analysis)
    return [run for run in (found[key] for key in found) if run.metadata.get("stop")]


__all__ = ["RunNotFoundError", "derived_runs", "plain", "raw_run", "read_stream_array", "run_documents"]
