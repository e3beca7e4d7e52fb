"""Outbound federation: local changes become activities and delivery rows in the SAME
transaction as the change itself (nothing is lost, nothing is sent that was not committed).

Invariants:
- Internal content never reaches this module's output: every entry point checks the
  visibility and returns without writing for ``internal`` (PROTOCOL.md §3, the one choke point
  is :func:`_enqueue`, which refuses internal content outright).
- Targets on hosts that are not on the allowlist are dropped here, inside the transaction that
  reads the allowlist; the activity is still recorded in the outbox (the system of record).
- Public and followers activities go to shared inboxes where offered, deduplicated; direct
  posts go to each addressed person's own inbox.
- Functions named ``*_in_tx`` run inside a write transaction (they take the connection).
"""

from __future__ import annotations

import datetime as dt
import secrets
import sqlite3
from collections.abc import Iterable
from typing import Any, Literal

from federation import vocab
from federation.types import AS_PUBLIC
from federation.urls import Urls
from server.storage import federation as fed

Target = tuple[str, str]  # (inbox url, host)


class InternalContentError(RuntimeError):
    """Raised if anything ever tries to serialize internal content: a bug, never user input."""


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_precise(ms: int) -> str:
    """ISO-8601 with milliseconds: ``updated`` must order two edits made in one second."""
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


CREATE_SUFFIX = "/activity"  # our Create of a note is "<note id>/activity"


def new_activity_id(urls: Urls, kind: str) -> str:
    return f"{urls.base}/activities/{kind}/{secrets.token_hex(10)}"


def _enqueue(
    conn: sqlite3.Connection,
    *,
    activity: dict[str, Any],
    actor_id: int | None,
    targets: Iterable[Target],
    visibility: str,
    now_ms: int,
) -> int:
    if visibility == "internal":
        raise InternalContentError("internal content must never be federated")
    allowed = fed.select_active_hosts(conn)
    kept = {inbox: host for inbox, host in targets if host in allowed}
    return fed.insert_outbox(
        conn,
        activity_id=str(activity["id"]),
        activity_type=str(activity["type"]),
        ordering_key=vocab.ordering_key(activity),
        actor_id=actor_id,
        body=activity,
        targets=sorted(kept.items()),
        now_ms=now_ms,
    )


def _own_inbox(party: fed.Party) -> list[Target]:
    """A person's own inbox (never the shared one): for activities meant for them alone."""
    return [(party.inbox, party.host)] if party.inbox else []


def _party_handle(party: fed.Party, our_host: str) -> str:
    return f"@{party.username}@{party.host if not party.is_local else our_host}"


def note_document(urls: Urls, post: fed.PostForFederation, our_host: str) -> dict[str, Any]:
    """The Note of a local post, addressed per its visibility (never internal)."""
    if post.visibility == "internal":
        raise InternalContentError("internal content must never be federated")
    followers = urls.followers(post.author_username)
    mentions = [r.uri for r in post.recipients]
    to, cc = vocab.addressing_for(post.visibility, actor_followers=followers, mentions=mentions)
    wall = None
    if post.wall_owner is not None:
        owner = post.wall_owner
        # A partner's wall: the one its actor document advertises (Smithereen's and ours),
        # else Steelyard's layout (actor id + "/wall"); servers without walls (Mastodon)
        # ignore ``target``.
        if owner.is_local:
            wall = (urls.wall(owner.username), owner.uri)
        else:
            wall = (owner.wall_url or f"{owner.uri}/wall", owner.uri)
    return vocab.note(
        note_id=post.uri,
        attributed_to=urls.actor(post.author_username),
        content_html=post.content_html,
        published_iso=iso(post.created_at),
        updated_iso=iso_precise(post.edited_at) if post.edited_at else None,
        to=to,
        cc=cc,
        in_reply_to=post.in_reply_to_uri,
        mentions=[(r.uri, _party_handle(r, our_host)) for r in post.recipients],
        hashtags=[(urls.tag(t), t) for t in post.tags],
        url=post.url,
        wall=wall,
    )


def _post_targets(conn: sqlite3.Connection, post: fed.PostForFederation) -> list[Target]:
    remote = [r for r in post.recipients if not r.is_local and r.inbox and not r.deleted]
    if post.visibility == "direct":
        return [(r.inbox, r.host) for r in remote if r.inbox]
    targets = fed.select_remote_follower_inboxes(conn, post.author_id)
    targets += [(r.shared_inbox or r.inbox, r.host) for r in remote if r.inbox]
    return targets


