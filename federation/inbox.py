"""The inbox: verify a signed POST, archive it, answer 202 (SECURITY.md §2.2, DESIGN flow b).

:class:`InboxReceiver` is the single trust boundary for inbound activities. It runs the
verification contract in order and fails closed at the first check that does not hold:

1. size (body and ``Content-Length``; duplicated framing headers are refused) → 413 / 400;
2. media type: ``application/activity+json``, ``application/ld+json`` (any profile) or
   ``application/json`` → 415 otherwise. Mastodon does not look at it at all; what makes a
   POST an activity is its verified signature, and the body is parsed as strict JSON either
   way. (Fetched documents are another matter: they need an ActivityStreams media type,
   SECURITY.md §1.1, in :mod:`federation.fetch`.)
3. :func:`~federation.signatures.prepare_verification`: strict Signature parsing, coverage,
   Host, Date window and body Digest → its status (400 / 401);
4. the keyId's host must be allowlisted → 403, *before* any key fetch or body parse;
5. strict JSON (:func:`~federation.jsonsafe.loads_activity`) with ``id``, ``type`` (read by
   :func:`federation.vocab.primary_type`, the rule the handlers use: ``["Like"]`` is a Like)
   and ``actor`` → 400;
6. origins (FEP-fe34): actor on the keyId's host, activity id on the actor's host, a Create's
   object id on the actor's host → 403;
7. key resolution and verification, refreshing the key at most once per request when the
   first verification fails (key rotation) → 401; a Delete of an actor whose key we never
   stored (or cannot obtain) is a 202 no-op that stores and fetches nothing (§2.2 step 11);
8. binding: the verified key's ``owner_uri`` must be the activity's actor → 401;
9. ``host_spoke`` (resets our delivery circuit for that host), then ``store_inbound``, which
   commits the raw headers and body; 202 only after it returned (a duplicate is also 202).
   A failing store is 503 so the sender retries, never 202.

A signed GET (:meth:`InboxReceiver.verify_get`) runs steps 3, 4 and 7, checks that the key's
owner is on the key's host, and then calls ``host_spoke`` too: any fully verified signed
request from a host tells us it is up.

Invariants:

- :meth:`InboxReceiver.receive` and :meth:`InboxReceiver.verify_get` never raise (except
  cancellation): anything unexpected becomes a 4xx/503 result and is logged.
- Logs name the activity id and host, never keys, signatures or bodies.
- The key-source throttling of refreshes across requests (one per actor per cool-off) is
  the :class:`KeySource`'s job; here a request triggers at most one refresh.
- No time source but the injected ``now`` (epoch seconds).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from federation import ports
from federation.hosts import host_of_url, normalize_host
from federation.jsonsafe import JSONRejected, loads_activity
from federation.signatures import (
    KeyCache,
    PendingVerification,
    SignatureError,
    prepare_verification,
    verify_signature,
)
from federation.vocab import primary_type

__all__ = [
    "InboxReceiver",
    "InboxResult",
    "KeySource",
    "VerifiedRequester",
    "is_activity_media_type",
    "is_inbox_media_type",
]

_log = logging.getLogger(__name__)

AS_PROFILE = "https://www.w3.org/ns/activitystreams"
_MAX_ID = 2048  # an activity or actor id longer than this is not an id we will store
_INBOX_MEDIA_TYPES = frozenset(
    {"application/activity+json", "application/ld+json", "application/json"}
)


class KeySource(Protocol):
    """What the inbox needs from key resolution (``federation.keys.KeyResolver``).

    ``resolve`` returns the key for exactly *key_id*, from the cache unless *refresh*; it
    raises (any exception) when the key cannot be obtained or is not bound to its owner.
    """

    async def resolve(self, key_id: str, *, refresh: bool = False) -> ports.KnownKey: ...

    async def known_key(self, key_id: str) -> ports.KnownKey | None:
        """The stored key for exactly *key_id*, or None; never any network I/O."""
        ...


@dataclass(frozen=True, slots=True)
class InboxResult:
    """The answer to give: ``status`` and a short ``reason`` safe to show the sender."""

    status: int
    reason: str
    activity_id: str | None = None


@dataclass(frozen=True, slots=True)
class VerifiedRequester:
    """Who signed a GET: the key's owner actor, its canonical host and the key id."""

    actor_uri: str
    host: str
    key_id: str


