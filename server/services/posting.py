"""Posting: publish, reply, wall posts, edit (history kept), delete (archived), like.

Invariants:
- Text is rendered and sanitized by ``server.text`` before it is stored; stored HTML is safe.
- A reply is never more visible than its parent: a reply to an Internal post is Internal, a
  reply to a Direct post is Direct to the same people plus the parent's author, a reply to a
  Followers post is at most Followers.
- A Direct post must name at least one person; it is visible to exactly them and its author.
- Only the author edits or deletes a post; the wall owner may also delete a post on their wall.
- Live events go out after the commit and carry ids only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from server.domain import Actor, Post, Visibility
from server.errors import Forbidden, InvalidInput, NotFound
from server.live import LiveEvent
from server.services import federating, remote
from server.services.context import Context
from server.storage import federation as fed
from server.storage import follows, notifications, posts, users
from server.text import MentionTarget, RenderedPost

MAX_POST_CHARS = 5000


@dataclass(frozen=True, slots=True)
class Draft:
    text: str
    visibility: Visibility = Visibility.INTERNAL
    in_reply_to: int | None = None
    # Whose wall this is written on: a colleague's username, or name@host of a partner.
    wall_owner: str | None = None


def parse_visibility(value: str | None) -> Visibility:
    try:
        return Visibility(value or Visibility.INTERNAL.value)
    except ValueError:
        raise InvalidInput("Unknown visibility.") from None


def _check_text(text: str) -> str:
    text = text.replace("\r\n", "\n").strip()
    if not text:
        raise InvalidInput("Write something first.")
    if len(text) > MAX_POST_CHARS:
        raise InvalidInput(f"A post has at most {MAX_POST_CHARS} characters.")
    return text


async def unknown_mentions(ctx: Context, text: str) -> list[str]:
    """The ``@name`` mentions in *text* that name no active colleague: they stay plain text
    and nobody is notified, which the author should be told (a typo in a name is silent
    otherwise)."""
    wanted: list[str] = []

    def collect(handle: str) -> MentionTarget | None:
        wanted.append(handle)
        return None

    ctx.text.render_post(text, resolve_mention=collect, tag_href=ctx.urls.tag)
    local = list(dict.fromkeys(h.lower() for h in wanted if "@" not in h))
    found = await ctx.db.read(users.select_local_actors_by_names, local)
    return [name for name in local if name not in found]


async def render(ctx: Context, text: str) -> tuple[RenderedPost, list[Actor]]:
    """Render text, resolving @mentions; return the mentioned people.

    ``@name`` is an active colleague; ``@name@host`` a person on an allowed partner instance
    (looked up, and fetched once if new). A mention of someone on a host that is not allowed
    is refused with a clear message, before anything is stored or sent.
    """
    wanted: list[str] = []

    def collect(handle: str) -> MentionTarget | None:
        wanted.append(handle)
        return None

    ctx.text.render_post(text, resolve_mention=collect, tag_href=ctx.urls.tag)
    local_names = [h for h in wanted if "@" not in h]
    found: dict[str, Actor] = dict(
        await ctx.db.read(users.select_local_actors_by_names, local_names)
    )
    for handle in dict.fromkeys(h.lower() for h in wanted if "@" in h):
        if len(found) > 50:
            raise InvalidInput("A post can mention at most 50 people.")
        found[handle] = await remote.find_person(ctx, handle)

    def resolve(handle: str) -> MentionTarget | None:
        actor = found.get(handle.lower())
        if actor is None:
            return None
        href = ctx.urls.profile_page(actor.handle)
        return MentionTarget(handle=actor.handle, href=href, actor_uri=actor.uri)

    rendered = ctx.text.render_post(text, resolve_mention=resolve, tag_href=ctx.urls.tag)
    by_uri = {a.uri: a for a in found.values()}
    mentioned = [by_uri[m.actor_uri] for m in rendered.mentions if m.actor_uri in by_uri]
    return rendered, mentioned


def _check_internal(visibility: Visibility, people: Iterable[Actor]) -> None:
    if visibility is Visibility.INTERNAL:
        outside = [p.handle for p in people if not p.is_local]
        if outside:
            raise InvalidInput(
                f"Internal posts stay on this instance: @{outside[0]} cannot be mentioned."
                " Choose Followers, Public or Direct to reach people on partner instances."
            )


async def publish_post(ctx: Context, author: Actor, draft: Draft) -> Post:
    text = _check_text(draft.text)
    visibility = draft.visibility
    parent: Post | None = None
    recipients: set[int] = set()
    if draft.in_reply_to is not None:
        parent = await ctx.db.read(posts.select_post, draft.in_reply_to, author.id)
        if parent is None:
            raise NotFound("The post you are replying to does not exist or is not visible.")
        visibility = _reply_visibility(parent.visibility, visibility)
        # The person replied to is always addressed (as Mastodon's implicit mention does),
        # so a followers-only reply reaches them even when they do not follow the replier.
        recipients.add(parent.author.id)
        if visibility is Visibility.DIRECT:
            recipients.update(await ctx.db.read(posts.select_recipient_ids, parent.id))
    wall_owner: Actor | None = None
    if draft.wall_owner:
        wall_owner = await remote.person_by_handle(ctx, draft.wall_owner)
        if wall_owner is None or wall_owner.deleted_at is not None:
            raise NotFound("No such person.")
        if wall_owner.id == author.id:
            wall_owner = None  # writing on one's own wall is just a post
        elif wall_owner.is_local and not await ctx.db.read(users.is_active_account, wall_owner.id):
            # Nobody could remove it: the owner cannot sign in (mentions refuse them too).
            raise InvalidInput(f"{wall_owner.name}'s account is deactivated: the wall is closed.")
        else:
            if not wall_owner.is_local and visibility is Visibility.INTERNAL:
                raise InvalidInput(
                    f"{wall_owner.name} is on a partner server, and Internal posts never leave"
                    " this instance: choose Followers, Public or Direct to write on this wall."
                )
            recipients.add(wall_owner.id)
    rendered, mentioned = await render(ctx, text)
    _check_internal(visibility, mentioned)
    recipients.update(a.id for a in mentioned)
    recipients.discard(author.id)
    if visibility is Visibility.DIRECT and not recipients:
        raise InvalidInput("A direct post must @mention at least one colleague.")
    if visibility is not Visibility.INTERNAL:
        # The person replied to (and a DM's other recipients) may be on a host that was
        # removed from the allowlist since: say so instead of silently sending nothing.
        known = {a.id: a for a in mentioned}
        if parent is not None:
            known[parent.author.id] = parent.author
        others = [await ctx.db.read(users.select_actor, i) for i in recipients - set(known)]
        await remote.check_reachable(ctx, [*known.values(), *(p for p in others if p)])
    now = ctx.clock.now_ms()

    def tx(conn: sqlite3.Connection) -> int:
        post_id = posts.next_post_id(conn, now)
        posts.insert_post(
            conn,
            posts.NewPost(
                id=post_id,
                uri=ctx.urls.note(author.username, post_id),
                url=ctx.urls.post_page(post_id),
                author_id=author.id,
                visibility=visibility,
                source=text,
                content_html=rendered.html,
                wall_owner_id=wall_owner.id if wall_owner else None,
                in_reply_to_id=parent.id if parent else None,
                in_reply_to_uri=parent.uri if parent else None,
                thread_root_id=parent.thread_root_id if parent else post_id,
                recipient_ids=sorted(recipients),
                tags=rendered.hashtags,
                created_at=now,
            ),
        )
        notifications.notify_new_post(
            conn,
            post_id=post_id,
            author_id=author.id,
            mentioned=[a.id for a in mentioned],
            replied_to=parent.author.id if parent is not None else None,
            wall_owner=wall_owner.id if wall_owner is not None else None,
            now_ms=now,
        )
        federating.post_in_tx(conn, ctx.urls, ctx.federator.host, post_id, "Create", now)
        return post_id

    post_id = await ctx.db.write(tx)
    ctx.federator.wake()
    post = await ctx.db.read(posts.select_post, post_id, author.id)
    assert post is not None
    await _announce(ctx, post, recipients)
    notified = {a.id for a in mentioned}
    if parent is not None:
        notified.add(parent.author.id)
    if wall_owner is not None:
        notified.add(wall_owner.id)
    await push_unread_counts(ctx, notified - {author.id})
    return post


def reply_visibilities(parent: Visibility) -> list[Visibility]:
    """What a reply to a post of *parent* visibility may be: never readable by anyone who
    could not read the parent's audience. Internal is every colleague, so it is wider than a
    Followers post's audience, not narrower."""
    if parent is Visibility.PUBLIC:
        return list(Visibility)
    if parent is Visibility.FOLLOWERS:
        return [Visibility.FOLLOWERS, Visibility.DIRECT]
    return [parent]  # Internal stays Internal, Direct stays Direct


