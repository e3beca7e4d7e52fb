"""Remote people: find ``@name@host`` on an allowed instance, fetch and store actors.

Nothing is resolved at, fetched from or sent to a host that is not on the allowlist: the
federation policy refuses before any network I/O, and the user gets a clear message. Inbound
HTML (an actor's summary) is sanitized once, here, on arrival.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable

from federation.fetch import FetchError
from federation.policy import PolicyError
from federation.types import RemoteActor
from federation.wellknown import parse_acct
from server.domain import Actor
from server.errors import InvalidInput, NotFound
from server.services.context import Context
from server.storage import federation as fed
from server.storage import users


async def person_by_handle(ctx: Context, handle: str) -> Actor | None:
    """A stored person by handle: ``alice`` on this instance, ``bob@partner.example`` on
    another (known here already; nothing new is fetched, but a partner's handle not yet
    confirmed is, see :func:`_confirmed`)."""
    if "@" in handle:
        name, _, host = handle.partition("@")
        known = await ctx.db.read(users.select_actor_by_handle, name, host.lower())
        return await _confirmed(ctx, known, name, host.lower()) if known else None
    return await ctx.db.read(users.select_local_actor, handle)


async def store_actor(ctx: Context, remote: RemoteActor) -> Actor:
    """Insert or refresh a fetched, validated remote actor (summary sanitized once).

    A handle (``name@host``) names one actor. When another actor of the host already holds
    this one's ``preferredUsername`` (Lemmy's user and community of one name; a user who
    registers an existing group's name), the partner's WebFinger decides: the actor it names
    keeps or takes the handle, and the other is stored under a handle nobody can type
    (``name~<hash>``). Without that, the second actor could never be stored, and every
    activity of it would be refused for good."""
    summary = ctx.text.sanitize_remote(remote.summary_html or "")
    holder = await ctx.db.read(fed.select_handle_holder, remote.host, remote.username, remote.uri)
    owner = await _handle_owner(ctx, remote.username, remote.host) if holder else None
    now = ctx.clock.now_ms()

    def tx(conn: sqlite3.Connection) -> int:
        # Read again in the write: the holder may have changed since (nothing decided then
        # is trusted now; a holder unknown before gets no WebFinger, so the newcomer yields).
        taken = fed.select_handle_holder(conn, remote.host, remote.username, remote.uri)
        if taken is not None and owner == remote.uri:
            fed.set_actor_username(conn, taken[0], _unclaimed(remote.username, taken[1]))
            taken = None
        username = _unclaimed(remote.username, remote.uri) if taken is not None else None
        actor_id = fed.upsert_remote_actor(
            conn, remote, summary_html=summary, now_ms=now, username=username
        )
        if owner == remote.uri:  # stored earlier under a stand-in: its handle is back
            fed.set_actor_username(conn, actor_id, remote.username)
            fed.set_handle_checked(conn, actor_id, now)
        return actor_id

    actor_id = await ctx.db.write(tx)
    actor = await ctx.db.read(users.select_actor, actor_id)
    assert actor is not None
    return actor


async def _handle_owner(ctx: Context, username: str, host: str) -> str | None:
    """The actor the partner's WebFinger names for ``username@host``; None if it cannot say."""
    try:
        return await ctx.federator.fetcher.webfinger(f"acct:{username}@{host}")
    except (FetchError, PolicyError):
        return None


def _unclaimed(username: str, uri: str) -> str:
    """A stand-in handle for an actor whose ``preferredUsername`` another actor holds: unique
    per actor, and not an address (``~`` is no part of one), so nobody reaches it by typing."""
    return f"{username}~{hashlib.sha256(uri.encode()).hexdigest()[:8]}"


