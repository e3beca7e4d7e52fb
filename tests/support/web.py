"""Helpers for web tests: sign in through the real form, carry the CSRF token."""

from __future__ import annotations

import re
from typing import Any

from quart.typing import TestClientProtocol as Client

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def csrf_of(client: Client, path: str = "/login") -> str:
    response = await client.get(path)
    body = await response.get_data(as_text=True)
    match = _CSRF.search(body)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


async def login(client: Client, username: str, password: str) -> None:
    token = await csrf_of(client, "/login")
    response = await client.post(
        "/login", form={"username": username, "password": password, "csrf_token": token}
    )
    assert response.status_code == 302, await response.get_data(as_text=True)


async def post_form(
    client: Client, path: str, form: dict[str, str], *, token_from: str = "/"
) -> Any:
    token = await csrf_of(client, token_from)
    return await client.post(path, form={**form, "csrf_token": token})
