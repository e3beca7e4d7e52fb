"""Inbound federation: apply verified activities (``on_<activity>`` handlers).

The inbox already verified the signature, the allowlist and that the signer is the actor and
that the activity id is on the actor's origin. Here, per FEP-fe34 and SECURITY.md §1.1:
- a created object must be attributed to the activity's actor;
- modifications (Update, Delete, Undo) must come from the *stored* owner, never merely from
  the same host; an older ``updated`` never overwrites a newer one;
- Accept/Reject must match a Follow *we* sent to that actor;
- every handler is idempotent: a repeat changes nothing;
- inbound HTML is sanitized once, on arrival; deleted objects leave a tombstone so a late or
  replayed Create cannot bring them back; remote deletion hides content but keeps the record;
- an Undo that arrives before what it undoes (senders retry each delivery on its own schedule)
  leaves a tombstone of that activity's id, so the Follow, Like or Announce arriving later is
  not applied. Each check runs in the same transaction as the write it guards.
"""

from __future__ import annotations

import html
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from federation import vocab
from federation.fetch import FetchError
from federation.hosts import host_of_url, same_origin
from federation.ports import StoredInbound
from federation.types import Activity, Attachment, RemoteNote
from server.domain import Actor, FollowState, Visibility
from server.errors import SteelyardError
from server.live import LiveEvent
from server.services import federating, remote
from server.services.context import Context
from server.services.posting import publish_boost, push_unread_counts, tell_open_feeds
from server.storage import federation as fed
from server.storage import follows, notifications, posts, users

log = logging.getLogger("steelyard.inbound")
Handler = Callable[[Context, Activity, Actor], Awaitable[None]]


class Ignored(Exception):
    """The activity is valid but has no effect here (logged, not retried)."""


class NotYet(Exception):
    """What the activity acts on has not arrived yet but may be on its way (a sender's
    retries reorder its deliveries): the dispatcher tries again later, up to
    ``NOT_YET_ATTEMPTS`` tries, after which the activity is ignored."""


# An Update of a note published this recently may have overtaken its Create; it is tried
# this many times (the dispatcher's backoff: about 5 minutes in all), then ignored.
RECENT_FOR_UPDATE_MS = 3_600_000
NOT_YET_ATTEMPTS = 6


_UNDONE_FIRST = "its Undo arrived first"
EMOJI_REACTIONS = ("EmojiReact", "http://litepub.social/ns#EmojiReact")


async def handle(ctx: Context, item: StoredInbound) -> None:
    """Entry point for the dispatcher: parse, find the actor, route by type."""
    try:
        activity = vocab.parse_activity(item.activity)
    except vocab.VocabError as exc:
        log.warning("inbound %s from %s ignored: %s", item.id, item.origin_host, exc.reason)
        return
    if not await ctx.federator.allowlist.is_allowed(item.origin_host):
        # Removed from the allowlist after we accepted it: keep the archive row, apply nothing.
        log.info("inbound %s from removed host %s not applied", activity.id, item.origin_host)
        return
    handler = HANDLERS.get(activity.type)
    if handler is None:
        log.info("inbound %s of type %s has no handler", activity.id, activity.type)
        return
    try:
        actor = await remote.ensure_actor(ctx, activity.actor)
        if actor.deleted_at is not None:
            # Akkoma before 2026.08 kept accepting deleted actors' signatures: not here.
            raise Ignored("the actor was deleted")
        try:
            await handler(ctx, activity, actor)
        except NotYet as exc:
            if item.attempts < NOT_YET_ATTEMPTS:
                raise
            # It never came: a post from before anyone here followed its author, or one we
            # ignored. Routine, not a failure for the admin page.
            raise Ignored(f"{exc}; gave up waiting after {item.attempts} tries") from None
    except (Ignored, vocab.VocabError) as exc:
        log.info("inbound %s (%s) ignored: %s", activity.id, activity.type, exc)
    except SteelyardError as exc:
        log.info("inbound %s (%s) not applied: %s", activity.id, activity.type, exc.message)


