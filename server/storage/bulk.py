"""Bulk loading for benchmarks and imports: many people, follows and posts in few statements.

Functions take a plain ``sqlite3.Connection`` (``server.storage.db.open_sync``) and run inside
a transaction the caller opens (``BEGIN IMMEDIATE`` ... ``COMMIT``); they never commit.

Invariants (the same as the one-row writers in ``users``, ``follows`` and ``posts``):
- every local actor has its ``accounts`` row and an ``account.create`` audit entry;
- a post's id is time-sortable (``created_at << 12`` plus a sequence) and strictly increasing
  in the order given; ``thread_root_id`` is the post's own id (top-level posts only);
- every post has exactly one ``post_versions`` row, version 1, equal to the post;
- nothing here renders or sanitizes text: the caller passes safe ``content_html``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import TypeVar

T = TypeVar("T")

_CHUNK = 20_000


@dataclass(frozen=True, slots=True)
class BulkUser:
    uri: str
    username: str
    host: str
    display_name: str
    password_hash: str
    private_key_pem: str
    public_key_pem: str
    created_at: int


@dataclass(frozen=True, slots=True)
class BulkPost:
    id: int
    uri: str
    url: str
    author_id: int
    visibility: str  # a ``server.domain.Visibility`` value other than 'direct'
    source: str
    content_html: str
    created_at: int


def _chunks(items: Iterable[T], size: int = _CHUNK) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _search_text(*parts: str) -> str:
    # Same rule as ``users._search_text``: what people search finds.
    return " ".join(p.casefold() for p in parts if p)


def use_for_bulk_load(conn: sqlite3.Connection, *, cache_mb: int = 1000) -> None:
    """Trade durability for speed on a connection that only bulk-loads and is then closed.

    ``synchronous=OFF``: a crash while loading may corrupt the file, so this is for seeding
    benchmark or test data, never for a live instance. Both settings end with the connection.
    """
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute(f"PRAGMA cache_size = -{int(cache_mb) * 1000}")


def finish_bulk_load(conn: sqlite3.Connection) -> None:
    """Refresh the planner's statistics and fold the WAL back into the database file."""
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def insert_bulk_users(conn: sqlite3.Connection, rows: Sequence[BulkUser]) -> dict[str, int]:
    """Create local actors with their accounts; return actor ids by username."""
    conn.executemany(
        "INSERT INTO actors (uri, is_local, username, host, display_name, public_key_pem,"
        " search_text, created_at, updated_at) VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                u.uri,
                u.username,
                u.host,
                u.display_name,
                u.public_key_pem,
                _search_text(u.username, u.display_name),
                u.created_at,
                u.created_at,
            )
            for u in rows
        ],
    )
    wanted = {u.username for u in rows}
    ids = {
        str(row[1]): int(row[0])
        for row in conn.execute("SELECT id, username FROM actors WHERE is_local = 1")
        if row[1] in wanted
    }
    conn.executemany(
        "INSERT INTO accounts (actor_id, password_hash, is_admin, private_key_pem, created_at)"
        " VALUES (?, ?, 0, ?, ?)",
        [(ids[u.username], u.password_hash, u.private_key_pem, u.created_at) for u in rows],
    )
    conn.executemany(
        "INSERT INTO audit_log (at, actor_id, action, detail) VALUES (?, NULL, ?, ?)",
        [(u.created_at, "account.create", u.username) for u in rows],
    )
    return ids


def insert_bulk_follows(
    conn: sqlite3.Connection, pairs: Iterable[tuple[int, int]], *, now_ms: int
) -> int:
    """Accepted local follows ``(follower_id, followee_id)``; duplicates are ignored.

    Returns the number of rows inserted.
    """
    inserted = 0
    for chunk in _chunks(pairs):
        before = conn.total_changes
        conn.executemany(
            "INSERT OR IGNORE INTO follows (follower_id, followee_id, state, uri, created_at)"
            " VALUES (?, ?, 'accepted', NULL, ?)",
            [(follower, followee, now_ms) for follower, followee in chunk],
        )
        inserted += conn.total_changes - before
    return inserted


def insert_bulk_posts(conn: sqlite3.Connection, rows: Iterable[BulkPost]) -> int:
    """Top-level posts and their first version, in increasing id order; returns the count."""
    count = 0
    last_id = int(conn.execute("SELECT coalesce(max(id), 0) FROM posts").fetchone()[0])
    for chunk in _chunks(rows):
        for post in chunk:
            if post.id <= last_id:
                raise ValueError(f"post ids must increase (got {post.id} after {last_id})")
            if post.visibility not in ("internal", "followers", "public"):
                raise ValueError(f"bulk posts cannot be {post.visibility!r}")
            last_id = post.id
        conn.executemany(
            "INSERT INTO posts (id, uri, url, author_id, visibility, thread_root_id, source,"
            " content_html, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    p.id,
                    p.uri,
                    p.url,
                    p.author_id,
                    p.visibility,
                    p.id,
                    p.source,
                    p.content_html,
                    p.created_at,
                )
                for p in chunk
            ],
        )
        conn.executemany(
            "INSERT INTO post_versions (post_id, version, visibility, source, content_html,"
            " created_at) VALUES (?, 1, ?, ?, ?, ?)",
            [(p.id, p.visibility, p.source, p.content_html, p.created_at) for p in chunk],
        )
        count += len(chunk)
    return count


def count_rows(conn: sqlite3.Connection) -> dict[str, int]:
    """Row counts of the tables a bulk load fills (to check a reused instance)."""
    return {
        "actors": _count(conn, "SELECT count(*) FROM actors"),
        "accounts": _count(conn, "SELECT count(*) FROM accounts"),
        "follows": _count(conn, "SELECT count(*) FROM follows"),
        "posts": _count(conn, "SELECT count(*) FROM posts"),
        "post_versions": _count(conn, "SELECT count(*) FROM post_versions"),
    }


def _count(conn: sqlite3.Connection, sql: str) -> int:
    return int(conn.execute(sql).fetchone()[0])


def select_post_id_before(conn: sqlite3.Connection, created_before_ms: int) -> int | None:
    """The newest post id created before a time: a keyset cursor deep in the past."""
    row = conn.execute(
        "SELECT max(id) FROM posts WHERE id < ?", ((created_before_ms + 1) << 12,)
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def explain_home_feed(conn: sqlite3.Connection, viewer_id: int, before: int | None) -> list[str]:
    """EXPLAIN QUERY PLAN of the home-feed query as :func:`posts.select_home_feed` runs it."""
    from server.storage import posts

    captured: list[str] = []
    conn.set_trace_callback(captured.append)
    try:
        posts.select_home_feed(conn, viewer_id, before=before, limit=20)
    finally:
        conn.set_trace_callback(None)
    feed_sql = next((s for s in captured if "ORDER BY p.id DESC" in s), None)
    if feed_sql is None:
        return ["(home-feed statement not captured)"]
    # The trace shows the statement with its parameters already bound, so it can be explained.
    plan = conn.execute(f"EXPLAIN QUERY PLAN {feed_sql}").fetchall()
    return [f"{'  ' * _depth(plan, r[1])}{r[3]}" for r in plan]


def _depth(plan: list[sqlite3.Row], parent: int) -> int:
    by_id = {int(r[0]): int(r[1]) for r in plan}
    depth = 0
    while parent:
        depth += 1
        parent = by_id.get(parent, 0)
    return depth
