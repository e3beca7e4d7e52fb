"""Composition of one instance's federation machinery (the server side of ``federation/``).

Builds the policy, fetcher, key resolver, inbox receiver, dispatcher and delivery worker over
the instance's SQLite ports, and runs the two workers as asyncio tasks while the app serves.
Tests pass ``run_workers=False`` and pump with :meth:`Federator.settle` instead.

While serving, the dispatcher takes turns with an applier process through the instance's
dispatch gate, and a round that finds a full batch starts one (see :mod:`server.applier`;
``applier = false`` under ``[server]`` in config.toml keeps all applying in the server process).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from federation.delivery import MAX_DELAY_MS, DeliveryWorker
from federation.dispatch import Dispatcher
from federation.fetch import Fetcher
from federation.hosts import host_of_url
from federation.inbox import InboxReceiver
from federation.keys import KeyResolver
from federation.policy import FederationPolicy
from federation.ports import SigningKey, StoredInbound
from federation.signatures import KeyCache, generate_rsa_keypair
from federation.transport import DeferredTransport, Transport
from federation.urls import Urls
from server.clock import Clock
from server.config import Config
from server.processes import GATE_FILE, ApplierLauncher, FileGate, YieldingGate
from server.storage import federation as fed
from server.storage.db import Database
from server.storage.fedports import (
    SqliteAllowlist,
    SqliteDeliveryStore,
    SqliteInboxStore,
    SqliteKeyStore,
)

USER_AGENT = "Steelyard/0.1 (+ActivityPub)"
InboundHandler = Callable[[StoredInbound], Awaitable[None]]


class Federator:
    def __init__(
        self, config: Config, db: Database, clock: Clock, transport: Transport | None
    ) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self.urls = Urls(config.url)
        self.host = host_of_url(config.url)
        self._own_transport = transport is None
        self.transport: Transport = transport or DeferredTransport(
            allow_loopback=config.is_development, user_agent=USER_AGENT
        )
        self.key_cache = KeyCache()
        self.allowlist = SqliteAllowlist(db, config.instance_path / ".allowlist-changed")
        self.policy = FederationPolicy(
            self.allowlist, self_host=self.host, development=config.is_development
        )
        self._instance_key: SigningKey | None = None
        self.fetcher = Fetcher(
            self.transport, self.policy, self.instance_key, self.key_cache, clock.now
        )
        self.keys = KeyResolver(self.fetcher, SqliteKeyStore(db), clock.now_ms, keys=self.key_cache)
        self.inbox_store = SqliteInboxStore(db, clock.now_ms)
        self.receiver = InboxReceiver(
            canonical_host=self.host,
            allowlist=self.allowlist,
            keys=self.keys,
            store=self.inbox_store,
            now=clock.now,
            key_cache=self.key_cache,
            canonical_scheme=urlsplit(config.url).scheme,
        )
        self._handler: InboundHandler | None = None
        self.launcher: ApplierLauncher | None = None
        if bool(config.extra.get("applier", True)):
            self.launcher = ApplierLauncher(config.instance_path)
        self.dispatcher = Dispatcher(
            self.inbox_store,
            self._dispatch,
            clock.now_ms,
            gate=YieldingGate(FileGate(config.instance_path / GATE_FILE), self.launcher),
            on_backlog=self._backlog,
        )
        self.delivery_store = SqliteDeliveryStore(db, self._instance_key_sync)
        self.delivery = DeliveryWorker(
            self.delivery_store,
            self.transport,
            clock.now,
            self.key_cache,
            user_agent=USER_AGENT,
        )
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []

    def attach(self, handler: InboundHandler) -> None:
        """Register the application's handler for verified inbound activities."""
        self._handler = handler

    async def _dispatch(self, item: StoredInbound) -> None:
        if self._handler is None:
            raise RuntimeError("no inbound handler attached")
        await self._handler(item)

    def _backlog(self) -> None:
        # Only a serving process (workers running) hands its backlog to an applier.
        if self.launcher is not None and self._tasks:
            self.launcher.request()

    async def instance_key(self) -> SigningKey:
        if self._instance_key is None:
            await self._load_instance_key()
        assert self._instance_key is not None
        return self._instance_key

    def _instance_key_sync(self) -> SigningKey:
        if self._instance_key is None:
            raise RuntimeError("federation not started")
        return self._instance_key

    async def _load_instance_key(self) -> None:
        found = await self.db.read(fed.select_instance_key)
        if found is None:
            private_pem, public_pem = await asyncio.to_thread(generate_rsa_keypair)

            def store(conn: sqlite3.Connection) -> None:
                fed.insert_instance_key(conn, private_pem, public_pem, self.clock.now_ms())

            await self.db.write(store)
            found = await self.db.read(fed.select_instance_key)
        assert found is not None
        self._instance_key = SigningKey(f"{self.urls.instance_actor}#main-key", found[0])
        self.instance_public_key_pem = found[1]

    async def start(self, *, run_workers: bool) -> None:
        await self._load_instance_key()
        if run_workers:
            # Only the process that runs the workers (it holds the instance's background
            # lock): whatever a crashed process had claimed is ours. Another worker process
            # doing this would hand our in-flight work out a second time.
            await self.db.write(
                fed.release_leases,
                self.clock.now_ms(),
                delivery_delay_ms=MAX_DELAY_MS,
                inbound_delay_ms=self.dispatcher.max_delay_ms,
            )
            self._stop.clear()
            self._tasks = [
                asyncio.create_task(self.dispatcher.run_forever(self._stop)),
                asyncio.create_task(self.delivery.run_forever(self._stop)),
            ]

    async def start_for_applying(self) -> None:
        """For an applier process: keys and transport, no workers, leases left alone."""
        await self._load_instance_key()

    async def stop(self) -> None:
        if self.launcher is not None:
            await self.launcher.stop()
        self._stop.set()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._own_transport and isinstance(self.transport, DeferredTransport):
            await self.transport.close()

    def wake(self) -> None:
        self.dispatcher.wake()
        self.delivery.wake()

    async def settle_once(self) -> int:
        return await self.dispatcher.run_until_idle() + await self.delivery.run_until_idle()
