"""Administration: accounts (create, deactivate, reactivate), the federation allowlist with
delivery health, the inbound activities that could not be applied, and the backups on record."""

from __future__ import annotations

import shlex
from typing import Any

from quart import Blueprint, flash, redirect, request, url_for
from quart.typing import ResponseReturnValue

from server.errors import SteelyardError
from server.services import accounts, allowlist, backups
from server.storage import federation as fed
from server.storage import users
from server.web.support import (
    admin_required,
    ask_to_confirm,
    ctx,
    is_confirmed,
    render_template,
    require_viewer,
)

blueprint = Blueprint("admin", __name__, url_prefix="/admin")
INBOUND_SHOWN = 20  # newest inbound activities not applied, listed on the federation page
# Received this long ago and still not applied: something is wrong (a burst is applied in
# seconds; a retry waits its backoff but is listed as retrying, with its error, anyway).
BACKLOG_STALLED_MS = 5 * 60 * 1000


@blueprint.get("/users")
@admin_required
async def user_list() -> ResponseReturnValue:
    listing = await ctx().db.read_in_thread(users.select_accounts)
    return await render_template("admin_users.html", listing=listing)


@blueprint.post("/users")
@admin_required
async def create_user() -> ResponseReturnValue:
    form = await request.form
    password = form.get("password", "") or accounts.generate_password()
    try:
        actor = await accounts.create_user(
            ctx(),
            form.get("username", ""),
            password,
            display_name=form.get("display_name", ""),
            is_admin=form.get("is_admin") == "on",
            created_by=require_viewer().id,
            one_time=True,  # generated or typed by the admin: either way not the person's own
        )
    except SteelyardError as exc:
        listing = await ctx().db.read_in_thread(users.select_accounts)
        return (
            await render_template(
                "admin_users.html",
                listing=listing,
                error=exc.message,
                error_field=exc.field,
                form=form,
            ),
            exc.status,
        )
    shown = "" if form.get("password") else f" One-time password: {password}"
    await flash(f"Account {actor.username} created.{shown}", "success")
    return redirect(url_for("admin.user_list"), 303)


@blueprint.post("/users/<username>/active")
@admin_required
async def set_active(username: str) -> ResponseReturnValue:
    form = await request.form
    active = form.get("active") == "1"
    if not active and not is_confirmed(form):
        return await ask_to_confirm(
            f"Deactivate {username}?",
            detail="They are signed out at once and cannot sign in until reactivated."
            " Their posts stay in the archive.",
            button="Deactivate",
            cancel=url_for("admin.user_list"),
            keep={"active": "0"},
        )
    actor = await accounts.set_active(ctx(), username, active=active, by=require_viewer().id)
    await flash(f"{actor.username} was {'reactivated' if active else 'deactivated'}.", "success")
    return redirect(url_for("admin.user_list"), 303)


@blueprint.post("/users/<username>/password")
@admin_required
async def reset_password(username: str) -> ResponseReturnValue:
    form = await request.form
    if not is_confirmed(form):
        return await ask_to_confirm(
            f"Give {username} a new password?",
            detail="Their current password stops working and they are signed out everywhere."
            " The new one-time password is shown to you once.",
            button="Reset password",
            cancel=url_for("admin.user_list"),
        )
    actor, password = await accounts.reset_password(ctx(), username, by=require_viewer().id)
    await flash(
        f"New one-time password for {actor.username}: {password} (shown once). Give it to"
        " them in person or by phone; they can change it under Settings, Password.",
        "success",
    )
    return redirect(url_for("admin.user_list"), 303)


# --- federation allowlist ------------------------------------------------------------------


async def _federation_page(
    *,
    error: str | None = None,
    error_field: str | None = None,
    form: Any = None,
    status: int = 200,
) -> ResponseReturnValue:
    listing = await allowlist.listing(ctx())
    failed, retrying, trouble = await ctx().db.read(fed.select_inbound_trouble, INBOUND_SHOWN)
    waiting, oldest_waiting = await ctx().db.read(fed.select_inbound_backlog)
    stalled = (
        oldest_waiting is not None and ctx().clock.now_ms() - oldest_waiting > BACKLOG_STALLED_MS
    )
    body = await render_template(
        "admin_federation.html",
        listing=listing,
        inbound_failed=failed,
        inbound_retrying=retrying,
        inbound_trouble=trouble,
        inbound_waiting=waiting,
        inbound_oldest_waiting=oldest_waiting,
        inbound_stalled=stalled,
        relations=allowlist.RELATIONS,
        note_limit=allowlist.NOTE_LIMIT,
        own_host=ctx().federator.host,
        error=error,
        error_field=error_field,
        form=form,
    )
    return body, status


@blueprint.get("/backups")
@admin_required
async def backup_state() -> ResponseReturnValue:
    overview = await backups.overview(ctx())
    return await render_template(
        "admin_backups.html",
        overview=overview,
        # Quoted as a shell would need it: the line is meant to be copied into one.
        instance_path=shlex.quote(str(ctx().config.instance_path.resolve())),
        stale_days=backups.STALE_AFTER_MS // (24 * 3600 * 1000),
    )


@blueprint.get("/federation")
@admin_required
async def federation() -> ResponseReturnValue:
    return await _federation_page()


@blueprint.post("/federation")
@admin_required
async def federation_allow() -> ResponseReturnValue:
    form = await request.form
    me = require_viewer()
    relation = form.get("relation", "")
    try:
        host = await allowlist.allow(
            ctx(),
            form.get("host", ""),
            relation=relation,
            note=form.get("note", ""),
            by=me.username,
            actor_id=me.id,
        )
    except SteelyardError as exc:
        return await _federation_page(
            error=exc.message, error_field=exc.field, form=form, status=exc.status
        )
    await flash(allowlist.added_message(host, relation), "success")
    return redirect(url_for("admin.federation"), 303)


@blueprint.post("/federation/<host>/remove")
@admin_required
async def federation_remove(host: str) -> ResponseReturnValue:
    me = require_viewer()
    try:
        canonical = allowlist.canonical_host(ctx(), host)
        # A host that is not (or no longer) allowed gets deny's clear error straight away.
        listed = await ctx().federator.allowlist.is_allowed(canonical)
        if listed and not is_confirmed(await request.form):
            return await ask_to_confirm(
                f"Remove {canonical} from the allowlist?",
                detail="Its queued deliveries are cancelled (kept for the record), follows"
                " with its people are frozen until it is allowed again, and its requests are"
                " refused from now on. What it sent stays in the archive.",
                button="Remove",
                cancel=url_for("admin.federation"),
            )
        cancelled = await allowlist.deny(ctx(), canonical, by=me.username, actor_id=me.id)
    except SteelyardError as exc:
        return await _federation_page(error=exc.message, status=exc.status)
    await flash(allowlist.removed_message(canonical, cancelled), "success")
    return redirect(url_for("admin.federation"), 303)


@blueprint.post("/federation/<host>/resend")
@admin_required
async def federation_resend(host: str) -> ResponseReturnValue:
    me = require_viewer()
    try:
        canonical = allowlist.canonical_host(ctx(), host)
        count, hurried = await allowlist.resend(ctx(), canonical, by=me.username, actor_id=me.id)
    except SteelyardError as exc:
        return await _federation_page(error=exc.message, status=exc.status)
    await flash(allowlist.resent_message(canonical, count, hurried), "success")
    return redirect(url_for("admin.federation"), 303)
