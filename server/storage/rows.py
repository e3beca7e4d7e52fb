"""Row to domain conversions shared by the storage modules.

Lists are read by position: the columns' positions are looked up by name once per query
(:func:`column_index`), then each row is unpacked with one ``itemgetter``. ``sqlite3.Row`` finds
a column by name with a linear, case-insensitive scan of every column, and even a dict per row
cost more than the feed query itself (0.84 ms of a 20-post page against 0.6 ms of SQL,
measured on the bench instance).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from server.domain import Actor

ACTOR_COLUMNS = (
    "id, uri, is_local, username, host, display_name, job_title, department, location,"
    " contact, bio_html, avatar_file, avatar_url, profile_url, manually_approves,"
    " created_at, deleted_at"
)


def actor_columns(alias: str, prefix: str) -> str:
    """``ACTOR_COLUMNS`` of table ``alias``, renamed with ``prefix`` (for joins)."""
    return ", ".join(
        f"{alias}.{name.strip()} AS {prefix}{name.strip()}" for name in ACTOR_COLUMNS.split(",")
    )


_ACTOR_NAMES = tuple(name.strip() for name in ACTOR_COLUMNS.split(","))


def column_index(cursor: sqlite3.Cursor) -> dict[str, int]:
    """Each result column's position, by name: looked up once per query, then rows are read
    by position (a feed page's 20 rows of ~50 columns by name cost more than its query)."""
    return {column[0]: i for i, column in enumerate(cursor.description)}


def actor_reader(index: Mapping[str, int], prefix: str = "") -> Callable[[Sequence[Any]], Actor]:
    """A function reading the ``ACTOR_COLUMNS`` named with *prefix* from a row of a query
    whose :func:`column_index` is *index*."""
    values = itemgetter(*(index[f"{prefix}{name}"] for name in _ACTOR_NAMES))

    def read(row: Sequence[Any]) -> Actor:
        (
            id_,
            uri,
            is_local,
            username,
            host,
            display_name,
            job_title,
            department,
            location,
            contact,
            bio_html,
            avatar_file,
            avatar_url,
            profile_url,
            manually_approves,
            created_at,
            deleted_at,
        ) = values(row)
        return Actor(
            id=id_,
            uri=uri,
            is_local=bool(is_local),
            username=username,
            host=host,
            display_name=display_name,
            job_title=job_title,
            department=department,
            location=location,
            contact=contact,
            bio_html=bio_html,
            avatar_file=avatar_file,
            avatar_url=avatar_url,
            profile_url=profile_url,
            manually_approves=bool(manually_approves),
            created_at=created_at,
            deleted_at=deleted_at,
        )

    return read


def actor_from_row(row: sqlite3.Row, prefix: str = "") -> Actor:
    """One actor from one row (for single rows; lists read with :func:`actor_reader`)."""
    return actor_reader(row_index(row), prefix)(row)


def actors_from_rows(rows: Sequence[sqlite3.Row], prefix: str = "") -> list[Actor]:
    """The actors of rows of one query, its column positions looked up once."""
    if not rows:
        return []
    read = actor_reader(row_index(rows[0]), prefix)
    return [read(row) for row in rows]


def row_index(row: sqlite3.Row) -> dict[str, int]:
    """:func:`column_index` of the query that gave *row*."""
    return {name: i for i, name in enumerate(row.keys())}
