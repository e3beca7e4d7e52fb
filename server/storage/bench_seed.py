"""Seeding and progress queries for the federation benchmarks (``bench/fanout.py``).

Many remote actors in few statements, and what a benchmark needs to watch a fan-out. Like
``bulk``, functions take a plain ``sqlite3.Connection`` (``server.storage.db.open_sync``);
writers run inside a transaction the caller opens (``BEGIN IMMEDIATE`` ... ``COMMIT``) and
never commit. Accepted follows are written with ``bulk.insert_bulk_follows``.

Invariants (as ``federation.upsert_remote_actor`` keeps them for fetched actors):
- a remote actor is ``is_local = 0`` with its ``host`` in canonical form and an inbox; its
  endpoints are on its own origin (the caller builds them so);
- nothing here sends anything: deliveries are only ever queued by ``services.federating``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SeedRemoteActor:
    uri: str
    username: str
    host: str  # canonical host[:port]
    display_name: str
    inbox_url: str
    shared_inbox_url: str | None
    followers_url: str
    key_id: str
    public_key_pem: str | None = None


def insert_remote_actors(
    conn: sqlite3.Connection, rows: Sequence[SeedRemoteActor], *, now_ms: int
) -> dict[str, int]:
    """Insert remote actors as if fetched now; return their ids by URI."""
    conn.executemany(
        "INSERT INTO actors (uri, is_local, username, host, display_name, public_key_pem,"
        " search_text, created_at, updated_at, actor_type, inbox_url, shared_inbox_url,"
        " followers_url, key_id, fetched_at) VALUES (?, 0, ?, ?, ?, ?, ?, ?, ?, 'Person', ?,"
        " ?, ?, ?, ?)",
        [
            (
                r.uri,
                r.username,
                r.host,
                r.display_name,
                r.public_key_pem,
                f"{r.username} {r.display_name}".casefold(),
                now_ms,
                now_ms,
                r.inbox_url,
                r.shared_inbox_url,
                r.followers_url,
                r.key_id,
                now_ms,
            )
            for r in rows
        ],
    )
    wanted = {r.uri for r in rows}
    return {
        str(row[1]): int(row[0])
        for row in conn.execute("SELECT id, uri FROM actors WHERE is_local = 0")
        if row[1] in wanted
    }


@dataclass(frozen=True, slots=True)
class FanoutProgress:
    outbox_id: int
    activity_id: str
    states: dict[str, int]
    created_at: int  # when the activity (and its delivery rows) was committed, ms
    last_finished_at: int | None  # latest finished_at of its deliveries, ms


def select_latest_outbox_id(conn: sqlite3.Connection, activity_type: str) -> int | None:
    row = conn.execute(
        "SELECT max(id) FROM outbox_activities WHERE activity_type = ?", (activity_type,)
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def select_fanout_progress(conn: sqlite3.Connection, outbox_id: int) -> FanoutProgress | None:
    """Delivery rows of one outbox activity, counted by state, with their timing."""
    head = conn.execute(
        "SELECT activity_id, created_at FROM outbox_activities WHERE id = ?", (outbox_id,)
    ).fetchone()
    if head is None:
        return None
    states = {
        str(r[0]): int(r[1])
        for r in conn.execute(
            "SELECT state, count(*) FROM deliveries WHERE outbox_id = ? GROUP BY state",
            (outbox_id,),
        )
    }
    last = conn.execute(
        "SELECT max(finished_at) FROM deliveries WHERE outbox_id = ?", (outbox_id,)
    ).fetchone()[0]
    return FanoutProgress(
        outbox_id=outbox_id,
        activity_id=str(head[0]),
        states=states,
        created_at=int(head[1]),
        last_finished_at=int(last) if last is not None else None,
    )
