"""The beamline's document stream: bluesky's 0MQ proxy, its publishers and its subscribers.

Every session (the queue's RE worker, IPython) publishes its documents with
:class:`bluesky.callbacks.zmq.Publisher` to the proxy's input; consumers (the analysis
service, a live viewer) subscribe to its output with
:class:`bluesky.callbacks.zmq.RemoteDispatcher`. The proxy is bluesky's own
(``bluesky-0MQ-proxy``), run on the loopback interface by ``mc-beamline queue start``.

A 0MQ publisher never blocks the RunEngine: with no proxy or no subscriber, documents are
dropped. Consumers therefore never rely on the stream alone; the analysis service catches
up from Tiled on what it missed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class StreamAddresses:
    """Where the proxy listens: ``publish`` (sessions send there) and ``subscribe`` (consumers), ``host:port``."""

    publish: str
    subscribe: str

    @classmethod
    def on_loopback(cls, publish_port: int, subscribe_port: int) -> StreamAddresses:
        return cls(f"127.0.0.1:{publish_port}", f"127.0.0.1:{subscribe_port}")


def proxy_command(addresses: StreamAddresses) -> list[str]:
    """The command line of bluesky's 0MQ proxy for ``addresses``."""
    return [sys.executable, "-c", "from bluesky.commandline.zmq_proxy import main; main()",
            "--in-address", f"tcp://{addresses.publish}", "--out-address", f"tcp://{addresses.subscribe}"]


def publish_to(RE: Any, address: str) -> int:
    """Subscribe a 0MQ publisher of the stream at ``address`` (``host:port``) to ``RE``; its token."""
    from bluesky.callbacks.zmq import Publisher

    return RE.subscribe(Publisher(address))


def queue_stream(data_dir: Path) -> StreamAddresses | None:
    """The stream of the queue running for ``data_dir`` (None if none runs)."""
    from mc_beamline.queue_server.manager import queue_processes

    found = queue_processes(data_dir)
    if found is None or not found[1].get("stream"):
        return None
    stream = found[0].get("stream")
    return StreamAddresses(**stream) if stream else None


__all__ = ["StreamAddresses", "proxy_command", "publish_to", "queue_stream"]
