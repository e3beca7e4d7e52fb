"""Whom a reply answers, for "Replying to …" on cards shown outside their thread.

Invariant: a parent's author is named only when the viewer may read the parent itself (the
one rule of :func:`server.storage.visibility.visible_sql`) and it is not deleted. A reply the
viewer may read can answer a post they may not (a Followers post answered to the replier's
own followers, a Direct one): its author, and so that it exists at all, stays unsaid.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterable

from server.domain import Actor, Page, Post
from server.storage.rows import actor_columns, actor_reader, column_index
from server.storage.visibility import visible_sql


def select_readable_parent_authors(
    conn: sqlite3.Connection, parent_ids: Iterable[int], viewer_id: int | None
) -> dict[int, Actor]:
    """Post id -> author, for the posts of *parent_ids* that ``viewer_id`` may read."""
    ids = sorted(set(parent_ids))
    if not ids:
        return {}
    params: dict[str, int | None] = {f"id{n}": post_id for n, post_id in enumerate(ids)}
    params["viewer"] = viewer_id
    placeholders = ", ".join(f":id{n}" for n in range(len(ids)))
    cursor = conn.execute(
        f"SELECT p.id AS post_id, {actor_columns('a', 'a_')} FROM posts p"
        f" JOIN actors a ON a.id = p.author_id WHERE p.id IN ({placeholders})"
        f" AND p.deleted_at IS NULL AND {visible_sql(viewer_id)}",
        params,
    )
    index = column_index(cursor)
    read_author = actor_reader(index, "a_")
    post_id = index["post_id"]
    return {int(row[post_id]): read_author(row) for row in cursor}


def with_reply_targets(
    conn: sqlite3.Connection, posts: Iterable[Post], viewer_id: int | None
) -> list[Post]:
    """*posts* with ``reply_to`` set where the viewer may read the post answered."""
    items = list(posts)
    authors = select_readable_parent_authors(
        conn, (p.in_reply_to_id for p in items if p.in_reply_to_id is not None), viewer_id
    )
    return [
        dataclasses.replace(p, reply_to=authors[p.in_reply_to_id])
        if p.in_reply_to_id is not None and p.in_reply_to_id in authors
        else p
        for p in items
    ]


def page_with_reply_targets(
    conn: sqlite3.Connection, page: Page[Post], viewer_id: int | None
) -> Page[Post]:
    """:func:`with_reply_targets` for one feed page (one query, none without replies)."""
    if not any(p.in_reply_to_id is not None for p in page.items):
        return page
    return Page(tuple(with_reply_targets(conn, page.items, viewer_id)), page.next_cursor)
