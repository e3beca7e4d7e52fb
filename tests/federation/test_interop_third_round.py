"""Third interop round: shapes real senders use that we refused before.

- an actor that names its key by reference only, the PEM in a key document of its own
  (Mastodon resolves this form: ``FetchRemoteKeyService#confirmed_owner?`` compares
  ``value_or_id(owner['publicKey'])`` with the key document's id);
- Lemmy 0.19.3's site actor, which signs Lemmy's fetches (``federation_signed_fetch``) and
  has no ``preferredUsername`` (Lemmy PR #4713);
- a signed GET of one of our actors whose signature we cannot verify gets the key-only
  actor an unsigned GET gets (Mastodon's barebones actor), not 401: the peer needs our key;
- a PeerTube ``Video`` (and an ``Event``, ``Audio``, ``Image``) is shown as its title, its
  description and a link to where its server shows it, as Mastodon converts them, instead of
  being dropped;
- the key-only actor carries ``outbox``: Lemmy fetches actors unsigned by default and its
  ``Person`` cannot be read without one;
- a WordPress article's ``summary`` is its excerpt, shown under the title, and a content
  warning only when the article is marked ``sensitive`` (wordpress-activitypub #735, #900);

Each relaxation comes with the check it must not weaken.
"""

from __future__ import annotations

import json
from typing import Any

from server.domain import Visibility
from server.services import posting
from tests.federation.conftest import PEER, Peered
from tests.federation.support import (
    AS_CONTEXT,
    Sent,
    actor_by_uri,
    copy_of,
    digest_of,
    http_date,
    plain_get,
    raw_post,
    sign_custom,
    signed_get,
)
from tests.federation.test_interop_keys_and_hosts import like_by
from tests.federation.test_interop_shapes import SECURITY_CONTEXT, like_count, send

ERIN = f"https://{PEER}/users/erin"
ERIN_KEY = f"https://{PEER}/keys/erin-1"


def erin(public_key: Any) -> dict[str, Any]:
    return {
        "@context": [AS_CONTEXT, SECURITY_CONTEXT],
        "id": ERIN,
        "type": "Person",
        "preferredUsername": "erin",
        "name": "Erin",
        "inbox": f"{ERIN}/inbox",
        "outbox": f"{ERIN}/outbox",
        "followers": f"{ERIN}/followers",
        "publicKey": public_key,
    }


def key_document(key_id: str, owner: str, public_pem: str) -> dict[str, Any]:
    # Served without the ActivityStreams context, as Mastodon PR #37826 (2026) says they are.
    return {
        "@context": SECURITY_CONTEXT,
        "id": key_id,
        "type": "Key",
        "owner": owner,
        "publicKeyPem": public_pem,
    }


async def test_a_key_named_by_reference_in_its_own_document_signs(peered: Peered) -> None:
    p = peered
    private_pem, public_pem = p.keys[0]
    p.serve(ERIN, erin(ERIN_KEY))
    p.serve(ERIN_KEY, key_document(ERIN_KEY, ERIN, public_pem))
    assert (await like_by(p, ERIN, ERIN_KEY, private_pem, 1)).status == 202
    stored = await actor_by_uri(p.alpha, ERIN)
    assert stored is not None and stored.username == "erin"


async def test_a_key_document_claiming_an_owner_that_does_not_name_it_is_refused(
    peered: Peered,
) -> None:
    """Mallory (same server) serves a key document naming Erin as owner: Erin's actor names
    another key, so Mallory's key opens nothing in Erin's name."""
    p = peered
    erin_public, (mal_private, mal_public) = p.keys[0][1], p.keys[1]
    mal_key = f"https://{PEER}/keys/mallory"
    p.serve(ERIN, erin(ERIN_KEY))
    p.serve(ERIN_KEY, key_document(ERIN_KEY, ERIN, erin_public))
    p.serve(mal_key, key_document(mal_key, ERIN, mal_public))
    assert (await like_by(p, ERIN, mal_key, mal_private, 1)).status == 401