def _local_username(ctx: Context, uri: str | None) -> str | None:
    prefix = f"{ctx.urls.base}/users/"
    if uri and uri.startswith(prefix):
        rest = uri[len(prefix) :]
        if rest and "/" not in rest and "#" not in rest and "?" not in rest:
            return rest
    return None


async def _local_actor(ctx: Context, uri: str | None, *, active: bool = True) -> Actor:
    """Our person at *uri*. *active*: only if their account is active and not deleted, as
    the federation surface shows people (a partner cannot follow or write to someone who
    left, whichever inbox it posts to); False where the activity only takes something back
    or answers what our person did."""
    name = _local_username(ctx, uri)
    actor = await ctx.db.read(_person_by_name(active), name) if name else None
    if actor is None:
        raise Ignored(f"{uri} is not one of our people" + (" (or not active)" if active else ""))
    return actor


def _person_by_name(active: bool) -> Callable[[sqlite3.Connection, str], Actor | None]:
    return users.select_active_local_actor if active else users.select_local_actor


def _inner(activity: Activity) -> Mapping[str, Any]:
    if activity.object is not None:
        return activity.object
    if activity.object_id is not None:
        return {"id": activity.object_id}
    raise Ignored("no object")


# --- Follow, Accept, Reject -----------------------------------------------------------------


async def on_follow(ctx: Context, activity: Activity, actor: Actor) -> None:
    target = await _local_actor(ctx, activity.object_id)
    state = FollowState.PENDING if target.manually_approves else FollowState.ACCEPTED
    now = ctx.clock.now_ms()

    def tx(conn: sqlite3.Connection) -> bool:
        if fed.is_tombstoned(conn, activity.id, actor.id):
            return False
        existing = follows.select_follow_state(conn, actor.id, target.id)
        if existing is None:
            follows.insert_follow(
                conn, actor.id, target.id, state=state, uri=activity.id, now_ms=now
            )
            notifications.notify_follow(
                conn,
                followee_id=target.id,
                follower_id=actor.id,
                pending=state is FollowState.PENDING,
                now_ms=now,
            )
        current = existing or state
        if current is FollowState.ACCEPTED:
            # A repeated Follow (lost Accept) gets its Accept again.
            party = fed.select_party(conn, actor.id)
            assert party is not None
            federating.answer_follow_in_tx(
                conn,
                ctx.urls,
                followee_id=target.id,
                followee_username=target.username,
                follower=party,
                follow_id=activity.id,
                accept=True,
                now_ms=now,
            )
        return True

    if not await ctx.db.write(tx):
        raise Ignored(_UNDONE_FIRST)
    ctx.federator.wake()
    await push_unread_counts(ctx, [target.id])


async def _our_follow(ctx: Context, activity: Activity, actor: Actor) -> tuple[int, int]:
    """The (follower, followee) of the Follow we sent that this Accept/Reject answers."""
    inner = _inner(activity)
    follow_id = inner.get("id")
    if isinstance(follow_id, str):
        found = await ctx.db.read(follows.select_follow_by_uri, follow_id)
        if found is not None and found[1] == actor.id:
            return found[0], found[1]
    # Fall back to (actor, object) of an embedded Follow, as PROTOCOL.md §4 allows.
    if vocab.primary_type(inner.get("type")) == "Follow" and inner.get("object") == actor.uri:
        inner_actor = inner.get("actor")
        follower = await _local_actor(
            ctx, inner_actor if isinstance(inner_actor, str) else None, active=False
        )
        state = await ctx.db.read(follows.select_follow_state, follower.id, actor.id)
        if state is not None:
            return follower.id, actor.id
    raise Ignored("does not answer a Follow we sent to this actor")


async def on_accept(ctx: Context, activity: Activity, actor: Actor) -> None:
    follower_id, followee_id = await _our_follow(ctx, activity, actor)
    await ctx.db.write(follows.update_follow_state, follower_id, followee_id, FollowState.ACCEPTED)


async def on_reject(ctx: Context, activity: Activity, actor: Actor) -> None:
    refused_post = _created_post_uri(activity)
    if refused_post is not None:
        # FEP-400e: the owner of a partner's wall refused a post one of our people wrote on it.
        if not await _removed_by_wall_owner(ctx, refused_post, actor):
            raise Ignored("Reject{Create} of no wall post of ours on this actor's wall")
        return
    follower_id, followee_id = await _our_follow(ctx, activity, actor)
    await ctx.db.write(follows.delete_follow, follower_id, followee_id)


