"""Forward-only numbered SQL migrations with checksums.

Invariants:
- ``migrations/NNNN_name.sql`` are applied in order, each in its own ``BEGIN IMMEDIATE``
  transaction together with its ``schema_migrations`` row (version, name, SHA-256 checksum).
- A migration already applied must not change: a checksum mismatch stops the instance.
- A database ahead of this code (an unknown version) stops the instance: never run old code
  on a newer schema.
- Before migrating a database that already holds data, a ``VACUUM INTO`` copy is written to
  ``backups/`` so a failed upgrade can be rolled back by hand.
- Only a complete, fsynced backup carries the name ``pre-migration-NNNN-<ms>.sqlite3`` (NNNN:
  the first migration to apply). It is written as ``<name>.partial``, owner-only (0600) from
  its creation, and renamed once complete; a ``.partial`` left by a killed run is removed at
  the next attempt.
- At most one complete backup per NNNN is kept: once a new one is complete, older ones of the
  same NNNN are removed, so a migration that keeps crashing cannot fill the disk.
- ``schema.sql`` next to this file is the committed snapshot of the result; a test checks it.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from server.errors import InstanceError
from server.storage.snapshot import database_bytes, remove_with_companions, write_copy

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_BACKUP = re.compile(r"^pre-migration-(\d{4})-\d+\.sqlite3$")
_PARTIAL = re.compile(r"^pre-migration-\d{4}-\d+\.sqlite3\.partial(?:-journal|-wal|-shm)?$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def available_migrations() -> list[Migration]:
    folder = resources.files("server.storage").joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise InstanceError(f"Migration numbering has gaps or duplicates: {versions}")
    return found


def _ensure_table(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL,"
        " applied_at INTEGER NOT NULL)"
    )


def pending_migrations(conn: sqlite3.Connection) -> list[Migration]:
    """Check applied migrations against the code and return those still to apply."""
    _ensure_table(conn)
    applied = {
        row[0]: (row[1], row[2])
        for row in conn.execute("SELECT version, name, checksum FROM schema_migrations")
    }
    known = available_migrations()
    by_version = {m.version: m for m in known}
    for version, (name, checksum) in applied.items():
        migration = by_version.get(version)
        if migration is None:
            raise InstanceError(
                f"The database is ahead of this Steelyard (migration {version} {name}); "
                "upgrade the software."
            )
        if migration.checksum != checksum:
            raise InstanceError(
                f"Migration {version:04d}_{name} was changed after it was applied; "
                "restore the original file."
            )
    return [m for m in known if m.version not in applied]


def migrate(
    conn: sqlite3.Connection,
    *,
    backups_dir: Path,
    now_ms: int,
    progress: Callable[[str], None] | None = None,
) -> list[Migration]:
    """Apply pending migrations; back up first when the database already holds data.

    *progress* is told each step of an upgrade as it starts and ends (not of a new database's
    creation): on a large instance the backup and a new index take a while, and an admin
    starting the server should see why."""
    todo = pending_migrations(conn)
    if not todo:
        return []
    has_data = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] > 0
    say = progress if progress is not None and has_data else (lambda _: None)
    if has_data:
        _back_up(conn, backups_dir, version=todo[0].version, now_ms=now_ms, say=say)
    for migration in todo:
        say(f"Applying migration {migration.version:04d}_{migration.name} ...")
        started = time.monotonic()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in split_statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at)"
                " VALUES (?, ?, ?, ?)",
                (migration.version, migration.name, migration.checksum, now_ms),
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        took = time.monotonic() - started
        say(f"Applied {migration.version:04d}_{migration.name} in {took:.1f} s.")
    return todo


def _back_up(
    conn: sqlite3.Connection,
    backups_dir: Path,
    *,
    version: int,
    now_ms: int,
    say: Callable[[str], None],
) -> None:
    """Write ``pre-migration-<version>-<now_ms>.sqlite3``, then drop older ones of *version*.

    Invariant: whatever happens (an error, a kill -9, a power loss), every file with a
    backup's final name is complete, and an older backup of *version* is removed only once the
    new one is durable, so one always exists. The caller holds the migrate lock, so no other
    process is writing a backup (which is why any ``.partial`` found here is stale)."""
    backups_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    stale = _remove_partials(backups_dir)
    if stale:
        say(f"Removed an incomplete backup left by an interrupted run: {', '.join(stale)}.")
    target = backups_dir / f"pre-migration-{version:04d}-{now_ms}.sqlite3"
    size_mb = database_bytes(conn) / 1e6
    say(f"Backing up the database ({size_mb:,.0f} MB) to {target} before migrating ...")
    started = time.monotonic()
    write_copy(conn, target)
    say(f"Backed up in {time.monotonic() - started:.1f} s.")
    # Why a fresh backup every time rather than reusing the complete one an earlier, crashed
    # attempt left for this version: that one is a copy of the database as it was then, and
    # nothing cheap proves the data has not changed since (the admin may have run the old
    # release for a week; in WAL mode file times move without any commit, e.g. when a killed
    # migration's uncommitted pages reach the -wal). The new copy is of the data as it is now,
    # so it is the one to roll back to; older copies of the same version are at best equal
    # to it. Removing them only now that the new one is durable keeps one per version on disk
    # (two while a backup is being written) and never leaves the instance with none.
    for old in _other_backups(backups_dir, version, keep=target):
        remove_with_companions(old)
        say(f"Removed {old.name}, an older backup of the same schema version.")


def _remove_partials(backups_dir: Path) -> list[str]:
    """Remove what killed backups left (``*.partial`` and companions); return their names.

    Only this module's own names are touched: the folder may hold the admin's files too."""
    removed: list[str] = []
    for entry in sorted(backups_dir.iterdir()):
        if _PARTIAL.match(entry.name):
            entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return removed


def _other_backups(backups_dir: Path, version: int, *, keep: Path) -> list[Path]:
    """Complete backups taken before migration *version*, except *keep*."""
    found: list[Path] = []
    for entry in sorted(backups_dir.iterdir()):
        match = _BACKUP.match(entry.name)
        if match and int(match[1]) == version and entry.name != keep.name:
            found.append(entry)
    return found


def split_statements(sql: str) -> list[str]:
    """Split a migration into statements (``executescript`` would commit on its own)."""
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise InstanceError("Migration ends with an incomplete statement.")
    return statements


def schema_snapshot(conn: sqlite3.Connection) -> str:
    """The schema as committed in ``schema.sql``: every object's SQL, in a stable order."""
    rows = conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL"
        " AND name NOT LIKE 'sqlite_%' ORDER BY type DESC, name"
    ).fetchall()
    return "".join(f"{row[2]};\n\n" for row in rows)


def write_snapshot(path: Path) -> None:
    """Regenerate ``schema.sql`` from the migrations (``make schema``)."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    _ensure_table(conn)
    for migration in available_migrations():
        for statement in split_statements(migration.sql):
            conn.execute(statement)
    path.write_text(
        "-- Generated from the migrations; tests/unit/test_schema.py checks it.\n"
        + schema_snapshot(conn),
        encoding="utf-8",
    )


if __name__ == "__main__":
    write_snapshot(Path(__file__).with_name("schema.sql"))
