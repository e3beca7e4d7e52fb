"""Fixtures for in-process federation: alpha and beta allow each other; gamma is allowed by
beta only (alpha does not allow gamma)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.network import Instance, Network


@dataclass
class Trio:
    net: Network
    alpha: Instance
    beta: Instance
    gamma: Instance


@pytest.fixture
async def trio(tmp_path: Path) -> AsyncIterator[Trio]:
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