# --- Undo ---------------------------------------------------------------------------------


async def on_undo(ctx: Context, activity: Activity, actor: Actor) -> None:
    inner = _inner(activity)
    inner_actor = inner.get("actor")
    if inner_actor is not None and inner_actor != actor.uri:
        raise Ignored("Undo of someone else's activity")
    kind = vocab.primary_type(inner.get("type"))
    inner_id = inner.get("id") if isinstance(inner.get("id"), str) else None
    # Only an id on the actor's own origin may be remembered as undone: nobody can block
    # another server's future activities by guessing their ids.
    remember = inner_id if inner_id and same_origin(inner_id, actor.uri) else None
    now = ctx.clock.now_ms()
    if kind == "Follow":
        target_uri = inner.get("object")
        if isinstance(target_uri, str):
            target = await _local_actor(ctx, target_uri, active=False)

            def unfollow(conn: sqlite3.Connection) -> bool:
                if follows.delete_follow(conn, actor.id, target.id):
                    return True
                if remember is not None:
                    fed.insert_tombstone(conn, remember, actor.id, now)
                return False

            if not await ctx.db.write(unfollow):
                raise Ignored("Undo of a Follow not (yet) received; remembered")
            await push_unread_counts(ctx, [target.id])  # its notification went too
            return
    if kind in EMOJI_REACTIONS:
        kind = "EmojiReact"  # counted as a like (on_like); undone by its own id only
    if kind not in (None, "Follow", "Like", "EmojiReact", "Announce"):
        raise Ignored(f"Undo of {kind!r} is not supported")
    if inner_id is None:
        raise Ignored("Undo without the id of what it undoes")

    liked = inner.get("object")

    def tx(conn: sqlite3.Connection) -> tuple[bool, int | None]:
        undone = undo(conn)
        if not undone[0] and remember is not None:
            fed.insert_tombstone(conn, remember, actor.id, now)
        return undone

    def undo(conn: sqlite3.Connection) -> tuple[bool, int | None]:
        """(undone?, whose notification was taken back with it: the followee, or the author
        of the post whose like or boost is undone)."""
        # Every lookup is scoped to this actor: an Undo only ever removes its own activity.
        if kind in (None, "Follow"):
            found = follows.select_follow_by_uri(conn, inner_id)
            if found is not None and found[0] == actor.id:
                return follows.delete_follow(conn, found[0], found[1]), found[1]
        if kind in (None, "Like", "EmojiReact"):
            post_id = posts.delete_like_by_uri(conn, actor.id, inner_id)
            if post_id is not None:
                return True, posts.select_author_id(conn, post_id)
        if kind == "Like" and isinstance(liked, str):
            # Mastodon matches Undo{Like} on (actor, object): after a re-like, the id it
            # undoes may not be the one we stored.
            core = posts.select_post_core_by_uri(conn, liked)
            if core is not None and posts.delete_like(conn, actor.id, core.id):
                return True, core.author_id
            return False, None
        if kind in (None, "Announce"):
            post_id = posts.delete_announce_by_uri(conn, actor.id, inner_id)
            if post_id is not None:
                return True, posts.select_author_id(conn, post_id)
        return False, None

    undone, told = await ctx.db.write(tx)
    if not undone:
        raise Ignored("Undo of nothing this actor did (yet); remembered")
    if told is not None:  # the badge of a local person follows (remote ones have no stream)
        await push_unread_counts(ctx, [told])


# --- Create, Update, Delete ---------------------------------------------------------------


async def _note_visibility(ctx: Context, note: RemoteNote, actor: Actor) -> Visibility:
    endpoints = await ctx.db.read(fed.select_endpoints, actor.id)
    followers_url = endpoints.followers if endpoints else None
    if followers_url is None:
        followers_url = await _guess_followers_collection(ctx, note, actor)
    return _visibility(note, actor, followers_url)


