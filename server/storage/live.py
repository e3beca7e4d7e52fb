"""The cross-process relay of live events (only used when serving with several workers).

A small append-only table: each process appends the events it publishes and tails the rows
other processes appended. Rows older than a minute are pruned; they carry ids only, never
content (the browser fetches visibility-checked partials).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence


def ensure_table(conn: sqlite3.Connection) -> None:
    # Not a migration: this is process coordination state, not company data; it is created
    # on demand and may be dropped at any time.
    conn.execute(
        "CREATE TABLE IF NOT EXISTS live_relay (id INTEGER PRIMARY KEY, origin INTEGER NOT NULL,"
        " actor_ids TEXT NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL, at INTEGER NOT NULL)"
    )


def insert_event(
    conn: sqlite3.Connection,
    origin: int,
    actor_ids: Sequence[int],
    kind: str,
    data: str,
    now_ms: int,
) -> None:
    conn.execute(
        "INSERT INTO live_relay (origin, actor_ids, kind, data, at) VALUES (?, ?, ?, ?, ?)",
        (origin, json.dumps(list(actor_ids)), kind, data, now_ms),
    )


def select_events_after(
    conn: sqlite3.Connection, after_id: int, origin: int
) -> list[tuple[int, list[int], str, str]]:
    rows = conn.execute(
        "SELECT id, actor_ids, kind, data FROM live_relay WHERE id > ? AND origin != ?"
        " ORDER BY id LIMIT 1000",
        (after_id, origin),
    ).fetchall()
    return [(int(r[0]), list(json.loads(r[1])), str(r[2]), str(r[3])) for r in rows]


def select_last_id(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(id), 0) FROM live_relay").fetchone()[0])


def prune(conn: sqlite3.Connection, before_ms: int) -> None:
    conn.execute("DELETE FROM live_relay WHERE at < ?", (before_ms,))
