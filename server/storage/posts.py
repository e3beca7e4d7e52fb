"""Posts, their versions, recipients, tags and likes; the feeds that read them.

Invariants:
- Every read that returns posts to a person takes a ``viewer_id`` (``None`` = anonymous) and
  filters with :func:`server.storage.visibility.visible_sql`, the one SQL statement of "who
  may see what". Reply counts are counted for the viewer too, at read time.
- Deleted posts (``deleted_at`` set) are never returned by the reads for people; the row and
  every version stay for the compliance archive.
- ``post_versions`` holds every version, the current one included; an edit adds a row.
- Feed pages name whom a reply answers only where the viewer may read it (``replies.py``).
- Post ids are time-sortable; feeds page by ``id < cursor`` (keyset), so page 500 costs what
  page 1 costs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from server.domain import Actor, NotificationKind, Page, Post, PostVersion, Visibility
from server.storage.notifications import (
    insert_notification,
    retract_notification,
    retract_post_notifications,
)
from server.storage.replies import page_with_reply_targets
from server.storage.rows import actor_columns, actor_from_row, actor_reader, column_index, row_index
from server.storage.visibility import visible_reply_count_sql, visible_sql

_POST_SELECT = (
    "SELECT p.id, p.uri, p.visibility, p.content_html, p.source, p.in_reply_to_id,"
    " p.thread_root_id, p.version, {replies} AS reply_count, p.like_count,"
    # Only Public posts can be boosted: no count to look up for the others.
    " CASE WHEN p.visibility = 'public' THEN (SELECT count(*) FROM announces bc"
    " WHERE bc.post_id = p.id) ELSE 0 END AS boost_count, p.created_at,"
    " p.edited_at,"
    " p.deleted_at, p.wall_owner_id, "
    + actor_columns("au", "au_")
    + ", "
    + actor_columns("wo", "wo_")
    + ", {liked} AS liked, {boosted} AS boosted{extra}"
    " FROM posts p JOIN actors au ON au.id = p.author_id"
    " LEFT JOIN actors wo ON wo.id = p.wall_owner_id{joins}"
)
# A boost as a feed entry: at the boost's feed position, with the booster.
_AS_BOOST_ENTRY = ", a.feed_id AS feed_key, " + actor_columns("bo", "bo_")
_BOOST_JOINS = " JOIN announces a ON a.post_id = p.id JOIN actors bo ON bo.id = a.actor_id"

_MAX_CURSOR = 2**62


def _select(viewer_id: int | None, *, extra: str = "", joins: str = "") -> str:
    replies = visible_reply_count_sql(viewer_id)
    if viewer_id is None:
        return _POST_SELECT.format(
            replies=replies, liked="0", boosted="0", extra=extra, joins=joins
        )
    return _POST_SELECT.format(
        replies=replies,
        liked="EXISTS (SELECT 1 FROM likes l WHERE l.post_id = p.id AND l.actor_id = :viewer)",
        boosted="EXISTS (SELECT 1 FROM announces b WHERE b.post_id = p.id"
        " AND b.actor_id = :viewer)",
        extra=extra,
        joins=joins,
    )


_VISIBILITIES = {v.value: v for v in Visibility}
_POST_NAMES = (
    "id",
    "uri",
    "visibility",
    "content_html",
    "source",
    "wall_owner_id",
    "in_reply_to_id",
    "thread_root_id",
    "version",
    "reply_count",
    "like_count",
    "boost_count",
    "created_at",
    "edited_at",
    "deleted_at",
    "liked",
    "boosted",
)


def _post_reader(index: Mapping[str, int], *, entry: bool = False) -> Callable[[Any], Post]:
    """A function reading posts from rows of a ``_select`` query whose :func:`column_index` is
    *index*; *entry*: a boost's feed entry (``_AS_BOOST_ENTRY`` columns)."""
    values = itemgetter(*(index[name] for name in _POST_NAMES))
    author = actor_reader(index, "au_")
    wall_owner = actor_reader(index, "wo_")
    booster = actor_reader(index, "bo_") if entry else None
    feed_key_at = index["feed_key"] if entry else None

    def read(row: Any) -> Post:
        (
            id_,
            uri,
            visibility,
            content_html,
            source,
            wall_owner_id,
            in_reply_to_id,
            thread_root_id,
            version,
            reply_count,
            like_count,
            boost_count,
            created_at,
            edited_at,
            deleted_at,
            liked,
            boosted,
        ) = values(row)
        return Post(
            id=id_,
            uri=uri,
            author=author(row),
            visibility=_VISIBILITIES[visibility],
            content_html=content_html,
            source=source,
            wall_owner=wall_owner(row) if wall_owner_id is not None else None,
            in_reply_to_id=in_reply_to_id,
            thread_root_id=thread_root_id,
            version=version,
            reply_count=reply_count,
            like_count=like_count,
            boost_count=boost_count,
            created_at=created_at,
            edited_at=edited_at,
            deleted_at=deleted_at,
            liked_by_viewer=bool(liked),
            boosted_by_viewer=bool(boosted),
            boosted_by=booster(row) if booster is not None else None,
            feed_key=row[feed_key_at] if feed_key_at is not None else id_,
        )

    return read


