"""wellknown: acct parsing with hostile spellings, WebFinger binding, NodeInfo minimalism."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from federation.vocab import VocabError
from federation.wellknown import (
    host_meta_xml,
    nodeinfo,
    nodeinfo_links,
    parse_acct,
    parse_webfinger,
    webfinger_document,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bob@partner.example", ("bob", "partner.example")),
        ("@bob@partner.example", ("bob", "partner.example")),
        ("acct:bob@partner.example", ("bob", "partner.example")),
        ("ACCT:Bob@Partner.Example.", ("Bob", "partner.example")),
        ("bob@partner.example:8443", ("bob", "partner.example:8443")),
        ("bob@127.0.0.1:8000", ("bob", "127.0.0.1:8000")),
        ("b.o_b-1~@xn--bcher-kva.example", ("b.o_b-1~", "xn--bcher-kva.example")),
        ("bob@b\u00fccher.example", ("bob", "xn--bcher-kva.example")),
    ],
)
def test_parse_acct(value: str, expected: tuple[str, str]) -> None:
    assert parse_acct(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "bob",
        "@bob",
        "bob@",
        "@partner.example",
        "bob@@partner.example",
        "bob@evil.example@partner.example",
        "bob@mastodon.so/cial",  # CVE-2023-42451
        "bob@partner.example/",
        "bob@partner.example?x",
        "bob@partner.example#x",
        "bob@partner.example:0",
        "bob@partner.example:99999",
        "bob@partner.example:",
        "bob@part ner.example",
        "bob @partner.example",
        "bob@partner.example\n",
        "bob@partner%2eexample",
        "bob@127.1",
        "bob@2130706433",
        "bo/b@partner.example",
        "bo:b@partner.example",
        "b\u00f6b@partner.example",
        "b" * 65 + "@partner.example",
        "acct:@partner.example",
        "mailto:bob@partner.example",
        "https://partner.example/users/bob",
        "bob@" + "a" * 400,
    ],
)
def test_parse_acct_rejects_hostile_spellings(value: str) -> None:
    with pytest.raises(VocabError):
        parse_acct(value)


ACTOR = "https://partner.example/users/bob"


def _jrd(**overrides: Any) -> dict[str, Any]:
    doc = webfinger_document(
        subject="acct:bob@partner.example",
        actor_uri=ACTOR,
        profile_url="https://partner.example/@bob",
    )
    doc.update(overrides)
    return doc


def test_webfinger_round_trip() -> None:
    doc = _jrd()
    assert doc["aliases"] == [ACTOR, "https://partner.example/@bob"]
    got = parse_webfinger(
        doc, requested="acct:bob@partner.example", expected_host="partner.example"
    )
    assert got == ACTOR
    # Case-insensitive subject and host, ld+json profile type, a subject only in aliases.
    ld = {
        "subject": "https://partner.example/users/bob",
        "aliases": ["acct:BOB@Partner.Example"],
        "links": [
            {
                "rel": "self",
                "type": 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"',
                "href": ACTOR,
            }
        ],
    }
    assert parse_webfinger(
        ld, requested="acct:bob@partner.example", expected_host="PARTNER.example"
    )


def test_webfinger_group_document_and_last_self_link_wins() -> None:
    doc = webfinger_document(
        subject="acct:projx@acme.example",
        actor_uri="https://acme.example/groups/projx",
        profile_url="https://acme.example/groups/projx",
        actor_type="Group",
    )
    assert doc["aliases"] == ["https://acme.example/groups/projx"]
    assert doc["links"][-1]["properties"] == {"https://www.w3.org/ns/activitystreams#type": "Group"}
    both = {
        "subject": "acct:x@acme.example",
        "links": [
            {
                "rel": "self",
                "type": "application/activity+json",
                "href": "https://acme.example/u/x",
            },
            {
                "rel": "self",
                "type": "application/activity+json",
                "href": "https://acme.example/g/x",
            },
        ],
    }
    got = parse_webfinger(both, requested="acct:x@acme.example", expected_host="acme.example")
    assert got == "https://acme.example/g/x"


@pytest.mark.parametrize(
    "doc",
    [
        _jrd(subject="acct:mallory@partner.example"),
        _jrd(subject="acct:bob@evil.example"),
        _jrd(subject=None),
        _jrd(subject=5),
        _jrd(subject=ACTOR, aliases=[ACTOR]),  # http aliases do not name an account
        _jrd(
            links=[
                {
                    "rel": "self",
                    "type": "application/activity+json",
                    "href": "https://evil.example/u/bob",
                }
            ]
        ),
        _jrd(
            links=[
                {
                    "rel": "self",
                    "type": "application/activity+json",
                    "href": "https://partner.example.evil.example/u",
                }
            ]
        ),
        _jrd(
            links=[
                {
                    "rel": "self",
                    "type": "application/activity+json",
                    "href": "https://partner.example:8443/u",
                }
            ]
        ),
        _jrd(
            links=[
                {
                    "rel": "self",
                    "type": "application/activity+json",
                    "href": "http://partner.example@evil.example/",
                }
            ]
        ),
        _jrd(links=[{"rel": "self", "type": "text/html", "href": ACTOR}]),
        _jrd(links=[{"rel": "self", "type": "application/json", "href": ACTOR}]),
        _jrd(links=[{"rel": "self", "href": ACTOR}]),
        _jrd(links=[{"rel": "self", "type": "application/activity+json", "href": 5}]),
        _jrd(links=[{"rel": "self", "type": "application/activity+json", "href": "/users/bob"}]),
        _jrd(links="x"),
        _jrd(links=[]),
        _jrd(links=[{"rel": "self", "type": "application/activity+json", "href": ACTOR}] * 101),
        {"subject": "acct:bob@partner.example"},
    ],
)
def test_webfinger_spoofing_is_rejected(doc: dict[str, Any]) -> None:
    with pytest.raises(VocabError):
        parse_webfinger(doc, requested="acct:bob@partner.example", expected_host="partner.example")


def test_webfinger_junk_never_raises_anything_else() -> None:
    junks: list[Any] = [None, [], "x", {"subject": []}, {"aliases": {}, "subject": "acct:b@p.ex"}]
    for junk in junks:
        with pytest.raises(VocabError):
            parse_webfinger(junk, requested="acct:bob@partner.example", expected_host="p.example")


def test_host_meta_and_nodeinfo() -> None:
    root = ET.fromstring(host_meta_xml('https://acme.example"/>'))
    link = next(iter(root))
    assert link.get("template") == 'https://acme.example"/>/.well-known/webfinger?resource={uri}'
    assert nodeinfo_links("https://acme.example") == {
        "links": [
            {
                "rel": "http://nodeinfo.diaspora.software/ns/schema/2.1",
                "href": "https://acme.example/nodeinfo/2.1",
            }
        ]
    }
    assert nodeinfo("ACME", "0.1.0") == {
        "version": "2.1",
        "software": {"name": "steelyard", "version": "0.1.0"},
        "protocols": ["activitypub"],
        "services": {"inbound": [], "outbound": []},
        "openRegistrations": False,
        "usage": {"users": {}},
        "metadata": {"nodeName": "ACME", "federation": {"enabled": True}},
    }
