"""Migrations: snapshot, checksums, ahead-of-code guard, backup before migrating, pragmas."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.bootstrap import MIGRATE_LOCK, wait_for_migrations
from server.config import load_config
from server.errors import InstanceError
from server.storage import db as db_module
from server.storage import migrate, snapshot
from server.storage.db import Database, is_unavailable, open_sync
from tests.conftest import make_instance

SNAPSHOT = Path(__file__).resolve().parents[2] / "server" / "storage" / "schema.sql"


def _fresh(tmp_path: Path) -> sqlite3.Connection:
    conn = open_sync(tmp_path / "db.sqlite3")
    told: list[str] = []
    migrate.migrate(conn, backups_dir=tmp_path / "backups", now_ms=1, progress=told.append)
    assert told == []  # creating a database is not an upgrade worth narrating
    return conn


def test_committed_snapshot_matches_migrations(tmp_path: Path) -> None:
    conn = _fresh(tmp_path)
    expected = SNAPSHOT.read_text(encoding="utf-8").split("\n", 1)[1]
    assert migrate.schema_snapshot(conn) == expected, (
        "server/storage/schema.sql is stale: regenerate it from the migrations"
    )


def test_changed_migration_is_refused(tmp_path: Path) -> None:
    conn = _fresh(tmp_path)
    conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
    with pytest.raises(InstanceError, match="changed after it was applied"):
        migrate.pending_migrations(conn)


def test_database_ahead_of_code_is_refused(tmp_path: Path) -> None:
    conn = _fresh(tmp_path)
    conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'abc', 1)")
    with pytest.raises(InstanceError, match="ahead"):
        migrate.pending_migrations(conn)


def test_backup_is_taken_before_migrating_a_database_with_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = _fresh(tmp_path)
    real = migrate.available_migrations()
    extra = migrate.Migration(len(real) + 1, "extra", "CREATE TABLE extra_table (x INTEGER);")
    monkeypatch.setattr(migrate, "available_migrations", lambda: [*real, extra])
    told: list[str] = []
    applied = migrate.migrate(
        conn, backups_dir=tmp_path / "backups", now_ms=2, progress=told.append
    )
    assert [m.name for m in applied] == ["extra"]
    # An upgrade says what it is doing: the backup (with its size) and each migration
    assert told[0].startswith("Backing up the database (") and "before migrating" in told[0]
    assert told[1].startswith("Backed up in ")
    assert told[2:] == [f"Applying migration {extra.version:04d}_extra ...", told[3]]
    assert told[3].startswith(f"Applied {extra.version:04d}_extra in ")
    backups = list((tmp_path / "backups").glob("pre-migration-*.sqlite3"))
    assert len(backups) == 1
    copy = sqlite3.connect(backups[0])
    names = {r[0] for r in copy.execute("SELECT name FROM sqlite_master")}
    assert "posts" in names and "extra_table" not in names


def _with_extra_migration(monkeypatch: pytest.MonkeyPatch, sql: str) -> migrate.Migration:
    """Make one more migration pending; returns it."""
    real = migrate.available_migrations()
    extra = migrate.Migration(len(real) + 1, "extra", sql)
    monkeypatch.setattr(migrate, "available_migrations", lambda: [*real, extra])
    return extra


_FINAL_NAME = re.compile(r"^pre-migration-\d{4}-\d+\.sqlite3$")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_backup_is_owner_only_from_its_creation_and_named_only_once_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy holds everything (private keys too): never readable by others, not even while
    it is written, whatever the umask; and nothing carries a backup's name before it is whole
    and fsynced."""
    conn = _fresh(tmp_path)
    extra = _with_extra_migration(monkeypatch, "CREATE TABLE extra_table (x INTEGER);")
    backups = tmp_path / "backups"
    during: list[tuple[Path, int, list[str]]] = []
    vacuum = snapshot._vacuum_into

    def watched(conn: sqlite3.Connection, path: Path) -> None:
        vacuum(conn, path)
        during.append((path, _mode(path), sorted(p.name for p in backups.iterdir())))

    synced: list[Path] = []
    fsync = snapshot.fsync_path

    def recorded(path: Path) -> None:
        synced.append(path)
        fsync(path)

    monkeypatch.setattr(snapshot, "_vacuum_into", watched)
    monkeypatch.setattr(snapshot, "fsync_path", recorded)
    old_umask = os.umask(0o022)  # the usual umask: files 0644, folders 0755 unless told
    try:
        migrate.migrate(conn, backups_dir=backups, now_ms=2)
    finally:
        os.umask(old_umask)
    final = backups / f"pre-migration-{extra.version:04d}-2.sqlite3"
    partial = backups / (final.name + ".partial")
    # While written: under the temporary name only, already owner-only
    [(written, mode, names)] = during
    assert written == partial
    assert mode == 0o600
    assert not any(_FINAL_NAME.match(name) for name in names)
    # Then: the copy fsynced, renamed, the folder fsynced; nothing else left
    assert synced == [partial, backups]
    assert sorted(p.name for p in backups.iterdir()) == [final.name]
    assert _mode(final) == 0o600
    assert _mode(backups) == 0o700