async def test_a_referenced_key_is_not_taken_from_an_actors_own_update(peered: Peered) -> None:
    """An Update{Person} naming its key by reference carries no PEM: nothing is stored under
    the key id until the key document itself is fetched (the resolver's rules)."""
    p = peered
    (old_private, old_public), (new_private, new_public) = p.keys[0], p.keys[1]
    p.serve(ERIN, erin(ERIN_KEY))
    p.serve(ERIN_KEY, key_document(ERIN_KEY, ERIN, old_public))
    assert (await like_by(p, ERIN, ERIN_KEY, old_private, 1)).status == 202
    new_key = f"https://{PEER}/keys/erin-2"
    update = {
        "@context": [AS_CONTEXT, SECURITY_CONTEXT],
        "id": f"{ERIN}#updates/1",
        "type": "Update",
        "actor": ERIN,
        "object": erin(new_key),
    }
    sent = await send(p.alpha, update, key_id=ERIN_KEY, private_key_pem=old_private)
    assert sent.status == 202
    await p.net.settle()
    assert await p.alpha.ctx.federator.keys.known_key(new_key) is None
    # Once Erin serves the new key document, it resolves like any other.
    p.serve(ERIN, erin(new_key))
    p.serve(new_key, key_document(new_key, ERIN, new_public))
    post = await posting.publish_post(p.alpha.ctx, p.alice, posting.Draft("Hi", Visibility.PUBLIC))
    like = {"@context": AS_CONTEXT, "id": f"{ERIN}#likes/x", "type": "Like", "actor": ERIN}
    like["object"] = post.uri
    assert (await send(p.alpha, like, key_id=new_key, private_key_pem=new_private)).status == 202
    await p.net.settle()
    assert await like_count(p.alpha, post.id) == 1


# --- Lemmy 0.19.3: a site actor without preferredUsername signs its fetches -----------------

LEMMY_SITE = f"https://{PEER}/"


def lemmy_site(public_pem: str, kind: str = "Application") -> dict[str, Any]:
    """Lemmy 0.19.3's ``Instance`` (crates/apub/src/protocol/objects/instance.rs): no
    preferredUsername, the site name in ``name``, the sidebar in ``content``."""
    return {
        "@context": [AS_CONTEXT, SECURITY_CONTEXT],
        "type": kind,
        "id": LEMMY_SITE,
        "name": "Delta Lemmy",
        "inbox": f"{LEMMY_SITE}inbox",
        "outbox": f"{LEMMY_SITE}site_outbox",
        "publicKey": {
            "id": f"{LEMMY_SITE}#main-key",
            "owner": LEMMY_SITE,
            "publicKeyPem": public_pem,
        },
        "content": "<p>Sidebar</p>",
        "published": "2023-06-01T10:00:00.000000+00:00",
    }


async def test_a_lemmy_site_actor_without_preferred_username_may_sign_fetches(
    peered: Peered,
) -> None:
    p = peered
    private_pem, public_pem = p.keys[0]
    p.serve(LEMMY_SITE, lemmy_site(public_pem))
    status, doc, _ = await signed_get(
        p.alpha, "/users/alice", key_id=f"{LEMMY_SITE}#main-key", private_key_pem=private_pem
    )
    assert status == 200
    assert doc["followers"].endswith("/users/alice/followers")  # the full Person


async def test_a_person_without_preferred_username_is_still_refused(peered: Peered) -> None:
    p = peered
    private_pem, public_pem = p.keys[0]
    nameless = erin({"id": f"{ERIN}#main-key", "owner": ERIN, "publicKeyPem": public_pem})
    del nameless["preferredUsername"]
    p.serve(ERIN, nameless)
    assert (await like_by(p, ERIN, f"{ERIN}#main-key", private_pem, 1)).status == 401


# --- a signature we cannot verify still gets the key-only actor ------------------------------


async def test_an_unverifiable_signed_get_of_an_actor_gets_the_key_only_form(
    peered: Peered,
) -> None:
    """Its key cannot be obtained (here: the peer answers 404 for it; in the wild also an
    Ed25519-only signer or one whose clock is off): Mastodon answers such a request with its
    barebones actor, and so do we. Everything else still needs a verified signature."""
    p = peered
    private_pem, _ = p.keys[0]
    unknown_key = f"https://{PEER}/users/ghost#main-key"
    status, unsigned, _ = await plain_get(p.alpha, "/users/alice")
    assert status == 200
    status, doc, _ = await signed_get(
        p.alpha, "/users/alice", key_id=unknown_key, private_key_pem=private_pem
    )
    assert status == 200 and doc == unsigned
    assert "followers" not in doc and "name" not in doc
    status, _, _ = await signed_get(
        p.alpha, "/users/alice/outbox", key_id=unknown_key, private_key_pem=private_pem
    )
    assert status == 401


