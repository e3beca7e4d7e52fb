"""Fixtures for in-process federation: alpha and beta allow each other; gamma is allowed by
beta only (alpha does not allow gamma, although gamma allows alpha)."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from federation.delivery import ACTIVITY_JSON
from federation.signatures import generate_rsa_keypair
from federation.transport import DEFAULT_MAX_BYTES, HttpResponse
from server import federator, passwords
from server.domain import Actor
from tests.support.network import Instance, Network, RoutingTransport

# Enough distinct key pairs that, within one test, no two people and no two instances share
# a key: a forged signature with "the key of another actor" must really be another key.
_PEOPLE_KEYS = 10
_INSTANCE_KEYS = 3


@pytest.fixture(scope="session")
def keypairs() -> Iterator[tuple[str, str]]:
    """Overrides the root pool (4 pairs) with a larger one; still real RSA-2048 keys."""
    pool = [generate_rsa_keypair() for _ in range(_PEOPLE_KEYS)]
    return itertools.cycle(pool)


@pytest.fixture(scope="session")
def instance_keypairs() -> list[tuple[str, str]]:
    return [generate_rsa_keypair() for _ in range(_INSTANCE_KEYS)]


@dataclass
class Trio:
    net: Network
    alpha: Instance
    beta: Instance
    gamma: Instance


def quick_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, instance_keypairs: list[tuple[str, str]]
) -> Network:
    """A test network whose instances take their keys from the pool and hash passwords
    cheaply."""
    # Instance (Application actor) keys come from their own pool: one distinct key each.
    keys = iter(instance_keypairs)
    monkeypatch.setattr(federator, "generate_rsa_keypair", lambda: next(keys))
    # Cheap scrypt for the many accounts these tests make (sign-in still verifies for real).
    monkeypatch.setattr(passwords, "_N", 2**10)
    return Network(tmp_path)


@pytest.fixture
async def trio(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    instance_keypairs: list[tuple[str, str]],
) -> AsyncIterator[Trio]:
    net = quick_network(tmp_path, monkeypatch, instance_keypairs)
    alpha = await net.add("alpha")
    beta = await net.add("beta")
    gamma = await net.add("gamma")
    await alpha.allow("beta.example")
    await beta.allow("alpha.example")
    await beta.allow("gamma.example")
    await gamma.allow("beta.example")
    await gamma.allow("alpha.example")  # gamma would talk to alpha; alpha refuses
    try:
        yield Trio(net, alpha, beta, gamma)
    finally:
        await net.close()


# --- a peer that is not a Steelyard -----------------------------------------------------------

PEER = "delta.example"


class StaticPeer(RoutingTransport):
    """The test network, plus a server that is not a Steelyard: ``documents`` (URL → (media
    type, JSON)) are answered to GETs on their host; everything else is routed as usual."""

    def __init__(self, network: Network) -> None:
        super().__init__(network)
        self.documents: dict[str, tuple[str, dict[str, Any]]] = {}

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> HttpResponse:
        if url.split("/")[2] != PEER:
            return await super().request(
                method, url, headers=headers, body=body, max_bytes=max_bytes
            )
        found = self.documents.get(url) if method == "GET" else None
        if found is None:
            return HttpResponse(404, {}, b"", url)
        media_type, doc = found
        return HttpResponse(200, {"content-type": media_type}, json.dumps(doc).encode(), url)


@dataclass
class Peered:
    net: Network
    alpha: Instance
    alice: Actor
    peer: StaticPeer
    keys: list[tuple[str, str]]  # (private PEM, public PEM), three distinct keys

    def serve(self, url: str, doc: dict[str, Any], media_type: str = ACTIVITY_JSON) -> None:
        self.peer.documents[url] = (media_type, doc)


@pytest.fixture
async def peered(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    instance_keypairs: list[tuple[str, str]],
    keypairs: Iterator[tuple[str, str]],
) -> AsyncIterator[Peered]:
    net = quick_network(tmp_path, monkeypatch, instance_keypairs)
    peer = StaticPeer(net)
    net.transport = peer  # the instances added next talk through it
    alpha = await net.add("alpha")
    await alpha.allow(PEER)
    alice = await alpha.user("alice")
    peer_keys = [next(keypairs) for _ in range(3)]
    try:
        yield Peered(net, alpha, alice, peer, peer_keys)
    finally:
        await net.close()
