"""Signed GETs of remote ActivityPub documents, with every authenticity check on the answer.

Invariants:

- :meth:`Fetcher.fetch_object` asks the policy first: a URL whose host is not allowlisted
  (or is ours, or plain http outside development) causes no network I/O at all.
- Every request is signed by the instance actor (draft-cavage, ``(request-target) host
  date``), so allowlisted peers in authorized-fetch mode answer.
- Redirects are never followed (SECURITY.md §1.3: they carried identity to another host);
  a 3xx is an error.
- A document is accepted only with status 200, an ActivityStreams Content-Type (FEP-96ff,
  CVE-2024-25623), strict JSON (:func:`federation.jsonsafe.loads_activity`), at most
  ``max_bytes``, and an ``id`` equal to the requested URL (fragments ignored on both
  sides): a document is authentic only when it was served by its own id.
- Every failure is a :class:`FetchError` whose ``kind`` says why; a 410 is ``"gone"`` (the
  key resolver and the Delete-of-actor rule need it, SECURITY.md §2.2 step 11).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal
from urllib.parse import quote

from federation.jsonsafe import JSONRejected, loads_activity
from federation.policy import FederationPolicy, PolicyError
from federation.ports import SigningKey
from federation.signatures import KeyCache, sign_request
from federation.transport import HttpResponse, Transport, TransportError
from federation.types import AS_ACCEPT, RemoteActor, is_activitystreams_media_type, parse_media_type
from federation.vocab import VocabError, parse_actor, strip_fragment
from federation.wellknown import parse_acct, parse_webfinger

__all__ = ["FetchError", "FetchErrorKind", "Fetcher"]

FetchErrorKind = Literal[
    "policy",  # refused before any I/O (status: 400 malformed URL, 403 not allowed)
    "transport",  # network, DNS, TLS, timeout, refused address
    "too-large",  # body over max_bytes
    "redirect",  # a 3xx: never followed
    "gone",  # 410
    "status",  # any other non-200 status
    "content-type",  # not an ActivityStreams (or JRD) media type
    "json",  # not strict JSON
    "id-mismatch",  # the document's id is not the URL requested
    "invalid",  # the document does not parse as what was asked for
]
_JRD_TYPES = frozenset({"application/jrd+json", "application/json"})
_JRD_ACCEPT = "application/jrd+json, application/json"


class FetchError(Exception):
    """A fetch failed. ``status`` is the HTTP status (of the response, or of the policy
    refusal), ``document_id`` the id a mismatched document claimed (kind ``id-mismatch``)."""

    def __init__(
        self,
        kind: FetchErrorKind,
        reason: str,
        *,
        status: int | None = None,
        document_id: str | None = None,
    ) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind: FetchErrorKind = kind
        self.reason = reason
        self.status = status
        self.document_id = document_id


class Fetcher:
    """Fetches remote objects, actors and WebFinger answers for the instance actor."""

    __slots__ = ("_keys", "_max_bytes", "_now", "_policy", "_signer", "_transport")

    def __init__(
        self,
        transport: Transport,
        policy: FederationPolicy,
        signer: Callable[[], Awaitable[SigningKey]],
        keys: KeyCache,
        now: Callable[[], float],
        max_bytes: int = 1_048_576,
    ) -> None:
        self._transport = transport
        self._policy = policy
        self._signer = signer
        self._keys = keys
        self._now = now
        self._max_bytes = max_bytes

    @property
    def policy(self) -> FederationPolicy:
        return self._policy

    async def fetch_object(self, url: str) -> dict[str, Any]:
        """The document whose id is *url*, fetched from *url* with a signed GET."""
        await self._check_url(url)
        wanted = strip_fragment(url)
        response = await self._get(wanted, AS_ACCEPT)
        if not is_activitystreams_media_type(response.header("content-type")):
            raise FetchError("content-type", "not an ActivityStreams media type")
        doc = _json(response)
        claimed = doc.get("id")
        if not isinstance(claimed, str) or strip_fragment(claimed) != wanted:
            document_id = claimed if isinstance(claimed, str) and len(claimed) <= 2048 else None
            raise FetchError(
                "id-mismatch", "document id is not the URL requested", document_id=document_id
            )
        return doc

    async def fetch_actor(self, url: str) -> RemoteActor:
        """The actor at *url*, validated by :func:`federation.vocab.parse_actor`."""
        doc = await self.fetch_object(url)
        try:
            return parse_actor(doc, fetched_url=url)
        except VocabError as exc:
            raise FetchError("invalid", exc.reason) from None

    async def webfinger(self, acct: str) -> str:
        """The actor URI of *acct* (``user@host``, ``@user@host`` or ``acct:user@host``).

        The host is checked before any I/O; the answer must name the account and point to
        an actor on the same host, and that actor URL must itself pass the policy.
        """
        try:
            username, host = parse_acct(acct)
        except VocabError as exc:
            raise FetchError("invalid", exc.reason) from None
        try:
            host = await self._policy.check_host(host)
            scheme = self._policy.scheme_for(host)
        except PolicyError as exc:
            raise FetchError("policy", exc.reason, status=exc.status) from None
        resource = f"acct:{username}@{host}"
        url = f"{scheme}://{host}/.well-known/webfinger?resource={quote(resource, safe=':@')}"
        # A URL check too: it drops a default port and refuses http outside development.
        canonical_host = await self._check_url(url)
        response = await self._get(url, _JRD_ACCEPT)
        parsed = parse_media_type(response.header("content-type") or "")
        if parsed is None or parsed[0] not in _JRD_TYPES:
            raise FetchError("content-type", "WebFinger answer is not JRD")
        try:
            href = parse_webfinger(
                _json(response), requested=resource, expected_host=canonical_host
            )
        except VocabError as exc:
            raise FetchError("invalid", exc.reason) from None
        await self._check_url(href)
        return href

    async def _check_url(self, url: str) -> str:
        try:
            return await self._policy.check_url(url)
        except PolicyError as exc:
            raise FetchError("policy", exc.reason, status=exc.status) from None

    async def _get(self, url: str, accept: str) -> HttpResponse:
        signer = await self._signer()
        try:
            headers = sign_request(
                "GET",
                url,
                key_id=signer.key_id,
                private_key_pem=signer.private_key_pem,
                now=self._now(),
                extra_headers={"Accept": accept},
                keys=self._keys,
            )
        except ValueError as exc:
            # A URL sign_request cannot sign (non-ASCII path, say) is not one we fetch.
            raise FetchError("policy", f"unsignable URL: {exc}", status=400) from None
        try:
            response = await self._transport.request(
                "GET", url, headers=headers, max_bytes=self._max_bytes
            )
        except TransportError as exc:
            kind: FetchErrorKind = "too-large" if exc.kind == "too-large" else "transport"
            raise FetchError(kind, str(exc)) from None
        status = response.status
        if status == 410:
            raise FetchError("gone", "410 Gone", status=410)
        if 300 <= status < 400:
            raise FetchError("redirect", f"{status} redirect not followed", status=status)
        if status != 200:
            raise FetchError("status", f"HTTP {status}", status=status)
        return response


def _json(response: HttpResponse) -> dict[str, Any]:
    try:
        return loads_activity(response.body)
    except JSONRejected as exc:
        raise FetchError("json", exc.reason) from None