def _reply_visibility(parent: Visibility, chosen: Visibility) -> Visibility:
    allowed = reply_visibilities(parent)
    return chosen if chosen in allowed else allowed[0]


async def _announce(ctx: Context, post: Post, recipients: Iterable[int]) -> None:
    """Tell open home feeds of local readers that a post appeared."""
    audience = {post.author.id, *recipients}
    if post.visibility is not Visibility.DIRECT:
        audience.update(await ctx.db.read(follows.select_local_follower_ids, post.author.id))
    ctx.live.publish(audience, LiveEvent("post", str(post.id)))


async def tell_open_feeds(ctx: Context, post_id: int, kind: str) -> None:
    """Tell the feeds that may show a post that it was "edited" or "deleted", so an open page
    does not keep showing (and offering to like) what is no longer there."""
    audience = await ctx.db.read(posts.select_live_audience, post_id)
    ctx.live.publish(audience, LiveEvent(kind, str(post_id)))


async def push_unread_counts(ctx: Context, actor_ids: Iterable[int]) -> None:
    for actor_id in actor_ids:
        if ctx.live.is_connected(actor_id):
            count = await ctx.db.read(notifications.count_unread, actor_id)
            ctx.live.publish([actor_id], LiveEvent("notifications", str(count)))


async def _own_post(ctx: Context, viewer: Actor, post_id: int) -> Post:
    post = await ctx.db.read(posts.select_post, post_id, viewer.id)
    if post is None:
        raise NotFound("No such post.")
    return post


