"""The API-key gate in front of a data directory's Tiled server.

Tiled's single-user mode leaves some routes open (``/docs`` and ``/openapi.json`` describe
every route); this ASGI middleware closes them: every request must carry a key, in the
``Authorization: Apikey KEY`` header, the ``api_key`` query parameter or Tiled's API-key
cookie, as Tiled accepts it, except the health check ``/healthz`` and the server
description ``/api/v1/`` (versions, formats, how to authenticate; no data), which every
Tiled client reads before it sends its key.

Two kinds of key pass:

* the data directory's key (``tiled/api_key``): everything, as before;
* a read-only key (`DataDir.create_readonly_key`, ``mc-beamline serve --create-readonly-key``):
  only reading methods (GET, HEAD, OPTIONS and websocket subscriptions); the request is
  then passed to Tiled as if it carried the data directory's key.

Anything else is answered with 401 and one sentence. Read-only keys are stored as SHA-256
digests, so the file does not give the keys away; the file is re-read when it changes, so
a key created while the server runs works at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

API_KEY_COOKIE = "tiled_api_key"
"""Name of the cookie Tiled reads an API key from."""
OPEN_PATHS = frozenset({"/healthz", "/api/v1/", "/api/v1"})
"""Paths answered without a key: they reveal that a Tiled server runs, not what it holds."""
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def key_digest(key: str) -> str:
    """SHA-256 hex digest of an API key (what the read-only key file stores)."""
    return hashlib.sha256(key.encode()).hexdigest()


class _DigestFile:
    """The set of digests in a file, re-read when its modification time changes."""

    def __init__(self, path: Path):
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._digests: frozenset[str] = frozenset()

    def digests(self) -> frozenset[str]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return frozenset()
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            lines = self.path.read_text().split()
            self._digests, self._stamp = frozenset(lines), stamp
        return self._digests


def _presented_key(scope) -> str | None:
    """The API key a request carries (query, then header, then cookie, as Tiled reads them)."""
    for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
        if name == "api_key":
            return value
    headers = dict(scope.get("headers") or [])
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth[:7].lower() == "apikey ":
        return auth[7:].strip()
    cookie = headers.get(b"cookie")
    if cookie:
        morsel = SimpleCookie(cookie.decode("latin-1")).get(API_KEY_COOKIE)
        if morsel is not None:
            return morsel.value
    return None


def _as_full_key(scope, full_key: str) -> dict:
    """A copy of ``scope`` whose only key is ``full_key``, in the Authorization header."""
    query = [(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
             if k != "api_key"]
    headers = [(k, v) for k, v in scope.get("headers") or [] if k not in (b"authorization", b"cookie")]
    headers.append((b"authorization", f"Apikey {full_key}".encode()))
    return dict(scope, query_string=urlencode(query).encode(), headers=headers)


class KeyGuard:
    """ASGI middleware: the data directory's key passes, a read-only key passes for reads.

    Parameters
    ----------
    app
        The Tiled ASGI application.
    full_key
        The data directory's API key (all rights).
    readonly_key_file
        File of SHA-256 digests of read-only keys, one per line (may be missing).
    """

    def __init__(self, app, full_key: str, readonly_key_file: Path):
        self.app = app
        self._full = full_key
        self._readonly = _DigestFile(Path(readonly_key_file))

    def __getattr__(self, name):  # the wrapped app's state, routes, dependency overrides
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or scope.get("path") in OPEN_PATHS:
            return await self.app(scope, receive, send)
        key = _presented_key(scope)
        if key is not None and hmac.compare_digest(key, self._full):
            return await self.app(scope, receive, send)
        if key is not None and key_digest(key) in self._readonly.digests():
            if scope["type"] == "websocket" or scope.get("method") in READ_METHODS:
                return await self.app(_as_full_key(scope, self._full), receive, send)
            return await self._refuse(scope, receive, send, 403,
                                      "This API key is read-only; writing needs the data directory's key.")
        reason = ("This server needs an API key (Authorization: Apikey KEY or ?api_key=KEY)." if key is None
                  else "This API key is not valid for this server.")
        return await self._refuse(scope, receive, send, 401, reason)

    @staticmethod
    async def _refuse(scope, receive, send, status: int, reason: str) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.close", "code": 4401 if status == 401 else 4403, "reason": reason})
            return
        body = json.dumps({"detail": reason}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b"Apikey")]})
        await send({"type": "http.response.body", "body": body})


__all__ = ["KeyGuard", "key_digest"]