class _RefusedError(Exception):
    """Internal early exit carrying the result; never escapes this module."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Activity:
    id: str
    type: str
    actor: str
    actor_host: str
    is_actor_delete: bool


class InboxReceiver:
    """Verifies and archives inbound activities; one per instance, shared by all inboxes."""

    def __init__(
        self,
        *,
        canonical_host: str,
        allowlist: ports.Allowlist,
        keys: KeySource,
        store: ports.InboxStore,
        now: Callable[[], float],
        key_cache: KeyCache,
        max_body: int = 262_144,
        canonical_scheme: str = "https",
    ) -> None:
        # A malformed canonical host is our configuration error: say so at startup.
        self._host = normalize_host(canonical_host)
        self._scheme = canonical_scheme  # part of an RFC 9421 signature's @target-uri
        self._allowlist = allowlist
        self._keys = keys
        self._store = store
        self._now = now
        self._key_cache = key_cache
        self._max_body = max_body

    async def receive(
        self,
        *,
        method: str,
        raw_target: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        path_owner: str | None = None,
    ) -> InboxResult:
        """Run SECURITY.md §2.2 on one POST and say what to answer. Never raises.

        *raw_target* is the raw path plus ``?query``; *headers* are all received headers in
        order, duplicates included; *path_owner* is the local user whose personal inbox was
        addressed (None for the shared inbox), used for logging: the archive keeps the
        target.
        """
        where = path_owner or "shared"
        host: str | None = None
        activity_id: str | None = None
        try:
            _check_framing(headers, body, self._max_body)
            pending = self._prepare(method, raw_target, headers, body)
            host = pending.key_host
            await self._check_allowed(host)
            activity = _parse_activity(body)
            activity_id = activity.id
            if activity.actor_host != host:
                raise _RefusedError(403, "actor is not on the signing key's host")
            key = await self._verified_key(pending, noop_if_unknown=activity.is_actor_delete)
            if key is None:
                _log.info(
                    "inbox %s: Delete of unknown actor accepted as no-op (activity %s, host %s)",
                    where,
                    activity_id,
                    host,
                )
                return InboxResult(202, "accepted (unknown actor)", activity_id)
            if key.owner_uri != activity.actor:
                raise _RefusedError(401, "signing key does not belong to the activity's actor")
            return await self._archive(activity, pending, raw_target, headers, body, where)
        except _RefusedError as refused:
            return self._refusal(refused.status, refused.reason, where, activity_id, host)
        except SignatureError as exc:
            return self._refusal(exc.status, exc.reason, where, activity_id, host)
        except Exception:
            _log.exception(
                "inbox %s: unexpected error (activity %s, host %s)", where, activity_id, host
            )
            return InboxResult(400, "malformed request", activity_id)

    async def verify_get(
        self,
        *,
        raw_target: str,
        headers: Sequence[tuple[str, str]],
        method: str = "GET",
    ) -> VerifiedRequester | InboxResult:
        """Authenticate a signed GET of our objects (secure mode). Never raises.

        Returns the verified signer, or an :class:`InboxResult` refusal: 401 unsigned or
        invalid, 403 host not allowed (checked before any key fetch), 503 if the allowlist
        itself failed. No digest is required for GET; nothing is stored, except that a fully
        verified request resets the signer's host circuit (``host_spoke``).
        """
        host: str | None = None
        try:
            pending = self._prepare(method, raw_target, headers, b"")
            host = pending.key_host
            await self._check_allowed(host)
            key = await self._verified_key(pending, noop_if_unknown=False)
            if key is None:  # only possible with noop_if_unknown; kept for the type checker
                raise _RefusedError(401, "signing key unavailable")
            try:
                owner_host = host_of_url(key.owner_uri)
            except ValueError:
                raise _RefusedError(401, "key owner is not an http(s) URL") from None
            if owner_host != host:
                raise _RefusedError(401, "key owner is not on the key's host")
            await self._host_spoke(host, "signed GET")
            return VerifiedRequester(actor_uri=key.owner_uri, host=host, key_id=pending.key_id)
        except _RefusedError as refused:
            return self._refusal(refused.status, refused.reason, "GET", None, host)
        except SignatureError as exc:
            return self._refusal(exc.status, exc.reason, "GET", None, host)
        except Exception:
            _log.exception("signed GET %s: unexpected error (host %s)", raw_target[:200], host)
            return InboxResult(401, "signature could not be verified")

    def _prepare(
        self, method: str, raw_target: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> PendingVerification:
        return prepare_verification(
            method,
            raw_target,
            headers,
            body,
            canonical_host=self._host,
            canonical_scheme=self._scheme,
            now=self._now(),
        )

    async def _check_allowed(self, host: str) -> None:
        try:
            allowed = await self._allowlist.is_allowed(host)
        except Exception:
            # Our database failed, not the sender: 503 lets a partner retry, where a 403
            # would make it give up on the delivery for good.
            _log.exception("allowlist lookup failed (host %s)", host)
            raise _RefusedError(503, "temporarily unavailable") from None
        if not allowed:
            raise _RefusedError(403, "host is not allowed to federate with this instance")

    async def _verified_key(
        self, pending: PendingVerification, *, noop_if_unknown: bool
    ) -> ports.KnownKey | None:
        """The key that verifies *pending*, refreshed at most once; None means "no-op"."""
        if noop_if_unknown and await self._keys.known_key(pending.key_id) is None:
            # Delete of an actor we never stored a key for: nothing to delete, and no fetch
            # (floods of such Deletes must not make us call their servers, §2.2 step 11).
            return None
        key = await self._resolve(pending.key_id, refresh=False, noop_if_unknown=noop_if_unknown)
        if key is None:
            return None
        if verify_signature(pending, key.public_key_pem, keys=self._key_cache):
            return key
        # The cached key may be stale after a rotation: fetch it again, once. A key we know
        # that does not verify is refused even for an actor's Delete: only an unknown key
        # earns the no-op (a forged Delete of someone we know must not pass for accepted).
        key = await self._resolve(pending.key_id, refresh=True, noop_if_unknown=False)
        if key is None:
            return None
        if verify_signature(pending, key.public_key_pem, keys=self._key_cache):
            return key
        raise _RefusedError(401, "signature does not verify")

    async def _resolve(
        self, key_id: str, *, refresh: bool, noop_if_unknown: bool
    ) -> ports.KnownKey | None:
        try:
            key = await self._keys.resolve(key_id, refresh=refresh)
        except Exception as exc:
            if noop_if_unknown:
                return None
            _log.info("key %s could not be resolved: %s", key_id[:300], type(exc).__name__)
            raise _RefusedError(401, "signing key could not be obtained") from None
        if key.key_id != key_id:
            # The binding is keyId -> key -> owner; any other key proves nothing.
            raise _RefusedError(401, "key source returned a different key")
        return key

    async def _archive(
        self,
        activity: _Activity,
        pending: PendingVerification,
        raw_target: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        where: str,
    ) -> InboxResult:
        host = pending.key_host
        now_ms = int(self._now() * 1000)
        await self._host_spoke(host, f"activity {activity.id}")
        record = ports.InboundRecord(
            activity_id=activity.id,
            activity_type=activity.type,
            actor_uri=activity.actor,
            origin_host=host,
            key_id=pending.key_id,
            target=raw_target,
            headers=tuple((name, value) for name, value in headers),
            body=bytes(body),
            received_at_ms=now_ms,
        )
        try:
            stored = await self._store.store_inbound(record)
        except Exception:
            # Disk full or a locked database: never 202 for what was not committed.
            _log.exception(
                "inbox %s: storing failed (activity %s, host %s)", where, activity.id, host
            )
            return InboxResult(503, "temporarily unavailable", activity.id)
        if not stored:
            _log.info("inbox %s: duplicate (activity %s, host %s)", where, activity.id, host)
            return InboxResult(202, "accepted (duplicate)", activity.id)
        return InboxResult(202, "accepted", activity.id)

    async def _host_spoke(self, host: str, what: str) -> None:
        """Reset *host*'s delivery circuit; only ever after a request from it verified."""
        try:
            await self._store.host_spoke(host, int(self._now() * 1000))
        except Exception:
            # Only the circuit reset is lost; the request itself can still be answered.
            _log.exception("host_spoke failed (%s, host %s)", what, host)

    @staticmethod
    def _refusal(
        status: int, reason: str, where: str, activity_id: str | None, host: str | None
    ) -> InboxResult:
        _log.info(
            "inbox %s: refused %d %s (activity %s, host %s)",
            where,
            status,
            reason,
            activity_id,
            host,
        )
        return InboxResult(status, reason, activity_id)