async def _addressed_local_people(
    ctx: Context, note: RemoteNote, *, active: bool = True
) -> list[Actor]:
    """Our people the note is addressed to or mentions; *active*: only those whose accounts
    are active and not deleted (nothing new reaches someone who left)."""
    select = _person_by_name(active)
    people: list[Actor] = []
    for uri in set(note.to) | set(note.cc) | set(note.mentions):
        name = _local_username(ctx, uri)
        if name:
            person = await ctx.db.read(select, name)
            if person is not None:
                people.append(person)
    return people


_NARROWNESS = {Visibility.PUBLIC: 0, Visibility.FOLLOWERS: 1, Visibility.DIRECT: 2}


def _visibility(note: RemoteNote, author: Actor, followers_url: str | None) -> Visibility:
    kind = vocab.audience_kind(note, actor_followers=followers_url)
    if kind in ("public", "unlisted"):
        return Visibility.PUBLIC
    if kind == "followers":
        return Visibility.FOLLOWERS
    return Visibility.DIRECT


async def _guess_followers_collection(ctx: Context, note: RemoteNote, actor: Actor) -> str | None:
    """The author's followers collection when its actor document does not name one (bovine
    serves actors without ``followers``): an addressed collection on the author's own origin
    that is not a known actor. Without this, a followers-only post would read as addressed to
    nobody and stay invisible to the local followers it was sent to.

    A mentioned address is a person, never the collection: a direct message to someone on the
    author's server whom we have not met must not pass for followers-only (and reach every
    local follower of the author)."""
    mentioned = set(note.mentions)
    for uri in (*note.to, *note.cc):
        if uri == actor.uri or uri in mentioned:
            continue
        if not same_origin(vocab.strip_fragment(uri), actor.uri):
            continue
        if await ctx.db.read(users.select_actor_by_uri, uri) is None:
            return uri
    return None


