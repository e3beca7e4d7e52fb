"""policy: exact allowlist matching with hostile spellings; http only for dev loopback."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from federation.policy import FederationPolicy, PolicyError


@dataclass
class MemoryAllowlist:
    hosts: set[str]
    asked: list[str] = field(default_factory=list)

    async def is_allowed(self, host: str) -> bool:
        self.asked.append(host)
        return host in self.hosts


def _policy(*hosts: str, development: bool = False) -> tuple[FederationPolicy, MemoryAllowlist]:
    allowlist = MemoryAllowlist(set(hosts))
    return FederationPolicy(allowlist, self_host="Acme.Example", development=development), allowlist


@pytest.mark.parametrize(
    "host", ["partner.example", "PARTNER.EXAMPLE", "partner.example.", "Partner.Example."]
)
async def test_spellings_of_an_allowed_host(host: str) -> None:
    policy, allowlist = _policy("partner.example")
    assert await policy.check_host(host) == "partner.example"
    assert allowlist.asked == ["partner.example"]


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("partner.example.evil.example", 403),
        ("evilpartner.example", 403),
        ("partner.example:8443", 403),  # a port makes it another host
        ("partner.example:443", 403),
        ("acme.example", 403),  # ourselves
        ("ACME.example.", 403),
        ("user@partner.example", 400),
        ("partner.example/x", 400),
        ("partner.example#", 400),
        ("partner .example", 400),
        ("partner%2eexample", 400),
        ("", 400),
        ("partner.example:x", 400),
    ],
)
async def test_hostile_hosts_are_refused(host: str, status: int) -> None:
    policy, _ = _policy("partner.example")
    with pytest.raises(PolicyError) as info:
        await policy.check_host(host)
    assert info.value.status == status


async def test_explicit_port_entries_match_exactly() -> None:
    policy, _ = _policy("partner.example:8443")
    assert await policy.check_host("PARTNER.example:8443") == "partner.example:8443"
    with pytest.raises(PolicyError):
        await policy.check_host("partner.example")
    assert await policy.check_url("https://partner.example:8443/x") == "partner.example:8443"


async def test_our_own_host_is_refused_even_if_listed() -> None:
    policy, allowlist = _policy("acme.example")
    with pytest.raises(PolicyError) as info:
        await policy.check_url("https://acme.example/users/alice")
    assert info.value.status == 403 and allowlist.asked == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://partner.example/users/bob", "partner.example"),
        ("https://PARTNER.example:443/users/bob", "partner.example"),
        ("HTTPS://partner.example./x#frag", "partner.example"),
    ],
)
async def test_check_url_accepts(url: str, expected: str) -> None:
    policy, _ = _policy("partner.example")
    assert await policy.check_url(url) == expected
    assert await policy.allows_url(url)


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("http://partner.example/users/bob", 400),  # plain http on a production instance
        ("ftp://partner.example/x", 400),
        ("//partner.example/x", 400),
        ("https://bob@partner.example/x", 400),
        ("https://partner.example@evil.example/x", 400),
        ("https://partner.example\t/x", 400),
        ("https://partner.example:8443/x", 403),
        ("https://partner.example.evil.example/x", 403),
        ("https://evil.example/partner.example", 403),
        ("not a url", 400),
        ("http://127.0.0.1:8000/x", 400),  # loopback, but not a development instance
    ],
)
async def test_check_url_refuses(url: str, status: int) -> None:
    policy, _ = _policy("partner.example", "127.0.0.1:8000")
    with pytest.raises(PolicyError) as info:
        await policy.check_url(url)
    assert info.value.status == status
    assert not await policy.allows_url(url)


async def test_development_allows_http_to_loopback_only() -> None:
    policy, _ = _policy(
        "127.0.0.1:8000", "localhost:8001", "[::1]:8002", "partner.example", development=True
    )
    assert await policy.check_url("http://127.0.0.1:8000/x") == "127.0.0.1:8000"
    assert await policy.check_url("http://localhost:8001/x") == "localhost:8001"
    assert await policy.check_url("http://[::1]:8002/x") == "[::1]:8002"
    with pytest.raises(PolicyError) as info:
        await policy.check_url("http://partner.example/x")
    assert info.value.status == 400
    assert await policy.check_url("https://partner.example/x") == "partner.example"
    assert policy.scheme_for("127.0.0.1:8000") == "http"
    assert policy.scheme_for("localhost") == "http"
    assert policy.scheme_for("partner.example") == "https"
    production, _ = _policy()
    assert production.scheme_for("127.0.0.1:8000") == "https"
    with pytest.raises(PolicyError):
        production.scheme_for("bad host")


def test_bad_self_host_is_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        FederationPolicy(MemoryAllowlist(set()), self_host="a/b", development=False)
