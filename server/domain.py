"""Plain data of the enterprise network: frozen dataclasses and enums, no I/O.

Storage returns these, services take and return them, templates read them. An ``Actor`` is any
person we know of, local or remote; an ``Account`` is the sign-in side of a local actor.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class Visibility(enum.StrEnum):
    """Who may read a post. Internal never leaves the instance."""

    INTERNAL = "internal"
    FOLLOWERS = "followers"
    PUBLIC = "public"
    DIRECT = "direct"

    @property
    def label(self) -> str:
        return {
            "internal": "Internal (colleagues only)",
            "followers": "Followers",
            "public": "Public",
            "direct": "Direct (@mentioned only)",
        }[self.value]

    @property
    def short_label(self) -> str:
        """The label's first word ("Internal"), where the room is short (a card on a phone)."""
        return self.label.split(" (")[0]


class FollowState(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    FROZEN = "frozen"  # the remote host was removed from the allowlist


class NotificationKind(enum.StrEnum):
    FOLLOW = "follow"
    FOLLOW_REQUEST = "follow_request"
    MENTION = "mention"
    REPLY = "reply"
    LIKE = "like"
    WALL = "wall"
    BOOST = "boost"


@dataclass(frozen=True, slots=True)
class Actor:
    id: int
    uri: str
    is_local: bool
    username: str
    host: str
    display_name: str
    job_title: str
    department: str
    location: str
    contact: str
    bio_html: str
    avatar_file: str | None
    avatar_url: str | None
    profile_url: str | None
    manually_approves: bool
    created_at: int
    deleted_at: int | None

    @property
    def name(self) -> str:
        return self.display_name or self.username

    @property
    def initials(self) -> str:
        """One or two letters for the avatar placeholder: first and last word of the name."""
        letters = [w[0] for w in self.name.split() if w[:1].isalnum()]
        if not letters:
            return (self.username[:1] or "?").upper()
        return (letters[0] + (letters[-1] if len(letters) > 1 else "")).upper()

    @property
    def handle(self) -> str:
        """``alice`` for a colleague, ``bob@partner.example`` for a remote person."""
        return self.username if self.is_local else f"{self.username}@{self.host}"


@dataclass(frozen=True, slots=True)
class Account:
    actor_id: int
    username: str
    is_admin: bool
    is_active: bool
    session_epoch: int
    created_at: int
    # The password was generated or set by an admin: its holder must choose their own.
    must_change_password: bool = False


@dataclass(frozen=True, slots=True)
class Post:
    id: int
    uri: str
    author: Actor
    visibility: Visibility
    content_html: str
    source: str
    wall_owner: Actor | None
    in_reply_to_id: int | None
    thread_root_id: int
    version: int
    reply_count: int
    like_count: int
    created_at: int
    edited_at: int | None
    deleted_at: int | None
    liked_by_viewer: bool = False
    boosted_by_viewer: bool = False
    boost_count: int = 0  # local and remote boosts (Announce) of a Public post
    # In a feed: who boosted it into this feed (None for the post itself), and the entry's
    # position (the cursor for the next page: the post id, or the boost's feed position).
    boosted_by: Actor | None = None
    feed_key: int = 0
    # In a feed: the author of the post this one answers, when the viewer may read that post
    # (None for a post that answers nothing, or a parent that is deleted or hidden from them).
    reply_to: Actor | None = None

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


@dataclass(frozen=True, slots=True)
class PostVersion:
    post_id: int
    version: int
    content_html: str
    source: str
    visibility: Visibility
    created_at: int


@dataclass(frozen=True, slots=True)
class Notification:
    id: int
    kind: NotificationKind
    actor: Actor
    post_id: int | None
    post_snippet: str
    created_at: int
    read: bool


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a keyset-paged listing; ``next_cursor`` is None on the last page."""

    items: tuple[T, ...]
    next_cursor: int | None
