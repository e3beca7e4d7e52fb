"""In-process broker for live updates (Server-Sent Events).

One subscriber queue per open browser tab, keyed by the local person's actor id. Services
publish small events *after* their transaction committed; the web layer turns each into an SSE
message and the browser fetches the visibility-checked partial it names. Events never carry
content, so a bug here cannot leak a post: the partial endpoint checks who may see it.

Queues are bounded; a tab that does not keep up loses events (it reloads on reconnect),
it never makes the publisher wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from server.storage import live as live_store
from server.storage.db import Database

_log = logging.getLogger("steelyard.live")


@dataclass(frozen=True, slots=True)
class LiveEvent:
    kind: str  # "post", "edited", "deleted" (data: post id) or "notifications" (unread count)
    data: str


class LiveBroker:
    QUEUE_SIZE = 100

    def __init__(self) -> None:
        self._subscribers: dict[int, set[asyncio.Queue[LiveEvent]]] = defaultdict(set)
        # Set by LiveRelay when several processes serve the instance.
        self.relay: Callable[[Iterable[int], LiveEvent], None] | None = None

    @asynccontextmanager
    async def subscribe(self, actor_id: int) -> AsyncIterator[asyncio.Queue[LiveEvent]]:
        queue: asyncio.Queue[LiveEvent] = asyncio.Queue(self.QUEUE_SIZE)
        self._subscribers[actor_id].add(queue)
        try:
            yield queue
        finally:
            self._subscribers[actor_id].discard(queue)
            if not self._subscribers[actor_id]:
                del self._subscribers[actor_id]

    def publish(self, actor_ids: Iterable[int], event: LiveEvent) -> None:
        ids = set(actor_ids)
        self.deliver(ids, event)
        if self.relay is not None:
            self.relay(ids, event)

    def deliver(self, actor_ids: Iterable[int], event: LiveEvent) -> None:
        """Hand an event to this process's subscribers only."""
        for actor_id in set(actor_ids):
            for queue in self._subscribers.get(actor_id, ()):
                if not queue.full():
                    queue.put_nowait(event)

    def is_connected(self, actor_id: int) -> bool:
        """May someone be listening? (With a relay, a tab may be open in another process.)"""
        return bool(self._subscribers.get(actor_id)) or self.relay is not None

    def subscriber_count(self) -> int:
        return sum(len(q) for q in self._subscribers.values())


class LiveRelay:
    """Carries live events between the processes of one instance (``serve --workers N``, and
    the applier process a server starts for an inbound backlog).

    Publishing appends a row (fire-and-forget: live updates are a convenience, the pages are
    the truth); a tail task in each process reads the rows of the others every 250 ms and
    publishes them to its own subscribers. ``send=False``: only tail (a single server process
    has no other server to tell); ``tail=False``: only send (an applier has no browsers).
    """

    INTERVAL = 0.25

    def __init__(
        self,
        broker: LiveBroker,
        db: Database,
        now_ms: Callable[[], int],
        *,
        send: bool = True,
        tail: bool = True,
    ) -> None:
        self._send = send
        self._tail_enabled = tail
        self._broker = broker
        self._db = db
        self._now_ms = now_ms
        self._origin = os.getpid()
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._db.write(live_store.ensure_table)
        if self._tail_enabled:
            last = await self._db.read(live_store.select_last_id)
            self._task = asyncio.create_task(self._tail(last))
        if self._send:
            self._broker.relay = self.send

    async def stop(self) -> None:
        self._broker.relay = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pending:  # events already published go out before the database closes
            await asyncio.gather(*self._pending, return_exceptions=True)

    def send(self, actor_ids: Iterable[int], event: LiveEvent) -> None:
        if not actor_ids:
            return
        task = asyncio.create_task(
            self._db.write(
                live_store.insert_event,
                self._origin,
                sorted(set(actor_ids)),
                event.kind,
                event.data,
                self._now_ms(),
            )
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _tail(self, last: int) -> None:
        rounds = 0
        while True:
            await asyncio.sleep(self.INTERVAL)
            try:
                for row_id, actor_ids, kind, data in await self._db.read(
                    live_store.select_events_after, last, self._origin
                ):
                    last = row_id
                    self._broker.deliver(actor_ids, LiveEvent(kind, data))
                rounds += 1
                if rounds % 240 == 0:
                    await self._db.write(live_store.prune, self._now_ms() - 60_000)
            except Exception:  # a live update is never worth crashing the server
                _log.exception("live relay round failed")