def post_in_tx(
    conn: sqlite3.Connection, urls: Urls, our_host: str, post_id: int, kind: str, now_ms: int
) -> bool:
    """Queue Create, Update or Delete of a local post; False when it does not federate."""
    post = fed.select_post_for_federation(conn, post_id)
    if post is None or not post.author_is_local or post.visibility == "internal":
        return False
    actor = urls.actor(post.author_username)
    note = note_document(urls, post, our_host)
    if kind == "Create":
        activity = vocab.create(activity_id=post.uri + CREATE_SUFFIX, actor=actor, obj=note)
    elif kind == "Update":
        # Unique per emission, not per version: a database restored from a backup numbers
        # versions again, and a partner drops an id it has seen as a duplicate.
        activity = vocab.update(
            activity_id=f"{post.uri}#updates/{post.version}-{now_ms}-{secrets.token_hex(4)}",
            actor=actor,
            obj=note,
        )
    elif kind == "Delete":
        activity = vocab.delete(
            activity_id=f"{post.uri}#delete",
            actor=actor,
            object_id=post.uri,
            to=note["to"],
            cc=note["cc"],
        )
    else:
        raise ValueError(kind)
    _enqueue(
        conn,
        activity=vocab.with_context(activity, activity.get("@context")),
        actor_id=post.author_id,
        targets=_post_targets(conn, post),
        visibility=post.visibility,
        now_ms=now_ms,
    )
    return True


def follow_in_tx(
    conn: sqlite3.Connection,
    urls: Urls,
    *,
    follower_id: int,
    follower_username: str,
    target: fed.Party,
    activity_id: str,
    now_ms: int,
) -> None:
    activity = vocab.follow(
        activity_id=activity_id, actor=urls.actor(follower_username), object_id=target.uri
    )
    _enqueue(
        conn,
        activity=activity,
        actor_id=follower_id,
        targets=_own_inbox(target),
        visibility="direct",
        now_ms=now_ms,
    )


def undo_follow_in_tx(
    conn: sqlite3.Connection,
    urls: Urls,
    *,
    follower_id: int,
    follower_username: str,
    target: fed.Party,
    follow_id: str | None,
    now_ms: int,
) -> None:
    actor = urls.actor(follower_username)
    inner = vocab.follow(
        activity_id=follow_id or new_activity_id(urls, "follow"), actor=actor, object_id=target.uri
    )
    activity = vocab.undo(
        activity_id=new_activity_id(urls, "undo"), actor=actor, obj=inner, to=[target.uri]
    )
    _enqueue(
        conn,
        activity=activity,
        actor_id=follower_id,
        targets=_own_inbox(target),
        visibility="direct",
        now_ms=now_ms,
    )


def answer_follow_in_tx(
    conn: sqlite3.Connection,
    urls: Urls,
    *,
    followee_id: int,
    followee_username: str,
    follower: fed.Party,
    follow_id: str | None,
    accept: bool,
    now_ms: int,
) -> None:
    """Accept or Reject a remote Follow, embedding it (PROTOCOL.md §4)."""
    actor = urls.actor(followee_username)
    inner = {
        "id": follow_id or new_activity_id(urls, "follow"),
        "type": "Follow",
        "actor": follower.uri,
        "object": actor,
    }
    kind = "accepts" if accept else "rejects"
    build = vocab.accept if accept else vocab.reject
    activity = build(
        activity_id=f"{actor}#{kind}/follows/{secrets.token_hex(8)}",
        actor=actor,
        obj=inner,
        to=[follower.uri],
    )
    _enqueue(
        conn,
        activity=activity,
        actor_id=followee_id,
        targets=_own_inbox(follower),
        visibility="direct",
        now_ms=now_ms,
    )


def like_in_tx(
    conn: sqlite3.Connection,
    urls: Urls,
    *,
    actor_id: int,
    username: str,
    post_uri: str,
    author: fed.Party,
    like_id: str,
    undo: bool,
    now_ms: int,
) -> None:
    actor = urls.actor(username)
    activity = vocab.like(activity_id=like_id, actor=actor, object_id=post_uri, to=[author.uri])
    if undo:
        activity = vocab.undo(
            activity_id=new_activity_id(urls, "undo"), actor=actor, obj=activity, to=[author.uri]
        )
    _enqueue(
        conn,
        activity=activity,
        actor_id=actor_id,
        targets=[(author.shared_inbox or author.inbox, author.host)] if author.inbox else [],
        visibility="direct",
        now_ms=now_ms,
    )


