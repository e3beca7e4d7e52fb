"""Who follows whom (``follows``). A row is pending, accepted or frozen (host removed)."""

from __future__ import annotations

import sqlite3

from server.domain import Actor, FollowState, Page
from server.storage import notifications
from server.storage.rows import actor_columns, actors_from_rows


def insert_follow(
    conn: sqlite3.Connection,
    follower_id: int,
    followee_id: int,
    *,
    state: FollowState,
    uri: str | None,
    now_ms: int,
) -> bool:
    """Create the relationship; False if it already existed (idempotent)."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO follows (follower_id, followee_id, state, uri, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (follower_id, followee_id, state.value, uri, now_ms),
    )
    return cur.rowcount > 0


def select_follow_state(
    conn: sqlite3.Connection, follower_id: int, followee_id: int
) -> FollowState | None:
    row = conn.execute(
        "SELECT state FROM follows WHERE follower_id = ? AND followee_id = ?",
        (follower_id, followee_id),
    ).fetchone()
    return FollowState(row[0]) if row else None


def update_follow_state(
    conn: sqlite3.Connection, follower_id: int, followee_id: int, state: FollowState
) -> bool:
    """Set the state; a request that becomes accepted is announced as a follow from then on."""
    cur = conn.execute(
        "UPDATE follows SET state = ? WHERE follower_id = ? AND followee_id = ?",
        (state.value, follower_id, followee_id),
    )
    if cur.rowcount and state is FollowState.ACCEPTED:
        notifications.approve_follow_notification(
            conn, followee_id=followee_id, follower_id=follower_id
        )
    return cur.rowcount > 0


def delete_follow(conn: sqlite3.Connection, follower_id: int, followee_id: int) -> bool:
    """End the relationship, and the notification it caused (Mastodon does the same)."""
    cur = conn.execute(
        "DELETE FROM follows WHERE follower_id = ? AND followee_id = ?",
        (follower_id, followee_id),
    )
    if not cur.rowcount:
        return False
    notifications.retract_follow_notification(
        conn, followee_id=followee_id, follower_id=follower_id
    )
    return True


def _people(
    conn: sqlite3.Connection, sql: str, actor_id: int, before: int | None, limit: int
) -> Page[Actor]:
    rows = conn.execute(
        sql, {"actor": actor_id, "before": before or 2**62, "limit": limit + 1}
    ).fetchall()
    people = actors_from_rows(rows[:limit], "a_")
    cursor = int(rows[limit - 1]["follow_id"]) if len(rows) > limit else None
    return Page(tuple(people), cursor)


def select_followers(
    conn: sqlite3.Connection, actor_id: int, *, before: int | None, limit: int
) -> Page[Actor]:
    return _people(
        conn,
        f"SELECT f.id AS follow_id, {actor_columns('a', 'a_')} FROM follows f"
        " JOIN actors a ON a.id = f.follower_id WHERE f.followee_id = :actor"
        " AND f.state = 'accepted' AND f.id < :before ORDER BY f.id DESC LIMIT :limit",
        actor_id,
        before,
        limit,
    )


def select_following(
    conn: sqlite3.Connection, actor_id: int, *, before: int | None, limit: int
) -> Page[Actor]:
    return _people(
        conn,
        f"SELECT f.id AS follow_id, {actor_columns('a', 'a_')} FROM follows f"
        " JOIN actors a ON a.id = f.followee_id WHERE f.follower_id = :actor"
        " AND f.state = 'accepted' AND f.id < :before ORDER BY f.id DESC LIMIT :limit",
        actor_id,
        before,
        limit,
    )


def select_pending_requests(conn: sqlite3.Connection, followee_id: int) -> list[Actor]:
    rows = conn.execute(
        f"SELECT {actor_columns('a', 'a_')} FROM follows f JOIN actors a"
        " ON a.id = f.follower_id WHERE f.followee_id = ? AND f.state = 'pending'"
        " ORDER BY f.id",
        (followee_id,),
    ).fetchall()
    return actors_from_rows(rows, "a_")


def count_follows(conn: sqlite3.Connection, actor_id: int) -> tuple[int, int]:
    """(followers, following), accepted only."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM follows WHERE followee_id = :a AND state = 'accepted'),"
        " (SELECT count(*) FROM follows WHERE follower_id = :a AND state = 'accepted')",
        {"a": actor_id},
    ).fetchone()
    return int(row[0]), int(row[1])


def select_local_follower_ids(conn: sqlite3.Connection, actor_id: int) -> list[int]:
    """Local people following ``actor_id`` (accepted): the live-update audience."""
    return [
        int(r[0])
        for r in conn.execute(
            "SELECT f.follower_id FROM follows f JOIN actors a ON a.id = f.follower_id"
            " WHERE f.followee_id = ? AND f.state = 'accepted' AND a.is_local = 1",
            (actor_id,),
        )
    ]


def select_follow_uri(conn: sqlite3.Connection, follower_id: int, followee_id: int) -> str | None:
    row = conn.execute(
        "SELECT uri FROM follows WHERE follower_id = ? AND followee_id = ?",
        (follower_id, followee_id),
    ).fetchone()
    return str(row[0]) if row and row[0] else None


def select_follow_by_uri(conn: sqlite3.Connection, uri: str) -> tuple[int, int, str] | None:
    row = conn.execute(
        "SELECT follower_id, followee_id, state FROM follows WHERE uri = ?", (uri,)
    ).fetchone()
    return (int(row[0]), int(row[1]), str(row[2])) if row else None


def select_follower_uris(
    conn: sqlite3.Connection,
    actor_id: int,
    *,
    host: str,
    before: int | None,
    limit: int,
    followers: bool,
) -> tuple[list[str], int | None]:
    """Actor ids (URIs) of accepted followers (or followees) on *host* only, newest first,
    with a cursor: a partner learns who of its own people follow ours (what it needs to keep
    its side in sync), never our colleagues' or other partners' connections."""
    mine, other = ("followee_id", "follower_id") if followers else ("follower_id", "followee_id")
    rows = conn.execute(
        f"SELECT f.id, a.uri FROM follows f JOIN actors a ON a.id = f.{other}"
        f" WHERE f.{mine} = ? AND f.state = 'accepted' AND f.id < ? AND a.is_local = 0"
        " AND a.host = ? AND a.deleted_at IS NULL ORDER BY f.id DESC LIMIT ?",
        (actor_id, before or 2**62, host, limit + 1),
    ).fetchall()
    uris = [str(r[1]) for r in rows[:limit]]
    return uris, (int(rows[limit - 1][0]) if len(rows) > limit else None)
