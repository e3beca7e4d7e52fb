"""Applying an inbound backlog in a process of its own, started by the server when needed.

Why: Python runs one thread at a time per process. Under a burst of inbound activities the
server's one event loop must both answer the inbox (verify, store, 202) and apply what it
stored (parse, sanitize, write posts), and the HTTP handlers crowd the applying out: measured
on the 2-core machine, about 100 applied per second while 1,100 per second were accepted. A
second process uses the second core.

How the processes cooperate (all state is in the instance folder and the database):

- ``<instance>/.dispatch.lock`` is a :class:`server.processes.FileGate`. Whoever holds it
  runs the inbound dispatcher. The server takes it for each dispatch round and lets go
  between rounds; the applier waits for it when it starts and keeps it until it has been idle
  for ``idle_exit`` seconds. Turns are whole rounds, so each actor's activities stay in
  arrival order.
- The server starts at most one applier at a time (:class:`server.processes.ApplierLauncher`)
  when a round found a full batch, and stops it (SIGTERM) when the server stops. The applier
  asks the kernel to kill it when its parent dies, so a ``kill -9`` of the server leaves
  nothing behind. Rows it had claimed are leased: they are claimed again when the lease runs
  out, or at once by the next server start (which releases every lease).
- Live updates the applier causes reach the server's open pages through the relay table
  (:class:`server.live.LiveRelay`); deliveries it queues (an ``Accept``, a wall ``Add``) are
  sent by the server's delivery worker on its next poll.
- ``steelyard apply-inbound`` runs the same loop by hand, for as long as wanted.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from federation.dispatch import Dispatcher, idle
from federation.ports import StoredInbound
from server.bootstrap import build_context, stop_each, wait_for_migrations
from server.clock import SystemClock
from server.config import load_config
from server.live import LiveRelay
from server.processes import GATE_FILE, FileGate
from server.services import inbound

__all__ = ["run_applier"]

_log = logging.getLogger("steelyard.applier")


async def run_applier(instance_path: Path, *, idle_exit: float | None) -> int:
    """Apply inbound activities until stopped, or until idle for *idle_exit* seconds.

    Returns the number of activities worked.
    """
    config = load_config(instance_path)
    await wait_for_migrations(config)
    clock = SystemClock()
    context = build_context(config, clock)

    async def handle(item: StoredInbound) -> None:
        await inbound.handle(context, item)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    gate = FileGate(config.instance_path / GATE_FILE)
    worked = 0
    await context.db.open()
    relay = LiveRelay(context.live, context.db, clock.now_ms, tail=False)
    try:
        await context.federator.start_for_applying()
        await relay.start()
        if not await gate.wait(stop):
            return 0
        dispatcher = Dispatcher(context.federator.inbox_store, handle, clock.now_ms)
        idle_since = loop.time()
        while not stop.is_set():
            count = await dispatcher.run_once_or_log()
            worked += count
            if count:
                idle_since = loop.time()
            elif idle_exit is not None and loop.time() - idle_since >= idle_exit:
                break
            else:
                await idle(asyncio.Event(), stop, 0.05)
    finally:
        gate.release()
        # Or this process would never exit, and the server would wait on it.
        await stop_each([relay.stop, context.federator.stop, context.db.close], _log)
    _log.info("applier done: %d inbound activities worked", worked)
    return worked