def test_a_failed_backup_leaves_no_file_and_does_not_migrate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = _fresh(tmp_path)
    _with_extra_migration(monkeypatch, "CREATE TABLE extra_table (x INTEGER);")
    backups = tmp_path / "backups"
    vacuum = snapshot._vacuum_into

    def full_disk(conn: sqlite3.Connection, path: Path) -> None:
        vacuum(conn, path)  # the copy is written, then the fsync or rename fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(snapshot, "_vacuum_into", full_disk)
    with pytest.raises(OSError, match="No space left"):
        migrate.migrate(conn, backups_dir=backups, now_ms=2)
    assert list(backups.iterdir()) == []  # no false backup, no partial
    assert [m.name for m in migrate.pending_migrations(conn)] == ["extra"]


_KILLED_MIDWAY = """
import os, signal, sys
from pathlib import Path
from server.storage import migrate, snapshot
from server.storage.db import open_sync

real = migrate.available_migrations()
extra = migrate.Migration(len(real) + 1, "extra", "CREATE TABLE extra_table (x INTEGER);")
migrate.available_migrations = lambda: [*real, extra]
vacuum = snapshot._vacuum_into

def killed_midway(conn, path):
    # kill -9 once SQLite has spilled pages into the copy and has a hot journal for it
    def check():
        if os.path.exists(f"{path}-journal") and os.path.getsize(path) > 0:
            os.kill(os.getpid(), signal.SIGKILL)
        return 0
    conn.set_progress_handler(check, 1000)
    conn.execute("PRAGMA cache_size = -256")  # the copy's cache: it spills early
    vacuum(conn, path)

snapshot._vacuum_into = killed_midway
migrate.migrate(open_sync(Path(sys.argv[1])), backups_dir=Path(sys.argv[2]), now_ms=2)
"""


