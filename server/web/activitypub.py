"""ActivityPub HTTP surface: WebFinger, host-meta, NodeInfo, actors, inboxes, outboxes,
collections and objects (content-negotiated with the HTML pages).

Invariants (SECURITY.md §2, PROTOCOL.md §2-3):
- Secure mode always: an unsigned GET of anything but an actor (which gets the key-only form,
  as does an actor GET whose signature does not verify) answers 401; a GET signed by a host
  that is not allowed answers 403 before any key fetch.
- Internal posts answer 404 to every remote requester, exactly like a missing post; Followers
  posts only to accepted followers, Direct posts only to the addressed.
- Inbox POSTs are capped at 256 KB before the body is read, verified, archived and committed,
  and only then answered 202 (``federation.inbox.InboxReceiver``).
- Browsers asking for HTML are sent to the human pages.
"""

from __future__ import annotations

import json
from typing import Any

from quart import Blueprint, Response, redirect, request
from quart.typing import ResponseReturnValue

from federation import vocab, wellknown
from federation.inbox import InboxResult, VerifiedRequester
from federation.types import AS_CONTEXT, AS_MEDIA_TYPES
from server.domain import Actor
from server.services import accounts
from server.services.context import Context
from server.services.federating import iso, note_document
from server.storage import federation as fed
from server.storage import follows, posts, users
from server.web.inbox_asgi import raw_target
from server.web.support import ctx, parse_id

blueprint = Blueprint("activitypub", __name__)
AP_CONTENT_TYPE = "application/activity+json; charset=utf-8"
PAGE = 50
VARY = "Accept, Signature"


def _wants_activity() -> bool:
    accept = request.headers.get("Accept", "")
    return any(t.split(";")[0].strip() in accept for t in AS_MEDIA_TYPES) or (
        "application/activity+json" in accept or "application/ld+json" in accept
    )


def _json(doc: dict[str, Any], status: int = 200, content_type: str = AP_CONTENT_TYPE) -> Response:
    response = Response(json.dumps(doc, separators=(",", ":")), status=status)
    response.headers["Content-Type"] = content_type
    response.headers["Vary"] = VARY
    response.headers["Cache-Control"] = "no-store"
    return response


def _refusal(status: int, reason: str) -> Response:
    return _json({"error": reason}, status, "application/json")


def _headers() -> list[tuple[str, str]]:
    # Werkzeug Headers iterate as (name, value) pairs, duplicates included.
    return [(k, v) for k, v in request.headers]


async def _signed_requester() -> VerifiedRequester | Response:
    if "Signature" not in request.headers and "signature" not in request.headers:
        return _refusal(401, "signature required")
    # HEAD is routed to GET views: verify against the method that was actually signed.
    result = await ctx().federator.receiver.verify_get(
        raw_target=raw_target(request.scope), headers=_headers(), method=request.method
    )
    if isinstance(result, InboxResult):
        return _refusal(result.status, result.reason)
    signer = await ctx().db.read(users.select_actor_by_uri, result.actor_uri)
    if signer is not None and signer.deleted_at is not None:
        # Its server said Delete{Person}: its keys no longer open anything here.
        return _refusal(401, "the signing actor was deleted")
    return result


async def _local(username: str) -> Actor | None:
    return await accounts.federated_person(ctx(), username)


# --- discovery ------------------------------------------------------------------------------


@blueprint.get("/.well-known/webfinger")
async def webfinger() -> ResponseReturnValue:
    c = ctx()
    resource = request.args.get("resource", "")[:400]
    username: str | None = None
    instance = resource == c.urls.instance_actor
    if resource.startswith(c.urls.base + "/users/"):
        username = resource[len(c.urls.base) + len("/users/") :]
    elif not instance:
        try:
            username, host = wellknown.parse_acct(resource)
        except ValueError:
            return _refusal(400, "resource must be acct:user@host or an actor's URL")
        if host != c.federator.host:
            return _refusal(404, "not found")
        instance = username.lower() == c.urls.instance_username
    if instance:
        # The instance actor signs our fetches; Mastodon resolves it by WebFinger before it
        # trusts the key. No person can take this name (accounts.create_user).
        doc = wellknown.webfinger_document(
            subject=f"acct:{c.urls.instance_username}@{c.federator.host}",
            actor_uri=c.urls.instance_actor,
            profile_url=c.urls.base + "/",
        )
        return _json(doc, content_type="application/jrd+json; charset=utf-8")
    actor = await _local(username) if username else None
    if actor is None:
        return _refusal(404, "not found")
    doc = wellknown.webfinger_document(
        subject=f"acct:{actor.username}@{c.federator.host}",
        actor_uri=c.urls.actor(actor.username),
        profile_url=c.urls.profile_page(actor.username),
    )
    return _json(doc, content_type="application/jrd+json; charset=utf-8")


