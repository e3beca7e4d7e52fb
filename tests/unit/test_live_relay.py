"""Live updates across worker processes: what one process publishes reaches subscribers of
another through the relay table (two Database handles on one file stand for two processes)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from server.clock import SystemClock
from server.live import LiveBroker, LiveEvent, LiveRelay
from server.storage.db import Database
from tests.conftest import make_instance


async def test_event_published_in_one_process_reaches_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inst = make_instance(tmp_path / "inst")
    clock = SystemClock()
    db_a, db_b = Database(inst / "steelyard.sqlite3"), Database(inst / "steelyard.sqlite3")
    await db_a.open()
    await db_b.open()
    broker_a, broker_b = LiveBroker(), LiveBroker()
    relay_a = LiveRelay(broker_a, db_a, clock.now_ms)
    relay_b = LiveRelay(broker_b, db_b, clock.now_ms)
    # Two processes have two pids; here both live in one, so tell them apart by hand.
    monkeypatch.setattr(relay_b, "_origin", relay_a._origin + 1)
    monkeypatch.setattr(LiveRelay, "INTERVAL", 0.02)
    await relay_a.start()
    await relay_b.start()
    try:
        async with broker_b.subscribe(7) as queue, broker_a.subscribe(7) as own:
            broker_a.publish([7, 8], LiveEvent("post", "42"))
            assert (await asyncio.wait_for(own.get(), 1)).data == "42"  # local, at once
            event = await asyncio.wait_for(queue.get(), 2)  # other process, via the relay
            assert event == LiveEvent("post", "42")
            await asyncio.sleep(0.1)
            assert own.empty()  # a process never receives its own events twice
    finally:
        await relay_a.stop()
        await relay_b.stop()
        await db_a.close()
        await db_b.close()