async def find_person(ctx: Context, handle: str) -> Actor:
    """``name@host`` (a person on a partner instance) as a stored actor, fetched if new."""
    try:
        username, host = parse_acct(handle)
    except ValueError:
        raise InvalidInput(f"@{handle} is not a valid address.") from None
    if host == ctx.federator.host:
        local = await ctx.db.read(users.select_local_actor, username)
        # A deactivated colleague is out of the directory, whichever way they are looked up.
        if local is None or not await ctx.db.read(users.is_active_account, local.id):
            raise InvalidInput(f"There is no colleague named @{username}.")
        return local
    # Checked before the cache too: a host removed from the allowlist keeps its people in
    # our records (the archive), but nobody may address or follow them any more.
    if not await ctx.federator.allowlist.is_allowed(host):
        raise InvalidInput(not_allowed_message(f"@{username}@{host}"))
    known = await ctx.db.read(users.select_actor_by_handle, username, host)
    if known is not None:
        return await _confirmed(ctx, known, username, host)
    try:
        actor = await fetch_actor(
            ctx, await ctx.federator.fetcher.webfinger(f"acct:{username}@{host}")
        )
    except (FetchError, PolicyError) as exc:
        raise InvalidInput(f"@{username}@{host} could not be found ({_reason(exc)}).") from None
    await _mark_confirmed(ctx, actor, username)
    return actor


async def _confirmed(ctx: Context, known: Actor, username: str, host: str) -> Actor:
    """*known* (stored as ``username@host``), or the actor the partner's WebFinger names for
    that handle. An actor seen in an activity holds its handle on its own word
    (preferredUsername); the first time a colleague uses the handle (search, profile,
    follow, mention, wall), its server is asked, once, so a user who took a group's name
    cannot receive what was meant for the group. When the server cannot say (down, or not
    allowed any more), *known* is used and asked again next time."""
    if known.is_local or await ctx.db.read(fed.is_handle_checked, known.id):
        return known
    if not await ctx.federator.allowlist.is_allowed(host):
        return known  # the archive of a host no longer allowed: nothing is asked of it
    owner = await _handle_owner(ctx, username, host)
    if owner is None:
        return known
    if owner != known.uri:
        try:
            actor = await fetch_actor(ctx, owner)  # store_actor gives it the handle
        except (FetchError, PolicyError):
            return known
        if not await _mark_confirmed(ctx, actor, username):
            return known  # WebFinger and the actor disagree: nothing is confirmed
        return actor
    await _mark_confirmed(ctx, known, username)
    return known


async def _mark_confirmed(ctx: Context, actor: Actor, username: str) -> bool:
    """Remember that WebFinger named *actor* for *username*, if that is its handle."""
    if actor.username.lower() != username.lower():
        return False
    await ctx.db.write(fed.set_handle_checked, actor.id, ctx.clock.now_ms())
    return True


def not_allowed_message(who: str) -> str:
    return (
        f"{who} is on an instance that is not allowed to federate with us; nothing was sent."
        " Ask an administrator to add it to the allowlist."
    )


async def check_reachable(ctx: Context, people: Iterable[Actor]) -> None:
    """Refuse (before anything is stored or sent) if any remote person among *people* is on
    a host that is not allowed now."""
    for person in people:
        if not person.is_local and not await ctx.federator.allowlist.is_allowed(person.host):
            raise InvalidInput(not_allowed_message(f"@{person.handle}"))


async def fetch_actor(ctx: Context, uri: str) -> Actor:
    remote = await ctx.federator.fetcher.fetch_actor(uri)
    return await store_actor(ctx, remote)


async def ensure_actor(ctx: Context, uri: str) -> Actor:
    """The stored actor with this id, fetching it (signed GET) when unknown."""
    known = await ctx.db.read(users.select_actor_by_uri, uri)
    if known is not None:
        return known
    try:
        return await fetch_actor(ctx, uri)
    except (FetchError, PolicyError) as exc:
        raise NotFound(f"{uri} could not be fetched ({_reason(exc)}).") from None


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "reason", exc))[:200]