def _read_posts(
    conn: sqlite3.Connection, sql: str, params: Mapping[str, Any], *, entry: bool = False
) -> list[Post]:
    """The posts of a ``_select`` query, read as plain tuples by position."""
    cursor = conn.cursor()
    cursor.row_factory = None  # tuples: cheaper to make than sqlite3.Row, and read by position
    cursor.execute(sql, params)
    read = _post_reader(column_index(cursor), entry=entry)
    return [read(row) for row in cursor]


def _post_from_row(row: sqlite3.Row) -> Post:
    """One post from one row of a ``_select`` query (lists use :func:`_read_posts`)."""
    return _post_reader(row_index(row))(row)


def next_post_id(conn: sqlite3.Connection, now_ms: int) -> int:
    """A new time-sortable id: epoch ms * 4096, or one more than the newest if that is later.

    Post ids and boosts' feed positions come from this one sequence, so a feed cursor is
    unambiguous across both."""
    newest = conn.execute(
        "SELECT max(coalesce((SELECT max(id) FROM posts), 0),"
        " coalesce((SELECT max(feed_id) FROM announces), 0))"
    ).fetchone()[0]
    return max(now_ms << 12, int(newest) + 1)


def post_id_at(conn: sqlite3.Connection, at_ms: int, now_ms: int) -> int:
    """An unused id that places a post at *at_ms* in feeds (a post older than the newest one,
    e.g. fetched because someone boosted it): the next free id of that millisecond, or a new
    id when the millisecond is full or not in the past."""
    base = at_ms << 12
    if at_ms >= now_ms:
        return next_post_id(conn, now_ms)
    taken = {
        int(row[0])
        for row in conn.execute(
            "SELECT id FROM posts WHERE id >= :lo AND id < :hi"
            " UNION ALL SELECT feed_id FROM announces WHERE feed_id >= :lo AND feed_id < :hi",
            {"lo": base, "hi": base + 4096},
        )
    }
    for candidate in range(base, base + 4096):
        if candidate not in taken:
            return candidate
    return next_post_id(conn, now_ms)


@dataclass(frozen=True, slots=True)
class NewPost:
    id: int
    uri: str
    author_id: int
    visibility: Visibility
    source: str
    content_html: str
    wall_owner_id: int | None
    in_reply_to_id: int | None
    thread_root_id: int
    recipient_ids: Sequence[int]
    tags: Sequence[str]
    created_at: int
    url: str | None = None
    in_reply_to_uri: str | None = None


def insert_post(conn: sqlite3.Connection, post: NewPost) -> None:
    conn.execute(
        "INSERT INTO posts (id, uri, url, author_id, visibility, wall_owner_id, in_reply_to_id,"
        " in_reply_to_uri, thread_root_id, source, content_html, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            post.id,
            post.uri,
            post.url,
            post.author_id,
            post.visibility.value,
            post.wall_owner_id,
            post.in_reply_to_id,
            post.in_reply_to_uri,
            post.thread_root_id,
            post.source,
            post.content_html,
            post.created_at,
        ),
    )
    conn.execute(
        "INSERT INTO post_versions (post_id, version, visibility, source, content_html,"
        " created_at) VALUES (?, 1, ?, ?, ?, ?)",
        (post.id, post.visibility.value, post.source, post.content_html, post.created_at),
    )
    _insert_recipients(conn, post.id, post.recipient_ids)
    _insert_tags(conn, post.id, post.tags)


