"""Key resolution: keyId → key document → owner actor, bound and stored (SECURITY.md §2.2).

Invariants:

- ``acct:`` keyIds (and anything that is not an http(s) URL) are never resolved
  (discourse-activity-pub #325/#327).
- A key is accepted only when the owner actor lists exactly this key id as its
  ``publicKey.id``, the key document, the key id and the owner are on one origin, and the
  key is RSA of at least 2048 bits. Every document comes from :class:`Fetcher`, so it was
  served by its own id with an ActivityStreams media type, by an allowlisted host.
- Shapes accepted at the keyId URL: the owner actor itself (Mastodon: ``actor#main-key``;
  a keyId that is the actor's own URL names the actor's one key, when it has just one),
  a key object with ``owner`` (then the owner is fetched), or GoToSocial's actor stub served
  at ``…/main-key`` with the owner's id (then the owner is fetched from that id, same
  origin only). The owner may embed the key (its PEM must then equal the key document's)
  or name it by id only (``"publicKey": "<keyId>"``): the PEM is then the key document's,
  and only because that document, served at the keyId, names the owner that names it back.
  An actor that names its key by reference and is itself the keyId's document verifies
  nothing (no PEM).
- An owner that lists several keys (``publicKey`` as a list) is read for the entry whose
  ``id`` is the keyId asked about; every rule above applies to that entry.
- The network is asked about one key id at most once per ``refetch_cooldown_ms`` (concurrent
  callers share one fetch): a flood of bad signatures cannot make us refetch each time.
  Inside the cool-off a refresh returns the stored key, or fails with kind ``cooldown``.
- Fetches to one host are also budgeted (``host_budget`` at once, then one per
  ``host_refill_ms``), whatever the key ids: anyone can write a Signature header, so without
  a budget a stream of unsigned requests naming ever new paths on a partner would make us
  send it signed GETs of the sender's choosing. Over budget fails with kind ``cooldown``.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal

from federation.fetch import Fetcher, FetchError
from federation.hosts import host_of_url, same_origin
from federation.ports import KeyStore, KnownKey
from federation.signatures import KeyCache
from federation.types import RemoteActor
from federation.vocab import VocabError, parse_actor, strip_fragment

__all__ = ["KeyResolutionError", "KeyResolver"]

KeyErrorKind = Literal["invalid", "policy", "gone", "unavailable", "rejected", "cooldown"]
_MAX_TRACKED = 10_000
_MAX_PEM = 16_384


class KeyResolutionError(Exception):
    """No usable key. ``kind``: ``invalid`` (malformed or ``acct:`` keyId), ``policy`` (host
    not allowed: answer 403), ``gone`` (410: the actor was deleted), ``unavailable``
    (network or HTTP error), ``rejected`` (the documents break a binding rule or the key is
    unacceptable), ``cooldown`` (asked again too soon). ``status`` is the HTTP status the
    fetch got or the policy gave, if any."""

    def __init__(self, kind: KeyErrorKind, reason: str, *, status: int | None = None) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind: KeyErrorKind = kind
        self.reason = reason
        self.status = status


Resolved = tuple[KnownKey, RemoteActor | None]


class KeyResolver:
    """Resolves and caches remote public keys; one instance per application."""

    def __init__(
        self,
        fetcher: Fetcher,
        store: KeyStore,
        now_ms: Callable[[], int],
        refetch_cooldown_ms: int = 300_000,
        *,
        keys: KeyCache | None = None,
        host_budget: int = 30,
        host_refill_ms: int = 2_000,
    ) -> None:
        self._fetcher = fetcher
        self._store = store
        self._now_ms = now_ms
        self._cooldown_ms = refetch_cooldown_ms
        self._keys = keys if keys is not None else KeyCache()
        self._last_fetch: OrderedDict[str, int] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[Resolved]] = {}
        self._host_budget = host_budget
        self._host_refill_ms = host_refill_ms
        # host -> (fetches left, when that was counted): a token bucket per host.
        self._host_tokens: OrderedDict[str, tuple[float, int]] = OrderedDict()

    async def known_key(self, key_id: str) -> KnownKey | None:
        """The stored key for exactly *key_id*, or None; never fetches."""
        _check_key_id(key_id)
        return await self._store.known_key(key_id)

    async def resolve(self, key_id: str, *, refresh: bool = False) -> KnownKey:
        """The key for exactly *key_id*: stored unless *refresh*, else fetched and stored."""
        return (await self.resolve_with_actor(key_id, refresh=refresh))[0]

    async def resolve_with_actor(
        self, key_id: str, *, refresh: bool = False
    ) -> tuple[KnownKey, RemoteActor | None]:
        """Like :meth:`resolve`, plus the owner actor when it was fetched now (else None)."""
        _check_key_id(key_id)
        if not refresh:
            known = await self._store.known_key(key_id)
            if known is not None:
                return known, None
        pending = self._inflight.get(key_id)
        if pending is not None:
            return await asyncio.shield(pending)
        now = self._now_ms()
        last = self._last_fetch.get(key_id)
        if last is not None and now - last < self._cooldown_ms:
            # As stored now: the owner's Update may have brought a new key since (applied in
            # another process), which the network would only be asked about after the cool-off.
            known = await self._store.known_key(key_id, fresh=refresh)
            if known is not None:
                return known, None
            raise KeyResolutionError("cooldown", "key was fetched moments ago")
        if not self._take_host_token(key_id, now):
            raise KeyResolutionError("cooldown", "too many key fetches for this host just now")
        self._last_fetch[key_id] = now
        self._last_fetch.move_to_end(key_id)
        while len(self._last_fetch) > _MAX_TRACKED:
            self._last_fetch.popitem(last=False)
        task = asyncio.ensure_future(self._fetch(key_id))
        self._inflight[key_id] = task
        task.add_done_callback(lambda done: self._finished(key_id, done))
        return await asyncio.shield(task)

    async def remember_announced(self, actor: RemoteActor) -> bool:
        """Store the key an actor announced in its own ``Update`` (verified as signed by its
        current key), so a rotation takes effect now and not after the refetch cool-off.

        Only a key id that is the actor's own (its URL with a fragment, or one already bound
        to it) is taken: an actor that names another actor's key id (with that actor's public
        key, which anyone can copy) must not become its owner here, or the other actor's
        signatures would verify and then be refused as "not its key" for good. Anything
        else is left to the resolver, which fetches the key id itself. RSA of 2048 bits or
        more, as for a fetched key."""
        key_id = actor.key_id
        if not key_id or not same_origin(actor.uri, key_id):
            return False
        if strip_fragment(key_id) != actor.uri:
            known = await self._store.known_key(key_id, fresh=True)
            if known is None or known.owner_uri != actor.uri:
                return False
        if self._keys.public_key(actor.public_key_pem) is None:
            return False
        await self._store.remember_key(
            KnownKey(key_id, actor.uri, actor.public_key_pem, fetched_at_ms=self._now_ms())
        )
        return True

    def _take_host_token(self, key_id: str, now: int) -> bool:
        try:
            host = host_of_url(key_id)
        except ValueError:
            return False
        tokens, counted_at = self._host_tokens.get(host, (float(self._host_budget), now))
        tokens = min(float(self._host_budget), tokens + (now - counted_at) / self._host_refill_ms)
        if tokens < 1:
            return False
        self._host_tokens[host] = (tokens - 1, now)
        self._host_tokens.move_to_end(host)
        while len(self._host_tokens) > _MAX_TRACKED:
            self._host_tokens.popitem(last=False)
        return True

    def _finished(self, key_id: str, task: asyncio.Future[Resolved]) -> None:
        if self._inflight.get(key_id) is task:
            del self._inflight[key_id]
        if not task.cancelled():
            task.exception()  # retrieved here so an unawaited failure is not logged

    async def _fetch(self, key_id: str) -> Resolved:
        url = strip_fragment(key_id)
        try:
            doc = await self._fetcher.fetch_object(url)
        except FetchError as exc:
            if exc.kind != "id-mismatch" or exc.document_id is None:
                raise _from_fetch(exc) from None
            # GoToSocial serves an actor stub at ".../main-key" whose id is the owner's.
            actor = await self._owner(exc.document_id, key_id)
        else:
            owner = doc.get("owner")
            if "publicKeyPem" in doc or owner is not None:
                # A key document: it names its owner, whose actor must list it.
                if doc.get("id") != key_id or not isinstance(owner, str):
                    raise KeyResolutionError("rejected", "not a key document of this id")
                actor = await self._owner(owner, key_id)
                pem = doc.get("publicKeyPem")
                if actor.public_key_pem == "" and actor.key_id == key_id:
                    # The owner lists this key by reference only: the PEM is this
                    # document's, which was served at the key id and names that owner,
                    # who names it back (both directions of Mastodon's check).
                    if not isinstance(pem, str) or not pem or len(pem) > _MAX_PEM:
                        raise KeyResolutionError("rejected", "key document has no usable PEM")
                    actor = replace(actor, public_key_pem=pem)
                elif pem != actor.public_key_pem:
                    raise KeyResolutionError("rejected", "key and owner disagree on the key")
            else:
                actor = _owner_actor(doc, url, key_id)
                if key_id == actor.uri and isinstance(doc.get("publicKey"), dict):
                    # Signed with the actor's URL as keyId: its one key is the key meant.
                    actor = replace(actor, key_id=key_id)
        if actor.key_id != key_id:
            raise KeyResolutionError("rejected", "the owner does not list this key id")
        if not same_origin(actor.uri, key_id):
            raise KeyResolutionError("rejected", "key and owner are on different origins")
        if self._keys.public_key(actor.public_key_pem) is None:
            raise KeyResolutionError("rejected", "key is not RSA of 2048 bits or more")
        known = KnownKey(
            key_id=key_id,
            owner_uri=actor.uri,
            public_key_pem=actor.public_key_pem,
            fetched_at_ms=self._now_ms(),
        )
        await self._store.remember_key(known)
        return known, actor

    async def _owner(self, owner: str, key_id: str) -> RemoteActor:
        if not same_origin(owner, key_id):
            raise KeyResolutionError("rejected", "key owner is on another origin")
        try:
            doc = await self._fetcher.fetch_object(owner)
        except FetchError as exc:
            raise _from_fetch(exc) from None
        return _owner_actor(doc, owner, key_id)


def _owner_actor(doc: dict[str, Any], fetched_url: str, key_id: str) -> RemoteActor:
    """The owner actor served at *fetched_url*, read for its key *key_id* (of several)."""
    try:
        return parse_actor(doc, fetched_url=fetched_url, key_id=key_id)
    except VocabError as exc:
        raise KeyResolutionError("rejected", exc.reason) from None


def _check_key_id(key_id: str) -> None:
    if not isinstance(key_id, str) or not key_id or len(key_id) > 2048:
        raise KeyResolutionError("invalid", "keyId missing or too long")
    if key_id[:5].lower() == "acct:":
        raise KeyResolutionError("invalid", "acct: keyIds are never resolved")
    if not same_origin(key_id, key_id):
        raise KeyResolutionError("invalid", "keyId is not an http(s) URL")


def _from_fetch(exc: FetchError) -> KeyResolutionError:
    if exc.kind == "policy":
        return KeyResolutionError("policy", exc.reason, status=exc.status)
    if exc.kind == "gone":
        return KeyResolutionError("gone", exc.reason, status=410)
    if exc.kind in ("transport", "status", "too-large"):
        return KeyResolutionError("unavailable", exc.reason, status=exc.status)
    return KeyResolutionError("rejected", exc.reason, status=exc.status)
