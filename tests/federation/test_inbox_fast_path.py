"""The inboxes' ASGI fast path (server/web/inbox_asgi.py) keeps the inbox contract.

Most of the contract is proven through it by every federation test (the test client calls the
same ASGI callable as Hypercorn); these tests drive the raw ASGI interface for what a test
client cannot express (a body that streams past the cap, a client that goes away mid-body)
and check what the fast path adds itself: headers, routing, the personal inbox's owner,
errors.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

import pytest

from federation.types import AS_PUBLIC
from server.web.inbox_asgi import MAX_INBOX_BYTES, InboxFastPath
from tests.federation.conftest import Trio
from tests.federation.support import Forger, cast, inbox_count, raw_post
from tests.support.network import Instance

Message = MutableMapping[str, Any]


@pytest.fixture
async def scene(trio: Trio) -> tuple[Trio, Forger]:
    people = await cast(trio)
    forger = await Forger.of(trio.beta, people.bob)
    assert (await forger.post(trio.alpha, _create(forger, "warm-up"))).status == 202
    return trio, forger


def _create(forger: Forger, text: str) -> dict[str, Any]:
    return forger.create(forger.note(text, to=[AS_PUBLIC], cc=[forger.followers]))


def _signed(
    forger: Forger, target: Instance, text: str, path: str = "/inbox"
) -> tuple[bytes, dict[str, str]]:
    """A Create's body and the headers of a correctly signed POST of it to *path*."""
    body = json.dumps(_create(forger, text)).encode()
    return body, forger.signed_headers(target, path, body)


class Exchange:
    """One raw ASGI request: feeds *chunks* to the app, records what it sends back."""

    def __init__(self, chunks: list[Message]) -> None:
        self.chunks = chunks
        self.reads = 0
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        self.reads += 1
        return self.chunks[min(self.reads, len(self.chunks)) - 1]

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int | None:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        return int(starts[0]["status"]) if starts else None

    async def run(self, target: Instance, path: str, headers: dict[str, str]) -> None:
        await self.run_on(target.app.asgi_app, path, headers)

    async def run_on(self, app: Any, path: str, headers: dict[str, str]) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
        }
        await app(scope, self.receive, self.send)


async def test_a_body_streaming_past_the_cap_is_refused_as_soon_as_it_passes(
    scene: tuple[Trio, Forger],
) -> None:
    trio, forger = scene
    alpha = trio.alpha
    before = await inbox_count(alpha)
    _, headers = _signed(forger, alpha, "chunked")
    headers.pop("Content-Length", None)  # chunked: no declared length to refuse up front
    chunk = {"type": "http.request", "body": b"x" * 65_536, "more_body": True}
    exchange = Exchange([chunk] * 40)  # 2.5 MB if it read everything
    await exchange.run(alpha, "/inbox", headers)
    assert exchange.status == 413
    assert exchange.reads == MAX_INBOX_BYTES // 65_536 + 1
    assert await inbox_count(alpha) == before


async def test_a_declared_length_over_the_cap_is_refused_before_reading(
    scene: tuple[Trio, Forger],
) -> None:
    trio, forger = scene
    body, headers = _signed(forger, trio.alpha, "declared")
    headers["Content-Length"] = str(MAX_INBOX_BYTES + 1)
    exchange = Exchange([{"type": "http.request", "body": body, "more_body": False}])
    await exchange.run(trio.alpha, "/inbox", headers)
    assert exchange.status == 413
    assert exchange.reads == 0


