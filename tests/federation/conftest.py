"""Fixtures for in-process federation: alpha and beta allow each other; gamma is allowed by
beta only (alpha does not allow gamma, although gamma allows alpha)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from federation.signatures import generate_rsa_keypair
from server import federator, passwords
from tests.support.network import Instance, Network

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


@pytest.fixture
async def trio(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    instance_keypairs: list[tuple[str, str]],
) -> AsyncIterator[Trio]:
    # Instance (Application actor) keys come from their own pool: one distinct key each.
    keys = iter(instance_keypairs)
    monkeypatch.setattr(federator, "generate_rsa_keypair", lambda: next(keys))
    # Cheap scrypt for the many accounts these tests make (sign-in still verifies for real).
    monkeypatch.setattr(passwords, "_N", 2**10)
    net = Network(tmp_path)
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
