"""Pre-seed bovine's JSON-LD context cache in the current directory (run before the server).

bovine expands JSON-LD and downloads the contexts it meets. Offline (loopback-only tests)
it would cache them as empty; stored remote actors would then lose ``publicKey``. The
security context gets the terms we and bovine use; the others are cached empty on purpose.
Runs in bovine's interpreter, standard library only.
"""

import json
import sqlite3

SECURITY = {
    "sec": "https://w3id.org/security#",
    "publicKey": {"@id": "sec:publicKey", "@type": "@id"},
    "publicKeyPem": "sec:publicKeyPem",
    "owner": {"@id": "sec:owner", "@type": "@id"},
    "toot": "http://joinmastodon.org/ns#",
    "manuallyApprovesFollowers": "as:manuallyApprovesFollowers",
    "discoverable": "toot:discoverable",
    "sensitive": "as:sensitive",
}
EMPTY = [
    "https://www.w3.org/ns/did/v1",
    "https://w3id.org/security/multikey/v1",
    "https://w3id.org/security/data-integrity/v1",
    "https://w3id.org/identity/v1",
    "https://gotosocial.org/ns",
]


def main() -> None:
    conn = sqlite3.connect("bovine_jsonld_cache.sqlite")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS jsonld (url TEXT PRIMARY KEY, context TEXT)")
        rows = [("https://w3id.org/security/v1", SECURITY)] + [(url, {}) for url in EMPTY]
        for url, context in rows:
            conn.execute("INSERT OR REPLACE INTO jsonld VALUES (?, ?)", (url, json.dumps(context)))
        conn.commit()
    finally:
        conn.close()


if __name__ == "__main__":
    main()
