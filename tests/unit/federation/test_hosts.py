"""Host canonicalisation: hostile spellings from SECURITY.md §1.1 must not alias a partner."""

from __future__ import annotations

import pytest

from federation.hosts import host_of_url, normalize_host, origin_of_url, same_origin

PARTNER = "partner.example"


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("partner.example", PARTNER),
        ("PARTNER.Example.", PARTNER),
        ("Partner.Example:8443", "partner.example:8443"),
        ("partner.example:443", "partner.example:443"),  # a given port is kept
        ("partner.example:0443", "partner.example:443"),
        ("ｐａｒｔｎｅｒ．ｅｘａｍｐｌｅ", PARTNER),  # fullwidth: compares by its IDNA result
        ("partner。example", PARTNER),  # ideographic full stop is a label separator
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
        ("xn--strae-oqa.de", "xn--strae-oqa.de"),  # an IDNA 2008 A-label stays usable
        ("localhost", "localhost"),
        ("localhost:8001", "localhost:8001"),
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.1:80", "127.0.0.1:80"),
        ("[::1]", "[::1]"),
        ("[0:0:0:0:0:0:0:1]:8080", "[::1]:8080"),
        ("[2001:DB8::1]", "[2001:db8::1]"),
        ("a-b.c-d.example", "a-b.c-d.example"),
        ("a" * 63 + ".example", "a" * 63 + ".example"),
    ],
)
def test_canonical_forms(raw: str, canonical: str) -> None:
    assert normalize_host(raw) == canonical


@pytest.mark.parametrize(
    "hostile",
    [
        "",
        " partner.example",
        "partner.example ",
        "part ner.example",
        "partner.example\t",
        "partner\n.example",
        "mastodon.so/cial",  # CVE-2023-42451
        "ｍａｓｔｏｄｏｎ．ｓｏ／ｃｉａｌ",  # fullwidth solidus maps to "/"
        "evil.example@partner.example",
        "evil.example＠partner.example",  # fullwidth commercial at maps to "@"
        "partner.example\\evil",
        "partner.example%2eevil",
        "%70artner.example",
        "partner.example?x",
        "partner.example#x",
        "partner.example:",
        "partner.example:http",
        "partner.example:-1",
        "partner.example:0",
        "partner.example:65536",
        "partner.example:+443",
        "partner.example:44 3",
        "partner.example:1:2",
        "::1",  # IPv6 must be bracketed
        "[::1",
        "[::1]x",
        "[fe80::1%eth0]",
        "[127.0.0.1]",
        "a..example",
        ".partner.example",
        "partner.example..",
        "-partner.example",
        "partner-.example",
        "part_ner.example",
        "ab--cd.example",  # reserved R-LDH label
        "xn--zzzz.example",  # not punycode
        "xn--abc-.example",  # punycode of plain ASCII
        "a" * 64 + ".example",
        ".".join(["a" * 60] * 5),  # longer than 253
        "partner.123",  # all-numeric top-level label
        "127.1",
        "2130706433",
        "0x7f000001",
        "017700000001",
        "0177.0.0.1",
        "127.000.000.001",
        "256.1.1.1",
        "0",
        "part\u200bner.example",  # zero-width space
        "partner.example\u0000",
        "x" * 2000,
    ],
)
def test_hostile_spellings_are_rejected(hostile: str) -> None:
    with pytest.raises(ValueError):
        normalize_host(hostile)


def test_lookalikes_do_not_alias_the_partner() -> None:
    assert normalize_host("partner.example.evil.example") != PARTNER
    assert normalize_host("evilpartner.example") != PARTNER
    assert normalize_host("раrtner.example") != PARTNER  # Cyrillic "ра"
    assert normalize_host("partner.example:8443") != PARTNER


def test_non_string_is_rejected() -> None:
    with pytest.raises(ValueError):
        normalize_host(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://partner.example/users/a", PARTNER),
        ("https://PARTNER.example.:443/users/a", PARTNER),
        ("HTTPS://partner.example", PARTNER),
        ("https://partner.example:8443/x", "partner.example:8443"),
        ("http://partner.example:80/x", PARTNER),
        ("http://partner.example:443/x", "partner.example:443"),
        ("https://partner.example:80/x", "partner.example:80"),
        ("https://bücher.example/x", "xn--bcher-kva.example"),
        ("http://127.0.0.1:8000/inbox", "127.0.0.1:8000"),
        ("http://[::1]:8000/inbox", "[::1]:8000"),
        ("https://partner.example/a#main-key", PARTNER),
        ("https://partner.example?x=1", PARTNER),
    ],
)
def test_host_of_url(url: str, host: str) -> None:
    assert host_of_url(url) == host


@pytest.mark.parametrize(
    "url",
    [
        "",
        "partner.example",
        "//partner.example/x",
        "ftp://partner.example/x",
        "javascript:alert(1)",
        "acct:alice@partner.example",
        "https:///x",
        "https://evil.example@partner.example/",
        "https://partner.example@evil.example/",
        "https://:@partner.example/",
        "https://evil.example\\@partner.example/",
        "https://partner.example\\.evil.example/",
        "https://partner\t.example/",  # urlsplit would silently drop the tab
        "https://partner.example\n/",
        " https://partner.example/",
        "https://partner.example:99999/",
        "https://partner.example:/",
        "https://[::1/",
        "https://127.1/",
        "https://2130706433/",
        "https://mastodon.so%2Fcial/",
    ],
)
def test_host_of_url_rejects(url: str) -> None:
    with pytest.raises(ValueError):
        host_of_url(url)


def test_origin_of_url() -> None:
    assert origin_of_url("HTTPS://Partner.Example:443/x") == ("https", PARTNER)
    assert origin_of_url("http://partner.example/x") == ("http", PARTNER)


def test_same_origin() -> None:
    assert same_origin("https://partner.example/a", "https://PARTNER.example:443/b#k")
    assert not same_origin("https://partner.example/a", "http://partner.example/a")
    assert not same_origin("https://partner.example/a", "https://partner.example:8443/a")
    assert not same_origin("https://partner.example/a", "https://partner.example.evil.example/")
    assert not same_origin("https://evil.example@partner.example/", "https://partner.example/")
    assert not same_origin("not a url", "not a url")
