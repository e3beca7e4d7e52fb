"""Notifications for local people: who did what, about which post, read or not."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from server.domain import Notification, NotificationKind, Page
from server.storage.rows import actor_columns, actors_from_rows
from server.storage.visibility import visible_sql


def insert_notification(
    conn: sqlite3.Connection,
    *,
    recipient_id: int,
    kind: NotificationKind,
    actor_id: int,
    post_id: int | None,
    now_ms: int,
) -> int | None:
    """Notify a local person; nothing for acting on one's own things or for remote people."""
    if recipient_id == actor_id:
        return None
    local = conn.execute("SELECT is_local FROM actors WHERE id = ?", (recipient_id,)).fetchone()
    if not local or not local[0]:
        return None
    cur = conn.execute(
        "INSERT INTO notifications (recipient_id, kind, actor_id, post_id, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (recipient_id, kind.value, actor_id, post_id, now_ms),
    )
    return int(cur.lastrowid or 0)


def retract_notification(
    conn: sqlite3.Connection, *, kind: NotificationKind, actor_id: int, post_id: int
) -> int:
    """Remove what *actor* was notified for about *post* (a like or boost taken back)."""
    cur = conn.execute(
        "DELETE FROM notifications WHERE post_id = ? AND actor_id = ? AND kind = ?",
        (post_id, actor_id, kind.value),
    )
    return cur.rowcount


def retract_post_notifications(
    conn: sqlite3.Connection, *, post_id: int, recipient_ids: Iterable[int]
) -> None:
    """Remove what these people were told about *post* (they are no longer its audience: a
    notification shows the post's current text)."""
    conn.executemany(
        "DELETE FROM notifications WHERE post_id = ? AND recipient_id = ?",
        [(post_id, i) for i in set(recipient_ids)],
    )


def retract_follow_notification(
    conn: sqlite3.Connection, *, followee_id: int, follower_id: int
) -> int:
    """Remove the "followed you" or "asked to follow you" of a follow that ended."""
    cur = conn.execute(
        "DELETE FROM notifications"
        " WHERE recipient_id = ? AND actor_id = ? AND post_id IS NULL"
        " AND kind IN ('follow', 'follow_request')",
        (followee_id, follower_id),
    )
    return cur.rowcount


def approve_follow_notification(
    conn: sqlite3.Connection, *, followee_id: int, follower_id: int
) -> None:
    """An approved request reads "followed you" from now on; it keeps its place and read mark."""
    conn.execute(
        "UPDATE notifications SET kind = 'follow'"
        " WHERE recipient_id = ? AND actor_id = ? AND post_id IS NULL AND kind = 'follow_request'",
        (followee_id, follower_id),
    )


def select_notifications(
    conn: sqlite3.Connection, recipient_id: int, *, before: int | None, limit: int
) -> Page[Notification]:
    """Newest first. A notification about a post the reader may not see (deleted, or an
    audience that no longer includes them) shows no snippet: the text is checked here as on
    the post's own page, not trusted to what was true when the notification was made."""
    rows = conn.execute(
        f"SELECT n.id, n.kind, n.post_id, n.created_at, n.read_at, {actor_columns('a', 'a_')},"
        " CASE WHEN p.deleted_at IS NULL AND"
        f" {visible_sql(recipient_id)} THEN p.content_html ELSE '' END AS snippet"
        " FROM notifications n JOIN actors a ON a.id = n.actor_id"
        " LEFT JOIN posts p ON p.id = n.post_id"
        " WHERE n.recipient_id = :r AND n.id < :before ORDER BY n.id DESC LIMIT :limit",
        {"r": recipient_id, "viewer": recipient_id, "before": before or 2**62, "limit": limit + 1},
    ).fetchall()
    items = tuple(
        Notification(
            id=r["id"],
            kind=NotificationKind(r["kind"]),
            actor=actor,
            post_id=r["post_id"],
            post_snippet=r["snippet"] or "",
            created_at=r["created_at"],
            read=r["read_at"] is not None,
        )
        for actor, r in zip(actors_from_rows(rows[:limit], "a_"), rows[:limit], strict=True)
    )
    return Page(items, items[-1].id if len(rows) > limit and items else None)


def count_unread(conn: sqlite3.Connection, recipient_id: int, *, cap: int | None = None) -> int:
    """Unread notifications; with *cap*, counting stops there (a badge shows "99+")."""
    if cap is None:
        sql = "SELECT count(*) FROM notifications WHERE recipient_id = ? AND read_at IS NULL"
        return int(conn.execute(sql, (recipient_id,)).fetchone()[0])
    sql = (
        "SELECT count(*) FROM (SELECT 1 FROM notifications"
        " WHERE recipient_id = ? AND read_at IS NULL LIMIT ?)"
    )
    return int(conn.execute(sql, (recipient_id, cap)).fetchone()[0])


def mark_all_read(
    conn: sqlite3.Connection, recipient_id: int, now_ms: int, *, upto: int | None = None
) -> int:
    """Mark read; with *upto*, only notifications up to that id (what the reader was shown:
    one that came in after the page was loaded stays unread)."""
    cur = conn.execute(
        "UPDATE notifications SET read_at = ? WHERE recipient_id = ? AND read_at IS NULL"
        " AND id <= ?",
        (now_ms, recipient_id, upto if upto is not None else 2**62),
    )
    return cur.rowcount


def newest_unread_id(conn: sqlite3.Connection, recipient_id: int) -> int | None:
    row = conn.execute(
        "SELECT max(id) FROM notifications WHERE recipient_id = ? AND read_at IS NULL",
        (recipient_id,),
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def notify_new_post(
    conn: sqlite3.Connection,
    *,
    post_id: int,
    author_id: int,
    mentioned: Iterable[int],
    replied_to: int | None,
    wall_owner: int | None,
    now_ms: int,
) -> None:
    """The notifications a new post causes, local or remote alike: mentions, a reply and a
    wall post, one each (the person replied to hears "replied", the wall's owner "wrote on
    your wall", neither also "mentioned": a partner's wall post mentions its owner)."""
    for person_id in set(mentioned) - {replied_to, wall_owner}:
        insert_notification(
            conn,
            recipient_id=person_id,
            kind=NotificationKind.MENTION,
            actor_id=author_id,
            post_id=post_id,
            now_ms=now_ms,
        )
    for recipient, kind in (
        (replied_to, NotificationKind.REPLY),
        (wall_owner, NotificationKind.WALL),
    ):
        if recipient is not None:
            insert_notification(
                conn,
                recipient_id=recipient,
                kind=kind,
                actor_id=author_id,
                post_id=post_id,
                now_ms=now_ms,
            )


def notify_follow(
    conn: sqlite3.Connection, *, followee_id: int, follower_id: int, pending: bool, now_ms: int
) -> None:
    insert_notification(
        conn,
        recipient_id=followee_id,
        kind=NotificationKind.FOLLOW_REQUEST if pending else NotificationKind.FOLLOW,
        actor_id=follower_id,
        post_id=None,
        now_ms=now_ms,
    )