def _insert_recipients(conn: sqlite3.Connection, post_id: int, ids: Iterable[int]) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO post_recipients (post_id, actor_id) VALUES (?, ?)",
        [(post_id, i) for i in set(ids)],
    )


def _insert_tags(conn: sqlite3.Connection, post_id: int, tags: Iterable[str]) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO post_tags (tag, post_id) VALUES (?, ?)",
        [(t, post_id) for t in set(tags)],
    )


def update_post_content(
    conn: sqlite3.Connection,
    post_id: int,
    *,
    source: str,
    content_html: str,
    recipient_ids: Sequence[int],
    tags: Sequence[str],
    now_ms: int,
    removed_ids: Sequence[int] = (),
    visibility: Visibility | None = None,
) -> int:
    """Store a new version (the previous ones stay) and return its number.

    *recipient_ids* are added (mentions the edit adds); *removed_ids* stop being recipients
    (mentions the edit took out): they lose access to the post, and their notifications of it
    go too, since a notification shows the current text. *visibility*, when given, replaces
    the post's (a partner's edit that narrowed its audience); the caller never widens it.

    ``edited_at`` strictly increases, even for two edits within one millisecond: it is the
    ``updated`` that partners use to keep the newest version whatever the arrival order."""
    row = conn.execute(
        "SELECT version, visibility, edited_at FROM posts WHERE id = ?", (post_id,)
    ).fetchone()
    version = int(row["version"]) + 1
    edited_at = max(now_ms, int(row["edited_at"] or 0) + 1)
    shown_to = visibility.value if visibility is not None else row["visibility"]
    conn.execute(
        "UPDATE posts SET source = ?, content_html = ?, version = ?, edited_at = ?,"
        " visibility = ? WHERE id = ?",
        (source, content_html, version, edited_at, shown_to, post_id),
    )
    conn.execute(
        "INSERT INTO post_versions (post_id, version, visibility, source, content_html,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (post_id, version, shown_to, source, content_html, now_ms),
    )
    _insert_recipients(conn, post_id, recipient_ids)
    conn.executemany(
        "DELETE FROM post_recipients WHERE post_id = ? AND actor_id = ?",
        [(post_id, i) for i in set(removed_ids)],
    )
    retract_post_notifications(conn, post_id=post_id, recipient_ids=removed_ids)
    conn.execute("DELETE FROM post_tags WHERE post_id = ?", (post_id,))
    _insert_tags(conn, post_id, tags)
    return version


def mark_post_deleted(conn: sqlite3.Connection, post_id: int, now_ms: int) -> bool:
    cur = conn.execute(
        "UPDATE posts SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL", (now_ms, post_id)
    )
    return cur.rowcount > 0


def select_post(conn: sqlite3.Connection, post_id: int, viewer_id: int | None) -> Post | None:
    """The post if it exists, is not deleted and ``viewer_id`` may see it."""
    row = conn.execute(
        f"{_select(viewer_id)} WHERE p.id = :id AND p.deleted_at IS NULL"
        f" AND {visible_sql(viewer_id)}",
        {"id": post_id, "viewer": viewer_id},
    ).fetchone()
    return _post_from_row(row) if row else None


def is_visible_to(conn: sqlite3.Connection, post_id: int, viewer_id: int) -> bool:
    """May *viewer_id* read the (undeleted) post? The same rule as every read of posts."""
    row = conn.execute(
        f"SELECT 1 FROM posts p WHERE p.id = :id AND p.deleted_at IS NULL"
        f" AND {visible_sql(viewer_id)}",
        {"id": post_id, "viewer": viewer_id},
    ).fetchone()
    return row is not None


def select_post_unchecked(conn: sqlite3.Connection, post_id: int) -> Post | None:
    """The post regardless of viewer (for services that check ownership themselves)."""
    row = conn.execute(
        f"{_select(None)} WHERE p.id = :id", {"id": post_id, "viewer": None}
    ).fetchone()
    return _post_from_row(row) if row else None


