"""Row to domain conversions shared by the storage modules."""

from __future__ import annotations

import sqlite3

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


def actor_from_row(row: sqlite3.Row, prefix: str = "") -> Actor:
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
