"""SQLite implementations of the federation pipeline's ports (``federation.ports``).

Each method is one transaction. The pipeline never holds a transaction across network I/O:
it calls these methods between requests.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

from federation.delivery import attempted, circuit_open_ms
from federation.hosts import normalize_host
from federation.ports import (
    DeliveryJob,
    DeliveryOutcome,
    InboundRecord,
    KnownKey,
    SigningKey,
    StoredInbound,
)
from server.storage import federation as fed
from server.storage.db import Database

INBOUND_LEASE_MS = 60_000


class SqliteAllowlist:
    """The allowlist, held in memory and reloaded whenever it changed.

    Every change (CLI, admin page, any process of the instance) commits, then touches the
    marker file ``<instance>/.allowlist-changed`` (:meth:`changed`). Each check compares the
    marker's modification time with the one the cache was loaded at, a system call of a few
    microseconds instead of a database round trip: a removal applies to the very next request,
    even one already signed with a cached key.
    """

    def __init__(self, db: Database, marker: Path) -> None:
        self._db = db
        self._marker = marker
        self._hosts: frozenset[str] | None = None
        self._stamp: int = -1

    def changed(self) -> None:
        """Call after committing a change to ``allowed_hosts``."""
        self._marker.touch(mode=0o600, exist_ok=True)
        os.utime(self._marker, ns=(time.time_ns(), time.time_ns()))
        self._hosts = None

    def _marker_stamp(self) -> int:
        try:
            return os.stat(self._marker).st_mtime_ns
        except FileNotFoundError:
            return 0

    async def is_allowed(self, host: str) -> bool:
        try:
            canonical = normalize_host(host)
        except ValueError:
            return False
        stamp = self._marker_stamp()  # read before the table: a change racing us reloads
        if self._hosts is None or stamp != self._stamp:
            self._hosts = frozenset(await self._db.read(fed.select_active_hosts))
            self._stamp = stamp
        return canonical in self._hosts


class SqliteKeyStore:
    """Remote keys, with the latest one per key id also held in memory (bounded). A key that
    changed elsewhere fails verification once, and the resolver's refetch replaces it."""

    MAX_CACHED = 10_000

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: OrderedDict[str, KnownKey] = OrderedDict()

    async def known_key(self, key_id: str, *, fresh: bool = False) -> KnownKey | None:
        cached = None if fresh else self._cache.get(key_id)
        if cached is not None:
            self._cache.move_to_end(key_id)
            return cached
        key = await self._db.read(fed.select_known_key, key_id)
        if key is not None:
            self._remember(key)
        return key

    async def remember_key(self, key: KnownKey) -> None:
        await self._db.write(fed.upsert_known_key, key)
        self._remember(key)

    def _remember(self, key: KnownKey) -> None:
        self._cache[key.key_id] = key
        self._cache.move_to_end(key.key_id)
        while len(self._cache) > self.MAX_CACHED:
            self._cache.popitem(last=False)


class SqliteInboxStore:
    def __init__(self, db: Database, now_ms: Callable[[], int]) -> None:
        self._db = db
        self._now_ms = now_ms

    async def store_inbound(self, record: InboundRecord) -> bool:
        return await self._db.write(fed.insert_inbound, record)

    async def inbound_seen(self, activity_id: str) -> bool:
        return await self._db.read(fed.inbound_exists, activity_id)

    async def claim_inbound(self, now_ms: int, limit: int) -> Sequence[StoredInbound]:
        return await self._db.write(fed.claim_inbound, now_ms, limit, INBOUND_LEASE_MS)

    async def finish_inbound(
        self, inbound_id: int, *, error: str | None, retry_at_ms: int | None
    ) -> None:
        await self._db.write(
            fed.finish_inbound,
            inbound_id,
            error=error,
            retry_at_ms=retry_at_ms,
            now_ms=self._now_ms(),
        )

    async def finish_inbound_done(self, inbound_ids: Sequence[int]) -> None:
        await self._db.write(fed.finish_inbound_done, list(inbound_ids), now_ms=self._now_ms())

    async def host_spoke(self, host: str, now_ms: int) -> None:
        # A cheap read first: only a host with recorded failures needs the write (which would
        # otherwise cost every accepted activity a second commit).
        if await self._db.read(fed.host_needs_reset, host):
            await self._db.write(fed.reset_host, host, now_ms)


class SqliteDeliveryStore:
    def __init__(self, db: Database, instance_key: Callable[[], SigningKey]) -> None:
        self._db = db
        self._instance_key = instance_key

    async def claim_due(self, now_ms: int, limit: int, lease_ms: int) -> Sequence[DeliveryJob]:
        return await self._db.write(
            fed.claim_deliveries, now_ms, limit, lease_ms, self._instance_key()
        )

    async def record_outcome(
        self, job: DeliveryJob, outcome: DeliveryOutcome, now_ms: int
    ) -> int | None:
        return await self._db.write(
            fed.record_delivery,
            job.id,
            job.host,
            state=outcome.state,
            counted=attempted(outcome),
            status=outcome.status,
            error=outcome.error,
            next_attempt_ms=outcome.next_attempt_ms,
            host_failed=outcome.host_failed,
            now_ms=now_ms,
            circuit_ms=circuit_open_ms,
            wait_until_ms=outcome.wait_until_ms,
        )

    async def circuit_open_until(self, host: str) -> int:
        return await self._db.read(fed.select_circuit, host)

    async def probe_waiting_hosts(self, now_ms: int, interval_ms: Callable[[int], int]) -> int:
        # Looked for every few seconds: a read first, so that an instance whose partners are
        # all well takes no write lock for it.
        if not await self._db.read(fed.hosts_due_a_probe, now_ms, interval_ms):
            return 0
        return await self._db.write(fed.probe_waiting_hosts, now_ms, interval_ms)

    async def next_due_ms(self) -> int | None:
        return await self._db.read(fed.select_next_due)

    async def created_ms(self, job_id: int) -> int:
        return await self._db.read(fed.select_delivery_created, job_id)
