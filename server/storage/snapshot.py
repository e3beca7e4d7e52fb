"""Consistent copies of the database while the instance runs, and checks of a copy.

Used by the pre-migration backup and by ``steelyard backup`` / ``restore``.

Invariants:
- A copy is taken with ``VACUUM INTO`` in one read transaction: it holds exactly what was
  committed when it started, whatever the server writes meanwhile (WAL readers do not block
  the writer). The online backup API was not used: any write by another connection restarts
  it, so on a busy instance a stepped copy might never finish.
- The copy is owner-only (0600) from the moment its file exists, and only a complete copy,
  fsynced with its directory entry, carries the target's name; on any error nothing of it
  is left.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

PARTIAL_SUFFIX = ".partial"
# What SQLite may leave next to a database file; a killed VACUUM INTO leaves a hot journal.
COMPANIONS = ("-journal", "-wal", "-shm")

# How often a long copy reports how far it is (seconds).
_PROGRESS_EVERY = 1.0


def write_copy(
    conn: sqlite3.Connection,
    target: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Write a complete copy of *conn*'s database to *target*, or leave nothing of it.

    *progress* (bytes written, bytes expected) is called about once a second from this
    thread while the copy runs in another; the expected size is the database's used pages.
    """
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    # VACUUM INTO accepts an existing empty file and keeps its mode (SQLite gives its journal
    # the same mode), so the copy is never readable by others, whatever the umask: no chmod
    # after the fact, and no process-wide umask change.
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is narrowed by the umask; SQLite must write it
    finally:
        os.close(fd)
    try:
        if progress is None:
            _vacuum_into(conn, partial)
        else:
            _vacuum_into_watched(conn, partial, progress)
        fsync_path(partial)
        os.replace(partial, target)
    except BaseException:
        remove_with_companions(partial)
        raise
    fsync_path(target.parent)  # the rename itself must survive a power loss


def _vacuum_into(conn: sqlite3.Connection, path: Path) -> None:
    conn.execute("VACUUM INTO ?", (str(path),))


def _vacuum_into_watched(
    conn: sqlite3.Connection, path: Path, progress: Callable[[int, int], None]
) -> None:
    """``VACUUM INTO`` in a worker thread while this one reports the copy's growing size.

    *conn* is used only by the worker while it runs (sqlite3 objects may move between
    threads when ``check_same_thread`` is off, which the caller's connection must allow)."""
    expected = used_bytes(conn)
    failure: list[BaseException] = []

    def copy() -> None:
        try:
            _vacuum_into(conn, path)
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)

    worker = threading.Thread(target=copy, name="steelyard-vacuum-into", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(_PROGRESS_EVERY)
        if worker.is_alive():
            progress(_size(path), expected)
    if failure:
        raise failure[0]
    progress(_size(path), expected)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def used_bytes(conn: sqlite3.Connection) -> int:
    """The bytes a compacted copy of the database will take (pages in use)."""
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    return (pages - free) * page_size


def database_bytes(conn: sqlite3.Connection) -> int:
    """The database's size in bytes, free pages included."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    return int(pages) * int(conn.execute("PRAGMA page_size").fetchone()[0])


def open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to *path* that may be handed to a worker thread.

    Read-only at the SQLite level (``mode=ro``): a copy or a check can never change the
    instance, nor create a database where there was none."""
    if not path.is_file():
        raise FileNotFoundError(path)
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)


def quick_check(path: Path) -> str:
    """``ok``, or SQLite's first complaint about the database file at *path*.

    ``quick_check`` reads every page and checks the b-trees' structure (not index contents
    against tables): seconds for a gigabyte, where ``integrity_check`` takes minutes."""
    try:
        conn = open_read_only(path)
    except FileNotFoundError:
        return "missing"
    try:
        row = conn.execute("PRAGMA quick_check").fetchone()
        return str(row[0]) if row else "no answer"
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        conn.close()


def schema_version(path: Path) -> int:
    """The newest migration applied to the database at *path* (0 for none)."""
    conn = open_read_only(path)
    try:
        row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a directory's fsync makes renames in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_with_companions(path: Path) -> None:
    for suffix in ("", *COMPANIONS):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