def test_a_backup_killed_midway_is_never_taken_for_one_and_is_removed_next_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kill -9 probe: a copy killed halfway rolls back to an empty database when opened, so
    it must not look like a backup, and the next start clears it before writing a real one."""
    conn = _fresh(tmp_path)
    # More than the copy's page cache (256 KB), so it is partly on disk with a hot journal
    conn.executemany(
        "INSERT INTO audit_log (at, action) VALUES (?, ?)", ((i, "x" * 2000) for i in range(1000))
    )
    conn.close()
    backups = tmp_path / "backups"
    root = Path(__file__).resolve().parents[2]
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_MIDWAY, str(tmp_path / "db.sqlite3"), str(backups)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    extra = _with_extra_migration(monkeypatch, "CREATE TABLE extra_table (x INTEGER);")
    final = f"pre-migration-{extra.version:04d}-2.sqlite3"
    left = sorted(p.name for p in backups.iterdir())
    assert left == [f"{final}.partial", f"{final}.partial-journal"]  # what the probe found
    # The next start removes them, says so, and writes a complete backup
    conn = open_sync(tmp_path / "db.sqlite3")
    told: list[str] = []
    migrate.migrate(conn, backups_dir=backups, now_ms=3, progress=told.append)
    assert told[0] == (
        "Removed an incomplete backup left by an interrupted run: "
        f"{final}.partial, {final}.partial-journal."
    )
    backup = backups / f"pre-migration-{extra.version:04d}-3.sqlite3"
    assert sorted(p.name for p in backups.iterdir()) == [backup.name]
    copy = sqlite3.connect(backup)
    assert copy.execute("SELECT count(*) FROM audit_log").fetchone()[0] >= 1000
    copy.close()


def test_repeated_failed_attempts_keep_one_backup_per_version_the_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration that keeps failing under Restart=always must not fill the disk; the backup
    kept is the latest (the data may have changed between attempts), and a complete one exists
    at every moment."""
    conn = _fresh(tmp_path)
    bad = _with_extra_migration(monkeypatch, "INSERT INTO nowhere VALUES (1);")
    backups = tmp_path / "backups"
    backups.mkdir(mode=0o700)
    same = f"pre-migration-{bad.version:04d}"
    # Left by older releases: a copy killed halfway under the final name (its hot journal
    # beside it), a backup before an earlier migration, and a file of the admin's own
    (backups / f"{same}-1.sqlite3").write_bytes(b"")
    (backups / f"{same}-1.sqlite3-journal").write_bytes(b"x")
    (backups / "pre-migration-0001-1.sqlite3").write_bytes(b"older version")
    (backups / "mine.sqlite3").write_bytes(b"admin's")
    present: list[list[str]] = []
    vacuum = snapshot._vacuum_into

    def watched(conn: sqlite3.Connection, path: Path) -> None:
        present.append(sorted(p.name for p in backups.glob(f"{same}-*.sqlite3")))
        vacuum(conn, path)

    monkeypatch.setattr(snapshot, "_vacuum_into", watched)
    told: list[str] = []
    for attempt in (2, 3, 4):
        with pytest.raises(sqlite3.OperationalError):
            migrate.migrate(conn, backups_dir=backups, now_ms=attempt, progress=told.append)
        # Meanwhile the instance runs and takes writes (e.g. the old release, back in service)
        conn.execute("INSERT INTO audit_log (at, action) VALUES (?, 'written')", (attempt,))
    # While each backup was written, the previous complete one was still there
    assert present == [[f"{same}-1.sqlite3"], [f"{same}-2.sqlite3"], [f"{same}-3.sqlite3"]]
    assert sorted(p.name for p in backups.iterdir()) == [
        "mine.sqlite3",
        "pre-migration-0001-1.sqlite3",
        f"{same}-4.sqlite3",
    ]
    assert f"Removed {same}-3.sqlite3, an older backup of the same schema version." in told
    copy = sqlite3.connect(backups / f"{same}-4.sqlite3")
    kept = [r[0] for r in copy.execute("SELECT at FROM audit_log WHERE action = 'written'")]
    copy.close()
    assert kept == [2, 3]  # taken at the last attempt, not a reused older copy


def test_failed_migration_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = _fresh(tmp_path)
    real = migrate.available_migrations()
    bad = migrate.Migration(
        len(real) + 1, "bad", "CREATE TABLE half (x INTEGER);\nINSERT INTO nowhere VALUES (1);"
    )
    monkeypatch.setattr(migrate, "available_migrations", lambda: [*real, bad])
    with pytest.raises(sqlite3.OperationalError):
        migrate.migrate(conn, backups_dir=tmp_path / "backups", now_ms=2)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "half" not in names


async def test_connections_use_wal_full_sync_and_foreign_keys(tmp_path: Path) -> None:
    _fresh(tmp_path).close()
    db = Database(tmp_path / "db.sqlite3", synchronous="FULL")
    await db.open()
    try:

        def pragmas(conn: sqlite3.Connection) -> tuple[str, int, int]:
            return (
                conn.execute("PRAGMA journal_mode").fetchone()[0],
                conn.execute("PRAGMA synchronous").fetchone()[0],
                conn.execute("PRAGMA foreign_keys").fetchone()[0],
            )

        assert await db.read(pragmas) == ("wal", 2, 1)
        assert await db.write(pragmas) == ("wal", 2, 1)
    finally:
        await db.close()


