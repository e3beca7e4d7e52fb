"""The inbound worker: handlers run in claim order, failures back off, then fail for good."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import pytest

from federation.dispatch import Dispatcher
from federation.ports import InboundRecord, StoredInbound
from tests.unit.federation.memory_ports import INBOUND_LEASE_MS, MemoryInboxStore

T0 = 1_800_000_000_000


class Clock:
    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> int:
        return self.ms


def record(n: int) -> InboundRecord:
    activity_id = f"https://alpha.example/activities/{n}"
    body = json.dumps({"id": activity_id, "type": "Like", "actor": "https://alpha.example/a"})
    return InboundRecord(
        activity_id=activity_id,
        activity_type="Like",
        actor_uri="https://alpha.example/a",
        origin_host="alpha.example",
        key_id="https://alpha.example/a#main-key",
        target="/inbox",
        headers=(),
        body=body.encode(),
        received_at_ms=T0,
    )


class Handler:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.seen: list[str] = []

    async def __call__(self, row: StoredInbound) -> None:
        self.seen.append(str(row.activity["id"]))
        if self.failures:
            self.failures -= 1
            raise ValueError("cannot apply")


async def filled(count: int) -> MemoryInboxStore:
    store = MemoryInboxStore()
    for n in range(1, count + 1):
        assert await store.store_inbound(record(n))
    return store


async def test_success_marks_done_in_claim_order() -> None:
    store, handler, clock = await filled(3), Handler(), Clock()
    dispatcher = Dispatcher(store, handler, clock)
    assert await dispatcher.run_until_idle() == 3
    assert handler.seen == [f"https://alpha.example/activities/{n}" for n in (1, 2, 3)]
    assert [(r.state, r.error) for r in store.rows] == [("done", None)] * 3
    assert await dispatcher.run_once() == 0


async def test_batches_are_bounded() -> None:
    store, handler = await filled(5), Handler()
    dispatcher = Dispatcher(store, handler, Clock(), batch=2)
    assert await dispatcher.run_once() == 2
    assert await dispatcher.run_until_idle() == 3


async def test_failure_is_retried_with_backoff_then_succeeds() -> None:
    store, handler, clock = await filled(1), Handler(failures=2), Clock()
    dispatcher = Dispatcher(store, handler, clock)
    assert await dispatcher.run_once() == 1
    row = store.rows[0]
    assert (row.state, row.retry_at_ms, row.error) == (
        "pending",
        T0 + 10_000,
        "ValueError: cannot apply",
    )
    clock.ms += 9_999
    assert await dispatcher.run_once() == 0  # not due yet
    clock.ms += 1
    assert await dispatcher.run_once() == 1
    assert row.retry_at_ms == clock.ms + 20_000  # doubled
    clock.ms = row.retry_at_ms
    assert await dispatcher.run_once() == 1
    assert (row.state, row.error, row.attempts) == ("done", None, 3)


async def test_failed_after_max_attempts_with_capped_backoff() -> None:
    store, handler, clock = await filled(1), Handler(failures=100), Clock()
    dispatcher = Dispatcher(store, handler, clock, max_attempts=12)
    delays = []
    while store.rows[0].state == "pending":
        before = clock.ms
        assert await dispatcher.run_once() == 1
        if store.rows[0].state == "pending":
            delays.append(store.rows[0].retry_at_ms - before)
            clock.ms = store.rows[0].retry_at_ms
    assert len(handler.seen) == 12
    assert delays[:4] == [10_000, 20_000, 40_000, 80_000]
    assert max(delays) == 3_600_000
    assert (store.rows[0].state, store.rows[0].error) == ("failed", "ValueError: cannot apply")
    clock.ms += 10 * 3_600_000
    assert await dispatcher.run_until_idle() == 0


async def test_row_that_never_finishes_is_abandoned_not_rerun_forever() -> None:
    store, handler, clock = await filled(1), Handler(), Clock()
    # Three claims whose worker died before finishing (the lease brings the row back).
    for _ in range(3):
        assert len(await store.claim_inbound(clock.ms, 10)) == 1
        clock.ms += INBOUND_LEASE_MS
    dispatcher = Dispatcher(store, handler, clock, max_attempts=3)
    assert await dispatcher.run_once() == 1
    assert handler.seen == []
    assert store.rows[0].state == "failed"
    assert "abandoned" in (store.rows[0].error or "")


async def test_lease_hides_a_claimed_row_until_it_expires() -> None:
    store, clock = await filled(1), Clock()
    assert len(await store.claim_inbound(clock.ms, 10)) == 1
    dispatcher = Dispatcher(store, Handler(), clock)
    assert await dispatcher.run_once() == 0
    clock.ms += INBOUND_LEASE_MS
    assert await dispatcher.run_once() == 1


async def test_finish_failure_is_logged_and_the_batch_continues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Successes are marked done in one write per round; if it fails, the rows stay leased
    (to be applied again, a no-op) and the failure is logged with the activities."""
    store, handler, clock = await filled(2), Handler(), Clock()
    store.fail_finish = 1
    dispatcher = Dispatcher(store, handler, clock)
    assert await dispatcher.run_once() == 2
    assert len(handler.seen) == 2
    assert [r.state for r in store.rows] == ["pending", "pending"]
    assert "activities/1" in caplog.text and "alpha.example" in caplog.text


async def test_run_forever_wakes_survives_errors_and_stops() -> None:
    store, handler, clock = MemoryInboxStore(), Handler(), Clock()
    dispatcher = Dispatcher(store, handler, clock, poll_interval=30.0)
    stop = asyncio.Event()
    original = store.claim_inbound
    broken = {"left": 1}

    async def flaky(now_ms: int, limit: int) -> list[StoredInbound]:
        if broken["left"]:
            broken["left"] -= 1
            raise OSError("database is locked")
        return list(await original(now_ms, limit))

    store.claim_inbound = flaky  # type: ignore[method-assign]
    task = asyncio.create_task(dispatcher.run_forever(stop))
    await asyncio.sleep(0)
    assert await store.store_inbound(record(1))
    dispatcher.wake()  # the poll interval is 30 s: only the wake-up can get this done
    async with asyncio.timeout(5):
        while not handler.seen:
            await asyncio.sleep(0.01)
            dispatcher.wake()
    stop.set()
    async with asyncio.timeout(5):
        await task
    assert store.rows[0].state == "done"
    assert broken["left"] == 0


class FullDisk(MemoryInboxStore):
    """A store whose claims fail while ``full`` (SQLite: "database or disk is full")."""

    def __init__(self) -> None:
        super().__init__()
        self.full = False

    async def claim_inbound(self, now_ms: int, limit: int) -> Sequence[StoredInbound]:
        if self.full:
            raise OSError(28, "database or disk is full")
        return await super().claim_inbound(now_ms, limit)


async def test_a_round_that_cannot_claim_is_logged_and_the_loop_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The applier process loops over run_once_or_log: a failing round must not end it (a
    full disk once left every accepted activity unapplied until a restart)."""
    import federation.dispatch as dispatch

    monkeypatch.setattr(dispatch, "_AFTER_FAILED_ROUND_S", 0.0)
    store, handler = FullDisk(), Handler()
    for n in (1, 2):
        assert await store.store_inbound(record(n))
    dispatcher = Dispatcher(store, handler, Clock())
    store.full = True
    assert await dispatcher.run_once_or_log() == 0
    assert "inbound dispatch round failed" in caplog.text
    store.full = False  # space again: the same loop applies what was accepted
    assert await dispatcher.run_once_or_log() == 2
    assert [r.state for r in store.rows] == ["done", "done"]