async def test_a_host_that_is_not_allowed_still_gets_403_for_an_actor(peered: Peered) -> None:
    p = peered
    private_pem, _ = p.keys[0]
    status, doc, _ = await signed_get(
        p.alpha,
        "/users/alice",
        key_id="https://elsewhere.example/actor#main-key",
        private_key_pem=private_pem,
    )
    assert status == 403 and "publicKey" not in doc


# --- PeerTube videos and other objects that are not text -----------------------------------

ROOT = f"https://{PEER}/accounts/root"
VIDEO = f"https://{PEER}/videos/watch/9c9de5e8-0a1e-484a-b099-e80766180a6d"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"


def peertube_account(public_pem: str) -> dict[str, Any]:
    return {
        "@context": [AS_CONTEXT, SECURITY_CONTEXT, {"RsaSignature2017": "https://w3id.org/"}],
        "type": "Person",
        "id": ROOT,
        "following": f"{ROOT}/following",
        "followers": f"{ROOT}/followers",
        "playlists": f"{ROOT}/playlists",
        "inbox": f"{ROOT}/inbox",
        "outbox": f"{ROOT}/outbox",
        "preferredUsername": "root",
        "url": ROOT,
        "name": "root",
        "endpoints": {"sharedInbox": f"https://{PEER}/inbox"},
        "publicKey": {"id": f"{ROOT}#main-key", "owner": ROOT, "publicKeyPem": public_pem},
        "published": "2024-01-10T09:00:00.000Z",
    }


def peertube_video(**overrides: Any) -> dict[str, Any]:
    """A PeerTube Video, trimmed of counters: the description is Markdown in ``content``,
    ``url`` lists the watch page first and then the files, and ``attributedTo`` names the
    account and its channel, by id."""
    video = {
        "type": "Video",
        "id": VIDEO,
        "name": "Quarterly all-hands",
        "duration": "PT1200S",
        "uuid": "9c9de5e8-0a1e-484a-b099-e80766180a6d",
        "tag": [{"type": "Hashtag", "name": "allhands"}],
        "views": 0,
        "sensitive": False,
        "commentsEnabled": True,
        "published": "2026-12-03T09:00:00.000Z",
        "updated": "2026-12-03T09:00:00.000Z",
        "mediaType": "text/markdown",
        "content": "Recording of the **Q3** all-hands.\n\nAgenda:\n- results\n- <b>plans</b>",
        "icon": [
            {
                "type": "Image",
                "url": f"https://{PEER}/lazy-static/thumbnails/9c9de5e8.jpg",
                "mediaType": "image/jpeg",
                "width": 280,
                "height": 157,
            }
        ],
        "url": [
            {"type": "Link", "mediaType": "text/html", "href": f"https://{PEER}/w/kkGMgK9Ztn"},
            {
                "type": "Link",
                "mediaType": "video/mp4",
                "href": f"https://{PEER}/static/web-videos/9c9de5e8-1080.mp4",
                "height": 1080,
                "size": 104857600,
                "fps": 30,
            },
        ],
        # videoModelToActivityPubObject (server/core/models/video/formatter/
        # video-activity-pub-format.ts): the account first, then the channel.
        "attributedTo": [ROOT, f"https://{PEER}/video-channels/root_channel"],
        "to": [PUBLIC],
        "cc": [f"{ROOT}/followers"],
    }
    video.update(overrides)
    return video


async def send_like_peertube(p: Peered, activity: dict[str, Any], private_pem: str) -> Sent:
    """POST as PeerTube signs: keyId the actor's bare URL, ``(request-target) host date
    digest``, ``algorithm="rsa-sha256"``."""
    body = json.dumps(activity).encode()
    values = {
        "(request-target)": "post /inbox",
        "host": p.alpha.host,
        "date": http_date(p.alpha.ctx.clock.now()),
        "digest": digest_of(body),
    }
    headers = {
        "Host": values["host"],
        "Date": values["date"],
        "Digest": values["digest"],
        "Content-Type": "application/activity+json",
        "Signature": sign_custom(private_pem, key_id=ROOT, covered=list(values), values=values),
    }
    return await raw_post(p.alpha, "/inbox", headers, body)


