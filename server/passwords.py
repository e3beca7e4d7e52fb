"""Password hashing with scrypt (stdlib), and the password policy.

Stored form: ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`` so parameters can be raised later
while old hashes still verify. Comparison is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from server.errors import InvalidInput

# n=2^15, r=8: ~32 MB and ~60-90 ms per hash on the 2-core machine: slow for guessing,
# fine for a sign-in.
_N, _R, _P = 2**15, 8, 1
MIN_LENGTH = 10
MAX_LENGTH = 1024
_COMMON = frozenset(
    {
        "password123",
        "1234567890",
        "qwertyuiop",
        "password1234",
        "letmein123",
        "administrator",
        "welcome123",
        "changeme123",
        "0123456789",
        "steelyard123",
    }
)


def check_policy(password: str, *, username: str = "") -> None:
    """Raise :class:`InvalidInput` with the reason if the password is too weak."""
    if len(password) < MIN_LENGTH:
        raise InvalidInput(
            f"The password must have at least {MIN_LENGTH} characters.", field="password"
        )
    if len(password) > MAX_LENGTH:
        raise InvalidInput("The password is too long.", field="password")
    lowered = password.lower()
    if lowered in _COMMON or len(set(password)) < 4:
        raise InvalidInput("The password is too easy to guess; choose another.", field="password")
    if username and username.lower() in lowered:
        raise InvalidInput("The password must not contain the username.", field="password")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, maxmem=64 * 1024 * 1024, dklen=32
    )
    return "$".join(("scrypt", str(_N), str(_R), str(_P), _b64(salt), _b64(digest)))


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=64 * 1024 * 1024,
            dklen=32,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, base64.b64decode(expected))


def dummy_verify(password: str) -> None:
    """Spend the time of a real check, so unknown usernames do not answer faster."""
    verify_password(password, _DUMMY)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


_DUMMY = "scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 43 + "="
