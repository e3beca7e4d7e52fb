"""Row to domain conversions shared by the storage modules.

Conversions read plain dicts (see :func:`as_dict`): ``sqlite3.Row`` finds a column by name
with a linear, case-insensitive scan of every column, so reading the ~50 columns of a feed row
by name cost more than the feed query itself (about 1 ms of a 20-post page, measured on the
bench instance).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
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


def as_dict(row: sqlite3.Row) -> dict[str, Any]:
    """The row as a dict, for reading many columns by name."""
    return dict(zip(row.keys(), row, strict=True))


def actor_from_row(row: sqlite3.Row | Mapping[str, Any], prefix: str = "") -> Actor:
    if isinstance(row, sqlite3.Row):
        row = as_dict(row)
    return Actor(
        id=row[f"{prefix}id"],
        uri=row[f"{prefix}uri"],
        is_local=bool(row[f"{prefix}is_local"]),
        username=row[f"{prefix}username"],
        host=row[f"{prefix}host"],
        display_name=row[f"{prefix}display_name"],
        job_title=row[f"{prefix}job_title"],
        department=row[f"{prefix}department"],
        location=row[f"{prefix}location"],
        contact=row[f"{prefix}contact"],
        bio_html=row[f"{prefix}bio_html"],
        avatar_file=row[f"{prefix}avatar_file"],
        avatar_url=row[f"{prefix}avatar_url"],
        profile_url=row[f"{prefix}profile_url"],
        manually_approves=bool(row[f"{prefix}manually_approves"]),
        created_at=row[f"{prefix}created_at"],
        deleted_at=row[f"{prefix}deleted_at"],
    )
