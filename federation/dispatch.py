"""The inbound worker: hand stored activities to the application's handler, with retries.

:class:`Dispatcher` claims due rows from :class:`~federation.ports.InboxStore` (in claim
order, i.e. by row id), calls the handler for each one sequentially, and records the result
with ``finish_inbound``:

- success: ``error=None, retry_at_ms=None`` (done);
- the handler raised: ``error`` set and ``retry_at_ms = now + 10 s × 2^(attempts-1)``
  (capped at 1 h), or ``retry_at_ms=None`` (failed, kept for an admin) once ``attempts``
  reached ``max_attempts``.

What the store must honour (the SQLite implementation follows this, as does the in-memory
one of the unit tests):

- ``claim_inbound(now_ms, limit)`` returns pending rows whose ``retry_at_ms <= now_ms``,
  ordered by id, at most *limit*; in the same transaction it increments each row's
  ``attempts`` (the returned value counts the current attempt, so it is 1 on the first
  claim) and leases the row by moving ``retry_at_ms`` a few minutes ahead (longer than any
  handler runs), so a crash mid-handler only delays the row.
- ``finish_inbound_done(ids)`` marks rows done; the worker calls it once per round for every
  row whose handler succeeded (one write instead of one each). A crash before it leaves those
  rows leased, so they are applied again later: handlers are idempotent, a repeat is a no-op.
- ``finish_inbound(id, error=None, ...)`` marks the row done; with an error and a
  ``retry_at_ms`` it stays pending until then; with an error and ``retry_at_ms=None`` it is
  failed for good. The error is kept on the row.

Because attempts are counted at claim time, a row whose handler kills the process is not
claimed for ever: once its count is past ``max_attempts`` it is marked failed unhandled.

Several processes may run a dispatcher over one store (a server and the process it starts to
apply a backlog): a *gate* (``acquire() -> bool`` / ``release()``, e.g. a file lock) makes them
take turns by whole rounds, so each actor's activities are still applied in arrival order.
``on_backlog`` is called after a round that found a full batch (more is probably waiting).

Invariants: the worker never dies of an exception (each is logged with the activity id and
host and recorded on the row); time comes only from the injected ``now_ms``; waiting uses the
event loop (``wake()`` or the poll interval), never the injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from federation import ports

__all__ = ["Dispatcher", "idle"]

_log = logging.getLogger(__name__)

_MAX_ERROR = 500
_AFTER_FAILED_ROUND_S = 1.0


class Gate(Protocol):
    """Who may dispatch now, across processes (see the module docstring)."""

    def acquire(self) -> bool:
        """Take the turn without waiting; False if another holds it."""
        ...

    def release(self) -> None: ...


class Dispatcher:
    """Runs the registered handler over stored inbound activities."""

    def __init__(
        self,
        store: ports.InboxStore,
        handler: Callable[[ports.StoredInbound], Awaitable[None]],
        now_ms: Callable[[], int],
        *,
        batch: int = 50,
        max_attempts: int = 8,
        base_delay_ms: int = 10_000,
        max_delay_ms: int = 3_600_000,
        poll_interval: float = 1.0,
        gate: Gate | None = None,
        on_backlog: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._handler = handler
        self._now_ms = now_ms
        self._batch = batch
        self._max_attempts = max_attempts
        self._base_delay_ms = base_delay_ms
        self.max_delay_ms = max_delay_ms
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._gate = gate
        self._on_backlog = on_backlog

    def wake(self) -> None:
        """Ask :meth:`run_forever` to look for work now (after a commit that queued some)."""
        self._wake.set()

    def retry_delay_ms(self, attempts: int) -> int:
        """Delay before the next try after the *attempts*-th failed one (1-based)."""
        exponent = min(max(attempts - 1, 0), 32)
        return min(self._base_delay_ms << exponent, self.max_delay_ms)

    async def run_once(self) -> int:
        """Claim one batch of due rows and work them; return how many were claimed.

        Each actor's activities are applied in the order they arrived; different actors'
        run concurrently (their database writes then share commits, see ``Database.write``),
        so one busy sender or a slow fetch does not hold up the others.
        """
        if self._gate is None:
            return await self._round()
        if not self._gate.acquire():
            return 0  # another process is dispatching
        try:
            return await self._round()
        finally:
            self._gate.release()

    async def _round(self) -> int:
        rows = await self._store.claim_inbound(self._now_ms(), self._batch)
        by_actor: dict[str, list[ports.StoredInbound]] = {}
        for row in rows:
            by_actor.setdefault(row.actor_uri, []).append(row)

        succeeded: list[ports.StoredInbound] = []

        async def in_order(queue: list[ports.StoredInbound]) -> None:
            for row in queue:
                if await self._work(row):
                    succeeded.append(row)

        await asyncio.gather(*(in_order(queue) for queue in by_actor.values()))
        if succeeded:
            try:
                await self._store.finish_inbound_done([row.id for row in succeeded])
            except Exception:
                # The leases run out and the rows are applied again: a no-op, not a loss.
                _log.exception(
                    "inbound: marking %d applied rows done failed; they will be applied again"
                    " (a no-op) when their lease runs out: %s",
                    len(succeeded),
                    ", ".join(
                        f"{row.activity.get('id')} ({row.origin_host})" for row in succeeded[:5]
                    ),
                )
        if len(rows) >= self._batch and self._on_backlog is not None:
            self._on_backlog()
        return len(rows)

    async def run_until_idle(self, max_rounds: int = 1000) -> int:
        """Run batches until nothing is due (tests); return the number of rows worked."""
        return await until_idle(self.run_once, max_rounds)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Work until *stop* is set; sleep on :meth:`wake` or the poll interval when idle."""
        while not stop.is_set():
            self._wake.clear()
            count = await self.run_once_or_log()
            if count == 0:
                await idle(self._wake, stop, self._poll_interval)

    async def run_once_or_log(self) -> int:
        """:meth:`run_once`, with a failure of the round itself (the store cannot claim: a
        full disk, a locked database) logged and counted as an idle round, so the loop that
        calls it sleeps and tries again instead of ending. Rows claimed before the failure
        come back when their lease ends."""
        try:
            return await self.run_once()
        except Exception:
            _log.exception("inbound dispatch round failed; trying again in a second")
            await asyncio.sleep(_AFTER_FAILED_ROUND_S)  # not a log line per poll interval
            return 0

    async def _work(self, row: ports.StoredInbound) -> bool:
        """Run the handler for one row; True if it succeeded (the caller marks it done)."""
        activity_id = row.activity.get("id")
        if row.attempts > self._max_attempts:
            # Claimed more often than allowed without ever finishing: the handler took the
            # process down (or hung past the lease). Stop before it does so again.
            await self._finish(
                row,
                error=f"abandoned: claimed {row.attempts} times without finishing",
                retry_at_ms=None,
            )
            return False
        try:
            await self._handler(row)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR]
            retry_at: int | None = None
            if row.attempts < self._max_attempts:
                retry_at = self._now_ms() + self.retry_delay_ms(row.attempts)
            _log.warning(
                "inbound %d failed attempt %d/%d (activity %s, host %s): %s%s",
                row.id,
                row.attempts,
                self._max_attempts,
                activity_id,
                row.origin_host,
                type(exc).__name__,
                "" if retry_at is not None else "; giving up",
            )
            await self._finish(row, error=error, retry_at_ms=retry_at)
            return False
        return True

    async def _finish(
        self, row: ports.StoredInbound, *, error: str | None, retry_at_ms: int | None
    ) -> None:
        try:
            await self._store.finish_inbound(row.id, error=error, retry_at_ms=retry_at_ms)
        except Exception:
            # The lease runs out and the row is claimed again: late, not lost.
            _log.exception(
                "inbound %d: recording the result failed (activity %s, host %s)",
                row.id,
                row.activity.get("id"),
                row.origin_host,
            )


async def until_idle(run_once: Callable[[], Awaitable[int]], max_rounds: int) -> int:
    """Call *run_once* until a round finds nothing to do; return the total worked."""
    total = 0
    for _ in range(max_rounds):
        count = await run_once()
        if count == 0:
            break
        total += count
    return total


async def idle(wake: asyncio.Event, stop: asyncio.Event, interval: float) -> None:
    """Wait until *wake* or *stop* is set, or *interval* seconds passed (loop time)."""
    waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())}
    try:
        await asyncio.wait(waiters, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        for waiter in waiters:
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
