"""The inboxes' fast path: POST ``/inbox`` and ``/users/<name>/inbox`` as plain ASGI.

Role
    ``InboxFastPath`` wraps the Quart application's ASGI callable. A POST to an inbox is
    answered here, without Quart's request and response objects, routing, session or
    template machinery (none of which an inbox uses): under inbound load those cost about
    a quarter of the web process's CPU. Everything else goes to Quart unchanged.

Invariants
    * The inbox contract is the same as through Quart: the body is read with the same cap
      (``Content-Length`` over it is refused before reading, a longer chunked body as soon as
      it passes it), ``federation.inbox.InboxReceiver`` does every check, 202 only after the
      receiver stored the activity, a personal inbox of a missing or inactive person is 404.
    * Every answer carries the same security headers as Quart's responses.
    * It never raises into the server: an unexpected error is logged and answered 503 (the
      sender retries), exactly as the receiver answers a failing store.
    * A client that disconnects before its body is complete gets nothing stored; one that
      has not sent it all within ``BODY_TIMEOUT`` gets 408 and nothing stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from server.services import accounts
from server.services.context import Context

__all__ = [
    "MAX_INBOX_BYTES",
    "ASGIApp",
    "InboxFastPath",
    "is_inbox_path",
    "raw_target",
]

_log = logging.getLogger("steelyard.inbox")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_INBOX_BYTES = 262_144
BODY_TIMEOUT = 30.0  # seconds to receive a whole body (Quart's BODY_TIMEOUT for other routes)
_USERS = "/users/"
_INBOX = "/inbox"


def is_inbox_path(path: str) -> bool:
    """The shared inbox, or a personal one (``/users/<name>/inbox``, name without ``/``)."""
    return path == _INBOX or _inbox_owner(path) is not None


def _inbox_owner(path: str) -> str | None:
    if not (path.startswith(_USERS) and path.endswith(_INBOX)):
        return None
    name = path[len(_USERS) : -len(_INBOX)]
    return name if name and "/" not in name else None


class InboxFastPath:
    """ASGI middleware: inbox POSTs here, everything else to *inner*."""

    def __init__(
        self,
        inner: ASGIApp,
        context: Context,
        headers: list[tuple[str, str]],
        *,
        body_timeout: float = BODY_TIMEOUT,
    ) -> None:
        self._inner = inner
        self._context = context
        self._body_timeout = body_timeout
        self._headers = [(k.lower().encode(), v.encode()) for k, v in headers] + [
            (b"vary", b"Accept, Signature"),
            (b"cache-control", b"no-store"),
            (b"content-type", b"application/json"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self._inner(scope, receive, send)
        path = scope["path"]
        owner = None if path == _INBOX else _inbox_owner(path)
        if path != _INBOX and owner is None:
            return await self._inner(scope, receive, send)
        try:
            await self._answer(scope, receive, send, owner)
        except Exception:
            _log.exception("inbox %s: unexpected error, answered 503", path)
            with contextlib.suppress(Exception):  # the client may be gone already
                await self._send(send, 503, {"error": "try again later"})

    async def _answer(self, scope: Scope, receive: Receive, send: Send, owner: str | None) -> None:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        declared = [v for k, v in headers if k.lower() == "content-length"]
        too_long = len(declared) == 1 and declared[0].strip().isdigit()
        if too_long and int(declared[0]) > MAX_INBOX_BYTES:
            return await self._send(send, 413, {"error": "body too large"})
        body = bytearray()
        try:
            async with asyncio.timeout(self._body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return  # nothing stored, nobody to answer
                    body += message.get("body", b"")
                    if len(body) > MAX_INBOX_BYTES:
                        return await self._send(send, 413, {"error": "body too large"})
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            # A sender trickling its body must not hold a request open for ever.
            return await self._send(send, 408, {"error": "body not received in time"})
        if owner is not None and await accounts.federated_person(self._context, owner) is None:
            return await self._send(send, 404, {"error": "not found"})
        federator = self._context.federator
        result = await federator.receiver.receive(
            method="POST",
            raw_target=raw_target(scope),
            headers=headers,
            body=bytes(body),
            path_owner=owner,
        )
        if result.status == 202:
            federator.dispatcher.wake()
            return await self._send(send, 202, {"status": "accepted"})
        await self._send(send, result.status, {"error": result.reason})

    async def _send(self, send: Send, status: int, doc: dict[str, str]) -> None:
        body = json.dumps(doc, separators=(",", ":")).encode()
        headers = [*self._headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


def raw_target(scope: Mapping[str, object]) -> str:
    """The request target as received (raw path, and ``?query`` when there is one): what a
    signature's ``(request-target)`` covers."""
    raw = scope.get("raw_path") or str(scope["path"]).encode()
    path = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
    query = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if isinstance(query, bytes) and query else path
