"""Canonical IRIs of an instance's objects: the one place that builds them.

Local actors live at ``/users/<username>``, their notes at ``/users/<username>/notes/<id>``.
Everything is derived from the instance base URL (scheme, host and port, no trailing slash).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Urls:
    base: str

    def actor(self, username: str) -> str:
        return f"{self.base}/users/{username}"

    def note(self, username: str, post_id: int) -> str:
        return f"{self.base}/users/{username}/notes/{post_id}"

    def inbox(self, username: str) -> str:
        return f"{self.actor(username)}/inbox"

    def outbox(self, username: str) -> str:
        return f"{self.actor(username)}/outbox"

    def followers(self, username: str) -> str:
        return f"{self.actor(username)}/followers"

    def following(self, username: str) -> str:
        return f"{self.actor(username)}/following"

    def wall(self, username: str) -> str:
        return f"{self.actor(username)}/wall"

    def key_id(self, username: str) -> str:
        return f"{self.actor(username)}#main-key"

    @property
    def shared_inbox(self) -> str:
        return f"{self.base}/inbox"

    @property
    def instance_actor(self) -> str:
        return f"{self.base}/actor"

    @property
    def instance_username(self) -> str:
        """The instance actor's ``preferredUsername``: the host name, as on Mastodon, whose
        key fetches check ``acct:<it>@<host>`` by WebFinger before trusting the key."""
        return urlsplit(self.base).hostname or ""

    def tag(self, tag: str) -> str:
        return f"{self.base}/tags/{tag}"

    def profile_page(self, handle: str) -> str:
        return f"{self.base}/people/{handle}"

    def post_page(self, post_id: int) -> str:
        return f"{self.base}/posts/{post_id}"