async def test_failed_write_transaction_leaves_nothing(tmp_path: Path) -> None:
    _fresh(tmp_path).close()
    db = Database(tmp_path / "db.sqlite3")
    await db.open()
    try:

        def half(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO audit_log (at, action) VALUES (1, 'first')")
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            await db.write(half)

        def count(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT count(*) FROM audit_log").fetchone()[0])

        assert await db.read(count) == 0
    finally:
        await db.close()


async def test_group_commit_isolates_each_write(tmp_path: Path) -> None:
    """Writes committed together: one failing write rolls back only itself."""
    import asyncio

    _fresh(tmp_path).close()
    db = Database(tmp_path / "db.sqlite3")
    await db.open()
    try:

        def add(conn: sqlite3.Connection, action: str) -> str:
            conn.execute("INSERT INTO audit_log (at, action) VALUES (1, ?)", (action,))
            if action.startswith("bad"):
                raise ValueError(action)
            return action

        results = await asyncio.gather(
            *(db.write(add, f"{'bad' if i % 3 == 0 else 'ok'}-{i}") for i in range(30)),
            return_exceptions=True,
        )
        failed = [r for r in results if isinstance(r, ValueError)]
        assert len(failed) == 10
        assert all(isinstance(r, str) and r.startswith("ok") for r in results if r not in failed)

        def actions(conn: sqlite3.Connection) -> list[str]:
            return [r[0] for r in conn.execute("SELECT action FROM audit_log ORDER BY id")]

        stored = await db.read(actions)
        assert stored == [f"ok-{i}" for i in range(30) if i % 3 != 0]  # in order, none lost
    finally:
        await db.close()


async def test_short_reads_run_on_the_loop_thread_and_long_ones_do_not(tmp_path: Path) -> None:
    """``read`` costs no thread hop (the point of it); ``read_in_thread`` keeps the loop free."""
    import threading

    _fresh(tmp_path).close()
    db = Database(tmp_path / "db.sqlite3")
    await db.open()
    try:

        def where(conn: sqlite3.Connection) -> int:
            conn.execute("SELECT count(*) FROM audit_log").fetchone()
            return threading.get_ident()

        loop_thread = threading.get_ident()
        assert await db.read(where) == loop_thread
        assert await db.read_in_thread(where) != loop_thread
    finally:
        await db.close()


async def test_a_busy_file_moves_the_read_to_a_thread_instead_of_failing(tmp_path: Path) -> None:
    """When the loop's connection finds the file busy, it gives up after a few ms and the work
    is done in a reader thread once the lock is gone (the loop stays free meanwhile).

    WAL readers are hardly ever busy, so the function here takes the write lock to get a real
    SQLITE_BUSY while another connection holds that lock.
    """
    import asyncio

    _fresh(tmp_path).close()
    db = Database(tmp_path / "db.sqlite3")
    await db.open()
    holder = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("INSERT INTO audit_log (at, action) VALUES (1, 'holder')")

        def touch(conn: sqlite3.Connection) -> int:
            conn.execute("INSERT INTO audit_log (at, action) VALUES (2, 'reader')")
            return int(conn.execute("SELECT count(*) FROM audit_log").fetchone()[0])

        reading = asyncio.ensure_future(db.read(touch))
        await asyncio.sleep(0.2)  # the loop is not blocked: this sleep ends on time
        assert not reading.done()
        holder.execute("COMMIT")
        assert await asyncio.wait_for(reading, 10) == 2
    finally:
        holder.close()
        await db.close()


@contextlib.asynccontextmanager
async def _turn_held_elsewhere(
    tmp_path: Path, *, wait_s: float | None = None
) -> AsyncIterator[tuple[Database, int]]:
    """An open database whose writer turn another holder (a file descriptor standing for
    another process) has taken; yields the database and that descriptor."""
    _fresh(tmp_path).close()
    db = Database(tmp_path / "db.sqlite3")
    if wait_s is not None:
        db._turn.wait_s = wait_s
    await db.open()
    other = os.open(db._turn.path, os.O_RDWR)
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield db, other
    finally:
        os.close(other)
        await db.close()


def _add_audit(conn: sqlite3.Connection, action: str) -> int:
    conn.execute("INSERT INTO audit_log (at, action) VALUES (1, ?)", (action,))
    return int(conn.execute("SELECT count(*) FROM audit_log").fetchone()[0])


async def test_writers_of_one_instance_take_turns_through_the_writer_lock(tmp_path: Path) -> None:
    """A write waits while another process holds the writer turn and commits as soon as it is
    let go: the turn, not SQLite's sleeping busy handler, decides who writes next."""
    async with _turn_held_elsewhere(tmp_path) as (db, other):
        writing = asyncio.ensure_future(db.write(_add_audit, "turn"))
        await asyncio.sleep(0.2)
        assert not writing.done()  # no SQLite lock is held: only the turn keeps it waiting
        fcntl.flock(other, fcntl.LOCK_UN)
        assert await asyncio.wait_for(writing, 5) == 1
        # And the writer let go of it again.
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)


async def test_a_turn_held_too_long_does_not_hang_writers(tmp_path: Path) -> None:
    """A process stopped while holding the turn delays a write by the turn's wait at most."""
    async with _turn_held_elsewhere(tmp_path, wait_s=0.1) as (db, _):
        assert await db.write(_add_audit, "late") == 1


async def test_a_turn_holder_killed_with_sigkill_frees_the_turn_at_once(tmp_path: Path) -> None:
    """The kernel drops a killed process's flock: a writer waiting for the turn goes on as
    soon as the holder dies, not after the turn's wait (10 s)."""
    _fresh(tmp_path).close()
    db = Database(tmp_path / "db.sqlite3")
    await db.open()
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n",
        str(db._turn.path),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 10) == b"held\n"
        writing = asyncio.ensure_future(db.write(_add_audit, "after the kill"))
        await asyncio.sleep(0.3)
        assert not writing.done()
        os.kill(holder.pid, signal.SIGKILL)
        began = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(writing, 5) == 1
        assert asyncio.get_running_loop().time() - began < 2
    finally:
        if holder.returncode is None:
            holder.kill()
        await holder.wait()
        await db.close()


