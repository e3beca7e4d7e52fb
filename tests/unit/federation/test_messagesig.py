"""RFC 9421 rules that the HTTP tests do not reach: the query, Content-Digest members, and
derived components computed from our own host and scheme."""

from __future__ import annotations

import base64
import hashlib

import pytest

from federation.messagesig import (
    MessageSignatureError,
    RequestFacts,
    check_content_digest,
    check_coverage,
    parse,
    signature_base,
)

_SIG = "sig1=:" + base64.b64encode(b"x" * 256).decode() + ":"


def _sig(components: str, params: str = ';created=1;keyid="https://b.example/k"') -> str:
    return f"sig1=({components}){params}"


def test_a_query_must_be_covered_when_the_target_is_not_the_full_uri() -> None:
    sig = parse(_sig('"@method" "@authority" "@path"'), _SIG)
    check_coverage(sig, "GET", "/users/alice/outbox")
    with pytest.raises(MessageSignatureError, match="query"):
        check_coverage(sig, "GET", "/users/alice/outbox?page=2")
    with_query = parse(_sig('"@method" "@authority" "@path" "@query"'), _SIG)
    check_coverage(with_query, "GET", "/users/alice/outbox?page=2")


def test_the_base_uses_our_scheme_host_and_raw_target() -> None:
    sig = parse(_sig('"@method" "@target-uri" "@authority" "@path" "@query" "accept"'), _SIG)
    facts = RequestFacts("GET", "https", "alpha.example", "/users/a%20b/outbox?page=2")
    base = signature_base(sig, facts, {"accept": [" application/activity+json ", "x/\ty"]})
    assert base.decode().split("\n") == [
        '"@method": GET',
        '"@target-uri": https://alpha.example/users/a%20b/outbox?page=2',
        '"@authority": alpha.example',
        '"@path": /users/a%20b/outbox',
        '"@query": ?page=2',
        '"accept": application/activity+json, x/\ty',  # a tab inside a value is fine
        '"@signature-params": ("@method" "@target-uri" "@authority" "@path" "@query"'
        ' "accept");created=1;keyid="https://b.example/k"',
    ]


@pytest.mark.parametrize(
    "components",
    ['"@query-param"', '"@status"', '"Accept"', '"@method" "@method"', '"@method";req', "tok"],
)
def test_unsupported_or_ambiguous_components_are_refused(components: str) -> None:
    with pytest.raises(MessageSignatureError):
        parse(_sig(components), _SIG)


def test_content_digest_members() -> None:
    body = b'{"type":"Create"}'

    def member(name: str, digest: bytes) -> str:
        return f"{name}=:{base64.b64encode(digest).decode()}:"

    good256 = member("sha-256", hashlib.sha256(body).digest())
    good512 = member("sha-512", hashlib.sha512(body).digest())
    check_content_digest(good256, body)
    check_content_digest(f"{good256}, {good512}, md5=:AAAA:", body)
    for bad in (
        good512,  # sha-256 is required
        f"{good256}, {member('sha-512', hashlib.sha512(b'other').digest())}",
        member("sha-256", hashlib.sha256(b"other").digest()),
        'sha-256="not bytes"',
        "sha-256=:AAAA",
    ):
        with pytest.raises(MessageSignatureError):
            check_content_digest(bad, body)


def test_oversized_signature_fields_are_refused_before_parsing() -> None:
    with pytest.raises(MessageSignatureError, match="too long"):
        parse(_sig('"@method"', ';created=1;keyid="' + "k" * 9000 + '"'), _SIG)
