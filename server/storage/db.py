"""The database handle: one writer, a reader on the event loop, a few reader threads.

Invariants:
- Every connection runs WAL, ``foreign_keys=ON``, ``busy_timeout`` and the configured
  ``synchronous`` level (asserted, not assumed).
- All writes go through :meth:`Database.write`: one writer connection in its own thread,
  ``BEGIN IMMEDIATE`` (a deferred transaction that upgrades fails at once with "database is
  locked", ignoring busy_timeout; SECURITY.md §3.4), commit or roll back as a whole; writes
  that arrive together share one transaction (group commit).
- Processes of one instance (the server, its applier, CLI commands) take turns at writing
  through an ``flock`` on a file beside the database (:class:`WriterTurn`) before ``BEGIN
  IMMEDIATE``. SQLite's own wait for a lock sleeps 1, 2, 5, 10 ... 100 ms between tries, so
  a process that commits often starves one that waits: measured on the 2-core machine under
  900 inbound activities/s, the applier applied 167/s with SQLite's wait and 390-460/s
  trying for the turn every 0.5 ms. The turn is only about fairness: a writer that does not
  take it (a ``sqlite3`` shell, a backup tool) is still kept out by SQLite's lock, and a
  file system without locks leaves SQLite's lock alone. A write waits at most
  ``busy_timeout`` in all, turn and lock together.
- A transaction is a plain synchronous function ``fn(conn, *args)``, so a whole transaction
  costs one thread hop instead of one per statement. Storage modules hold these functions;
  SQL lives nowhere else. The caller never does network I/O inside ``fn``.
- :meth:`Database.read` runs short reads (point lookups and keyset pages, a fraction of a
  millisecond) synchronously on the event loop's own connection. Measured on the 2-core
  machine, a thread hop plus the GIL hand-offs it causes cost more than such a query itself:
  a feed page went from 3.2 to 1.9 ms of CPU. WAL readers do not wait for the writer; if a
  read still finds the file busy (recovery, a checkpoint truncating the WAL) it is retried in
  a reader thread rather than blocking the loop. Reads whose cost grows with the data
  (backups, unbounded listings, scans) use :meth:`Database.read_in_thread`.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import aiosqlite

P = ParamSpec("P")
R = TypeVar("R")

TxFn = Callable[Concatenate[sqlite3.Connection, P], R]


_log = logging.getLogger(__name__)

# How long a write waits for another process's lock before the caller hears "busy" (503).
BUSY_TIMEOUT_MS = 10_000
# The loop's reader gives up quickly when the file is busy and hands the read to a thread.
LOOP_READER_BUSY_MS = 20


def configure_connection(
    conn: sqlite3.Connection, synchronous: str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS
) -> None:
    """Apply and check the pragmas every connection needs."""
    conn.row_factory = sqlite3.Row
    # busy_timeout first: switching to WAL itself may need to wait for a lock.
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise RuntimeError(f"SQLite refused WAL mode (got {mode})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    level = conn.execute("PRAGMA synchronous").fetchone()[0]
    expected = {"OFF": 0, "NORMAL": 1, "FULL": 2, "EXTRA": 3}[synchronous]
    if level != expected:
        raise RuntimeError(f"SQLite synchronous is {level}, expected {expected}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA cache_size = -16000")  # 16 MB per connection


class WriterTurn:
    """A turn at writing the database, shared by every process that opens it (an exclusive
    ``flock`` on ``.<database name>.writer-lock`` in the database's folder).

    The kernel drops the lock when its holder exits, kill -9 included, so no turn outlives
    its process. Waiting is bounded: after *wait_s* the write goes ahead without the turn and
    SQLite's lock (and busy_timeout) decide, so a stopped process holding the turn delays
    writers by *wait_s* at most and never hangs them.
    """

    POLL_S = 0.0005  # as fine as a blocking flock in the inbox benchmark, and it can give up

    def __init__(self, db_path: Path, *, wait_s: float) -> None:
        self.path = db_path.with_name(f".{db_path.name}.writer-lock")
        self.wait_s = wait_s
        self._fd: int | None = None

    def open(self) -> None:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:  # fairness is lost, not correctness: SQLite's lock remains
                _log.warning("no writer turn (%s): SQLite's own lock decides alone", exc)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # also lets go of the turn, if held
            self._fd = None

    def take(self) -> bool:
        """Wait for the turn (blocking the calling thread); False if *wait_s* ran out."""
        if self._fd is None:
            return False
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(self.POLL_S)
            except OSError:
                return False  # a file system without flock: SQLite's lock alone

    def give(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


class Database:
    """Async access to the instance's SQLite file."""

    MAX_GROUP = 64  # writes committed together at most

    def __init__(self, path: Path, *, synchronous: str = "FULL", readers: int = 2) -> None:
        self.path = path
        self._turn = WriterTurn(path, wait_s=BUSY_TIMEOUT_MS / 1000)
        self.synchronous = synchronous
        self._reader_count = readers
        self._writer: aiosqlite.Connection | None = None
        self._loop_reader: sqlite3.Connection | None = None
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all_readers: list[aiosqlite.Connection] = []
        self._pending: list[tuple[Callable[..., Any], Any, Any, asyncio.Future[Any]]] = []
        self._draining = False

    async def open(self) -> None:
        self._turn.open()
        self._writer = await self._connect()
        for _ in range(self._reader_count):
            conn = await self._connect()
            self._all_readers.append(conn)
            self._readers.put_nowait(conn)
        # Used only from the event loop's thread; check_same_thread stays on to prove it.
        self._loop_reader = sqlite3.connect(self.path, isolation_level=None)
        configure_connection(
            self._loop_reader, self.synchronous, busy_timeout_ms=LOOP_READER_BUSY_MS
        )

    async def _connect(self) -> aiosqlite.Connection:
        # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
        conn = await aiosqlite.connect(self.path, isolation_level=None, check_same_thread=False)
        await _run(conn, configure_connection, self.synchronous)
        return conn

    async def close(self) -> None:
        if self._loop_reader is not None:
            self._loop_reader.close()
            self._loop_reader = None
        for conn in self._all_readers:
            await conn.close()
        self._all_readers.clear()
        self._readers = asyncio.Queue()
        try:
            if self._writer is not None:
                writer, self._writer = self._writer, None
                try:
                    # Leave a small WAL behind: a clean shutdown checkpoints it into the file.
                    await writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error:
                    pass  # a full disk: the WAL stays, the next open replays it; nothing lost
                finally:
                    # Always: the writer's thread is not a daemon, and a process whose writer
                    # was left open never exits (a stop would hang until kill -9).
                    await writer.close()
        finally:
            # After the writer's thread is done with it; also when open() failed half way.
            self._turn.close()

    async def read(self, fn: TxFn[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run a short read-only function now, on the loop's connection (one snapshot).

        For reads whose cost is bounded (an index lookup, a page with a LIMIT). Anything that
        may take long must use :meth:`read_in_thread`: this one holds up the event loop.
        """
        conn = self._loop_reader
        if conn is None:
            raise RuntimeError("database is not open")
        try:
            return _in_read_tx(conn, fn, *args, **kwargs)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
        # The file was busy for longer than the loop may wait: wait in a thread instead.
        return await self.read_in_thread(fn, *args, **kwargs)

    async def read_in_thread(self, fn: TxFn[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run a read-only function on a reader thread (one snapshot); for long reads."""
        conn = await self._readers.get()
        try:
            return await _run(conn, _in_read_tx, fn, *args, **kwargs)
        finally:
            self._readers.put_nowait(conn)

    async def write(self, fn: TxFn[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn`` atomically in a ``BEGIN IMMEDIATE`` transaction and return once it is
        committed (durably, per ``synchronous``); an exception from ``fn`` undoes all of
        ``fn``'s writes and is raised here.

        Group commit: writes that arrive while one is being committed are run together in the
        next transaction, each inside its own SAVEPOINT, so one failing function rolls back
        only itself. Under load many writers share one thread hop and one fsync; alone, a write
        costs what it did before.
        """
        if self._writer is None:
            raise RuntimeError("database is not open")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, args, kwargs, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        result: R = await future
        return result

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self.MAX_GROUP]
                del self._pending[: self.MAX_GROUP]
                work = [(fn, args, kwargs) for fn, args, kwargs, _ in batch]
                assert self._writer is not None
                try:
                    outcomes = await _run(self._writer, _group_tx_in_turn, self._turn, work)
                except BaseException as exc:  # BEGIN or COMMIT failed: nothing was written
                    if isinstance(exc, sqlite3.Error) and is_unavailable(exc):
                        # Writes queued while this batch waited out busy_timeout would wait
                        # it out once more: each caller waits at most one timeout, then hears.
                        batch += self._pending
                        self._pending.clear()
                    for *_, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (*_, future), (ok, value) in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._draining = False

    async def backup_to(self, target: Path) -> None:
        """Consistent online copy (``VACUUM INTO``), safe while the instance runs."""
        await self.read_in_thread(vacuum_into, str(target))


def vacuum_into(conn: sqlite3.Connection, target: str) -> None:
    conn.execute("VACUUM INTO ?", (target,))


def _in_read_tx(conn: sqlite3.Connection, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    conn.execute("BEGIN")
    try:
        return fn(conn, *args, **kwargs)
    finally:
        conn.execute("COMMIT")


# The database cannot be written now for reasons outside the request: another process holds
# the lock, or the file system refuses (read-only, full, failing). Callers answer 503.
_UNAVAILABLE = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
    }
)


def is_unavailable(exc: sqlite3.Error) -> bool:
    """A passing condition of the database or its disk, not a fault of the request."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _UNAVAILABLE
    return isinstance(exc, sqlite3.OperationalError) and _is_busy(exc)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def _group_tx_in_turn(
    conn: sqlite3.Connection,
    turn: WriterTurn,
    work: list[tuple[Callable[..., Any], Any, Any]],
) -> list[tuple[bool, Any]]:
    began = time.monotonic()
    held = turn.take()
    # What the turn took comes off SQLite's own wait: busy_timeout is the whole wait.
    waited_ms = int((time.monotonic() - began) * 1000)
    if waited_ms:
        conn.execute(f"PRAGMA busy_timeout = {max(1, BUSY_TIMEOUT_MS - waited_ms)}")
    try:
        return _group_tx(conn, work)
    finally:
        if held:
            turn.give()
        if waited_ms:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def _group_tx(
    conn: sqlite3.Connection, work: list[tuple[Callable[..., Any], Any, Any]]
) -> list[tuple[bool, Any]]:
    """One transaction for several write functions, each isolated by a SAVEPOINT."""
    outcomes: list[tuple[bool, Any]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for fn, args, kwargs in work:
            conn.execute("SAVEPOINT one_write")
            try:
                value = fn(conn, *args, **kwargs)
            except Exception as exc:
                conn.execute("ROLLBACK TO one_write")
                conn.execute("RELEASE one_write")
                outcomes.append((False, exc))
            else:
                conn.execute("RELEASE one_write")
                outcomes.append((True, value))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


async def _run(conn: aiosqlite.Connection, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """Run ``fn(sqlite3_connection, ...)`` in the aiosqlite thread: one hop.

    aiosqlite has no public "run this callable" call; ``_execute`` is how its own methods do it.
    The version range is pinned in pyproject.toml and a test exercises this path.
    """

    def call() -> R:
        return fn(conn._conn, *args, **kwargs)

    return await conn._execute(call)  # type: ignore[no-any-return,no-untyped-call]


def open_sync(path: Path, synchronous: str = "FULL") -> sqlite3.Connection:
    """A plain connection for the CLI and migrations (no event loop needed)."""
    conn = sqlite3.connect(path, isolation_level=None)
    configure_connection(conn, synchronous)
    return conn
