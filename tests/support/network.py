"""Several Steelyard instances in one process, federating through a transport that routes
requests by host to each instance's Quart app (real signatures, real SQLite, real HTTP
semantics; no sockets).

``Network.settle()`` pumps every instance's inbound dispatcher and delivery worker until no
work is left. Time is a shared ``FakeClock``: retries scheduled in the future wait until a test
advances it. A host can be taken down or made to answer a fixed status, to test retries.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from quart import Quart

from federation.transport import HttpResponse, TransportError
from server import cli
from server.app import create_app
from server.clock import FakeClock
from server.domain import Actor
from server.services import accounts
from server.services.context import Context
from server.storage import federation as fed

PASSWORD = "network test password 1"


@dataclass
class Instance:
    name: str
    host: str
    app: Quart
    ctx: Context
    people: dict[str, Actor] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"https://{self.host}"

    async def user(self, username: str, *, locked: bool = False) -> Actor:
        actor = await accounts.create_user(
            self.ctx, username, PASSWORD, display_name=username.capitalize()
        )
        if locked:
            await accounts.update_profile(
                self.ctx,
                actor.id,
                {"display_name": actor.display_name},
                bio_source=None,
                manually_approves=True,
            )
        self.people[username] = actor
        return actor

    async def allow(self, host: str, relation: str = "partner") -> None:
        now = self.ctx.clock.now_ms()
        await self.ctx.db.write(fed.upsert_allowed_host, host, relation, "", "test", now)
        self.ctx.federator.allowlist.changed()

    async def remove(self, host: str) -> int:
        """Take *host* off the allowlist (storage level); returns deliveries cancelled."""
        now = self.ctx.clock.now_ms()
        cancelled = await self.ctx.db.write(fed.remove_allowed_host, host, "test", now)
        self.ctx.federator.allowlist.changed()
        return cancelled

    async def rows(self, sql: str, *params: object) -> list[sqlite3.Row]:
        """Run a read-only query against this instance's database (assertions)."""

        def query(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            return conn.execute(sql, params).fetchall()

        return await self.ctx.db.read(query)

    async def value(self, sql: str, *params: object) -> object:
        """The first column of the first row of a query (None when there is no row)."""
        found = await self.rows(sql, *params)
        return found[0][0] if found else None


@dataclass
class Fault:
    status: int | None = None  # answer this status instead of routing
    error: str | None = None  # raise TransportError of this kind instead
    headers: Mapping[str, str] = field(default_factory=dict)
    remaining: int = 10**9  # how many requests it applies to


class RoutingTransport:
    """Routes by URL host to an instance's test client; records every request."""

    def __init__(self, network: Network) -> None:
        self._network = network

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        max_bytes: int = 1_048_576,
    ) -> HttpResponse:
        parts = urlsplit(url)
        host = parts.netloc
        self._network.log.append((method, url))
        fault = self._network.faults.get(host)
        if fault is not None and fault.remaining > 0:
            fault.remaining -= 1
            if fault.error:
                raise TransportError(fault.error, f"simulated {fault.error} for {host}")  # type: ignore[arg-type]
            return HttpResponse(fault.status or 503, dict(fault.headers), b"", url)
        instance = self._network.by_host.get(host)
        if instance is None:
            raise TransportError("dns", f"no such host {host}")
        client = instance.app.test_client()
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        response = await client.open(  # type: ignore[call-arg]  # json has a default
            path, method=method, headers=dict(headers), data=body or b""
        )
        data = await response.get_data(as_text=False)
        if len(data) > max_bytes:
            raise TransportError("too-large", "body over cap")
        return HttpResponse(
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            data,
            url,
        )


class Network:
    def __init__(self, root: Path, *, synchronous: str = "NORMAL") -> None:
        self.root = root
        self.synchronous = synchronous
        self.clock = FakeClock()
        self.by_host: dict[str, Instance] = {}
        self.faults: dict[str, Fault] = {}
        self.log: list[tuple[str, str]] = []
        self.transport = RoutingTransport(self)
        self._stack = contextlib.AsyncExitStack()

    async def add(self, name: str) -> Instance:
        host = f"{name}.example"
        path = self.root / name
        assert cli.cmd_init(path, f"https://{host}", name.capitalize()) == 0
        # NORMAL: WAL commits without an fsync each; durability is tested elsewhere, and
        # these tests commit thousands of small transactions.
        app = create_app(
            path,
            transport=self.transport,
            clock=self.clock,
            overrides={"run_workers": False, "synchronous": self.synchronous},
        )
        await self._stack.enter_async_context(app.test_app())  # type: ignore[arg-type]
        ctx = app.config["STEELYARD_CONTEXT"]
        instance = Instance(name, host, app, ctx)
        self.by_host[host] = instance
        return instance

    async def close(self) -> None:
        await self._stack.aclose()

    def requests_to(self, host: str, method: str | None = None) -> list[tuple[str, str]]:
        """Logged requests whose URL is on *host* (optionally only one method)."""
        return [
            (m, url)
            for m, url in self.log
            if urlsplit(url).netloc == host and (method is None or m == method)
        ]

    async def settle(self, max_rounds: int = 50) -> int:
        """Pump every instance's workers until nothing is left to do right now."""
        total = 0
        for _ in range(max_rounds):
            done = 0
            for instance in list(self.by_host.values()):
                done += await instance.ctx.federator.settle_once()
            total += done
            if done == 0:
                return total
        raise AssertionError("network did not settle")
