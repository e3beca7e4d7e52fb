"""types: media-type recognition (SECURITY.md §1.1, FEP-96ff) and addressing helpers."""

from __future__ import annotations

import pytest

from federation.types import (
    AS_ACCEPT,
    AS_MEDIA_TYPES,
    AS_PUBLIC,
    Addressing,
    is_activitystreams_media_type,
    is_public,
    parse_media_type,
)

ACCEPTED = [
    "application/activity+json",
    "application/activity+json; charset=utf-8",
    "Application/Activity+JSON;Charset=UTF-8",
    'application/ld+json; profile="https://www.w3.org/ns/activitystreams"',
    "application/ld+json; profile=https://www.w3.org/ns/activitystreams",
    'application/ld+json;profile="https://www.w3.org/ns/activitystreams";charset=utf-8',
    'application/ld+json; PROFILE="https://www.w3.org/ns/activitystreams"',
    'application/ld+json; profile="http://example.org/p https://www.w3.org/ns/activitystreams"',
]
REFUSED = [
    None,
    "",
    "application/json",
    "text/html",
    "text/html; charset=utf-8",
    "application/ld+json",
    'application/ld+json; profile="https://www.w3.org/ns/activitystreams/"',
    'application/ld+json; profile="https://example.org/activitystreams"',
    "application/activity+json, text/html",  # a repeated header joined by the transport
    "text/html, application/activity+json",
    'application/ld+json; profile="https://www.w3.org/ns/activitystreams"; profile="x"',
    'application/ld+json; profile="https://www.w3.org/ns/activitystreams',
    'application/ld+json; profile="https://www.w3.org/ns/activitystreams"x"',
    "application/activity+jsonx",
    "application/activity+json\x00",
    "application /activity+json",
    "application/activity+json; charset",
    "application/activity+json; =x",
    "application/activity\u00e9+json",
    "activity+json",
    "/activity+json",
    "x" * 2000,
]


@pytest.mark.parametrize("value", ACCEPTED)
def test_activitystreams_media_types_are_recognised(value: str) -> None:
    assert is_activitystreams_media_type(value)


@pytest.mark.parametrize("value", REFUSED)
def test_other_media_types_are_refused(value: str | None) -> None:
    assert not is_activitystreams_media_type(value)


def test_our_own_constants_are_accepted() -> None:
    for value in AS_MEDIA_TYPES:
        assert is_activitystreams_media_type(value)
    assert AS_ACCEPT == (
        'application/activity+json, application/ld+json; profile="https://www.w3.org/ns/'
        'activitystreams"'
    )


def test_parse_media_type_unquotes_and_lowercases() -> None:
    assert parse_media_type('Text/Plain; Charset="a\\"b"') == ("text/plain", {"charset": 'a"b'})
    assert parse_media_type('text/plain; a="x;y"') == ("text/plain", {"a": "x;y"})
    assert parse_media_type('text/plain; a="x,y"') == ("text/plain", {"a": "x,y"})


def test_public_aliases() -> None:
    assert is_public(AS_PUBLIC)
    assert is_public("as:Public")
    assert is_public("Public")
    assert not is_public("https://www.w3.org/ns/activitystreams#public")


def test_addressing() -> None:
    a = Addressing(to=("https://a.example/f",), cc=(AS_PUBLIC, "https://a.example/f"))
    assert a.recipients == ("https://a.example/f", AS_PUBLIC)
    assert a.public_in_cc and not a.public_in_to and a.is_public
    assert not Addressing().is_public
