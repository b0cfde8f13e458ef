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