async def edit_post(ctx: Context, editor: Actor, post_id: int, text: str) -> Post:
    """Replace the text; the previous version stays in the history."""
    post = await _own_post(ctx, editor, post_id)
    if post.author.id != editor.id:
        raise Forbidden("Only the author can edit a post.")
    text = _check_text(text)
    rendered, mentioned = await render(ctx, text)
    if post.visibility is Visibility.DIRECT:
        # Editing a direct message cannot widen its audience to new people.
        existing = set(await ctx.db.read(posts.select_recipient_ids, post.id))
        new_ids = [a.id for a in mentioned if a.id in existing]
    else:
        new_ids = [a.id for a in mentioned]
    # A mention the edit took out takes its person out of the audience (of a Direct post: out
    # of the conversation). People addressed without a mention (the author replied to, the
    # wall's owner) stay: only mentions of the previous version are compared.
    _, before = await render(ctx, post.source)
    removed = {a.id for a in before} - {a.id for a in mentioned}
    removed -= {p.id for p in (post.wall_owner,) if p is not None}
    removed.discard(await ctx.db.read(posts.select_parent_author_id, post.id))
    _check_internal(post.visibility, mentioned)
    now = ctx.clock.now_ms()

    def tx(conn: sqlite3.Connection) -> None:
        posts.update_post_content(
            conn,
            post.id,
            source=text,
            content_html=rendered.html,
            recipient_ids=new_ids,
            tags=rendered.hashtags,
            now_ms=now,
            removed_ids=sorted(removed),
        )
        federating.post_in_tx(conn, ctx.urls, ctx.federator.host, post.id, "Update", now)

    await ctx.db.write(tx)
    ctx.federator.wake()
    await tell_open_feeds(ctx, post.id, "edited")
    updated = await ctx.db.read(posts.select_post, post.id, editor.id)
    assert updated is not None
    return updated


async def removable_post(ctx: Context, actor: Actor, post_id: int) -> Post:
    """The post *actor* may remove: their own, or one on their wall."""
    post = await _own_post(ctx, actor, post_id)
    owner_of_wall = post.wall_owner is not None and post.wall_owner.id == actor.id
    if post.author.id != actor.id and not owner_of_wall:
        raise Forbidden("Only the author, or the owner of the wall, can remove a post.")
    return post