def select_live_audience(conn: sqlite3.Connection, post_id: int) -> set[int]:
    """Who may have the post open in a feed now: its author, the people it is addressed to,
    unless it is Direct the author's local followers, and the local followers of those who
    boosted it (live updates of its changes)."""
    return {
        int(r[0])
        for r in conn.execute(
            "SELECT author_id FROM posts WHERE id = :id"
            " UNION SELECT actor_id FROM post_recipients WHERE post_id = :id"
            " UNION SELECT f.follower_id FROM posts p"
            " JOIN follows f ON f.followee_id = p.author_id AND f.state = 'accepted'"
            " JOIN actors a ON a.id = f.follower_id AND a.is_local = 1"
            " WHERE p.id = :id AND p.visibility != 'direct'"
            # A boost puts the post in the booster's followers' feeds too.
            " UNION SELECT f.follower_id FROM announces b"
            " JOIN follows f ON f.followee_id = b.actor_id AND f.state = 'accepted'"
            " JOIN actors a ON a.id = f.follower_id AND a.is_local = 1"
            " WHERE b.post_id = :id",
            {"id": post_id},
        )
    }


def select_recipient_ids(conn: sqlite3.Connection, post_id: int) -> list[int]:
    return [
        int(r[0])
        for r in conn.execute("SELECT actor_id FROM post_recipients WHERE post_id = ?", (post_id,))
    ]


def _page(found: list[Post], limit: int) -> Page[Post]:
    """A page of *limit* from a query asked for *limit* + 1 (the extra one says there is more)."""
    posts = found[:limit]
    next_cursor = posts[-1].feed_key if len(found) > limit and posts else None
    return Page(tuple(posts), next_cursor)


# Posts that are in :viewer's home feed by themselves (not through a boost). NULL, not false,
# for a post on nobody's wall.
_IN_OWN_FEED = (
    "(+p.author_id = :viewer OR p.wall_owner_id = :viewer"
    " OR +p.author_id IN (SELECT followee_id FROM follows"
    "     WHERE follower_id = :viewer AND state = 'accepted')"
    " OR EXISTS (SELECT 1 FROM post_recipients r2"
    "     WHERE r2.post_id = p.id AND r2.actor_id = :viewer))"
)


def is_in_own_feed(conn: sqlite3.Connection, post_id: int, viewer_id: int) -> bool:
    """Is the post in the viewer's home feed by itself (so never shown there as a boost)?"""
    row = conn.execute(
        f"SELECT coalesce({_IN_OWN_FEED}, 0) FROM posts p WHERE p.id = :id",
        {"id": post_id, "viewer": viewer_id},
    ).fetchone()
    return bool(row and row[0])


def select_home_feed(
    conn: sqlite3.Connection, viewer_id: int, *, before: int | None, limit: int
) -> Page[Post]:
    """Own posts, posts of people followed, wall posts to me and posts addressed to me.

    Scans posts newest first and filters (the ``+`` keeps SQLite on the primary key): a viewer
    following a tenth of the company finds a page in a few hundred rows at any depth.
    """
    boosters = (
        "(SELECT followee_id FROM follows WHERE follower_id = :viewer AND state = 'accepted'"
        " UNION ALL SELECT :viewer)"
    )
    posts_part = (
        f"{_select(viewer_id)} WHERE p.id < :before"
        f" AND p.deleted_at IS NULL AND {_IN_OWN_FEED} AND {visible_sql(viewer_id)}"
        " ORDER BY p.id DESC LIMIT :limit"
    )
    # Boosts by the viewer and the people they follow, of posts the feed does not already
    # hold, each post once (at its latest such boost).
    boosts_part = (
        f"{_select(viewer_id, extra=_AS_BOOST_ENTRY, joins=_BOOST_JOINS)}"
        f" WHERE a.actor_id IN {boosters} AND a.feed_id < :before"
        f" AND p.deleted_at IS NULL AND NOT coalesce({_IN_OWN_FEED}, 0)"
        f" AND {visible_sql(viewer_id)}"
        " AND a.feed_id = (SELECT max(a2.feed_id) FROM announces a2"
        f"     WHERE a2.post_id = p.id AND a2.actor_id IN {boosters})"
        " ORDER BY a.feed_id DESC LIMIT :limit"
    )
    params = {"viewer": viewer_id, "before": before or _MAX_CURSOR, "limit": limit + 1}
    page = _merged_page(conn, posts_part, boosts_part, params, limit)
    return page_with_reply_targets(conn, page, viewer_id)


