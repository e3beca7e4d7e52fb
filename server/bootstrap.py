"""Building a :class:`Context` outside the web app (CLI, benchmarks) and preparing the database.

``create_app`` uses the same functions, so the CLI and the server see one instance the same way.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from federation.transport import Transport
from federation.urls import Urls
from server.clock import Clock, SystemClock
from server.config import Config, load_config
from server.errors import SteelyardError
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
SERVE_LOCK = ".serve.lock"


async def stop_each(steps: Iterable[Callable[[], Awaitable[None]]], log: logging.Logger) -> None:
    """Run shutdown *steps* in order, each on its own: one failing (a full disk) is logged
    and must not skip the ones after it, above all closing the database, whose writer
    thread is not a daemon (left open, the process would never exit)."""
    for step in steps:
        try:
            await step()
        except Exception:
            log.exception("shutdown step %s failed", getattr(step, "__qualname__", step))


def try_exclusive_lock(path: Path) -> int | None:
    """An exclusive ``flock`` on *path* (created owner-only), or None when another process
    holds it. The lock lives as long as the returned descriptor is open, and the kernel
    lets go of it when its process dies, even by kill -9."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


class ServeLock:
    """One ``steelyard serve`` per instance: an exclusive ``flock`` on a file in the instance
    folder, held for the server's life (the kernel lets go if it dies, even by kill -9), with
    the holder's pid written in it for the message others get. More processes are
    ``serve --workers N`` under one holder, which hands the federation workers to one of
    them; a second, separate server would serve without them, and take nothing over when the
    first one died."""

    def __init__(self, config: Config) -> None:
        self._path = config.instance_path / SERVE_LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        """Hold the lock, or raise :class:`SteelyardError` saying who holds it."""
        fd = try_exclusive_lock(self._path)
        if fd is None:
            raise SteelyardError(
                f"another steelyard serve{_holder(self._path)} is serving this instance;"
                " stop it first (one server per instance: use --workers for more processes)."
            )
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock
            self._fd = None


def server_running(config: Config) -> str | None:
    """ " (pid N)" or "" when a ``steelyard serve`` holds the instance now, else None."""
    path = config.instance_path / SERVE_LOCK
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _holder(path)
    finally:
        os.close(fd)
    return None


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


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


def refuse_upgrade_under_a_server(config: Config) -> None:
    """A command run with newer code than the server of the instance must not migrate the
    database under it: the server's queries would fail on the changed schema until it is
    restarted. The server migrates as it starts, so restarting it is the upgrade."""
    conn = open_sync(config.db_path, config.synchronous)
    try:
        pending = pending_migrations(conn)
    finally:
        conn.close()
    if not pending:
        return
    holder = server_running(config)
    if holder is not None:
        raise SteelyardError(
            "this instance's database needs upgrading for this version of Steelyard, and a"
            f" server{holder} is running on it: if that is this version starting up, wait until"
            " it serves; otherwise restart it (it upgrades the database as it starts). Then run"
            " this command again."
        )


@asynccontextmanager
async def open_context(instance_path: Path, clock: Clock | None = None) -> AsyncIterator[Context]:
    config = load_config(instance_path)
    clock = clock or SystemClock()
    refuse_upgrade_under_a_server(config)
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