def _check_framing(headers: Sequence[tuple[str, str]], body: bytes, max_body: int) -> None:
    if len(body) > max_body:
        raise _RefusedError(413, "body too large")
    found: dict[str, list[str]] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered in ("content-length", "content-type"):
            found.setdefault(lowered, []).append(value)
    for name, values in found.items():
        if len(values) > 1:
            raise _RefusedError(400, f"duplicated {name} header")
    lengths = found.get("content-length")
    if lengths:
        text = lengths[0].strip(" \t")
        if not text.isascii() or not text.isdigit() or len(text) > 15:
            raise _RefusedError(400, "malformed Content-Length")
        if int(text) > max_body:
            raise _RefusedError(413, "body too large")
        if int(text) != len(body):
            raise _RefusedError(400, "Content-Length does not match the body")
    types = found.get("content-type")
    if not types or not is_inbox_media_type(types[0]):
        raise _RefusedError(415, "Content-Type must be application/activity+json (or JSON)")


def is_inbox_media_type(value: str) -> bool:
    """True for what an inbox POST may be labelled: ``application/activity+json``,
    ``application/ld+json`` (any profile) or ``application/json`` (any parameters).

    Looser than for fetched documents on purpose: an inbox POST is authenticated by its
    signature, not by where it was served (FEP-96ff protects fetches), and Mastodon, the
    largest sender, accepts any Content-Type here.
    """
    media = value.partition(";")[0].strip(" \t").lower()
    return media in _INBOX_MEDIA_TYPES