def _merged_page(
    conn: sqlite3.Connection,
    posts_sql: str,
    boosts_sql: str,
    params: Mapping[str, int | None],
    limit: int,
) -> Page[Post]:
    """One feed page from a posts query and a boosts query (each newest first, *limit* + 1
    rows), merged by feed position. Two queries merged here: one UNION ALL ... ORDER BY in
    SQLite cost twice as much."""
    entries = _read_posts(conn, posts_sql, params)
    boosts = _read_posts(conn, boosts_sql, params, entry=True)
    if boosts:
        entries = sorted([*entries, *boosts], key=lambda post: post.feed_key, reverse=True)
    page = entries[:limit]
    return Page(tuple(page), page[-1].feed_key if len(entries) > limit and page else None)


def select_profile_feed(
    conn: sqlite3.Connection,
    actor_id: int,
    viewer_id: int | None,
    *,
    before: int | None,
    limit: int,
) -> Page[Post]:
    """Posts by a person, posts on their wall and their boosts of others' posts, as
    ``viewer_id`` may see them."""
    posts_part = (
        f"{_select(viewer_id)} WHERE p.id IN ("
        "   SELECT id FROM posts WHERE author_id = :actor AND id < :before"
        "   UNION SELECT id FROM posts WHERE wall_owner_id = :actor AND id < :before)"
        f" AND p.deleted_at IS NULL AND {visible_sql(viewer_id)}"
        " ORDER BY p.id DESC LIMIT :limit"
    )
    boosts_part = (
        f"{_select(viewer_id, extra=_AS_BOOST_ENTRY, joins=_BOOST_JOINS)}"
        " WHERE a.actor_id = :actor AND a.feed_id < :before AND p.deleted_at IS NULL"
        " AND p.author_id != :actor AND p.wall_owner_id IS NOT :actor"
        f" AND {visible_sql(viewer_id)} ORDER BY a.feed_id DESC LIMIT :limit"
    )
    params = {
        "actor": actor_id,
        "viewer": viewer_id,
        "before": before or _MAX_CURSOR,
        "limit": limit + 1,
    }
    page = _merged_page(conn, posts_part, boosts_part, params, limit)
    return page_with_reply_targets(conn, page, viewer_id)


def select_wall(
    conn: sqlite3.Connection,
    owner_id: int,
    viewer_id: int | None,
    *,
    before: int | None,
    limit: int,
) -> Page[Post]:
    rows = _read_posts(
        conn,
        f"{_select(viewer_id)} WHERE p.wall_owner_id = :owner AND p.id < :before"
        f" AND p.deleted_at IS NULL AND {visible_sql(viewer_id)}"
        " ORDER BY p.id DESC LIMIT :limit",
        {
            "owner": owner_id,
            "viewer": viewer_id,
            "before": before or _MAX_CURSOR,
            "limit": limit + 1,
        },
    )
    return page_with_reply_targets(conn, _page(rows, limit), viewer_id)


def select_thread(
    conn: sqlite3.Connection, root_id: int, viewer_id: int | None, *, limit: int = 500
) -> list[Post]:
    return _read_posts(
        conn,
        f"{_select(viewer_id)} WHERE p.thread_root_id = :root AND p.deleted_at IS NULL"
        f" AND {visible_sql(viewer_id)} ORDER BY p.id LIMIT :limit",
        {"root": root_id, "viewer": viewer_id, "limit": limit},
    )


def select_tag_feed(
    conn: sqlite3.Connection,
    tag: str,
    viewer_id: int | None,
    *,
    before: int | None,
    limit: int,
) -> Page[Post]:
    rows = _read_posts(
        conn,
        f"{_select(viewer_id)} JOIN post_tags t ON t.post_id = p.id"
        " WHERE t.tag = :tag AND t.post_id < :before AND p.deleted_at IS NULL"
        f" AND {visible_sql(viewer_id)} ORDER BY t.post_id DESC LIMIT :limit",
        {"tag": tag, "viewer": viewer_id, "before": before or _MAX_CURSOR, "limit": limit + 1},
    )
    return page_with_reply_targets(conn, _page(rows, limit), viewer_id)


def select_versions(conn: sqlite3.Connection, post_id: int) -> list[PostVersion]:
    rows = conn.execute(
        "SELECT post_id, version, visibility, source, content_html, created_at"
        " FROM post_versions WHERE post_id = ? ORDER BY version DESC",
        (post_id,),
    ).fetchall()
    return [
        PostVersion(
            post_id=r["post_id"],
            version=r["version"],
            content_html=r["content_html"],
            source=r["source"],
            visibility=Visibility(r["visibility"]),
            created_at=r["created_at"],
        )
        for r in rows
    ]


