"""Composition root: ``create_app`` wires config, database, services and the web layer.

Nothing here runs at import time and nothing is global, so several instances (alpha, beta,
gamma) can live in one test process. The database is opened (and migrated) when the app starts
serving; tests use ``async with app.test_app()`` which runs the same lifespan.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from quart import Quart, Response, g, redirect, request, session, url_for
from quart.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from federation.ports import StoredInbound
from server.bootstrap import (
    build_context,
    prepare_database,
    stop_each,
    try_exclusive_lock,
    wait_for_migrations,
)
from server.clock import Clock, SystemClock
from server.config import load_config
from server.errors import SteelyardError
from server.live import LiveRelay
from server.services import inbound
from server.storage import db, users
from server.web import (
    activitypub,
    admin,
    auth,
    cards,
    feed,
    live,
    notifications,
    people,
    posts,
)
from server.web.inbox_asgi import ASGIApp, InboxFastPath, is_inbox_path
from server.web.support import (
    NotSignedInRedirect,
    check_csrf,
    render_template,
    security_headers,
    template_globals,
)

ROOT = Path(__file__).resolve().parent.parent


def create_app(
    instance_path: Path | str,
    *,
    transport: Any = None,
    clock: Clock | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Quart:
    clock = clock or SystemClock()
    app = Quart(
        "steelyard",
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
        static_url_path="/static",
    )
    overrides = dict(overrides or {})
    run_workers = bool(overrides.pop("run_workers", True))
    live_relay = bool(overrides.pop("live_relay", False))
    config = load_config(Path(instance_path), overrides)
    context = build_context(config, clock, transport)

    async def handle_inbound(item: StoredInbound) -> None:
        await inbound.handle(context, item)

    context.federator.attach(handle_inbound)
    app.config.update(
        SECRET_KEY=config.secret_key,
        SESSION_COOKIE_NAME="steelyard_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.secure,
        PERMANENT_SESSION_LIFETIME=14 * 24 * 3600,
        # The cookie is set at sign-in; re-signing it on every response costs ~5 % of a page.
        SESSION_REFRESH_EACH_REQUEST=False,
        MAX_CONTENT_LENGTH=config.max_upload_bytes + 64 * 1024,
        BODY_TIMEOUT=30,
        TEMPLATES_AUTO_RELOAD=False,
        STEELYARD_CONTEXT=context,
        STEELYARD_TRANSPORT=transport,
    )
    app.jinja_env.globals.update(template_globals())
    app.config["STEELYARD_SYNC_JINJA"] = app.jinja_env.overlay(enable_async=False)
    app.jinja_env.globals["instance_name"] = config.name
    app.jinja_env.filters["datetime"] = _format_ms
    app.jinja_env.filters["iso"] = _iso_ms
    app.jinja_env.globals["render_card"] = lambda post, pc, focus_id=None: cards.post_card(
        post, pc, focus_id, _iso_ms, _format_ms
    )

    for blueprint in (
        activitypub.blueprint,
        auth.blueprint,
        feed.blueprint,
        posts.blueprint,
        people.blueprint,
        notifications.blueprint,
        admin.blueprint,
        live.blueprint,
    ):
        app.register_blueprint(blueprint)

    @app.before_serving
    async def open_database() -> None:
        background = _BackgroundLock(config.instance_path)
        app.config["STEELYARD_BACKGROUND"] = background
        if background.acquire():
            # The first process prepares the database and runs the federation workers.
            prepare_database(config, clock)
        else:
            await wait_for_migrations(config)
        await context.db.open()
        workers_here = run_workers and background.held
        await context.federator.start(run_workers=workers_here)
        if live_relay or (workers_here and context.federator.launcher is not None):
            # Several servers tell each other; a lone server only listens (for an applier).
            relay = LiveRelay(context.live, context.db, clock.now_ms, send=live_relay)
            app.config["STEELYARD_RELAY"] = relay
            await relay.start()

    @app.after_serving
    async def close_database() -> None:
        relay = app.config.get("STEELYARD_RELAY")
        steps = [relay.stop] if relay is not None else []
        await stop_each([*steps, context.federator.stop, context.db.close], app.logger)
        app.config["STEELYARD_BACKGROUND"].release()

    @app.before_request
    async def load_viewer() -> ResponseReturnValue | None:
        # Forms are small; only the photo upload may send more (checked again by the service).
        # (MAX_CONTENT_LENGTH above is the hard cap for every request, chunked ones included.)
        if is_inbox_path(request.path):
            return None  # federation: signed, size-capped and verified by its own pipeline
        if request.method == "POST" and request.path != "/settings/photo":
            length = request.content_length
            if length is None:  # chunked: read it (still capped by MAX_CONTENT_LENGTH)
                length = len(await request.get_data(cache=True))
            if length > config.max_form_bytes:
                return await _error_page(413, "What you sent is too large.")
        g.viewer = None
        g.account = None
        actor_id = session.get("uid")
        sid, epoch = session.get("sid"), session.get("epoch")
        if isinstance(actor_id, int) and isinstance(sid, str) and isinstance(epoch, int):
            found = await context.db.read(users.select_viewer, actor_id, sid, epoch)
            if found:
                g.account, g.viewer, g.unread = found
            else:
                session.clear()
        elif actor_id is not None:
            session.clear()  # a session from before sessions had ids: sign in again
        if request.method not in ("GET", "HEAD", "OPTIONS") and not await check_csrf():
            return await _error_page(
                400,
                "This form has expired or did not come from this site. Reload the page and "
                "try again.",
            )
        if g.account is not None and g.account.must_change_password:
            return await _to_own_password()
        return None

    async def _to_own_password() -> ResponseReturnValue | None:
        """A one-time password (generated, or set by an admin) opens only the page where
        its holder chooses their own: whoever else saw it cannot use the account."""
        endpoint = request.endpoint or ""
        if endpoint in _OPEN_WITH_ONE_TIME_PASSWORD or endpoint.startswith("activitypub."):
            return None
        message = "Choose your own password to go on: the one you signed in with was given to you."
        if request.headers.get("X-Requested-With") == "steelyard":
            return {"error": message}, 403
        return redirect(url_for("auth.password"), 303)

    headers_for_all = security_headers(secure=config.secure)

    @app.after_request
    async def add_security_headers(response: Response) -> Response:
        headers = response.headers
        for name, value in headers_for_all:
            if name == "Content-Security-Policy":
                headers.setdefault(name, value)  # a page may narrow it further
            else:
                headers[name] = value
        if g.get("viewer") is not None and "Cache-Control" not in headers:
            headers["Cache-Control"] = "private, no-store"
        return response

    @app.errorhandler(SteelyardError)
    async def steelyard_error(error: SteelyardError) -> ResponseReturnValue:
        return await _error_page(error.status, error.message)

    @app.errorhandler(NotSignedInRedirect)
    async def not_signed_in(_: Exception) -> ResponseReturnValue:
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> ResponseReturnValue:
        messages = {
            404: "This page does not exist, or you are not allowed to see it.",
            405: "This address does not accept that kind of request.",
            413: "What you sent is too large.",
        }
        code = error.code or 500
        account = g.get("account")
        if (
            code == 413
            and request.endpoint == "people.upload_photo"
            and account is not None
            and not account.must_change_password  # that gate still comes first
        ):
            # A phone's photo is often larger than the cap: say so beside the field, with
            # the form still there, not on a page of its own. (Refused while the form was
            # read, before the CSRF check: nothing is written, only the form is shown.)
            return await people.photo_too_large()
        return await _error_page(code, messages.get(code, error.description or "Error."))

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> ResponseReturnValue:
        if isinstance(error, sqlite3.Error) and db.is_unavailable(error):
            # Locked by another process, or a read-only or full disk: it passes, and the
            # transaction that failed wrote nothing.
            app.logger.warning(
                "database unavailable on %s %s: %s", request.method, request.path, error
            )
            return await _error_page(
                503,
                "The service is busy right now and nothing was changed. Please try again in a"
                " moment.",
                {"Retry-After": str(BUSY_RETRY_AFTER_S)},
            )
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return await _error_page(500, "Something went wrong on our side. It has been logged.")

    # Inbox POSTs skip Quart's request machinery (server/web/inbox_asgi.py).
    fast_path = InboxFastPath(cast(ASGIApp, app.asgi_app), context, headers_for_all)
    app.asgi_app = cast(Any, fast_path)  # type: ignore[method-assign]
    return app


BUSY_RETRY_AFTER_S = 5
_OPEN_WITH_ONE_TIME_PASSWORD = frozenset(
    {
        "auth.password",
        "auth.password_post",
        "auth.logout",
        "auth.login",
        "auth.login_post",
        "static",
    }
)  # the database is locked for seconds, not minutes, in practice


class _BackgroundLock:
    """Exactly one process per instance migrates the database, releases crashed leases and
    runs the federation workers: the one holding an exclusive lock on a file in the instance
    folder. With one process (the default) that is always this one. Others wait for the
    lock holder to have migrated (it holds the lock from before migrating)."""

    def __init__(self, instance_path: Path) -> None:
        self._path = instance_path / ".background.lock"
        self._fd: int | None = None
        self.held = False

    def acquire(self) -> bool:
        fd = try_exclusive_lock(self._path)
        if fd is None:
            return False
        self._fd, self.held = fd, True
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd, self.held = None, False


async def _error_page(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> ResponseReturnValue:
    extra = dict(headers or {})
    if request.headers.get("X-Requested-With") == "steelyard":
        return {"error": message}, status, extra
    return await render_template("error.html", status=status, message=message), status, extra


# time.gmtime + time.strftime: a feed page formats forty times, and this is 3.5x cheaper
# than going through an aware datetime (1.8 against 6.4 µs each, measured).
def _format_ms(value: int | None) -> str:
    if value is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(value // 1000))


def _iso_ms(value: int | None) -> str:
    if value is None:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value // 1000))