async def shown(p: Peered, obj: dict[str, Any], private_pem: str) -> str:
    create = {
        "@context": [AS_CONTEXT, {"Hashtag": "as:Hashtag"}],
        "type": "Create",
        "id": f"{obj['id']}/activity",
        "actor": ROOT,
        "to": obj["to"],
        "cc": obj["cc"],
        "object": obj,
    }
    assert (await send_like_peertube(p, create, private_pem)).status == 202
    await p.net.settle()
    post_id = await copy_of(p.alpha, obj["id"])
    assert post_id is not None, "the object was dropped"
    content = await p.alpha.value("SELECT content_html FROM posts WHERE id = ?", post_id)
    return str(content)


async def test_a_peertube_video_is_shown_as_its_title_description_and_a_link(
    peered: Peered,
) -> None:
    p = peered
    private_pem, public_pem = p.keys[0]
    p.serve(ROOT, peertube_account(public_pem))
    content = await shown(p, peertube_video(), private_pem)
    assert content.startswith("<p><strong>Quarterly all-hands</strong></p>")
    # The description is Markdown: shown as text, paragraphs and lines kept, nothing rendered.
    assert "<p>Recording of the **Q3** all-hands.</p>" in content
    assert "<p>Agenda:<br>- results<br>- &lt;b&gt;plans&lt;/b&gt;</p>" in content
    assert (
        f'<a href="https://{PEER}/w/kkGMgK9Ztn"' in content and "Watch on delta.example" in content
    )
    # Nothing of the partner's is loaded into our pages: no player, no thumbnail.
    assert "<video" not in content and "<img" not in content and ".mp4" not in content


async def test_a_video_link_stays_on_the_videos_own_origin(peered: Peered) -> None:
    """A ``url`` elsewhere (or not http(s)) is never the link we show: the object's id is."""
    p = peered
    private_pem, public_pem = p.keys[0]
    p.serve(ROOT, peertube_account(public_pem))
    elsewhere = peertube_video(url="https://evil.example/w/kkGMgK9Ztn")
    content = await shown(p, elsewhere, private_pem)
    assert "evil.example" not in content and f'<a href="{VIDEO}"' in content
    scripted = peertube_video(id=f"{VIDEO}-2", url="javascript:alert(1)")
    content = await shown(p, scripted, private_pem)
    assert "javascript" not in content and f'<a href="{VIDEO}-2"' in content


async def test_an_event_shows_when_it_starts(peered: Peered) -> None:
    p = peered
    private_pem, public_pem = p.keys[0]
    p.serve(ROOT, peertube_account(public_pem))
    event = {
        "type": "Event",
        "id": f"https://{PEER}/events/1",
        "attributedTo": ROOT,
        "name": "Supplier day",
        "content": "<p>Hall B</p>",
        "startTime": "2027-01-14T08:30:00Z",
        "endTime": "2027-01-14T16:00:00Z",
        "location": {"type": "Place", "name": "Hall B"},
        "published": "2026-12-03T09:00:00Z",
        "url": f"https://{PEER}/events/1",
        "to": [PUBLIC],
        "cc": [f"{ROOT}/followers"],
    }
    content = await shown(p, event, private_pem)
    assert content.startswith("<p><strong>Supplier day</strong></p><p>Starts 2027-01-14 08:30 UTC")
    assert f'<a href="https://{PEER}/events/1" rel=' in content
    assert content.endswith(">Open on delta.example</a></p>")
    # A start past the last moment a date can hold is dropped, not the whole event with it.
    far = {**event, "id": f"https://{PEER}/events/2", "startTime": "9999-12-31T23:59:59-14:00"}
    content = await shown(p, far, private_pem)
    assert content.startswith("<p><strong>Supplier day</strong></p><p>Hall B")
    assert "Starts" not in content


# --- WordPress: an article's summary is an excerpt, a warning only when sensitive -----------

JANE = f"https://{PEER}/author/jane/"


