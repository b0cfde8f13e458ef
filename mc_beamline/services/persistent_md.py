"""Persistent run metadata (``RE.md``) in Redis, shared by every session of a data directory.

Like NSLS-II's profile collections (``redis-json-dict``), the RunEngine's ``md`` is a
mapping stored in Redis, so ``scan_id`` and the other persistent keys survive a restart
and are the same in IPython and in the queue's RE worker. Values are stored as JSON in one
Redis hash. ``scan_id`` comes from an atomic counter (:meth:`RedisMetadata.next_scan_id`,
the RunEngine's ``scan_id_source``): two sessions opening runs at the same moment still get
different ids, and the counter never goes down, so a scan id never repeats within a data
directory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping
from typing import Any

_RAISE_TO = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local wanted = tonumber(ARGV[1])
if wanted > current then redis.call('SET', KEYS[1], ARGV[1]) return wanted end
return current
"""


class RedisMetadata(MutableMapping):
    """A JSON mapping in Redis hash ``key``; ``scan_id`` is backed by the counter ``key:scan_id``.

    Parameters
    ----------
    client : a ``redis.Redis`` client.
    key : name of the hash (one per data directory).
    """

    def __init__(self, client: Any, key: str) -> None:
        self._redis = client
        self._key = key
        self._counter = f"{key}:scan_id"
        self._raise_to = client.register_script(_RAISE_TO)
        stored = self._redis.hget(self._key, "scan_id")
        if stored is not None:
            self._raise_to(keys=[self._counter], args=[int(json.loads(stored))])

    def __getitem__(self, name: str) -> Any:
        if name == "scan_id":
            value = self._redis.get(self._counter)
            if value is None:
                raise KeyError(name)
            return int(value)
        value = self._redis.hget(self._key, name)
        if value is None:
            raise KeyError(name)
        return json.loads(value)

    def __setitem__(self, name: str, value: Any) -> None:
        if name == "scan_id":
            # never lowered: a session that opened its run before another keeps the higher id
            self._raise_to(keys=[self._counter], args=[int(value)])
        self._redis.hset(self._key, name, json.dumps(value))

    def __delitem__(self, name: str) -> None:
        if name == "scan_id":
            raise KeyError("scan_id is persistent and cannot be deleted (it must never repeat)")
        if not self._redis.hdel(self._key, name):
            raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        names = {n.decode() if isinstance(n, bytes) else n for n in self._redis.hkeys(self._key)}
        if self._redis.exists(self._counter):
            names.add("scan_id")
        return iter(sorted(names))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def next_scan_id(self, md: Any = None) -> int:
        """The next scan id (atomic increment); the RunEngine's ``scan_id_source``."""
        return int(self._redis.incr(self._counter))

    def __deepcopy__(self, memo: dict) -> dict:
        """A plain dict of the values (the RunEngine deep-copies its metadata into each start document)."""
        import copy

        return copy.deepcopy(dict(self.items()), memo)

    def __repr__(self) -> str:
        return f"RedisMetadata({dict(self)!r})"


def metadata_key(data_dir: Any) -> str:
    """The Redis key of the run metadata of data directory ``data_dir`` (its absolute path)."""
    from pathlib import Path

    return f"mc_beamline:md:{Path(data_dir).expanduser().resolve()}"


__all__ = ["RedisMetadata", "metadata_key"]
