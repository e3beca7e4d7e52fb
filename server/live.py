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
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LiveEvent:
    kind: str  # "post" or "notifications"
    data: str  # post id, or unread count


class LiveBroker:
    QUEUE_SIZE = 100

    def __init__(self) -> None:
        self._subscribers: dict[int, set[asyncio.Queue[LiveEvent]]] = defaultdict(set)

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
        for actor_id in set(actor_ids):
            for queue in self._subscribers.get(actor_id, ()):
                if not queue.full():
                    queue.put_nowait(event)

    def is_connected(self, actor_id: int) -> bool:
        return bool(self._subscribers.get(actor_id))

    def subscriber_count(self) -> int:
        return sum(len(q) for q in self._subscribers.values())