def insert_like(
    conn: sqlite3.Connection, actor_id: int, post_id: int, uri: str | None, now_ms: int
) -> bool:
    """Record a like and notify the author; False if it was already there (idempotent)."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO likes (actor_id, post_id, uri, created_at) VALUES (?, ?, ?, ?)",
        (actor_id, post_id, uri, now_ms),
    )
    if cur.rowcount:
        conn.execute("UPDATE posts SET like_count = like_count + 1 WHERE id = ?", (post_id,))
        _notify_author(conn, NotificationKind.LIKE, actor_id, post_id, now_ms)
    return cur.rowcount > 0


def _notify_author(
    conn: sqlite3.Connection, kind: NotificationKind, actor_id: int, post_id: int, now_ms: int
) -> None:
    """Tell the post's author (if local, and not the actor) of a like or boost; taking
    either back retracts it (:func:`delete_like`, :func:`delete_announce`)."""
    author_id = select_author_id(conn, post_id)
    assert author_id is not None, "likes and boosts are recorded for existing posts"
    insert_notification(
        conn,
        recipient_id=author_id,
        kind=kind,
        actor_id=actor_id,
        post_id=post_id,
        now_ms=now_ms,
    )


def select_author_id(conn: sqlite3.Connection, post_id: int) -> int | None:
    row = conn.execute("SELECT author_id FROM posts WHERE id = ?", (post_id,)).fetchone()
    return int(row[0]) if row else None


def delete_like(conn: sqlite3.Connection, actor_id: int, post_id: int) -> bool:
    """Take a like back, and the author's notification of it."""
    cur = conn.execute("DELETE FROM likes WHERE actor_id = ? AND post_id = ?", (actor_id, post_id))
    if cur.rowcount:
        conn.execute(
            "UPDATE posts SET like_count = max(like_count - 1, 0) WHERE id = ?", (post_id,)
        )
        retract_notification(conn, kind=NotificationKind.LIKE, actor_id=actor_id, post_id=post_id)
    return cur.rowcount > 0


def select_like_uri(conn: sqlite3.Connection, actor_id: int, post_id: int) -> str | None:
    row = conn.execute(
        "SELECT uri FROM likes WHERE actor_id = ? AND post_id = ?", (actor_id, post_id)
    ).fetchone()
    return str(row[0]) if row and row[0] else None


@dataclass(frozen=True, slots=True)
class PostCore:
    id: int
    author_id: int
    thread_root_id: int
    visibility: str
    deleted_at: int | None
    remote_updated_at: int | None
    is_local_author: bool
    wall_owner_id: int | None


def select_post_core_by_uri(conn: sqlite3.Connection, uri: str) -> PostCore | None:
    row = conn.execute(
        "SELECT p.id, p.author_id, p.thread_root_id, p.visibility, p.deleted_at,"
        " p.remote_updated_at, a.is_local, p.wall_owner_id"
        " FROM posts p JOIN actors a ON a.id = p.author_id WHERE p.uri = ?",
        (uri,),
    ).fetchone()
    if row is None:
        return None
    return PostCore(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]), row[7])


def select_parent_author_id(conn: sqlite3.Connection, post_id: int) -> int | None:
    """The author of the post that *post_id* replies to, if it is stored."""
    row = conn.execute(
        "SELECT parent.author_id FROM posts p JOIN posts parent ON parent.id = p.in_reply_to_id"
        " WHERE p.id = ?",
        (post_id,),
    ).fetchone()
    return int(row[0]) if row else None


def set_remote_updated(conn: sqlite3.Connection, post_id: int, updated_ms: int) -> None:
    conn.execute("UPDATE posts SET remote_updated_at = ? WHERE id = ?", (updated_ms, post_id))


def delete_like_by_uri(conn: sqlite3.Connection, actor_id: int, uri: str) -> int | None:
    """Remove the like with this activity id by this actor; returns its post id."""
    row = conn.execute(
        "SELECT post_id FROM likes WHERE uri = ? AND actor_id = ?", (uri, actor_id)
    ).fetchone()
    if row is None:
        return None
    delete_like(conn, actor_id, int(row[0]))
    return int(row[0])


