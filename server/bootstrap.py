"""Building a :class:`Context` outside the web app (CLI, benchmarks) and preparing the database.

``create_app`` uses the same functions, so the CLI and the server see one instance the same way.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
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


def configure_logging() -> None:
    """Our log lines (``steelyard.*``, ``federation.*``: activities ignored or not applied,
    delivery trouble, the applier) go to stderr, where a service manager's journal keeps them.
    Without this, Python drops everything below WARNING. Nothing happens if the process has
    set up logging already (tests, an embedding program)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


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


MIGRATE_LOCK = ".migrate.lock"


@contextmanager
def _migrate_lock(config: Config, *, wait: bool) -> Iterator[bool]:
    """An exclusive ``flock`` on the instance's migrate lock file while migrating (*wait*:
    block until it is ours), or, without *wait*, whether someone else holds it now."""
    fd = os.open(config.instance_path / MIGRATE_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if wait:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield True
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            yield True  # held: a migration is running
            return
        yield False
    finally:
        os.close(fd)  # closing releases the lock


def prepare_database(config: Config, clock: Clock) -> None:
    """Migrate the database (backing it up first when it already holds data).

    The migrate lock is held meanwhile, so other processes of the instance wait for as long
    as the backup and the migrations take (see :func:`wait_for_migrations`)."""
    with _migrate_lock(config, wait=True):
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


async def wait_for_migrations(config: Config, *, patience: float = 60.0) -> None:
    """For secondary processes: wait until the first worker has migrated the database.

    As long as a migration runs (its lock is held) this waits, however long the backup of a
    large instance takes; with migrations pending and nobody migrating for *patience*
    seconds, it gives up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    next_word = loop.time() + 10.0
    while True:
        conn = open_sync(config.db_path, config.synchronous)
        try:
            if not pending_migrations(conn):
                return
        finally:
            conn.close()
        with _migrate_lock(config, wait=False) as migrating:
            if migrating:
                deadline = loop.time() + patience
                if loop.time() > next_word:
                    _tell("Waiting for the first worker to finish migrating the database ...")
                    next_word = loop.time() + 30.0
        if loop.time() > deadline:
            raise RuntimeError("the database was not migrated in time by the first worker")
        await asyncio.sleep(0.2)