def wordpress_author(public_pem: str) -> dict[str, Any]:
    return {
        "@context": [AS_CONTEXT, SECURITY_CONTEXT],
        "id": JANE,
        "type": "Person",
        "name": "Jane",
        "preferredUsername": "jane",
        "url": JANE,
        "inbox": f"https://{PEER}/wp-json/activitypub/1.0/actors/2/inbox",
        "outbox": f"https://{PEER}/wp-json/activitypub/1.0/actors/2/outbox",
        "followers": f"https://{PEER}/wp-json/activitypub/1.0/actors/2/followers",
        "endpoints": {"sharedInbox": f"https://{PEER}/wp-json/activitypub/1.0/inbox"},
        "publicKey": {"id": f"{JANE}#main-key", "owner": JANE, "publicKeyPem": public_pem},
    }


def wordpress_article(slug: str, **overrides: Any) -> dict[str, Any]:
    """The plugin's Article: full text in content, the excerpt in summary."""
    url = f"https://{PEER}/2026/12/{slug}/"
    article = {
        "id": url,
        "type": "Article",
        "attachment": [],
        "attributedTo": JANE,
        "content": "<p>Revenue grew in every region.</p>",
        "contentMap": {"en": "<p>Revenue grew in every region.</p>"},
        "name": "Quarterly report",
        "published": "2026-12-03T09:00:00Z",
        "summary": "Our quarter in numbers [&hellip;]",
        "summaryMap": {"en": "Our quarter in numbers [&hellip;]"},
        "tag": [],
        "url": url,
        "to": [PUBLIC, f"https://{PEER}/wp-json/activitypub/1.0/actors/2/followers"],
        "cc": [],
        "sensitive": False,
    }
    article.update(overrides)
    return article


async def article_shown(p: Peered, article: dict[str, Any], private_pem: str) -> str:
    create = {
        "@context": [AS_CONTEXT, {"Hashtag": "as:Hashtag", "sensitive": "as:sensitive"}],
        "id": f"{article['id']}#activity-create",
        "type": "Create",
        "actor": JANE,
        "to": article["to"],
        "cc": article["cc"],
        "object": article,
    }
    sent = await send(p.alpha, create, key_id=f"{JANE}#main-key", private_key_pem=private_pem)
    assert sent.status == 202
    await p.net.settle()
    post_id = await copy_of(p.alpha, article["id"])
    assert post_id is not None
    return str(await p.alpha.value("SELECT content_html FROM posts WHERE id = ?", post_id))


async def test_a_wordpress_excerpt_is_a_lead_and_a_sensitive_summary_a_warning(
    peered: Peered,
) -> None:
    p = peered
    private_pem, public_pem = p.keys[0]
    p.serve(JANE, wordpress_author(public_pem))
    content = await article_shown(p, wordpress_article("report"), private_pem)
    assert content.startswith(
        "<p><strong>Quarterly report</strong></p><p>Our quarter in numbers [\u2026]</p>"
        "<p>Revenue grew"
    )
    assert "Content warning" not in content
    warned = wordpress_article(
        "layoffs", name="Restructuring", summary="Job losses", sensitive=True
    )
    content = await article_shown(p, warned, private_pem)
    assert content.startswith(
        "<p><strong>Content warning: Job losses</strong></p><p><strong>Restructuring</strong>"
    )


# --- Lemmy reads our key-only actor -------------------------------------------------------

# The fields Lemmy's Person requires (crates/apub/src/protocol/objects/person.rs): everything
# else is optional there. Lemmy fetches unsigned unless federation_signed_fetch is on.
LEMMY_PERSON_REQUIRED = ("type", "id", "preferredUsername", "inbox", "outbox", "publicKey")


async def test_an_unsigned_fetch_gets_an_actor_lemmy_can_read(peered: Peered) -> None:
    p = peered
    status, doc, _ = await plain_get(p.alpha, "/users/alice")
    assert status == 200
    assert all(field in doc for field in LEMMY_PERSON_REQUIRED)
    assert doc["type"] in ("Person", "Service", "Organization")
    assert set(doc["publicKey"]) == {"id", "owner", "publicKeyPem"}
    # The outbox is named, not opened: it still needs a signature.
    status, _, _ = await plain_get(p.alpha, "/users/alice/outbox")
    assert status == 401