def insert_announce(
    conn: sqlite3.Connection, actor_id: int, post_id: int, uri: str, now_ms: int
) -> bool:
    cur = conn.execute(
        "INSERT OR IGNORE INTO announces (actor_id, post_id, uri, created_at, feed_id)"
        " VALUES (?, ?, ?, ?, ?)",
        (actor_id, post_id, uri, now_ms, next_post_id(conn, now_ms)),
    )
    if cur.rowcount:
        _notify_author(conn, NotificationKind.BOOST, actor_id, post_id, now_ms)
    return cur.rowcount > 0


def delete_announce_by_uri(conn: sqlite3.Connection, actor_id: int, uri: str) -> int | None:
    """Take back the boost with this activity id by this actor (see :func:`delete_announce`);
    returns its post id."""
    row = conn.execute(
        "SELECT post_id FROM announces WHERE uri = ? AND actor_id = ?", (uri, actor_id)
    ).fetchone()
    if row is None or not delete_announce(conn, actor_id, int(row[0])):
        return None
    return int(row[0])


def select_post_for_remote(
    conn: sqlite3.Connection, post_id: int, requester_id: int | None
) -> Post | None:
    """A local post as a remote requester may fetch it: never Internal (it answers exactly like
    a missing post), Public to any allowed signer, Followers to accepted followers, Direct to
    the addressed people. Deleted posts are returned (the caller answers 410)."""
    row = conn.execute(
        f"{_select(None)} WHERE p.id = :id AND au.is_local = 1"
        " AND p.visibility != 'internal' AND (p.visibility = 'public'"
        " OR (p.visibility = 'followers' AND EXISTS (SELECT 1 FROM follows f"
        "     WHERE f.follower_id = :viewer AND f.followee_id = p.author_id"
        "     AND f.state = 'accepted'))"
        " OR EXISTS (SELECT 1 FROM post_recipients r"
        "     WHERE r.post_id = p.id AND r.actor_id = :viewer))",
        {"id": post_id, "viewer": requester_id},
    ).fetchone()
    return _post_from_row(row) if row else None


def select_public_posts_of(
    conn: sqlite3.Connection, author_id: int, *, before: int | None, limit: int
) -> list[int]:
    """Ids of an author's public, undeleted posts (outbox pages)."""
    return [
        int(r[0])
        for r in conn.execute(
            "SELECT id FROM posts WHERE author_id = ? AND visibility = 'public'"
            " AND deleted_at IS NULL AND id < ? ORDER BY id DESC LIMIT ?",
            (author_id, before or _MAX_CURSOR, limit),
        )
    ]


def select_public_wall_uris(
    conn: sqlite3.Connection, owner_id: int, *, before: int | None, limit: int
) -> list[tuple[int, str]]:
    """(id, uri) of the public, undeleted posts on a person's wall (FEP-400e wall pages)."""
    return [
        (int(r[0]), str(r[1]))
        for r in conn.execute(
            "SELECT id, uri FROM posts WHERE wall_owner_id = ? AND visibility = 'public'"
            " AND deleted_at IS NULL AND id < ? ORDER BY id DESC LIMIT ?",
            (owner_id, before or _MAX_CURSOR, limit),
        )
    ]


def select_announce_uri(conn: sqlite3.Connection, actor_id: int, post_id: int) -> str | None:
    row = conn.execute(
        "SELECT uri FROM announces WHERE actor_id = ? AND post_id = ?", (actor_id, post_id)
    ).fetchone()
    return str(row[0]) if row and row[0] else None


def select_booster(conn: sqlite3.Connection, post_id: int, actor_id: int) -> Actor | None:
    """The person *actor_id* if they boosted post *post_id*, else None."""
    row = conn.execute(
        f"SELECT {actor_columns('bo', 'bo_')} FROM announces a"
        " JOIN actors bo ON bo.id = a.actor_id WHERE a.post_id = ? AND a.actor_id = ?"
        " AND bo.deleted_at IS NULL",
        (post_id, actor_id),
    ).fetchone()
    return actor_from_row(row, "bo_") if row else None


def delete_announce(conn: sqlite3.Connection, actor_id: int, post_id: int) -> bool:
    """Take a boost back, and the author's notification of it."""
    cur = conn.execute(
        "DELETE FROM announces WHERE actor_id = ? AND post_id = ?", (actor_id, post_id)
    )
    if cur.rowcount:
        retract_notification(conn, kind=NotificationKind.BOOST, actor_id=actor_id, post_id=post_id)
    return cur.rowcount > 0
