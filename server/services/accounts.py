"""Accounts and profiles: create, sign in (throttled), change password, deactivate, edit profile.

There is no open sign-up: accounts are made by admins (web or CLI). A deactivated account
cannot sign in and its sessions end at once (the session epoch moves); its posts stay.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import sqlite3
from dataclasses import dataclass

from federation import vocab
from federation.signatures import generate_rsa_keypair
from server import passwords
from server.domain import Account, Actor
from server.errors import Conflict, Forbidden, InvalidInput, NotFound, TooManyRequests
from server.services import backups, federating
from server.services.context import Context
from server.storage import federation as fed
from server.storage import users

USERNAME_RE = re.compile(r"^[a-z0-9_][a-z0-9_.-]{0,29}$")
RESERVED = frozenset(
    {
        "actor",
        "inbox",
        "outbox",
        "users",
        "people",
        "posts",
        "tags",
        "static",
        "admin-api",
        "well-known",
        "nodeinfo",
        "login",
        "logout",
        "settings",
        "live",
        "notifications",
        "root",
    }
)
# Sign-in throttle: after this many failures in the window, refuse until it passes. Per
# account it is tight; per client address it is looser, because people behind one NAT or an
# unconfigured reverse proxy share an address (README: [server] proxy_hops).
MAX_FAILURES = 5
MAX_CLIENT_FAILURES = 30
FAILURE_WINDOW_MS = 15 * 60 * 1000

PROFILE_LIMITS = {
    "display_name": 80,
    "job_title": 120,
    "department": 120,
    "location": 120,
    "contact": 200,
}
BIO_LIMIT = 10_000


def validate_username(username: str) -> str:
    name = username.strip().lower()
    if not USERNAME_RE.match(name):
        raise InvalidInput(
            "A username has 1-30 characters: lowercase letters, digits, '_', '.' or '-',"
            " and starts with a letter, digit or '_'.",
            field="username",
        )
    if name in RESERVED:
        raise InvalidInput(f"The username {name!r} is reserved.", field="username")
    return name


def _clean_line(value: str, field: str, limit: int) -> str:
    value = " ".join(value.split())
    if len(value) > limit:
        raise InvalidInput(
            f"{field.replace('_', ' ').capitalize()} is too long (max {limit}).", field=field
        )
    return value


async def create_user(
    ctx: Context,
    username: str,
    password: str,
    *,
    display_name: str = "",
    is_admin: bool = False,
    created_by: int | None = None,
    one_time: bool = False,
) -> Actor:
    """Create a local account with a fresh RSA-2048 key pair (kept in the database).
    *one_time*: the password was generated or chosen by an admin, so its holder must choose
    their own at first sign-in."""
    name = validate_username(username)
    if name == ctx.urls.instance_username:
        # WebFinger gives acct:<host name>@<host> to the instance actor (it signs our fetches).
        raise InvalidInput(f"The username {name!r} is reserved.", field="username")
    display_name = _clean_line(display_name, "display_name", PROFILE_LIMITS["display_name"])
    passwords.check_policy(password, username=name)
    if await ctx.db.read(users.local_username_taken, name):
        raise Conflict(f"The username {name!r} is already taken.", field="username")
    # Slow on purpose (scrypt, RSA): off the event loop so other requests keep flowing.
    password_hash = await asyncio.to_thread(passwords.hash_password, password)
    private_pem, public_pem = await asyncio.to_thread(generate_rsa_keypair)
    now = ctx.clock.now_ms()

    def tx(conn: sqlite3.Connection) -> int:
        if users.local_username_taken(conn, name):
            raise Conflict(f"The username {name!r} is already taken.", field="username")
        actor_id = users.insert_local_user(
            conn,
            uri=ctx.urls.actor(name),
            username=name,
            host=ctx.config.host,
            display_name=display_name,
            password_hash=password_hash,
            is_admin=is_admin,
            private_key_pem=private_pem,
            public_key_pem=public_pem,
            now_ms=now,
            one_time=one_time,
        )
        users.insert_audit(
            conn,
            actor_id=created_by,
            action="account.create",
            detail=f"{name}{' (admin)' if is_admin else ''}",
            now_ms=now,
        )
        return actor_id

    actor_id = await ctx.db.write(tx)
    actor = await ctx.db.read(users.select_actor, actor_id)
    assert actor is not None
    return actor


@dataclass(frozen=True, slots=True)
class SignedIn:
    account: Account


async def authenticate(ctx: Context, username: str, password: str, client: str) -> Account:
    """Check a sign-in; throttled per username and per client address.

    The same message and the same time spent for unknown users and wrong passwords, so the
    form does not tell which usernames exist. Only someone who knows the password learns
    that the account is deactivated, and whom to ask.
    """
    user_key = f"user:{username.strip().lower()[:64]}"
    client_key = f"client:{client[:64]}"
    limits = ((user_key, MAX_FAILURES), (client_key, MAX_CLIENT_FAILURES))
    now = ctx.clock.now_ms()

    def reserve(conn: sqlite3.Connection) -> int | None:
        """Count this attempt as a failure before the password is checked, in the same
        transaction as the check of the limit: concurrent guesses cannot all slip in while
        each other's scrypt runs. Returns the minutes to wait when refused."""
        for key, limit in limits:
            found = users.select_login_failures(conn, key)
            if found and found[0] >= limit and found[1] >= now - FAILURE_WINDOW_MS:
                return max(1, (found[1] + FAILURE_WINDOW_MS - now) // 60000)
        for key, _ in limits:
            users.record_login_failure(conn, key, now, FAILURE_WINDOW_MS)
        return None

    wait_min = await ctx.db.write(reserve)
    if wait_min is not None:
        raise TooManyRequests(f"Too many failed sign-ins. Try again in about {wait_min} minutes.")
    creds = await ctx.db.read(users.select_credentials, username.strip())
    if creds is None:
        await asyncio.to_thread(passwords.dummy_verify, password)
        ok = False
    else:
        ok = await asyncio.to_thread(passwords.verify_password, password, creds.password_hash)
    if not ok or creds is None:
        raise InvalidInput("Wrong username or password.")  # counted already, by reserve()
    if not creds.account.is_active:
        raise Forbidden("This account is deactivated. Ask your administrator if you need it back.")

    def succeed(conn: sqlite3.Connection) -> None:
        users.clear_login_failures(conn, user_key)
        users.forgive_login_failure(conn, client_key)  # this attempt did not fail

    await ctx.db.write(succeed)
    return creds.account


async def change_password(ctx: Context, actor_id: int, current: str, new: str) -> None:
    stored = await ctx.db.read(users.select_password_hash, actor_id)
    account = await ctx.db.read(users.select_account, actor_id)
    if stored is None or account is None:
        raise NotFound("No such account.")
    if not await asyncio.to_thread(passwords.verify_password, current, stored):
        raise InvalidInput("The current password is wrong.", field="current_password")
    passwords.check_policy(new, username=account.username)
    await set_password(ctx, actor_id, new)


async def set_password(ctx: Context, actor_id: int, new: str, *, one_time: bool = False) -> None:
    """Store a new password; *one_time*: someone other than its holder chose or saw it."""
    new_hash = await asyncio.to_thread(passwords.hash_password, new)
    await ctx.db.write(users.update_password, actor_id, new_hash, one_time=one_time)


async def reset_password(ctx: Context, username: str, *, by: int) -> tuple[Actor, str]:
    """An admin gives someone a new one-time password (forgotten, or a generated one never
    received): their sessions end. Returns the person and the password, to be shown once."""
    actor = await ctx.db.read(users.select_local_actor, username.strip())
    if actor is None or actor.deleted_at is not None:
        raise NotFound(f"No user named {username!r}.")
    if actor.id == by:
        raise Forbidden("Change your own password under Settings, with your current one.")
    password = generate_password()
    await set_password(ctx, actor.id, password, one_time=True)
    return actor, password


async def set_active(ctx: Context, username: str, *, active: bool, by: int | None) -> Actor:
    actor = await ctx.db.read(users.select_local_actor, username.strip())
    if actor is None:
        raise NotFound(f"No user named {username!r}.")
    if by is not None and by == actor.id and not active:
        raise Forbidden("You cannot deactivate your own account.")
    if active and actor.deleted_at is not None:
        raise Forbidden(f"{actor.username} was deleted; a deleted account cannot come back.")
    now = ctx.clock.now_ms()

    def tx(conn: sqlite3.Connection) -> None:
        users.update_account_active(conn, actor.id, active=active, now_ms=now)
        users.insert_audit(
            conn,
            actor_id=by,
            action="account.activate" if active else "account.deactivate",
            detail=actor.username,
            now_ms=now,
        )

    await ctx.db.write(tx)
    return actor


async def delete_user(ctx: Context, username: str, *, by: int | None) -> Actor:
    """Delete an account for good: sign-in refused and sessions ended (as when deactivated),
    the person is gone from the directory and from federation, and partner servers are told
    (Delete{Person}). Nothing is erased: posts, versions and the profile stay in the archive.
    Unlike deactivation this cannot be undone, because a Delete is final for the receivers."""
    actor = await ctx.db.read(users.select_local_actor, username.strip())
    if actor is None:
        raise NotFound(f"No user named {username!r}.")
    if by is not None and by == actor.id:
        raise Forbidden("You cannot delete your own account.")
    if actor.deleted_at is not None:
        raise InvalidInput(f"{actor.username} is already deleted.")
    now = ctx.clock.now_ms()

    def tx(conn: sqlite3.Connection) -> None:
        users.update_account_active(conn, actor.id, active=False, now_ms=now)
        fed.mark_actor_deleted(conn, actor.id, now)
        federating.person_deleted_in_tx(
            conn, ctx.urls, actor_id=actor.id, username=actor.username, now_ms=now
        )
        users.insert_audit(
            conn, actor_id=by, action="account.delete", detail=actor.username, now_ms=now
        )

    await ctx.db.write(tx)
    ctx.federator.wake()
    return actor


async def federated_person(ctx: Context, username: str) -> Actor | None:
    """The local person *username* as the federation surface shows them (actor, inbox,
    WebFinger): None when unknown, deleted or deactivated, exactly like a missing one."""
    actor = await ctx.db.read(users.select_local_actor, username)
    if actor is None or actor.deleted_at is not None:
        return None
    account = await ctx.db.read(users.select_account, actor.id)
    return actor if account is not None and account.is_active else None


def generate_password() -> str:
    """A one-time password for new accounts (shown once)."""
    return secrets.token_urlsafe(12)


def editable_bio(ctx: Context, actor: Actor) -> str:
    """The CV / bio as its owner edits it (see ``TextRenderer.editable_source``)."""
    return ctx.text.editable_source(actor.bio_html)


async def update_profile(
    ctx: Context,
    actor_id: int,
    fields: dict[str, str],
    *,
    bio_source: str | None,
    manually_approves: bool | None = None,
) -> None:
    """Edit one's own profile; the previous version is kept."""
    cleaned: dict[str, str | int] = {
        key: _clean_line(fields.get(key, ""), key, limit) for key, limit in PROFILE_LIMITS.items()
    }
    if bio_source is not None:
        if len(bio_source) > BIO_LIMIT:
            raise InvalidInput(
                f"The CV / bio is too long (max {BIO_LIMIT} characters).", field="bio"
            )
        # Plain text keeps its paragraphs and line breaks; HTML is sanitized to the rich set.
        cleaned["bio_html"] = ctx.text.rich_from_source(bio_source)
    if manually_approves is not None:
        cleaned["manually_approves"] = int(manually_approves)
    await _save_profile(ctx, actor_id, cleaned)


async def set_avatar(ctx: Context, actor_id: int, data: bytes) -> str:
    """Validate and re-encode a profile photo; store it under a server-made name."""
    # Imported here: Pillow costs start-up time and memory that most requests never need.
    from server import images

    try:
        async with ctx.image_slots:
            encoded = await asyncio.to_thread(
                images.reencode_avatar, data, max_bytes=ctx.config.max_upload_bytes
            )
    except images.ImageRejected as exc:
        raise InvalidInput(str(exc), field="photo") from None
    name = f"avatar-{actor_id}-{secrets.token_hex(8)}.jpg"
    folder = ctx.config.uploads_dir
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = folder / f".{name}.tmp"
    tmp.write_bytes(encoded)
    tmp.replace(folder / name)
    await _save_profile(ctx, actor_id, {"avatar_file": name})
    return name


async def _save_profile(ctx: Context, actor_id: int, fields: dict[str, str | int]) -> None:
    """Store profile fields and, in the same transaction, queue ``Update{Person}`` for the
    person's followers on partner instances (none when there are none)."""
    now = ctx.clock.now_ms()

    def tx(conn: sqlite3.Connection) -> None:
        users.update_profile(conn, actor_id, fields, now)
        actor = users.select_actor(conn, actor_id)
        if actor is None or not actor.is_local:
            return
        person = vocab.person(
            ctx.urls,
            username=actor.username,
            display_name=actor.display_name,
            summary_html=actor.bio_html,
            public_key_pem=fed.select_public_key_pem(conn, actor_id) or "",
            manually_approves=actor.manually_approves,
            published_iso=federating.iso(actor.created_at),
        )
        if fed.select_remote_follower_inboxes(conn, actor_id):
            federating.profile_in_tx(conn, ctx.urls, actor_id=actor_id, person=person, now_ms=now)

    await ctx.db.write(tx)
    ctx.federator.wake()


@dataclass(frozen=True, slots=True)
class SetupStep:
    """One step of getting started, shown on the home page until every step is done."""

    label: str
    endpoint: str  # the page where it is done
    done: bool


async def getting_started(ctx: Context, actor: Actor, *, is_admin: bool) -> list[SetupStep]:
    """What a new instance (for its admins) or a new person still has to do, or [] when
    all is done. An admin's first sign-in otherwise lands on an empty feed with no word on
    where accounts and partners are added."""
    profile = SetupStep(
        "Add your job title and a photo, so colleagues recognise you",
        "people.edit_profile",
        bool(actor.job_title),
    )
    steps = [profile]
    if is_admin:
        people = await ctx.db.read(users.count_local_users)
        partners = await ctx.db.read(fed.select_active_hosts)
        backed_up = await backups.has_backup(ctx)
        steps = [
            SetupStep("Create accounts for your colleagues", "admin.user_list", people > 1),
            SetupStep(
                "Allow your partners', suppliers' and customers' servers to federate",
                "admin.federation",
                bool(partners),
            ),
            SetupStep("Set up nightly backups of the instance", "admin.backup_state", backed_up),
            profile,
        ]
    return [] if all(step.done for step in steps) else steps