@blueprint.get("/.well-known/host-meta")
async def host_meta() -> ResponseReturnValue:
    response = Response(wellknown.host_meta_xml(ctx().urls.base))
    response.headers["Content-Type"] = "application/xrd+xml; charset=utf-8"
    return response


@blueprint.get("/.well-known/nodeinfo")
async def nodeinfo_links() -> ResponseReturnValue:
    return _json(wellknown.nodeinfo_links(ctx().urls.base), content_type="application/json")


@blueprint.get("/nodeinfo/2.1")
async def nodeinfo() -> ResponseReturnValue:
    doc = wellknown.nodeinfo(ctx().config.name, "0.1.0")
    return _json(
        doc,
        content_type='application/json; profile="http://nodeinfo.diaspora.software/ns/schema/2.1#"',
    )


# --- actors ---------------------------------------------------------------------------------


@blueprint.get("/actor")
async def instance_actor() -> ResponseReturnValue:
    c = ctx()
    await c.federator.instance_key()
    doc = vocab.instance_actor(c.urls, c.federator.instance_public_key_pem, c.config.name)
    return _json(doc)


async def _person_document(c: Context, actor: Actor) -> dict[str, Any]:
    pem = await c.db.read(fed.select_public_key_pem, actor.id)
    return vocab.person(
        c.urls,
        username=actor.username,
        display_name=actor.display_name,
        summary_html=actor.bio_html,
        public_key_pem=pem or "",
        manually_approves=actor.manually_approves,
        published_iso=iso(actor.created_at),
    )


@blueprint.get("/users/<username>")
async def actor(username: str) -> ResponseReturnValue:
    c = ctx()
    person = await _local(username)
    if not _wants_activity():
        if person is None:
            return _refusal(404, "not found")
        return redirect(c.urls.profile_page(person.username))
    if person is None:
        return _refusal(404, "not found")
    if "Signature" not in request.headers:
        return await _key_only_person(c, person)
    requester = await _signed_requester()
    if isinstance(requester, Response):
        if requester.status_code == 401:
            # A signature we cannot verify (a key we cannot fetch or do not support, a
            # clock out of the window) gets what no signature gets, as on Mastodon, whose
            # barebones actor answers any request without a verified signer: the peer
            # still needs our key to verify what we deliver to it. A host that is not
            # allowed keeps its 403.
            return await _key_only_person(c, person)
        return requester
    return _json(await _person_document(c, person))


async def _key_only_person(c: Context, person: Actor) -> Response:
    """The barebones Person: enough to verify our people's signatures, nothing more."""
    pem = await c.db.read(fed.select_public_key_pem, person.id)
    return _json(
        vocab.key_only_actor(
            actor_id=c.urls.actor(person.username),
            preferred_username=person.username,
            inbox=c.urls.inbox(person.username),
            outbox=c.urls.outbox(person.username),
            key_id=c.urls.key_id(person.username),
            public_key_pem=pem or "",
        )
    )


# --- inboxes --------------------------------------------------------------------------------
# POSTs to /inbox and /users/<name>/inbox are answered by server/web/inbox_asgi.py, before
# Quart sees them.


# --- collections ----------------------------------------------------------------------------


