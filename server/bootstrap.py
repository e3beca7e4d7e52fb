"""Building a :class:`Context` outside the web app (CLI, benchmarks) and preparing the database.

``create_app`` uses the same functions, so the CLI and the server see one instance the same way.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from federation.transport import Transport
from federation.urls import Urls
from server.clock import Clock, SystemClock
from server.config import Config, load_config
from server.federator import Federator
from server.live import LiveBroker
from server.services.context import Context
from server.storage.db import Database, open_sync
from server.storage.migrate import migrate, pending_migrations
from server.text import TextRenderer


def build_context(config: Config, clock: Clock, transport: Transport | None = None) -> Context:
    db = Database(config.db_path, synchronous=config.synchronous)
    return Context(
        config=config,
        db=db,
        clock=clock,
        text=TextRenderer(),
        live=LiveBroker(),
        urls=Urls(config.url),
        federator=Federator(config, db, clock, transport),
    )


def prepare_database(config: Config, clock: Clock) -> None:
    """Migrate the database (backing it up first when it already holds data)."""
    conn = open_sync(config.db_path, config.synchronous)
    try:
        migrate(conn, backups_dir=config.backups_dir, now_ms=clock.now_ms(), progress=_tell)
    finally:
        conn.close()


def _tell(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@asynccontextmanager
async def open_context(instance_path: Path, clock: Clock | None = None) -> AsyncIterator[Context]:
    config = load_config(instance_path)
    clock = clock or SystemClock()
    prepare_database(config, clock)
    context = build_context(config, clock)
    await context.db.open()
    try:
        yield context
    finally:
        await context.federator.stop()
        await context.db.close()


async def wait_for_migrations(config: Config) -> None:
    """For secondary worker processes: wait (up to a minute) until the lock holder migrated."""
    deadline = asyncio.get_running_loop().time() + 60.0
    while True:
        conn = open_sync(config.db_path, config.synchronous)
        try:
            if not pending_migrations(conn):
                return
        finally:
            conn.close()
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError("the database was not migrated in time by the first worker")
        await asyncio.sleep(0.2)