async def test_the_turn_and_the_lock_share_one_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that waited for the turn waits only the rest of busy_timeout for SQLite's lock:
    its caller hears "busy" after one timeout, not two."""
    monkeypatch.setattr(db_module, "BUSY_TIMEOUT_MS", 600)
    # The database's connections keep the real 10 s timeout.
    async with _turn_held_elsewhere(tmp_path, wait_s=0.3) as (db, _):
        holder = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            began = asyncio.get_running_loop().time()
            with pytest.raises(sqlite3.OperationalError) as failure:
                await asyncio.wait_for(db.write(_add_audit, "never"), 5)
            assert is_unavailable(failure.value)
            assert asyncio.get_running_loop().time() - began < 2.5  # 0.3 + 0.3, not 0.3 + 10
        finally:
            holder.execute("ROLLBACK")
            holder.close()


class _Upgrade:
    """A database as it was before migration *version*: fill it, then :meth:`run` the rest."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: int) -> None:
        self._tmp_path = tmp_path
        self._monkeypatch = monkeypatch
        self._real = migrate.available_migrations()
        older = [m for m in self._real if m.version < version]
        monkeypatch.setattr(migrate, "available_migrations", lambda: older)
        self.conn = _fresh(tmp_path)
        self.conn.execute(
            "INSERT INTO actors (id, uri, is_local, username, host, created_at, updated_at)"
            " VALUES (5, 'https://us.example/users/pat', 1, 'pat', 'us.example', 1, 1)"
        )

    def run(self, *, through: int | None = None) -> None:
        """Apply the rest, or up to and including migration *through*."""
        wanted = [m for m in self._real if through is None or m.version <= through]
        self._monkeypatch.setattr(migrate, "available_migrations", lambda: wanted)
        migrate.migrate(self.conn, backups_dir=self._tmp_path / "backups", now_ms=4)


