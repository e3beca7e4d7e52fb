"""Drive a bovine-herd user through client-to-server ActivityPub (Moo-Auth-1 with its secret).

Runs in bovine's own venv (see ``harness.py``), never in Steelyard's. Prints one JSON object
per line so the test can parse the output.

    python bovine_peer.py SECRET BASE_URL follow acct:bob@127.0.0.1:8202   # or an actor id
    python bovine_peer.py SECRET BASE_URL post "text" [acct:… | actor id …]  # to followers
    python bovine_peer.py SECRET BASE_URL inbox [ACCEPTED_FILE]
    python bovine_peer.py SECRET BASE_URL collections

``inbox`` prints the inbox newest first (each item fetched through the actor's proxyUrl) and
accepts every Follow in it; with ACCEPTED_FILE, a Follow already accepted (its id is a line
of that file) is not accepted again, so running ``inbox`` repeatedly sends one Accept each.
"""

import asyncio
import json
import sys
from pathlib import Path

from bovine import BovineClient
from bovine.clients import lookup_uri_with_webfinger


async def resolve(client, target):
    """``acct:user@host`` (or ``@user@host``) to an actor id; anything else is an id."""
    if target.startswith("acct:") or ("@" in target and not target.startswith("http")):
        uri = target if target.startswith("acct:") else "acct:" + target.lstrip("@")
        host = uri.split("@", 1)[1]
        actor, _ = await lookup_uri_with_webfinger(client.session, uri, domain="http://" + host)
        if not actor:
            raise SystemExit(f"webfinger found no actor for {uri}")
        return actor
    return target


def emit(obj):
    print(json.dumps(obj), flush=True)


async def main(secret, domain, cmd, *args):
    async with BovineClient(domain=domain, secret=secret) as client:
        activity_factory, object_factory = client.factories
        if cmd == "whoami":
            emit(client.information)
        elif cmd == "follow":
            target = await resolve(client, args[0])
            response = await client.send_to_outbox(activity_factory.follow(target).build())
            emit({"status": response.status, "id": response.headers.get("location")})
        elif cmd == "post":
            note = object_factory.note(content=args[0]).as_followers().build()
            extra = [await resolve(client, a) for a in args[1:]]
            note["to"] = [*note.get("to", []), *extra]
            response = await client.send_to_outbox(activity_factory.create(note).build())
            emit({"status": response.status, "id": response.headers.get("location")})
        elif cmd == "inbox":
            accepted_file = Path(args[0]) if args else None
            accepted = set()
            if accepted_file is not None and accepted_file.exists():
                accepted = set(accepted_file.read_text().split())
            inbox = await client.get(client.information["inbox"])
            for item_id in inbox.get("orderedItems", []):
                item = await client.proxy(item_id) if isinstance(item_id, str) else item_id
                emit(item)
                if item.get("type") == "Follow" and item.get("id") not in accepted:
                    await client.send_to_outbox(activity_factory.accept(item).build())
                    accepted.add(item.get("id"))
                    if accepted_file is not None:
                        with accepted_file.open("a") as handle:
                            handle.write(f"{item.get('id')}\n")
        elif cmd == "collections":
            for name in ("followers", "following"):
                collection = await client.get(client.information[name])
                emit({"name": name, "items": collection.get("orderedItems", [])})
        else:
            raise SystemExit(f"unknown command {cmd!r}")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    asyncio.run(main(*sys.argv[1:]))