async def delete_post(ctx: Context, actor: Actor, post_id: int) -> Post:
    """Hide a post from everyone; the record and its versions stay in the archive."""
    post = await removable_post(ctx, actor, post_id)
    now = ctx.clock.now_ms()

    def tx(conn: sqlite3.Connection) -> None:
        if not posts.mark_post_deleted(conn, post.id, now):
            return
        if post.author.is_local:
            federating.post_in_tx(conn, ctx.urls, ctx.federator.host, post.id, "Delete", now)
            return
        # A partner's post on our person's wall: only its author's server can delete it
        # everywhere, so the owner tells it (FEP-400e).
        author = fed.select_party(conn, post.author.id)
        if author is not None:
            federating.wall_notice_in_tx(
                conn,
                ctx.urls,
                kind="Delete",
                owner_id=actor.id,
                owner_username=actor.username,
                object_id=post.uri,
                author=author,
                to_followers=post.visibility is not Visibility.DIRECT,
                now_ms=now,
            )

    await ctx.db.write(tx)
    ctx.federator.wake()
    await tell_open_feeds(ctx, post.id, "deleted")
    return post


async def like_post(ctx: Context, actor: Actor, post_id: int, *, like: bool) -> Post:
    post = await _own_post(ctx, actor, post_id)
    if like:
        await remote.check_reachable(ctx, [post.author])
    now = ctx.clock.now_ms()

    like_uri = f"{author_uri(ctx, actor)}#likes/{post.id}-{now}"

    def tx(conn: sqlite3.Connection) -> bool:
        if like:
            changed = posts.insert_like(conn, actor.id, post.id, like_uri, now)
            previous = like_uri
        else:
            previous = posts.select_like_uri(conn, actor.id, post.id) or like_uri
            changed = posts.delete_like(conn, actor.id, post.id)
        if changed and not post.author.is_local:
            author = fed.select_party(conn, post.author.id)
            if author is not None:
                federating.like_in_tx(
                    conn,
                    ctx.urls,
                    actor_id=actor.id,
                    username=actor.username,
                    post_uri=post.uri,
                    author=author,
                    like_id=previous,
                    undo=not like,
                    now_ms=now,
                )
        return changed

    changed = await ctx.db.write(tx)
    ctx.federator.wake()
    if changed:  # a like adds a notification, an unlike takes it back
        await push_unread_counts(ctx, [post.author.id])
    updated = await ctx.db.read(posts.select_post, post.id, actor.id)
    assert updated is not None
    return updated


async def boost_post(ctx: Context, actor: Actor, post_id: int, *, boost: bool) -> Post:
    """Boost (share with one's followers) a public post, or take the boost back.

    Only Public posts can be boosted, as on Mastodon and GoToSocial: a boost must never widen
    the audience of an Internal, Followers or Direct post.
    """
    post = await _own_post(ctx, actor, post_id)
    if post.visibility is not Visibility.PUBLIC:
        raise Forbidden("Only public posts can be boosted.")
    if boost:
        await remote.check_reachable(ctx, [post.author])
    now = ctx.clock.now_ms()
    announce_uri = f"{author_uri(ctx, actor)}#announces/{post.id}-{now}"

    def tx(conn: sqlite3.Connection) -> bool:
        if boost:
            changed = posts.insert_announce(conn, actor.id, post.id, announce_uri, now)
            previous = announce_uri
        else:
            previous = posts.select_announce_uri(conn, actor.id, post.id) or announce_uri
            changed = posts.delete_announce(conn, actor.id, post.id)
        if changed:
            author = None if post.author.is_local else fed.select_party(conn, post.author.id)
            federating.announce_in_tx(
                conn,
                ctx.urls,
                actor_id=actor.id,
                username=actor.username,
                post_uri=post.uri,
                author=author,
                announce_id=previous,
                published_ms=now,
                undo=not boost,
                now_ms=now,
            )
        return changed

    changed = await ctx.db.write(tx)
    ctx.federator.wake()
    if boost and changed:
        await publish_boost(ctx, actor.id, post.id)
    if changed and post.author.is_local:  # a boost adds a notification, taking it back removes it
        await push_unread_counts(ctx, [post.author.id])
    updated = await ctx.db.read(posts.select_post, post.id, actor.id)
    assert updated is not None
    return updated


async def publish_boost(ctx: Context, booster_id: int, post_id: int) -> None:
    """Tell the open home feeds of the booster and their local followers: the event names
    the post and the booster (``"<post id>:<booster id>"``); the card is fetched with
    visibility checked as always, and feeds that hold the post already ignore it."""
    audience = {booster_id, *await ctx.db.read(follows.select_local_follower_ids, booster_id)}
    ctx.live.publish(audience, LiveEvent("post", f"{post_id}:{booster_id}"))


def author_uri(ctx: Context, actor: Actor) -> str:
    return actor.uri if not actor.is_local else ctx.urls.actor(actor.username)