def test_rebuilding_notifications_keeps_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 0008 rebuilds the table to allow 'boost': ids, rows and indexes survive."""
    upgrade = _Upgrade(tmp_path, monkeypatch, 8)
    conn = upgrade.conn
    conn.execute(
        "INSERT INTO actors (id, uri, is_local, username, host, created_at, updated_at)"
        " VALUES (1, 'https://us.example/users/ann', 1, 'ann', 'us.example', 1, 1),"
        " (2, 'https://us.example/users/bo', 1, 'bo', 'us.example', 1, 1)"
    )
    conn.execute(
        "INSERT INTO notifications (id, recipient_id, kind, actor_id, created_at, read_at)"
        " VALUES (7, 1, 'follow', 2, 10, NULL), (9, 1, 'like', 2, 11, 12)"
    )
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO notifications (recipient_id, kind, actor_id, created_at)"
            " VALUES (1, 'boost', 2, 13)"
        )
    upgrade.run()
    rows = conn.execute(
        "SELECT id, recipient_id, kind, actor_id, created_at, read_at FROM notifications"
    ).fetchall()
    assert [tuple(r) for r in rows] == [(7, 1, "follow", 2, 10, None), (9, 1, "like", 2, 11, 12)]
    conn.execute(
        "INSERT INTO notifications (recipient_id, kind, actor_id, created_at)"
        " VALUES (1, 'boost', 2, 13)"
    )
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT count(*) FROM notifications"
        " WHERE recipient_id = 1 AND read_at IS NULL"
    ).fetchall()
    assert "notifications_unread" in " ".join(str(r[3]) for r in plan)


def test_tombstones_keep_their_author_when_kept_per_actor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 0011: a tombstone of a known post belongs to its author; one of an unknown
    object (its author never seen) keeps stopping everyone (0)."""
    upgrade = _Upgrade(tmp_path, monkeypatch, 11)
    conn = upgrade.conn
    conn.execute(
        "INSERT INTO posts (id, uri, author_id, visibility, content_html, created_at,"
        " thread_root_id, deleted_at) VALUES (3, 'https://p.example/notes/3', 5, 'public',"
        " '', 1, 3, 2)"
    )
    conn.execute(
        "INSERT INTO tombstones (uri, deleted_at) VALUES ('https://p.example/notes/3', 2),"
        " ('https://p.example/notes/4', 3)"
    )
    upgrade.run()
    rows = conn.execute("SELECT uri, actor_id, deleted_at FROM tombstones ORDER BY uri")
    assert [tuple(r) for r in rows] == [
        ("https://p.example/notes/3", 5, 2),
        ("https://p.example/notes/4", 0, 3),
    ]


def test_reply_counts_lose_their_direct_replies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 0013: stored counts stop counting Direct replies (deleted ones were never
    counted); other replies stay counted."""
    upgrade = _Upgrade(tmp_path, monkeypatch, 13)
    conn = upgrade.conn
    rows = [  # id, visibility, in reply to, deleted
        (1, "public", None, None),
        (2, "direct", 1, None),
        (3, "followers", 1, None),
        (4, "direct", 1, 9),
        (5, "public", None, None),
    ]
    for post_id, visibility, parent, deleted in rows:
        conn.execute(
            "INSERT INTO posts (id, uri, author_id, visibility, content_html, created_at,"
            " thread_root_id, in_reply_to_id, deleted_at) VALUES (?, ?, 5, ?, '', 1, ?, ?, ?)",
            (
                post_id,
                f"https://us.example/notes/{post_id}",
                visibility,
                parent or post_id,
                parent,
                deleted,
            ),
        )
    conn.execute("UPDATE posts SET reply_count = 2 WHERE id = 1")  # 2 and 3 (4 was deleted)
    upgrade.run(through=13)
    counts = dict(conn.execute("SELECT id, reply_count FROM posts WHERE id IN (1, 5)").fetchall())
    assert counts == {1: 1, 5: 0}


def test_stored_reply_counts_go_and_every_post_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 0014 drops the stored count (replies are counted per reader now): the
    table is rewritten, so every post and its reply link must come through."""
    upgrade = _Upgrade(tmp_path, monkeypatch, 14)
    conn = upgrade.conn
    for post_id, parent in ((1, None), (2, 1), (3, 1)):
        conn.execute(
            "INSERT INTO posts (id, uri, author_id, visibility, content_html, created_at,"
            " thread_root_id, in_reply_to_id, reply_count) VALUES (?, ?, 5, 'public', ?, 1, 1,"
            " ?, ?)",
            (post_id, f"https://us.example/notes/{post_id}", f"<p>{post_id}</p>", parent, 2),
        )
    upgrade.run()
    columns = {row[1] for row in conn.execute("PRAGMA table_info(posts)")}
    assert "reply_count" not in columns
    rows = conn.execute("SELECT id, in_reply_to_id, content_html FROM posts ORDER BY id")
    assert [tuple(r) for r in rows] == [
        (1, None, "<p>1</p>"),
        (2, 1, "<p>2</p>"),
        (3, 1, "<p>3</p>"),
    ]
    plan = " ".join(
        str(r[3])
        for r in conn.execute("EXPLAIN QUERY PLAN SELECT id FROM posts WHERE in_reply_to_id = 1")
    )
    assert "posts_replies" in plan