def is_activity_media_type(value: str) -> bool:
    """True for ``application/activity+json`` or ``ld+json`` with the AS profile (FEP-96ff)."""
    media, _, rest = value.partition(";")
    media = media.strip(" \t").lower()
    if media == "application/activity+json":
        return True
    if media != "application/ld+json":
        return False
    for param in rest.split(";"):
        name, _, raw = param.strip(" \t").partition("=")
        if name.strip(" \t").lower() != "profile":
            continue
        raw = raw.strip(" \t")
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = raw[1:-1]
        # The profile parameter is a space-separated list of URIs (RFC 6906).
        return AS_PROFILE in raw.split()
    return False


def _parse_activity(body: bytes) -> _Activity:
    try:
        document = loads_activity(body)
    except JSONRejected as exc:
        raise _RefusedError(400, exc.reason) from None
    activity_id = _id_of(document.get("id"), "activity id")
    # The handlers read the type with the same rule, so the Create check below cannot be
    # skipped by a spelling the handlers would still treat as a Create.
    kind = primary_type(document.get("type"))
    if kind is None:
        raise _RefusedError(400, "activity has no type")
    actor = _id_of(_ref(document.get("actor")), "actor")
    actor_host = _host(actor, "actor")
    if _host(activity_id, "activity id") != actor_host:
        raise _RefusedError(403, "activity id is not on the actor's host")
    target = _ref(document.get("object"))
    if kind == "Create":
        # The actor must own what it creates (FEP-fe34); modifications are checked later
        # against the stored owner by the handlers.
        created = _id_of(target, "created object")
        if _host(created, "created object") != actor_host:
            raise _RefusedError(403, "created object is not on the actor's host")
    return _Activity(
        id=activity_id,
        type=kind,
        actor=actor,
        actor_host=actor_host,
        is_actor_delete=kind == "Delete" and target == actor,
    )


def _ref(value: Any) -> Any:
    """An id reference: a string, or an embedded object's ``id``."""
    if isinstance(value, Mapping):
        return value.get("id")
    return value


def _id_of(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_ID:
        raise _RefusedError(400, f"{what} is missing or not a string")
    return value


def _host(url: str, what: str) -> str:
    try:
        return host_of_url(url)
    except ValueError:
        raise _RefusedError(400, f"{what} is not an http(s) URL") from None
