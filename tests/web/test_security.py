"""Hostile input through the web: XSS in every text field, uploads, IDs, headers."""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser

import pytest
from PIL import Image
from quart import Quart

from server.services import posting
from tests.conftest import PASSWORD, People, context_of
from tests.support.web import csrf_of, login, post_form

PAYLOADS = [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    '"><svg onload=alert(1)>',
    '<a href="javascript:alert(1)">x</a>',
    "<iframe src=//evil.example></iframe>",
    "javascript&#58;alert(1)",
]


class _Scanner(HTMLParser):
    """Finds live markup (elements and attributes), not text that merely looks like it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script" and values.get("src") != "/static/app.js":
            self.problems.append("script")
        own_image = (tag == "img" and (values.get("src") or "").startswith("/media/avatars/")) or (
            # The UI's own icons (server/web/icons.py), decoration only.
            tag == "svg"
            and (values.get("class") or "").startswith("icon icon-")
            and values.get("aria-hidden") == "true"
        )
        if tag in ("iframe", "svg", "math", "object", "embed", "img") and not own_image:
            self.problems.append(tag)
        for name, value in attrs:
            if name.startswith("on") or name == "style":
                self.problems.append(f"{tag}[{name}]")
            if name in ("href", "src", "action", "formaction") and value:
                cleaned = "".join(value.split()).lower()
                if cleaned.startswith(("javascript:", "vbscript:", "data:")):
                    self.problems.append(f"{tag}[{name}={value}]")


def _inert(html: str) -> bool:
    scanner = _Scanner()
    scanner.feed(html)
    return not scanner.problems


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_xss_in_posts_and_profile_fields_renders_inert(
    app: Quart, people: People, payload: str
) -> None:
    alice = app.test_client()
    await login(alice, "alice", PASSWORD)
    await post_form(alice, "/posts", {"text": f"hello {payload}", "visibility": "internal"})
    fields = {
        k: payload[:80] for k in ("display_name", "job_title", "department", "location", "contact")
    }
    saved = await post_form(
        alice,
        "/settings/profile",
        {**fields, "bio": f"<p>cv</p>{payload}"},
        token_from="/settings/profile",
    )
    assert saved.status_code == 303
    bob = app.test_client()
    await login(bob, "bob", PASSWORD)
    await post_form(bob, "/posts", {"text": payload, "wall_owner": "alice"})
    for path in ("/", "/people/alice", "/people?q=", "/settings/profile", "/notifications"):
        for client in (alice, bob):
            html = await (await client.get(path)).get_data(as_text=True)
            assert _inert(html), (path, payload)


async def test_xss_in_admin_created_display_name(app: Quart, people: People) -> None:
    admin = app.test_client()
    await login(admin, "alice", PASSWORD)
    await post_form(
        admin,
        "/admin/users",
        {"username": "evil", "display_name": "<script>alert(1)</script>"},
        token_from="/admin/users",
    )
    html = await (await admin.get("/admin/users")).get_data(as_text=True)
    assert _inert(html)
    assert "&lt;script&gt;" in html


async def test_security_headers_on_every_response(app: Quart, people: People) -> None:
    client = app.test_client()
    for path in ("/login", "/", "/nope", "/static/style.css"):
        response = await client.get(path)
        csp = response.headers.get("Content-Security-Policy", "")
        assert "default-src 'self'" in csp and "script-src 'self'" in csp, path
        assert "frame-ancestors 'none'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "same-origin"


async def test_pages_load_nothing_from_other_hosts(app: Quart, people: People) -> None:
    client = app.test_client()
    await login(client, "alice", PASSWORD)
    await posting.publish_post(
        context_of(app), people.alice, posting.Draft("see https://example.com")
    )
    for path in ("/login", "/", "/people", "/people/alice", "/settings/profile"):
        html = await (await client.get(path)).get_data(as_text=True)
        for attr in re.findall(r'(?:src|href)="([^"]+)"', html):
            if attr.startswith(("http://", "https://", "//")):
                # Only links inside posts may point elsewhere; nothing is *loaded* from there.
                assert not re.search(
                    rf'(?:src|rel="stylesheet"[^>]*href)="{re.escape(attr)}"', html
                ), attr
        assert '<script src="http' not in html and '<link rel="stylesheet" href="http' not in html


def _image_bytes(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, fmt)
    return buf.getvalue()


async def test_photo_upload_is_validated_and_reencoded(app: Quart, people: People) -> None:
    client = app.test_client()
    await login(client, "alice", PASSWORD)
    token = await csrf_of(client, "/settings/profile")
    from quart.datastructures import FileStorage

    good = await client.post(
        "/settings/photo",
        form={"csrf_token": token},
        files={
            "photo": FileStorage(
                io.BytesIO(_image_bytes("PNG")), filename="me.png", content_type="image/png"
            )
        },
    )
    assert good.status_code == 303
    profile = await (await client.get("/people/alice")).get_data(as_text=True)
    src = re.search(r'src="(/media/avatars/[^"]+)"', profile)
    assert src
    served = await client.get(src[1])
    assert served.status_code == 200
    assert served.headers["Content-Type"] == "image/jpeg"
    data = await served.get_data()
    assert data.startswith(b"\xff\xd8")
    for name, payload in (
        ("fake.png", b"<html><script>alert(1)</script></html>"),
        ("x.svg", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'),
        ("trunc.png", _image_bytes("PNG")[:40]),
    ):
        token = await csrf_of(client, "/settings/profile")
        bad = await client.post(
            "/settings/photo",
            form={"csrf_token": token},
            files={
                "photo": FileStorage(io.BytesIO(payload), filename=name, content_type="image/png")
            },
        )
        assert bad.status_code == 400, name
        assert (
            "not a valid image" in (await bad.get_data(as_text=True)).lower()
            or "image" in (await bad.get_data(as_text=True)).lower()
        )


async def test_oversized_upload_is_refused(app: Quart, people: People) -> None:
    client = app.test_client()
    await login(client, "alice", PASSWORD)
    token = await csrf_of(client, "/settings/profile")
    from quart.datastructures import FileStorage

    big = b"\x89PNG" + b"0" * (6 * 1024 * 1024)
    response = await client.post(
        "/settings/photo",
        form={"csrf_token": token},
        files={"photo": FileStorage(io.BytesIO(big), filename="big.png", content_type="image/png")},
    )
    assert response.status_code == 413
    # Said beside the photo field, with the form still there: not a page of its own.
    page = await response.get_data(as_text=True)
    assert "The photo is larger than 5 MB" in page
    assert 'id="pf-photo"' in page and 'aria-invalid="true"' in page
    assert 'data-max-bytes="5242880"' in page  # app.js refuses it before sending, too
    # Signed in with a one-time password: that gate comes first, even for a photo too large.
    ctx = context_of(app)
    await ctx.db.write(
        lambda conn: conn.execute(
            "UPDATE accounts SET must_change_password = 1 WHERE actor_id = ?",
            (people.alice.id,),
        )
    )
    response = await client.post(
        "/settings/photo",
        form={"csrf_token": token},
        files={"photo": FileStorage(io.BytesIO(big), filename="big.png", content_type="image/png")},
    )
    page = await response.get_data(as_text=True)
    assert response.status_code == 413 and 'id="pf-photo"' not in page


async def test_avatar_path_traversal_is_refused(app: Quart, people: People) -> None:
    client = app.test_client()
    await login(client, "alice", PASSWORD)
    for name in ("..%2Fconfig.toml", "../secret_key", "avatar-1-0000000000000000.jpg.."):
        response = await client.get(f"/media/avatars/{name}")
        assert response.status_code == 404


async def test_malformed_ids_and_cursors(app: Quart, people: People) -> None:
    client = app.test_client()
    await login(client, "alice", PASSWORD)
    assert (await client.get("/posts/abc")).status_code == 404
    assert (await client.get("/posts/99999999999999999999999")).status_code == 404
    assert (await client.get("/?before=-1")).status_code == 400
    assert (await client.get("/tags/%3Cscript%3E")).status_code == 404
    assert (await client.get("/people/nobody")).status_code == 404