async def test_other_processes_wait_for_a_long_migration_and_not_for_nobody(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secondary worker waits while the migrate lock is held (a large instance's backup may
    take minutes); with migrations pending and nobody migrating it gives up."""
    config = load_config(make_instance(tmp_path / "instance"))
    real = migrate.available_migrations()
    extra = migrate.Migration(len(real) + 1, "extra", "CREATE TABLE extra_table (x INTEGER);")
    monkeypatch.setattr(migrate, "available_migrations", lambda: [*real, extra])
    # Nobody migrating: give up after the patience
    with pytest.raises(RuntimeError, match="not migrated in time"):
        await wait_for_migrations(config, patience=0.3)
    # Someone migrating for longer than the patience: keep waiting, return once it is done
    fd = os.open(config.instance_path / MIGRATE_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    waiting = asyncio.create_task(wait_for_migrations(config, patience=0.3))
    await asyncio.sleep(1.0)
    assert not waiting.done()
    conn = open_sync(config.db_path)
    migrate.migrate(conn, backups_dir=config.backups_dir, now_ms=3)
    conn.close()
    os.close(fd)
    await asyncio.wait_for(waiting, 5)


def test_serve_migrates_before_hypercorn_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hypercorn gives its startup step a time limit (60 s by default): a long upgrade must
    not run inside it."""
    import hypercorn.asyncio
    from hypercorn.config import Config as HyperConfig

    from server import cli

    instance = make_instance(tmp_path / "instance")
    real = migrate.available_migrations()
    extra = migrate.Migration(len(real) + 1, "extra", "CREATE TABLE extra_table (x INTEGER);")
    monkeypatch.setattr(migrate, "available_migrations", lambda: [*real, extra])
    seen: dict[str, object] = {}

    async def fake_serve(app: object, hyper: HyperConfig) -> None:
        conn = open_sync(load_config(instance).db_path)
        seen["migrated"] = not migrate.pending_migrations(conn)
        conn.close()
        seen["startup_timeout"] = hyper.startup_timeout

    monkeypatch.setattr(hypercorn.asyncio, "serve", fake_serve)
    assert cli.cmd_serve(instance, "127.0.0.1:0") == 0
    assert seen["migrated"] is True
    assert isinstance(seen["startup_timeout"], (int, float)) and seen["startup_timeout"] >= 600


async def test_closing_on_a_full_disk_still_ends_the_database_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint at close can fail (a full disk); the writer's thread, which is not a
    daemon, must end anyway, or the process never exits after a stop."""
    import threading

    _fresh(tmp_path).close()
    db = Database(tmp_path / "db.sqlite3")
    await db.open()
    before = {t for t in threading.enumerate() if not t.daemon}
    writer = db._writer
    assert writer is not None
    execute = writer.execute

    def full_disk(sql: str, *args: object) -> object:
        if sql.startswith("PRAGMA wal_checkpoint"):
            raise sqlite3.OperationalError("database or disk is full")
        return execute(sql, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(writer, "execute", full_disk)
    await db.close()
    for thread in before - {threading.main_thread()}:
        thread.join(timeout=5)
    assert {t for t in threading.enumerate() if not t.daemon} == {threading.main_thread()}