async def _collection(username: str, kind: str) -> ResponseReturnValue:
    c = ctx()
    person = await _local(username)
    requester = await _signed_requester()
    if isinstance(requester, Response):
        return requester
    if person is None:
        return _refusal(404, "not found")
    base = f"{c.urls.actor(person.username)}/{kind}"
    page = request.args.get("page")
    if page is None:
        if kind in ("outbox", "wall"):
            return _json(vocab.ordered_collection(base, None, f"{base}?page=true"))
        counts = await c.db.read(follows.count_follows, person.id)
        total = counts[0] if kind == "followers" else counts[1]
        return _json(vocab.ordered_collection(base, total, f"{base}?page=true"))
    before = parse_id(request.args["before"]) if request.args.get("before") else None
    items: list[Any]
    if kind == "outbox":
        ids = await c.db.read(posts.select_public_posts_of, person.id, before=before, limit=PAGE)
        items = []
        for post_id in ids:
            data = await c.db.read(fed.select_post_for_federation, post_id)
            if data is not None:
                note = note_document(c.urls, data, c.federator.host)
                items.append(
                    vocab.create(
                        activity_id=f"{data.uri}/activity",
                        actor=c.urls.actor(person.username),
                        obj=note,
                    )
                )
        cursor = ids[-1] if len(ids) == PAGE else None
    elif kind == "wall":
        # FEP-400e: the public posts on the wall, by id (local or a partner's), newest first.
        wall = await c.db.read(posts.select_public_wall_uris, person.id, before=before, limit=PAGE)
        items = [uri for _, uri in wall]
        cursor = wall[-1][0] if len(wall) == PAGE else None
    else:
        items, cursor = await c.db.read(
            follows.select_follower_uris,
            person.id,
            host=requester.host,
            before=before,
            limit=PAGE,
            followers=kind == "followers",
        )
    next_page = f"{base}?page=true&before={cursor}" if cursor else None
    page_id = f"{base}?page=true" + (f"&before={before}" if before else "")
    return _json(vocab.ordered_collection_page(page_id, base, items, next_page))


@blueprint.get("/users/<username>/outbox")
async def outbox(username: str) -> ResponseReturnValue:
    return await _collection(username, "outbox")


@blueprint.get("/users/<username>/wall")
async def wall(username: str) -> ResponseReturnValue:
    return await _collection(username, "wall")


@blueprint.get("/users/<username>/followers")
async def followers(username: str) -> ResponseReturnValue:
    return await _collection(username, "followers")


@blueprint.get("/users/<username>/following")
async def following(username: str) -> ResponseReturnValue:
    return await _collection(username, "following")


# --- objects --------------------------------------------------------------------------------


async def _note(username: str, post_id: str, *, activity: bool) -> ResponseReturnValue:
    c = ctx()
    pid = parse_id(post_id)
    if not _wants_activity():
        return redirect(c.urls.post_page(pid))
    requester = await _signed_requester()
    if isinstance(requester, Response):
        return requester
    viewer = await c.db.read(users.select_actor_by_uri, requester.actor_uri)
    post = await c.db.read(posts.select_post_for_remote, pid, viewer.id if viewer else None)
    if post is None or post.author.username.lower() != username.lower():
        return _refusal(404, "not found")
    if await _local(username) is None:
        # A deactivated or deleted author's notes answer like their actor: missing. Partners
        # were told Delete{Person}; a note still served would outlive it.
        return _refusal(404, "not found")
    if post.deleted_at is not None:
        return _json({"@context": AS_CONTEXT, "id": post.uri, "type": "Tombstone"}, 410)
    data = await c.db.read(fed.select_post_for_federation, pid)
    assert data is not None
    note = note_document(c.urls, data, c.federator.host)
    if activity:
        return _json(
            vocab.create(activity_id=f"{post.uri}/activity", actor=c.urls.actor(username), obj=note)
        )
    return _json(vocab.with_context(note))


@blueprint.get("/users/<username>/notes/<post_id>")
async def note(username: str, post_id: str) -> ResponseReturnValue:
    return await _note(username, post_id, activity=False)


@blueprint.get("/users/<username>/notes/<post_id>/activity")
async def note_activity(username: str, post_id: str) -> ResponseReturnValue:
    return await _note(username, post_id, activity=True)