def announce_in_tx(
    conn: sqlite3.Connection,
    urls: Urls,
    *,
    actor_id: int,
    username: str,
    post_uri: str,
    author: fed.Party | None,
    announce_id: str,
    published_ms: int,
    undo: bool,
    now_ms: int,
) -> None:
    """A boost of a public post (``Announce`` of its id), or its ``Undo``: to the booster's
    remote followers and to the post's author when remote (PROTOCOL.md §6)."""
    actor = urls.actor(username)
    cc = [urls.followers(username)] + ([author.uri] if author is not None else [])
    activity = vocab.announce(
        activity_id=announce_id,
        actor=actor,
        obj=post_uri,
        to=[AS_PUBLIC],
        cc=cc,
        published_iso=iso(published_ms),
    )
    if undo:
        activity = vocab.undo(
            activity_id=new_activity_id(urls, "undo"),
            actor=actor,
            obj=activity,
            to=[AS_PUBLIC],
            cc=cc,
        )
    targets = fed.select_remote_follower_inboxes(conn, actor_id)
    if author is not None and not author.is_local and author.inbox:
        targets.append((author.shared_inbox or author.inbox, author.host))
    _enqueue(
        conn,
        activity=activity,
        actor_id=actor_id,
        targets=targets,
        visibility="public",
        now_ms=now_ms,
    )


def profile_in_tx(
    conn: sqlite3.Connection,
    urls: Urls,
    *,
    actor_id: int,
    person: dict[str, Any],
    now_ms: int,
) -> None:
    """Update{Person} to the remote followers' (shared) inboxes."""
    activity = vocab.update(
        activity_id=f"{person['id']}#updates/{now_ms}-{secrets.token_hex(4)}",
        actor=str(person["id"]),
        obj=person,
        to=[AS_PUBLIC],
        cc=[str(person["followers"])],
    )
    _enqueue(
        conn,
        activity=activity,
        actor_id=actor_id,
        targets=fed.select_remote_follower_inboxes(conn, actor_id),
        visibility="public",
        now_ms=now_ms,
    )


def person_deleted_in_tx(
    conn: sqlite3.Connection, urls: Urls, *, actor_id: int, username: str, now_ms: int
) -> None:
    """Delete{Person} to every remote follower and followee (their servers forget the
    account and its follows). Queued in the deleting transaction, like every activity."""
    actor_uri = urls.actor(username)
    activity = vocab.delete(
        activity_id=f"{actor_uri}#delete/{now_ms}",
        actor=actor_uri,
        object_id=actor_uri,
        to=[AS_PUBLIC],
        cc=[urls.followers(username)],
    )
    _enqueue(
        conn,
        activity=activity,
        actor_id=actor_id,
        targets=fed.select_remote_contact_inboxes(conn, actor_id),
        visibility="public",
        now_ms=now_ms,
    )


def wall_notice_in_tx(
    conn: sqlite3.Connection,
    urls: Urls,
    *,
    kind: Literal["Add", "Delete"],
    owner_id: int,
    owner_username: str,
    object_id: str,
    author: fed.Party,
    to_followers: bool,
    now_ms: int,
) -> None:
    """FEP-400e, as the wall owner's server: ``Add`` a partner's post to the wall we accepted
    it on, or ``Delete`` it when the owner removes it (only its author's server can delete it
    everywhere). Told to the author and, when they were addressed, to the owner's followers
    on other instances."""
    actor = urls.actor(owner_username)
    to = [urls.followers(owner_username), author.uri] if to_followers else [author.uri]
    if kind == "Add":
        activity = vocab.add(
            activity_id=new_activity_id(urls, "add"),
            actor=actor,
            object_id=object_id,
            target=urls.wall(owner_username),
            to=to,
        )
    else:
        activity = vocab.delete(
            activity_id=new_activity_id(urls, "delete"), actor=actor, object_id=object_id, to=to
        )
    _wall_notice(conn, activity, owner_id, author, to_followers, now_ms)


def _wall_notice(
    conn: sqlite3.Connection,
    activity: dict[str, Any],
    owner_id: int,
    author: fed.Party,
    to_followers: bool,
    now_ms: int,
) -> None:
    targets: list[Target] = []
    if author.inbox:
        targets.append((author.shared_inbox or author.inbox, author.host))
    if to_followers:
        targets += fed.select_remote_follower_inboxes(conn, owner_id)
    _enqueue(
        conn,
        activity=activity,
        actor_id=owner_id,
        targets=targets,
        visibility="direct" if not to_followers else "followers",
        now_ms=now_ms,
    )
