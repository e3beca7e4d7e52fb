"""Shared fixtures: a real instance folder with a real SQLite file, a running app, users."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from quart import Quart

from federation.signatures import generate_rsa_keypair
from server import cli, federator, passwords
from server.app import create_app
from server.domain import Actor
from server.services import accounts
from server.services.context import Context

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
def keypairs() -> Iterator[tuple[str, str]]:
    """Real RSA-2048 key pairs, generated a few at a time (key generation is slow)."""
    pool = [generate_rsa_keypair() for _ in range(4)]
    return itertools.cycle(pool)


@pytest.fixture(autouse=True)
def _reuse_keys(monkeypatch: pytest.MonkeyPatch, keypairs: Iterator[tuple[str, str]]) -> None:
    # Only the cost is saved: every account still gets a real RSA key pair.
    monkeypatch.setattr(accounts, "generate_rsa_keypair", lambda: next(keypairs))
    monkeypatch.setattr(federator, "generate_rsa_keypair", lambda: next(keypairs))
    # Cheaper scrypt for tests: the cost is stored in each hash, so verification is unchanged.
    monkeypatch.setattr(passwords, "_N", 2**12)


def make_instance(path: Path, url: str = "http://127.0.0.1:8000", name: str = "Test") -> Path:
    assert cli.cmd_init(path, url, name) == 0
    return path


@pytest.fixture
def instance_dir(tmp_path: Path) -> Path:
    return make_instance(tmp_path / "instance")


@pytest.fixture
async def app(instance_dir: Path) -> AsyncIterator[Quart]:
    application = create_app(instance_dir)
    async with application.test_app():
        yield application


def context_of(app: Quart) -> Context:
    ctx = app.config["STEELYARD_CONTEXT"]
    assert isinstance(ctx, Context)
    return ctx


@dataclass
class People:
    alice: Actor
    bob: Actor
    carol: Actor


@pytest.fixture
async def people(app: Quart) -> People:
    ctx = context_of(app)
    alice = await accounts.create_user(
        ctx, "alice", PASSWORD, display_name="Alice Example", is_admin=True
    )
    bob = await accounts.create_user(ctx, "bob", PASSWORD, display_name="Bob Builder")
    carol = await accounts.create_user(ctx, "carol", PASSWORD, display_name="Carol Clerk")
    return People(alice, bob, carol)
