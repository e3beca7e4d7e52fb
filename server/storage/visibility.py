"""The one SQL statement of "who may see what" for posts, shared by every read that shows a
post or a piece of one (feeds, threads, counts, notification snippets).

A local viewer sees their own posts, Public and Internal ones, Followers posts of people they
follow (accepted), and any post they are addressed in (``post_recipients``); an anonymous
reader (``viewer_id`` None) sees Public posts of accounts that were not deleted. The
statement reads the viewer from the named parameter ``:viewer``; *alias* names the ``posts``
row it tests, so it can sit inside a subquery that tests another row (a reply) than the
outer one.
"""

from __future__ import annotations


def visible_sql(viewer_id: int | None, alias: str = "p") -> str:
    """SQL condition: may ``:viewer`` read post *alias*?

    Anonymous readers see Public posts of people who still have an account: once an account
    is deleted (and partners were told ``Delete{Person}``) its posts stay in the archive and
    for colleagues, but are no longer published to the world."""
    if viewer_id is None:
        return (
            f"({alias}.visibility = 'public' AND NOT EXISTS (SELECT 1 FROM actors gone"
            f" WHERE gone.id = {alias}.author_id AND gone.deleted_at IS NOT NULL))"
        )
    return (
        f"({alias}.author_id = :viewer OR {alias}.visibility IN ('public', 'internal')"
        f" OR ({alias}.visibility = 'followers' AND EXISTS (SELECT 1 FROM follows vf"
        f"     WHERE vf.follower_id = :viewer AND vf.followee_id = {alias}.author_id"
        "     AND vf.state = 'accepted'))"
        " OR EXISTS (SELECT 1 FROM post_recipients vr"
        f"     WHERE vr.post_id = {alias}.id AND vr.actor_id = :viewer))"
    )


def visible_reply_count_sql(viewer_id: int | None, parent: str = "p") -> str:
    """SQL expression: how many undeleted replies to *parent* ``:viewer`` may read. Counted at
    read time, so a count never shows that a reply the reader cannot open exists (an Internal
    answer to a public post, a followers-only or direct one)."""
    return (
        f"(SELECT count(*) FROM posts rc WHERE rc.in_reply_to_id = {parent}.id"
        f" AND rc.deleted_at IS NULL AND {visible_sql(viewer_id, 'rc')})"
    )
