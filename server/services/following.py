"""Following colleagues: follow, unfollow, approve or decline requests (locked accounts)."""

from __future__ import annotations

import sqlite3

from server.domain import Actor, FollowState, NotificationKind
from server.errors import InvalidInput, NotFound
from server.services.context import Context
from server.services.posting import push_unread_counts
from server.storage import follows, notifications, users


async def follow(ctx: Context, follower: Actor, followee_id: int) -> FollowState:
    if follower.id == followee_id:
        raise InvalidInput("You cannot follow yourself.")
    target = await ctx.db.read(users.select_actor, followee_id)
    if target is None or target.deleted_at is not None:
        raise NotFound("No such person.")
    state = FollowState.PENDING if target.manually_approves else FollowState.ACCEPTED
    now = ctx.clock.now_ms()

    def tx(conn: sqlite3.Connection) -> FollowState:
        existing = follows.select_follow_state(conn, follower.id, target.id)
        if existing is not None:
            return existing
        follows.insert_follow(conn, follower.id, target.id, state=state, uri=None, now_ms=now)
        notifications.insert_notification(
            conn,
            recipient_id=target.id,
            kind=NotificationKind.FOLLOW_REQUEST
            if state is FollowState.PENDING
            else NotificationKind.FOLLOW,
            actor_id=follower.id,
            post_id=None,
            now_ms=now,
        )
        return state

    result = await ctx.db.write(tx)
    await push_unread_counts(ctx, [target.id])
    return result


async def unfollow(ctx: Context, follower: Actor, followee_id: int) -> None:
    await ctx.db.write(follows.delete_follow, follower.id, followee_id)


async def answer_request(ctx: Context, followee: Actor, follower_id: int, *, accept: bool) -> None:
    state = await ctx.db.read(follows.select_follow_state, follower_id, followee.id)
    if state is not FollowState.PENDING:
        raise NotFound("No such follow request.")
    if accept:
        await ctx.db.write(
            follows.update_follow_state, follower_id, followee.id, FollowState.ACCEPTED
        )
    else:
        await ctx.db.write(follows.delete_follow, follower_id, followee.id)


async def mark_notifications_read(ctx: Context, actor: Actor) -> None:
    await ctx.db.write(notifications.mark_all_read, actor.id, ctx.clock.now_ms())
    await push_unread_counts(ctx, [actor.id])
