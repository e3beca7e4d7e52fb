"""Migrations: snapshot, checksums, ahead-of-code guard, backup before migrating, pragmas."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
from pathlib import Path

import pytest

from server.bootstrap import MIGRATE_LOCK, wait_for_migrations
from server.config import load_config
from server.errors import InstanceError
from server.storage import migrate
from server.storage.db import Database, open_sync
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


def test_rebuilding_notifications_keeps_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 0008 rebuilds the table to allow 'boost': ids, rows and indexes survive."""
    real = migrate.available_migrations()
    before = [m for m in real if m.version < 8]
    monkeypatch.setattr(migrate, "available_migrations", lambda: before)
    conn = _fresh(tmp_path)
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
    monkeypatch.setattr(migrate, "available_migrations", lambda: real)
    migrate.migrate(conn, backups_dir=tmp_path / "backups", now_ms=2)
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
