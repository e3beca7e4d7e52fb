"""RFC 9421 HTTP Message Signatures, inbound: strict parsing, coverage and the signature base.

Peers built on Fedify knock with RFC 9421 first, and Mastodon verifies it; accepting it saves
them a refused request and a second, cavage-signed one. :mod:`federation.signatures` calls
this module when a request carries ``Signature-Input`` and turns the result into the same
pending verification as a cavage signature, so the rest of the contract (allowlist before any
fetch, keyid → key → owner, one refetch for rotation) is shared.

Invariants (SECURITY.md §2.3):

- One signature is verified: the first label of ``Signature-Input``, which must also be in
  ``Signature``. Its ``keyid`` and ``created`` parameters are required; ``alg``, when given,
  must be ``rsa-v1_5-sha256``, the only primitive we verify (it is chosen from the key).
- Covered: ``@method``; the target, as ``@target-uri`` or as ``@authority`` (or ``host``) with
  ``@path`` or ``@request-target`` (plus ``@query`` when the request has one);
  ``content-digest`` on anything but GET and HEAD, recomputed from the raw body here.
- Derived components are computed from our canonical scheme and host and the raw target,
  never from what the request says they are; the received Host was already checked.
- Component parameters (``;sf``, ``;key``, ``;bs``, ``;req``, ``;tr``), ``@query-param`` and
  ``@status`` are refused: nothing we accept uses them, and each is one more place where the
  signer and we could disagree about what was signed.
- Every failure is a :class:`MessageSignatureError`; the caller answers 401.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from federation.structured import (
    InnerList,
    Item,
    StructuredError,
    parse_dictionary,
    serialize_inner_list,
    serialize_string,
)

ALGORITHM = "rsa-v1_5-sha256"
_DERIVED = frozenset(
    {"@method", "@target-uri", "@authority", "@scheme", "@request-target", "@path", "@query"}
)
_DIGESTS = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}
_MAX_COMPONENTS = 32
_MAX_FIELD = 8192  # as for a draft-cavage Signature header: bounds the parsing work


class MessageSignatureError(Exception):
    """The RFC 9421 signature is malformed, incomplete or does not match the request."""


@dataclass(frozen=True, slots=True)
class MessageSignature:
    """One parsed signature: what it covers, its parameters and its bytes."""

    label: str
    components: tuple[str, ...]
    key_id: str
    algorithm: str | None
    created: int
    expires: int | None
    signature: bytes
    params_value: str  # the canonical ``@signature-params`` value (RFC 9421 §2.3)


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What the derived components are made of: ours, not the request's claims."""

    method: str
    scheme: str
    authority: str
    raw_target: str  # raw path plus ``?query`` when there is one


def parse(signature_input: str, signature: str) -> MessageSignature:
    """The first signature of a request's ``Signature-Input`` and ``Signature`` fields."""
    if len(signature_input) > _MAX_FIELD or len(signature) > _MAX_FIELD:
        raise MessageSignatureError("signature fields too long")
    try:
        inputs = parse_dictionary(signature_input)
        values = parse_dictionary(signature)
    except StructuredError as exc:
        raise MessageSignatureError(f"malformed signature fields: {exc}") from None
    if not inputs:
        raise MessageSignatureError("Signature-Input is empty")
    label, described = next(iter(inputs.items()))
    if not isinstance(described, InnerList):
        raise MessageSignatureError("Signature-Input member is not an inner list")
    value = values.get(label)
    if not isinstance(value, Item) or not isinstance(value.value, bytes) or value.params:
        raise MessageSignatureError(f"Signature has no byte sequence for {label}")
    if not value.value:
        raise MessageSignatureError("empty signature")
    params = dict(described.params)
    key_id = params.get("keyid")
    if not isinstance(key_id, str) or not key_id:
        raise MessageSignatureError("keyid parameter missing")
    created = params.get("created")
    if isinstance(created, bool) or not isinstance(created, int) or created < 0:
        raise MessageSignatureError("created parameter missing")
    expires = params.get("expires")
    if expires is not None and (isinstance(expires, bool) or not isinstance(expires, int)):
        raise MessageSignatureError("malformed expires parameter")
    algorithm = params.get("alg")
    if algorithm is not None and algorithm != ALGORITHM:
        raise MessageSignatureError("unsupported signature algorithm")
    return MessageSignature(
        label=label,
        components=_components(described),
        key_id=key_id,
        algorithm=algorithm,
        created=created,
        expires=expires,
        signature=value.value,
        params_value=serialize_inner_list(described),
    )