def _display_html(ctx: Context, note: RemoteNote) -> str:
    """Sanitized content as we store and show it. A content warning (``summary``; on an
    Article, Page, Video, Audio, Image or Event only when marked ``sensitive``, else it is an
    excerpt shown under the title) is kept as a first paragraph and media attachments as a
    closing list of links to where the partner serves them, so neither is lost nor hidden
    from the reader; we never load the media ourselves (nothing is fetched from a partner
    for display, and pages load nothing from other hosts)."""
    content = ctx.text.sanitize_remote(note.content_html)
    if note.attachments:
        items = "".join(
            f'<li><a href="{html.escape(media.url)}">{html.escape(_media_label(media))}</a></li>'
            for media in note.attachments
        )
        # Sanitized on its own, so markup left open in the content cannot swallow it, and
        # through the same rules, so its links pass the same URL checks as the partner's.
        content += ctx.text.sanitize_remote(f"<p><strong>Attachments</strong></p><ul>{items}</ul>")
    if note.poll_options:  # plain text from the parser: escaped here, nothing to sanitize
        choices = "".join(f"<li>{html.escape(option)}</li>" for option in note.poll_options)
        content += f"<p><strong>Poll</strong></p><ul>{choices}</ul>"
    if note.starts_ms is not None:  # an Event's start, in UTC like every date we show raw
        starts = datetime.fromtimestamp(note.starts_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")
        content = f"<p>Starts {starts} UTC</p>{content}"
    if note.type in vocab.LINKED_TYPES:
        # A video, a track, an event: what it is cannot be shown here, so the reader gets a
        # link to where its server shows it (its url when on its own origin, else its id).
        original = note.url if note.url and same_origin(note.url, note.id) else note.id
        label = {"Video": "Watch", "Audio": "Listen", "Image": "View"}.get(note.type, "Open")
        where = html.escape(host_of_url(note.id))
        link = f'<p><a href="{html.escape(original)}">{label} on {where}</a></p>'
        content += ctx.text.sanitize_remote(link)
    summary = html.escape(ctx.text.plain_text(note.summary, max_len=500)) if note.summary else ""
    if summary and note.type in vocab.TITLED_TYPES and not note.sensitive:
        # An article's summary is its excerpt (the WordPress plugin sends its excerpt there,
        # and its content warnings as summary with sensitive: true): shown under the title
        # as a lead, not as a warning (wordpress-activitypub #735).
        content = f"<p>{summary}</p>{content}"
        summary = ""
    if note.title:  # a Lemmy post's or a blog article's title, a video's or event's name
        content = f"<p><strong>{html.escape(note.title)}</strong></p>{content}"
    if summary:
        content = f"<p><strong>Content warning: {summary}</strong></p>{content}"
    return content


def _media_label(media: Attachment) -> str:
    kind = (media.media_type or "").split("/", 1)[0]
    label = {"image": "Image", "video": "Video", "audio": "Audio"}.get(kind, "File")
    description = " ".join(media.description.split()) if media.description else ""
    if description:
        return f"{label}: {description[:300]}"
    return f"{label} (no description)"


def _parent_for(
    conn: sqlite3.Connection, in_reply_to: str | None, actor: Actor
) -> posts.PostCore | None:
    """The post replied to, if the replier may see it. A reply to one of our posts that the
    actor cannot read (Internal, or Followers/Direct not meant for them) is not attached to
    it: no thread, no notification, no sign that the post exists."""
    if in_reply_to is None:
        return None
    parent = posts.select_post_core_by_uri(conn, in_reply_to)
    if parent is None or not parent.is_local_author:
        return parent
    if posts.select_post_for_remote(conn, parent.id, actor.id) is None:
        return None
    return parent


async def on_create(ctx: Context, activity: Activity, actor: Actor) -> None:
    obj = activity.object
    if obj is None:
        if activity.object_id is None:
            raise Ignored("Create without object")
        obj = await _fetch_or_ignore(ctx, activity.object_id, "the created object")
    if vocab.primary_type(obj.get("type")) not in vocab.NOTE_TYPES:
        raise Ignored(f"Create of {obj.get('type')!r} is not supported")
    note = vocab.parse_note(obj)
    if note.attributed_to != actor.uri:
        raise Ignored("object not attributed to the activity's actor")
    await _store_note(ctx, note, actor)


async def _store_note(
    ctx: Context, note: RemoteNote, actor: Actor, *, for_boost: bool = False
) -> None:
    """Store a remote note by *actor* (its verified author), notify and tell live feeds; a
    note already stored, or deleted before (tombstone), changes nothing.

    *for_boost*: a boosted post fetched from its server. It is kept only if Public, placed in
    feeds at its own ``published`` time (it may be years old), and it is not news: no
    notifications, no live push, no wall handling (the boost itself is what is new)."""
    if not same_origin(vocab.strip_fragment(note.id), actor.uri):
        raise Ignored("object id not on the actor's origin")
    visibility = await _note_visibility(ctx, note, actor)
    if for_boost and visibility is not Visibility.PUBLIC:
        raise Ignored("a boost of a post that is not public")
    addressed = set(note.to) | set(note.cc) | set(note.mentions)
    local_people = await _addressed_local_people(ctx, note)
    wall_owner: Actor | None = None
    if note.wall_target and not for_boost:
        prefix, _, tail = note.wall_target.rpartition("/")
        if tail == "wall":
            candidate = await ctx.db.read(users.select_actor_by_uri, prefix)
            if candidate is not None and candidate.is_local and candidate in local_people:
                wall_owner = candidate
    # FEP-400e: the owner's followers, when addressed, read the post on the wall too.
    wall_followers = wall_owner is not None and ctx.urls.followers(wall_owner.username) in addressed
    content = _display_html(ctx, note)
    now = ctx.clock.now_ms()
    mentioned = {p.id for p in local_people if p.uri in set(note.mentions)}

    def tx(conn: sqlite3.Connection) -> tuple[int, set[int]] | None:
        if fed.is_tombstoned(conn, note.id, actor.id) or posts.select_post_core_by_uri(
            conn, note.id
        ):
            return None
        parent = _parent_for(conn, note.in_reply_to, actor)
        recipients = {p.id for p in local_people}
        if wall_owner is not None and wall_followers:
            recipients.update(follows.select_local_follower_ids(conn, wall_owner.id))
        if for_boost:
            post_id = posts.post_id_at(conn, min(note.published_ms or now, now), now)
        else:
            post_id = posts.next_post_id(conn, now)
        posts.insert_post(
            conn,
            posts.NewPost(
                id=post_id,
                uri=note.id,
                url=note.url,
                author_id=actor.id,
                visibility=visibility,
                source="",
                content_html=content,
                wall_owner_id=wall_owner.id if wall_owner else None,
                in_reply_to_id=parent.id if parent else None,
                in_reply_to_uri=note.in_reply_to,
                thread_root_id=parent.thread_root_id if parent else post_id,
                recipient_ids=sorted(recipients),
                tags=note.hashtags,
                created_at=post_id >> 12 if for_boost else now,
            ),
        )
        if note.updated_ms:
            posts.set_remote_updated(conn, post_id, note.updated_ms)
        if for_boost:
            return post_id, set()
        replied_to = parent.author_id if parent is not None and parent.is_local_author else None
        if replied_to is not None and not posts.is_visible_to(conn, post_id, replied_to):
            # A reply not addressed to them (a partner's followers-only answer they do not
            # follow, a DM to someone else): "replied to you" would show text they cannot open.
            replied_to = None
        notifications.notify_new_post(
            conn,
            post_id=post_id,
            author_id=actor.id,
            mentioned=mentioned,
            replied_to=replied_to,
            wall_owner=wall_owner.id if wall_owner is not None else None,
            now_ms=now,
        )
        if wall_owner is not None:
            author = fed.select_party(conn, actor.id)
            assert author is not None
            federating.wall_notice_in_tx(
                conn,
                ctx.urls,
                kind="Add",
                owner_id=wall_owner.id,
                owner_username=wall_owner.username,
                object_id=note.id,
                author=author,
                to_followers=wall_followers,
                now_ms=now,
            )
        return post_id, recipients

    created = await ctx.db.write(tx)
    if created is None or for_boost:
        return
    post_id, audience = created
    if wall_owner is not None:
        ctx.federator.wake()
    if visibility is not Visibility.DIRECT:
        audience.update(await ctx.db.read(follows.select_local_follower_ids, actor.id))
    ctx.live.publish(audience, LiveEvent("post", str(post_id)))
    await push_unread_counts(ctx, {p.id for p in local_people})


async def on_update(ctx: Context, activity: Activity, actor: Actor) -> None:
    obj = activity.object
    if obj is None:
        raise Ignored("Update without an embedded object")
    kind = vocab.primary_type(obj.get("type"))
    if kind in vocab.ACTOR_TYPES:
        if obj.get("id") != actor.uri:
            raise Ignored("Update of another actor")
        parsed = vocab.parse_actor(obj, fetched_url=actor.uri)
        if parsed.key_id and not same_origin(parsed.key_id, actor.uri):
            raise Ignored("key moved to another origin")
        await remote.store_actor(ctx, parsed)
        await ctx.federator.keys.remember_announced(parsed)
        return
    note = vocab.parse_note(obj)
    content = _display_html(ctx, note)
    visibility = await _note_visibility(ctx, note, actor)
    # An edit only ever takes recipients away: whoever still stands in it keeps the post,
    # active or not (a deactivated colleague who comes back still has what they received).
    still_addressed = {p.id for p in await _addressed_local_people(ctx, note, active=False)}
    now = ctx.clock.now_ms()

    def tx(conn: sqlite3.Connection) -> int | None:
        core = posts.select_post_core_by_uri(conn, note.id)
        recent = note.published_ms is not None and now - note.published_ms < RECENT_FOR_UPDATE_MS
        if core is None and recent and not fed.is_tombstoned(conn, note.id, actor.id):
            raise NotYet("Update of a recent note that has not arrived (yet)")
        if core is None or core.deleted_at is not None:
            raise Ignored("Update of an unknown or deleted object")
        if core.author_id != actor.id:
            raise Ignored("Update by someone other than the stored author")
        updated = note.updated_ms or now
        if core.remote_updated_at is not None and updated <= core.remote_updated_at:
            return None  # an older or replayed version: keep what we have
        # An edit may narrow the audience, never widen it (as our own edits): people taken
        # out of the addressing lose the post and its notifications, and a Public post made
        # followers-only stops being public. Added people and a wider audience are ignored.
        stored = Visibility(core.visibility)
        narrower = _NARROWNESS[visibility] > _NARROWNESS.get(stored, 0)
        kept = set(still_addressed)
        parent_author = posts.select_parent_author_id(conn, core.id)
        if parent_author is not None:  # the person replied to stays, as in our own edits
            kept.add(parent_author)
        if core.wall_owner_id is not None:  # the wall's owner and their followers stay
            kept.add(core.wall_owner_id)
            kept.update(follows.select_local_follower_ids(conn, core.wall_owner_id))
        removed = set(posts.select_recipient_ids(conn, core.id)) - kept
        posts.update_post_content(
            conn,
            core.id,
            source="",
            content_html=content,
            recipient_ids=[],
            tags=note.hashtags,
            now_ms=now,
            removed_ids=sorted(removed),
            visibility=visibility if narrower else None,
        )
        posts.set_remote_updated(conn, core.id, updated)
        return core.id

    changed = await ctx.db.write(tx)
    if changed is not None:
        await tell_open_feeds(ctx, changed, "edited")


async def on_delete(ctx: Context, activity: Activity, actor: Actor) -> None:
    object_id = activity.object_id
    if object_id is None:
        raise Ignored("Delete without object")
    now = ctx.clock.now_ms()
    if object_id == actor.uri:
        await ctx.db.write(fed.mark_actor_deleted, actor.id, now)
        return
    if not same_origin(object_id, actor.uri):
        if await _removed_by_wall_owner(ctx, object_id, actor):
            return
        raise Ignored("Delete of an object on another origin")

    def tx(conn: sqlite3.Connection) -> int | None:
        core = posts.select_post_core_by_uri(conn, object_id)
        if core is not None and core.author_id != actor.id:
            raise Ignored("Delete by someone other than the stored author")
        # Tombstone first: a Create arriving after this Delete is never applied.
        fed.insert_tombstone(conn, object_id, actor.id, now)
        if core is not None and posts.mark_post_deleted(conn, core.id, now):
            return core.id
        return None

    gone = await ctx.db.write(tx)
    if gone is not None:
        await tell_open_feeds(ctx, gone, "deleted")


def _created_post_uri(activity: Activity) -> str | None:
    """The note of a rejected ``Create`` (embedded, or our ``<note>/activity`` id)."""
    inner = activity.object
    if inner is not None:
        if vocab.primary_type(inner.get("type")) != "Create":
            return None
        note = inner.get("object")
        note_id = note.get("id") if isinstance(note, Mapping) else note
        return note_id if isinstance(note_id, str) else None
    object_id = activity.object_id
    if object_id is not None and object_id.endswith(federating.CREATE_SUFFIX):
        return object_id.removesuffix(federating.CREATE_SUFFIX)
    return None


async def _removed_by_wall_owner(ctx: Context, post_uri: str, owner: Actor) -> bool:
    """FEP-400e: the owner of a partner's wall removed (``Delete``) or refused
    (``Reject{Create}``) a post one of our people wrote on it. The post is deleted here and,
    through our own ``Delete``, wherever it went, exactly as when a local wall owner removes
    a post (the record stays in the archive). False when the post is not ours or not on
    *owner*'s wall."""
    now = ctx.clock.now_ms()

    def tx(conn: sqlite3.Connection) -> bool:
        core = posts.select_post_core_by_uri(conn, post_uri)
        if core is None or not core.is_local_author or core.wall_owner_id != owner.id:
            return False
        if posts.mark_post_deleted(conn, core.id, now):
            federating.post_in_tx(conn, ctx.urls, ctx.federator.host, core.id, "Delete", now)
        return True

    removed = await ctx.db.write(tx)
    if removed:
        ctx.federator.wake()
    return removed


# --- Like, Announce, Add ------------------------------------------------------------------


async def on_like(ctx: Context, activity: Activity, actor: Actor) -> None:
    if activity.object_id is None:
        raise Ignored("Like without object")
    now = ctx.clock.now_ms()

    def tx(conn: sqlite3.Connection) -> int | None:
        if fed.is_tombstoned(conn, activity.id, actor.id):
            return None
        core = posts.select_post_core_by_uri(conn, activity.object_id or "")
        if core is None or core.deleted_at is not None or not core.is_local_author:
            return None
        if posts.select_post_for_remote(conn, core.id, actor.id) is None:
            return None  # Internal, or not meant for this actor: never acknowledge it
        if posts.insert_like(conn, actor.id, core.id, activity.id, now):
            return core.author_id
        return None

    author_id = await ctx.db.write(tx)
    if author_id is not None:
        await push_unread_counts(ctx, [author_id])


async def on_announce(ctx: Context, activity: Activity, actor: Actor) -> None:
    if activity.object_id is None:
        raise Ignored("Announce of an embedded activity is not supported yet")
    object_id = activity.object_id
    if await ctx.db.read(posts.select_post_core_by_uri, object_id) is None:
        # Stored under the id its server gives it (without the fragment a boost may carry).
        object_id = await _fetch_boosted(ctx, object_id)
    now = ctx.clock.now_ms()

    def tx(conn: sqlite3.Connection) -> posts.PostCore | None:
        if fed.is_tombstoned(conn, activity.id, actor.id):
            return None
        core = posts.select_post_core_by_uri(conn, object_id)
        if core is None or core.visibility != "public" or core.deleted_at is not None:
            return None  # only public posts may be boosted, and not once deleted
        if not posts.insert_announce(conn, actor.id, core.id, activity.id, now):
            return None
        return core

    boosted = await ctx.db.write(tx)
    if boosted is not None:
        await publish_boost(ctx, actor.id, boosted.id)
        if boosted.is_local_author:
            await push_unread_counts(ctx, [boosted.author_id])


async def _fetch_or_ignore(ctx: Context, object_id: str, what: str) -> Mapping[str, Any]:
    """A signed GET of an object an activity names by id. A partner that is down or busy
    raises (the dispatcher retries later); an answer that will not change (not allowed, gone,
    not a document we take) is ignored at once instead of retried for hours."""
    try:
        return await ctx.federator.fetcher.fetch_object(object_id)
    except FetchError as exc:
        status = exc.status or 0
        if exc.kind == "transport" or (exc.kind == "status" and (status >= 500 or status == 429)):
            raise
        raise Ignored(f"{what} cannot be fetched: {exc}") from None


async def _fetch_boosted(ctx: Context, object_id: str) -> str:
    """A boosted post we do not have: fetch it from its own server (signed GET, allowed hosts
    only, the answer's id must be the URL) and store it if it is a public note by its
    author on that author's origin. Returns the id it is stored under."""
    if object_id.startswith(ctx.urls.base + "/"):
        raise Ignored("a boost of one of our posts that we do not have")
    obj = await _fetch_or_ignore(ctx, object_id, "the boosted post")
    if vocab.primary_type(obj.get("type")) not in vocab.NOTE_TYPES:
        raise Ignored(f"a boost of {obj.get('type')!r}")
    note = vocab.parse_note(obj)
    author = await remote.ensure_actor(ctx, note.attributed_to)
    if author.is_local or author.deleted_at is not None:
        raise Ignored("a boost of a post whose author is ours or deleted")
    await _store_note(ctx, note, author, for_boost=True)
    return note.id


async def on_add(ctx: Context, activity: Activity, actor: Actor) -> None:
    raise Ignored("Add is informational here (FEP-400e walls we host ourselves)")


HANDLERS: dict[str, Handler] = {
    "Follow": on_follow,
    "Accept": on_accept,
    "Reject": on_reject,
    "Undo": on_undo,
    "Create": on_create,
    "Update": on_update,
    "Delete": on_delete,
    "Like": on_like,
    # Pleroma's and Akkoma's emoji reactions count as likes, as Misskey's (a Like with
    # _misskey_reaction) already do: we show no emoji, only that someone liked the post.
    **dict.fromkeys(EMOJI_REACTIONS, on_like),
    "Announce": on_announce,
    "Add": on_add,
}