async def test_a_client_that_goes_away_mid_body_gets_nothing_stored(
    scene: tuple[Trio, Forger],
) -> None:
    trio, forger = scene
    alpha = trio.alpha
    before = await inbox_count(alpha)
    body, headers = _signed(forger, alpha, "gone")
    # The whole signed body arrives, but the request never completes.
    exchange = Exchange(
        [
            {"type": "http.request", "body": body, "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    await exchange.run(alpha, "/inbox", headers)
    assert exchange.sent == []
    assert await inbox_count(alpha) == before
    # The same request, completed, is accepted (so the refusal above was the disconnect).
    complete = Exchange([{"type": "http.request", "body": body, "more_body": False}])
    await complete.run(alpha, "/inbox", headers)
    assert complete.status == 202
    assert await inbox_count(alpha) == before + 1


async def test_inbox_answers_carry_the_security_headers(scene: tuple[Trio, Forger]) -> None:
    trio, forger = scene
    client = trio.alpha.app.test_client()
    body, signed = _signed(forger, trio.alpha, "headers")
    for headers, status in (
        (signed, 202),
        ({"Content-Type": "application/activity+json"}, 401),
    ):
        response = await client.post("/inbox", headers=headers, data=body)
        assert response.status_code == status
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Content-Type"] == "application/json"
        assert "error" in (await response.get_json()) or status == 202


async def test_personal_inbox_of_someone_who_is_not_here_is_404(
    scene: tuple[Trio, Forger],
) -> None:
    trio, forger = scene
    alpha = trio.alpha
    before = await inbox_count(alpha)
    for name in ("nobody", "dave"):
        if name == "dave":
            await alpha.user("dave")
            await alpha.ctx.db.write(
                lambda conn: conn.execute(
                    "UPDATE accounts SET is_active = 0 WHERE actor_id ="
                    " (SELECT id FROM actors WHERE username = 'dave' AND is_local = 1)"
                )
            )
        path = f"/users/{name}/inbox"
        body, headers = _signed(forger, alpha, f"to {name}", path)
        sent = await raw_post(alpha, path, headers, body)
        assert sent.status == 404, (name, sent.body)
    assert await inbox_count(alpha) == before


async def test_only_inbox_posts_take_the_fast_path(scene: tuple[Trio, Forger]) -> None:
    trio, _ = scene
    client = trio.alpha.app.test_client()
    # A GET of an inbox, and a POST to something that only looks like one, are Quart's: HTML
    # error pages, not the inbox's JSON answers.
    for method, path in (("GET", "/inbox"), ("POST", "/users/alice/x/inbox")):
        response = await client.open(path, method=method)
        assert response.status_code in (400, 404, 405), (method, path)
        assert response.headers["Content-Type"].startswith("text/html"), (method, path)


async def test_an_unexpected_error_is_503_so_the_sender_retries(
    scene: tuple[Trio, Forger], monkeypatch: pytest.MonkeyPatch
) -> None:
    trio, forger = scene
    alpha = trio.alpha

    async def broken(**_: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(alpha.ctx.federator.receiver, "receive", broken)
    body, headers = _signed(forger, alpha, "broken")
    sent = await raw_post(alpha, "/inbox", headers, body)
    assert sent.status == 503
    assert sent.body == {"error": "try again later"}


async def test_a_body_that_trickles_in_too_slowly_is_408(scene: tuple[Trio, Forger]) -> None:
    trio, forger = scene
    alpha = trio.alpha
    before = await inbox_count(alpha)
    body, headers = _signed(forger, alpha, "slow")
    fast_path = alpha.app.asgi_app
    assert isinstance(fast_path, InboxFastPath)
    # The same fast path with a short body timeout, in front of the same app.
    slow_guard = InboxFastPath(fast_path._inner, alpha.ctx, [], body_timeout=0.05)

    class Trickle(Exchange):
        async def receive(self) -> Message:
            self.reads += 1
            if self.reads == 1:
                return {"type": "http.request", "body": body[:100], "more_body": True}
            await asyncio.sleep(5)  # the rest never comes in time
            return {"type": "http.request", "body": body[100:], "more_body": False}

    exchange = Trickle([])
    started = asyncio.get_running_loop().time()
    await exchange.run_on(slow_guard, "/inbox", headers)
    assert exchange.status == 408
    assert asyncio.get_running_loop().time() - started < 2
    assert await inbox_count(alpha) == before