def check_coverage(sig: MessageSignature, method: str, raw_target: str) -> None:
    covered = set(sig.components)
    if "@method" not in covered:
        raise MessageSignatureError("@method is not signed")
    if "@target-uri" not in covered:
        if not covered & {"@authority", "host"}:
            raise MessageSignatureError("neither @target-uri nor @authority is signed")
        if not covered & {"@path", "@request-target"}:
            raise MessageSignatureError("neither @target-uri nor @path is signed")
        if "?" in raw_target and not covered & {"@query", "@request-target"}:
            raise MessageSignatureError("the query is not signed")
    if method.upper() not in ("GET", "HEAD") and "content-digest" not in covered:
        raise MessageSignatureError("content-digest is not signed")


def signature_base(
    sig: MessageSignature, facts: RequestFacts, headers: Mapping[str, list[str]]
) -> bytes:
    """The bytes the signer signed (RFC 9421 §2.5), from *facts* and the received headers
    (lower-case names, every field line in order)."""
    path, has_query, query = facts.raw_target.partition("?")
    derived = {
        "@method": facts.method,  # as received: RFC 9421 §2.2.1 forbids changing its case
        "@target-uri": f"{facts.scheme}://{facts.authority}{facts.raw_target}",
        "@authority": facts.authority,
        "@scheme": facts.scheme,
        "@request-target": facts.raw_target,
        "@path": path,
        "@query": f"?{query}" if has_query else "?",
    }
    lines: list[str] = []
    for name in sig.components:
        if name in derived:
            value = derived[name]
        else:
            found = headers.get(name)
            if not found:
                raise MessageSignatureError(f"signed header {name} is missing")
            value = ", ".join(line.strip(" \t") for line in found)
            if not value.isascii() or not value.replace("\t", " ").isprintable():
                raise MessageSignatureError(f"signed header {name} is not printable ASCII")
        lines.append(f"{serialize_string(name)}: {value}")
    lines.append(f'"@signature-params": {sig.params_value}')
    return "\n".join(lines).encode("ascii")


def check_content_digest(value: str, body: bytes) -> None:
    """Recompute the body's digest: ``sha-256`` must be given; ``sha-512`` is checked too."""
    try:
        members = parse_dictionary(value)
    except StructuredError as exc:
        raise MessageSignatureError(f"malformed Content-Digest: {exc}") from None
    if "sha-256" not in members:
        raise MessageSignatureError("Content-Digest has no sha-256 value")
    for name, member in members.items():
        digest = _DIGESTS.get(name)
        if digest is None:
            continue  # an algorithm we do not know is ignored; sha-256 is still required
        if not isinstance(member, Item) or not isinstance(member.value, bytes):
            raise MessageSignatureError(f"Content-Digest {name} is not a byte sequence")
        if not hmac.compare_digest(member.value, digest(body).digest()):
            raise MessageSignatureError("Content-Digest does not match the body")


def _components(described: InnerList) -> tuple[str, ...]:
    names: list[str] = []
    if len(described.items) > _MAX_COMPONENTS:
        raise MessageSignatureError("too many covered components")
    for item in described.items:
        name = item.value
        if not isinstance(name, str):
            raise MessageSignatureError("a covered component is not a string")
        if item.params:
            raise MessageSignatureError(f"component parameters are not supported ({name})")
        if name.startswith("@"):
            if name not in _DERIVED:
                raise MessageSignatureError(f"unsupported derived component {name}")
        elif not name or name != name.lower() or not all(_is_tchar(c) for c in name):
            raise MessageSignatureError(f"malformed component name {name!r}")
        if name in names:
            raise MessageSignatureError(f"component {name} covered twice")
        names.append(name)
    return tuple(names)


def _is_tchar(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char in "!#$%&'*+-.^_`|~")
