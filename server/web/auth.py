"""Sign in, sign out, change password."""

from __future__ import annotations

import secrets

from quart import Blueprint, current_app, flash, redirect, request, session, url_for
from quart.typing import ResponseReturnValue

from server.errors import SteelyardError
from server.services import accounts
from server.storage import users
from server.web.support import (
    client_address,
    ctx,
    login_required,
    render_template,
    require_viewer,
    safe_next,
    viewer,
)

blueprint = Blueprint("auth", __name__)


@blueprint.get("/login")
async def login() -> ResponseReturnValue:
    if viewer() is not None:
        return redirect(safe_next(request.args.get("next")))
    return await render_template("login.html", next=safe_next(request.args.get("next")))


@blueprint.post("/login")
async def login_post() -> ResponseReturnValue:
    form = await request.form
    username = form.get("username", "")[:200]
    next_url = safe_next(form.get("next"))
    try:
        account = await accounts.authenticate(
            ctx(), username, form.get("password", "")[:1024], client_address()
        )
    except SteelyardError as exc:
        return (
            await render_template(
                "login.html", error=exc.message, username=username, next=next_url
            ),
            exc.status,
        )
    session.clear()
    session.permanent = True
    session["uid"] = account.actor_id
    session["epoch"] = account.session_epoch
    session["sid"] = secrets.token_urlsafe(18)  # what signing out revokes (server side)
    return redirect(next_url)


@blueprint.post("/logout")
async def logout() -> ResponseReturnValue:
    sid = session.get("sid")
    if isinstance(sid, str):
        lifetime_ms = int(current_app.permanent_session_lifetime.total_seconds() * 1000)
        await ctx().db.write(users.revoke_session, sid, ctx().clock.now_ms(), lifetime_ms)
    session.clear()
    return redirect(url_for("auth.login"))


@blueprint.get("/settings/password")
@login_required
async def password() -> ResponseReturnValue:
    return await render_template("settings_password.html")


@blueprint.post("/settings/password")
@login_required
async def password_post() -> ResponseReturnValue:
    me = require_viewer()
    form = await request.form
    new = form.get("new_password", "")
    if new != form.get("confirm_password", ""):
        return (
            await render_template(
                "settings_password.html",
                error="The two new passwords differ.",
                error_field="confirm_password",
            ),
            400,
        )
    try:
        await accounts.change_password(ctx(), me.id, form.get("current_password", ""), new)
    except SteelyardError as exc:
        page = await render_template(
            "settings_password.html", error=exc.message, error_field=exc.field
        )
        return page, exc.status
    # The epoch moved: other sessions end, this one is renewed.
    acc = await accounts_epoch(me.id)
    session["epoch"] = acc
    await flash("Your password was changed. Other sessions were signed out.", "success")
    return redirect(url_for("auth.password"))


async def accounts_epoch(actor_id: int) -> int:
    account = await ctx().db.read(users.select_account, actor_id)
    return account.session_epoch if account else -1
