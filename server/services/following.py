"""Following: follow, unfollow, approve or decline requests (locked accounts), for colleagues
and for people on partner instances (where the Follow / Undo / Accept / Reject activities are
queued in the same transaction as the change)."""

from __future__ import annotations

import sqlite3

from server.domain import Actor, FollowState
from server.errors import Forbidden, InvalidInput, NotFound
from server.services import federating
from server.services.context import Context
from server.services.posting import push_unread_counts
from server.storage import federation as fed
from server.storage import follows, notifications, users


async def follow(ctx: Context, follower: Actor, followee_id: int) -> FollowState:
    if follower.id == followee_id:
        raise InvalidInput("You cannot follow yourself.")
    target = await ctx.db.read(users.select_actor, followee_id)
    if target is None or target.deleted_at is not None:
        raise NotFound("No such person.")
    if not target.is_local and not await ctx.federator.allowlist.is_allowed(target.host):
        raise Forbidden(
            f"{target.handle} is on an instance that is not allowed to federate with us;"
            " nothing was sent."
        )
    if target.is_local:
        state = FollowState.PENDING if target.manually_approves else FollowState.ACCEPTED
    else:
        state = FollowState.PENDING  # until the remote side Accepts
    now = ctx.clock.now_ms()
    activity_id = federating.new_activity_id(ctx.urls, "follow")

    def tx(conn: sqlite3.Connection) -> FollowState:
        existing = follows.select_follow_state(conn, follower.id, target.id)
        if existing is not None:
            return existing
        follows.insert_follow(
            conn,
            follower.id,
            target.id,
            state=state,
            uri=None if target.is_local else activity_id,
            now_ms=now,
        )
        if target.is_local:
            notifications.notify_follow(
                conn,
                followee_id=target.id,
                follower_id=follower.id,
                pending=state is FollowState.PENDING,
                now_ms=now,
            )
        else:
            party = fed.select_party(conn, target.id)
            assert party is not None
            federating.follow_in_tx(
                conn,
                ctx.urls,
                follower_id=follower.id,
                follower_username=follower.username,
                target=party,
                activity_id=activity_id,
                now_ms=now,
            )
        return state

    result = await ctx.db.write(tx)
    ctx.federator.wake()
    await push_unread_counts(ctx, [target.id])
    return result


async def unfollow(ctx: Context, follower: Actor, followee_id: int) -> None:
    target = await ctx.db.read(users.select_actor, followee_id)
    if target is None:
        raise NotFound("No such person.")
    now = ctx.clock.now_ms()

    def tx(conn: sqlite3.Connection) -> None:
        follow_uri = follows.select_follow_uri(conn, follower.id, target.id)
        if not follows.delete_follow(conn, follower.id, target.id) or target.is_local:
            return
        party = fed.select_party(conn, target.id)
        if party is not None:
            federating.undo_follow_in_tx(
                conn,
                ctx.urls,
                follower_id=follower.id,
                follower_username=follower.username,
                target=party,
                follow_id=follow_uri,
                now_ms=now,
            )

    await ctx.db.write(tx)
    ctx.federator.wake()
    await push_unread_counts(ctx, [target.id])  # "followed you" was taken back


async def answer_request(ctx: Context, followee: Actor, follower_id: int, *, accept: bool) -> None:
    state = await ctx.db.read(follows.select_follow_state, follower_id, followee.id)
    if state is not FollowState.PENDING:
        raise NotFound("No such follow request.")
    requester = await ctx.db.read(users.select_actor, follower_id)
    if (
        accept
        and requester is not None
        and not requester.is_local
        and not await ctx.federator.allowlist.is_allowed(requester.host)
    ):
        raise Forbidden(
            f"{requester.handle} is on an instance that is not allowed to federate with us;"
            " the request cannot be accepted now."
        )
    now = ctx.clock.now_ms()

    def tx(conn: sqlite3.Connection) -> None:
        follow_uri = follows.select_follow_uri(conn, follower_id, followee.id)
        if accept:
            follows.update_follow_state(conn, follower_id, followee.id, FollowState.ACCEPTED)
        else:
            follows.delete_follow(conn, follower_id, followee.id)
        party = fed.select_party(conn, follower_id)
        if party is not None and not party.is_local:
            federating.answer_follow_in_tx(
                conn,
                ctx.urls,
                followee_id=followee.id,
                followee_username=followee.username,
                follower=party,
                follow_id=follow_uri,
                accept=accept,
                now_ms=now,
            )

    await ctx.db.write(tx)
    ctx.federator.wake()
    if not accept:  # the request's notification went with it
        await push_unread_counts(ctx, [followee.id])


async def mark_notifications_read(ctx: Context, actor: Actor, *, upto: int | None = None) -> None:
    """Mark read what the reader saw (up to notification *upto*; all without it)."""
    await ctx.db.write(notifications.mark_all_read, actor.id, ctx.clock.now_ms(), upto=upto)
    await push_unread_counts(ctx, [actor.id])
