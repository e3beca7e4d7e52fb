"""HTTP Signatures: round trips, every rule of SECURITY.md §2.2 as a negative test, interop."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import random
from collections.abc import Sequence
from email.utils import formatdate

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from federation.signatures import (
    KeyCache,
    PendingVerification,
    SignatureError,
    generate_rsa_keypair,
    parse_signature_header,
    prepare_verification,
    public_key_pem_of,
    sign_request,
    verify_signature,
)

NOW = 1_800_000_000.0
HOST = "beta.example"
KEY_ID = "https://alpha.example/users/alice#main-key"
BODY = b'{"type":"Follow","id":"https://alpha.example/1"}'
CT = "application/activity+json"
POST_COVERED = ("(request-target)", "host", "date", "digest")

Headers = list[tuple[str, str]]


@pytest.fixture(scope="module")
def keypair() -> tuple[str, str]:
    return generate_rsa_keypair()


@pytest.fixture(scope="module")
def other_keypair() -> tuple[str, str]:
    return generate_rsa_keypair()


def _private(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _digest(body: bytes, label: str = "SHA-256") -> str:
    return f"{label}={base64.b64encode(hashlib.sha256(body).digest()).decode()}"


def _signing_string(
    method: str, target: str, host: str, covered: Sequence[str], values: dict[str, str]
) -> bytes:
    # Written independently of the module under test, straight from cavage-12 §2.3.
    lines = []
    for name in covered:
        if name == "(request-target)":
            lines.append(f"(request-target): {method.lower()} {target}")
        elif name == "host":
            lines.append(f"host: {host}")
        else:
            lines.append(f"{name}: {values[name]}")
    return "\n".join(lines).encode()


def forge(
    private_pem: str,
    *,
    method: str = "POST",
    target: str = "/inbox",
    signed_host: str = HOST,
    covered: Sequence[str] = POST_COVERED,
    algorithm: str | None = "rsa-sha256",
    date: str | None = None,
    digest: str | None = None,
    body: bytes = BODY,
    extra: Sequence[tuple[str, str]] = (),
    created: int | None = None,
    expires: int | None = None,
    key_id: str = KEY_ID,
    hash_algorithm: hashes.HashAlgorithm | None = None,
    headers_param: bool = True,
) -> Headers:
    """Build a request signed exactly as told, valid or not."""
    values = {
        "date": date if date is not None else formatdate(NOW, usegmt=True),
        "digest": digest if digest is not None else _digest(body),
        "content-type": CT,
        "(created)": str(created),
        "(expires)": str(expires),
    }
    values.update((name.lower(), value) for name, value in extra)
    message = _signing_string(method, target, signed_host, covered, values)
    raw = _private(private_pem).sign(message, padding.PKCS1v15(), hash_algorithm or hashes.SHA256())
    params = [f'keyId="{key_id}"']
    if algorithm is not None:
        params.append(f'algorithm="{algorithm}"')
    if created is not None:
        params.append(f"created={created}")
    if expires is not None:
        params.append(f"expires={expires}")
    if headers_param:
        params.append(f'headers="{" ".join(covered)}"')
    params.append(f'signature="{base64.b64encode(raw).decode()}"')
    headers: Headers = [("Host", HOST), ("Date", values["date"])]
    if method != "GET":
        headers += [("Digest", values["digest"]), ("Content-Type", CT)]
    headers += list(extra)
    headers.append(("Signature", ",".join(params)))
    return headers


def prepare(
    headers: Headers,
    *,
    method: str = "POST",
    target: str = "/inbox",
    body: bytes = BODY,
    now: float = NOW,
    canonical_host: str = HOST,
) -> PendingVerification:
    return prepare_verification(
        method, target, headers, body, canonical_host=canonical_host, now=now
    )


def rejected(headers: Headers, status: int = 401, **kwargs: object) -> SignatureError:
    with pytest.raises(SignatureError) as info:
        prepare(headers, **kwargs)  # type: ignore[arg-type]
    assert info.value.status == status, info.value.reason
    return info.value


def replace_header(headers: Headers, name: str, value: str) -> Headers:
    return [(n, value if n.lower() == name.lower() else v) for n, v in headers]


# --- round trips -------------------------------------------------------------------------


def test_round_trip_post(keypair: tuple[str, str]) -> None:
    private_pem, public_pem = keypair
    sent = sign_request(
        "POST",
        "https://beta.example/inbox",
        key_id=KEY_ID,
        private_key_pem=private_pem,
        body=BODY,
        now=NOW,
        extra_headers={"Content-Type": CT},
    )
    assert sent["Host"] == HOST
    assert sent["Date"] == "Fri, 15 Jan 2027 08:00:00 GMT"
    assert sent["Digest"] == _digest(BODY)
    assert sent["Content-Type"] == CT
    assert 'headers="(request-target) host date digest content-type"' in sent["Signature"]
    assert 'algorithm="rsa-sha256"' in sent["Signature"]
    pending = prepare(list(sent.items()))
    assert pending.key_id == KEY_ID
    assert pending.key_host == "alpha.example"
    assert verify_signature(pending, public_pem)


def test_round_trip_get_with_query(keypair: tuple[str, str]) -> None:
    private_pem, public_pem = keypair
    sent = sign_request(
        "GET",
        "https://beta.example:443/users/bob/outbox?page=2&x=%20",
        key_id=KEY_ID,
        private_key_pem=private_pem,
        now=NOW,
        extra_headers={"Accept": CT},
    )
    assert "Digest" not in sent
    assert sent["Host"] == HOST
    assert 'headers="(request-target) host date"' in sent["Signature"]
    pending = prepare(
        list(sent.items()), method="GET", target="/users/bob/outbox?page=2&x=%20", body=b""
    )
    assert pending.signing_strings[0].startswith(
        b"(request-target): get /users/bob/outbox?page=2&x=%20\n"
    )
    assert verify_signature(pending, public_pem)


def test_get_signed_without_query_verifies_for_mastodon_compatibility(
    keypair: tuple[str, str],
) -> None:
    private_pem, public_pem = keypair
    headers = forge(private_pem, method="GET", target="/outbox", covered=POST_COVERED[:3])
    pending = prepare(headers, method="GET", target="/outbox?page=1", body=b"")
    assert len(pending.signing_strings) == 2
    assert verify_signature(pending, public_pem)


def test_post_gets_no_query_fallback(keypair: tuple[str, str]) -> None:
    private_pem, public_pem = keypair
    pending = prepare(forge(private_pem, target="/inbox"), target="/inbox?x=1")
    assert len(pending.signing_strings) == 1
    assert not verify_signature(pending, public_pem)


def test_key_cache_is_reused(keypair: tuple[str, str]) -> None:
    private_pem, public_pem = keypair
    keys = KeyCache(max_entries=2)
    sent = sign_request(
        "POST",
        "https://beta.example/inbox",
        key_id=KEY_ID,
        private_key_pem=private_pem,
        body=BODY,
        now=NOW,
        keys=keys,
    )
    assert keys.private_key(private_pem) is keys.private_key(private_pem)
    pending = prepare(list(sent.items()))
    assert verify_signature(pending, public_pem, keys=keys)
    assert keys.public_key(public_pem) is keys.public_key(public_pem)
    _, third = generate_rsa_keypair()
    keys.public_key(third)  # evicts the least recently used entry
    assert verify_signature(pending, public_pem, keys=keys)


def test_wrong_key_fails(keypair: tuple[str, str], other_keypair: tuple[str, str]) -> None:
    pending = prepare(forge(keypair[0]))
    assert not verify_signature(pending, other_keypair[1])


# --- §2.2 step 1: shape ------------------------------------------------------------------


def test_missing_signature_header(keypair: tuple[str, str]) -> None:
    headers = [(n, v) for n, v in forge(keypair[0]) if n != "Signature"]
    rejected(headers, 401)


@pytest.mark.parametrize("name", ["Signature", "Date", "Host", "Digest", "Content-Type"])
def test_duplicated_headers_are_rejected(keypair: tuple[str, str], name: str) -> None:
    headers = forge(keypair[0])
    value = dict(headers)[name]
    rejected([*headers, (name.lower(), value)], 400)


def test_duplicated_signed_header_is_rejected(keypair: tuple[str, str]) -> None:
    covered = (*POST_COVERED, "x-extra")
    headers = forge(keypair[0], covered=covered, extra=[("X-Extra", "a")])
    rejected([*headers, ("X-Extra", "b")], 400)


@pytest.mark.parametrize("name", ["Date", "Host", "Signature", "X-Extra"])
def test_non_ascii_header_values_give_signature_error(keypair: tuple[str, str], name: str) -> None:
    covered = (*POST_COVERED, "x-extra")
    headers = forge(keypair[0], covered=covered, extra=[("X-Extra", "ok")])
    headers = replace_header(headers, name, dict(headers)[name] + "é")
    rejected(headers, 400)


def test_control_characters_in_a_signed_header(keypair: tuple[str, str]) -> None:
    covered = (*POST_COVERED, "x-extra")
    headers = forge(keypair[0], covered=covered, extra=[("X-Extra", "a\nhost: evil")])
    rejected(headers, 400)


@pytest.mark.parametrize("target", ["inbox", "", "/in box", "/inbox#x", "/inbox\x00", "/é"])
def test_malformed_request_target(keypair: tuple[str, str], target: str) -> None:
    rejected(forge(keypair[0]), 400, target=target)


# --- §2.2 step 2: strict Signature parsing ------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        'keyId="k",signature="AAAA",keyId="k2"',
        'keyId="k",headers="date",headers="(request-target) host date",signature="AAAA"',
        'keyId=k,signature="AAAA"',
        'keyId="k" signature="AAAA"',
        'keyId="k",,signature="AAAA"',
        'keyId="k",signature="AAAA",',
        'keyId="k\\"x",signature="AAAA"',
        'keyId="k",signature="AAAA',
        'KeyId="k",signature="AAAA"',  # parameter names are case-sensitive
        'keyid="k",signature="AAAA"',
        'keyId="",signature="AAAA"',
        'signature="AAAA"',
        'keyId="k"',
        'keyId="k",signature=""',
        'keyId="k",signature="AAA"',
        'keyId="k",signature="AA=A"',
        'keyId="k",signature="AAB="',  # non-canonical: stray bits in the padding
        'keyId="k",signature="AA AA"',
        'keyId="k",signature="AA\\nAA"',
        'keyId="k",signature="AAAA",algorithm="hmac-sha256"',
        'keyId="k",signature="AAAA",algorithm="rsa-sha1"',
        'keyId="k",signature="AAAA",algorithm="rsa-sha512"',
        'keyId="k",signature="AAAA",algorithm="ed25519"',
        'keyId="k",signature="AAAA",algorithm=""',
        'keyId="k",signature="AAAA",headers=""',
        'keyId="k",signature="AAAA",headers="date  host"',
        'keyId="k",signature="AAAA",headers="date date"',
        'keyId="k",signature="AAAA",headers="da:te"',
        'keyId="k",signature="AAAA",created=12x',
        'keyId="k",signature="AAAA",created="-1"',
        "x" * 9000,
    ],
)
def test_malformed_signature_headers(header: str) -> None:
    with pytest.raises(SignatureError) as info:
        parse_signature_header(header)
    assert info.value.status == 401


def test_parser_accepts_spec_forms() -> None:
    params = parse_signature_header(
        ' keyId="k" , algorithm="HS2019",created=1402170695, expires="1402170699",'
        'headers="(request-target) (created) Host",opaque="ignored",signature="AAAA" '
    )
    assert params.key_id == "k"
    assert params.algorithm == "hs2019"
    assert params.created == 1402170695
    assert params.expires == 1402170699
    assert params.headers == ("(request-target)", "(created)", "host")
    assert params.signature == b"\x00\x00\x00"


def test_absent_headers_parameter_defaults_to_date_and_fails_coverage(
    keypair: tuple[str, str],
) -> None:
    headers = forge(keypair[0], covered=("date",), headers_param=False)
    assert parse_signature_header(dict(headers)["Signature"]).headers == ("date",)
    rejected(headers, 401)


def test_hmac_forgery_with_the_public_pem_fails(keypair: tuple[str, str]) -> None:
    # httpsig 1.3.0 accepts this (SECURITY.md §2.5 probe 4).
    public_pem = keypair[1]
    date = formatdate(NOW, usegmt=True)
    values = {"date": date, "digest": _digest(BODY)}
    message = _signing_string("POST", "/inbox", HOST, POST_COVERED, values)
    mac = base64.b64encode(hmac.new(public_pem.encode(), message, hashlib.sha256).digest())
    headers: Headers = [
        ("Host", HOST),
        ("Date", date),
        ("Digest", values["digest"]),
        ("Content-Type", CT),
    ]
    for algorithm in ("hmac-sha256", "HMAC-SHA256"):
        signature = (
            f'keyId="{KEY_ID}",algorithm="{algorithm}",headers="{" ".join(POST_COVERED)}",'
            f'signature="{mac.decode()}"'
        )
        rejected([*headers, ("Signature", signature)], 401)
    # Claiming hs2019 does not make us use HMAC either: the key type decides.
    signature = (
        f'keyId="{KEY_ID}",algorithm="hs2019",headers="{" ".join(POST_COVERED)}",'
        f'signature="{mac.decode()}"'
    )
    pending = prepare([*headers, ("Signature", signature)])
    assert not verify_signature(pending, public_pem)


def test_rsa_sha1_is_rejected(keypair: tuple[str, str]) -> None:
    headers = forge(keypair[0], algorithm="rsa-sha1", hash_algorithm=hashes.SHA1())
    rejected(headers, 401)


def test_rsa_sha1_signature_claiming_hs2019_does_not_verify(keypair: tuple[str, str]) -> None:
    headers = forge(keypair[0], algorithm="hs2019", hash_algorithm=hashes.SHA1())
    assert not verify_signature(prepare(headers), keypair[1])


@pytest.mark.parametrize("algorithm", ["hs2019", "HS2019", "rsa-sha256", "RSA-SHA256", None])
def test_accepted_algorithm_values(keypair: tuple[str, str], algorithm: str | None) -> None:
    pending = prepare(forge(keypair[0], algorithm=algorithm))
    assert verify_signature(pending, keypair[1])


# --- §2.2 step 3: coverage ----------------------------------------------------------------


@pytest.mark.parametrize("missing", ["(request-target)", "host", "date", "digest"])
def test_post_coverage(keypair: tuple[str, str], missing: str) -> None:
    covered = tuple(name for name in POST_COVERED if name != missing)
    rejected(forge(keypair[0], covered=covered), 401)


@pytest.mark.parametrize("missing", ["(request-target)", "host", "date"])
def test_get_coverage(keypair: tuple[str, str], missing: str) -> None:
    covered = tuple(name for name in POST_COVERED[:3] if name != missing)
    headers = forge(keypair[0], method="GET", target="/outbox", covered=covered)
    rejected(headers, 401, method="GET", target="/outbox", body=b"")


def test_signed_header_must_be_present(keypair: tuple[str, str]) -> None:
    headers = forge(keypair[0], covered=(*POST_COVERED, "content-type"))
    rejected([(n, v) for n, v in headers if n != "Content-Type"], 401)


# --- §2.2 step 4: time --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "ok"),
    [(-64 * 60, True), (59 * 60, True), (-66 * 60, False), (61 * 60, False), (-86400, False)],
)
def test_date_window(keypair: tuple[str, str], offset: int, ok: bool) -> None:
    headers = forge(keypair[0], date=formatdate(NOW + offset, usegmt=True))
    if ok:
        assert verify_signature(prepare(headers), keypair[1])
    else:
        rejected(headers, 401)


@pytest.mark.parametrize(
    "date", ["yesterday", "", "Fri, 15 Jan 2027 08:00:00 -0000", "Fri, 99 Jan 2027 08:00:00 GMT"]
)
def test_unparseable_date(keypair: tuple[str, str], date: str) -> None:
    rejected(forge(keypair[0], date=date), 401)


def test_created_with_hs2019_replaces_date(keypair: tuple[str, str]) -> None:
    covered = ("(request-target)", "host", "(created)", "digest")
    headers = forge(keypair[0], covered=covered, algorithm="hs2019", created=int(NOW) - 10)
    assert verify_signature(prepare(headers), keypair[1])
    headers = forge(keypair[0], covered=covered, algorithm=None, created=int(NOW) - 7200)
    rejected(headers, 401)
    headers = forge(keypair[0], covered=covered, algorithm="rsa-sha256", created=int(NOW))
    rejected(headers, 401)
    rejected(forge(keypair[0], covered=covered, algorithm="hs2019"), 401)  # no created=


def test_expired_signature(keypair: tuple[str, str]) -> None:
    covered = (*POST_COVERED, "(expires)")
    headers = forge(keypair[0], covered=covered, algorithm="hs2019", expires=int(NOW) - 7200)
    rejected(headers, 401)
    headers = forge(keypair[0], covered=covered, algorithm="hs2019", expires=int(NOW) + 300)
    assert verify_signature(prepare(headers), keypair[1])


# --- §2.2 step 5: body digest -------------------------------------------------------------


def test_body_substitution_is_caught(keypair: tuple[str, str]) -> None:
    # Misskey CVE-2023-49079: a valid signature replayed with another body.
    rejected(forge(keypair[0]), 401, body=b'{"type":"Delete"}')


@pytest.mark.parametrize(
    "digest",
    [
        _digest(b"other body"),
        "SHA-512=" + base64.b64encode(hashlib.sha512(BODY).digest()).decode(),
        "MD5=" + base64.b64encode(hashlib.md5(BODY).digest()).decode(),
        "SHA-256=" + base64.b64encode(hashlib.sha256(BODY).digest()[:16]).decode(),
        "SHA-256=" + hashlib.sha256(BODY).hexdigest(),
        "SHA-256=" + base64.b64encode(hashlib.sha256(BODY).digest()).decode().rstrip("="),
        "SHA-256",
        "=abc",
        f"{_digest(BODY)},{_digest(BODY)}",
        "",
    ],
)
def test_bad_digests(keypair: tuple[str, str], digest: str) -> None:
    rejected(forge(keypair[0], digest=digest), 401)


@pytest.mark.parametrize(
    "digest",
    [
        _digest(BODY, "sha-256"),  # what bovine sends
        _digest(BODY, "Sha-256"),
        "SHA-512="
        + base64.b64encode(hashlib.sha512(BODY).digest()).decode()
        + ", "
        + _digest(BODY),
    ],
)
def test_digest_spellings_accepted(keypair: tuple[str, str], digest: str) -> None:
    assert verify_signature(prepare(forge(keypair[0], digest=digest)), keypair[1])


def test_unsigned_digest_is_not_enough(keypair: tuple[str, str]) -> None:
    headers = forge(keypair[0], covered=("(request-target)", "host", "date"))
    rejected(headers, 401)


# --- §2.2 step 6: host and target ---------------------------------------------------------


def test_received_host_must_be_ours(keypair: tuple[str, str]) -> None:
    headers = replace_header(forge(keypair[0]), "Host", "gamma.example")
    rejected(headers, 401)
    rejected(forge(keypair[0]), 401, canonical_host="gamma.example")
    rejected(replace_header(forge(keypair[0]), "Host", "beta.example/x"), 400)


def test_host_comparison_is_canonical(keypair: tuple[str, str]) -> None:
    headers = replace_header(forge(keypair[0]), "Host", "BETA.example.")
    assert verify_signature(prepare(headers), keypair[1])
    assert verify_signature(prepare(forge(keypair[0]), canonical_host="Beta.Example"), keypair[1])


def test_signature_for_another_host_fails(keypair: tuple[str, str]) -> None:
    pending = prepare(forge(keypair[0], signed_host="gamma.example"))
    assert not verify_signature(pending, keypair[1])


def test_signature_for_another_path_fails(keypair: tuple[str, str]) -> None:
    pending = prepare(forge(keypair[0], target="/inbox"), target="/users/bob/inbox")
    assert not verify_signature(pending, keypair[1])


def test_raw_target_is_used_verbatim(keypair: tuple[str, str]) -> None:
    headers = forge(keypair[0], target="/users/b%C3%B6b/inbox")
    assert verify_signature(prepare(headers, target="/users/b%C3%B6b/inbox"), keypair[1])
    assert not verify_signature(prepare(headers, target="/users/b%c3%b6b/inbox"), keypair[1])


def test_bad_canonical_host_is_a_configuration_error(keypair: tuple[str, str]) -> None:
    with pytest.raises(ValueError):
        prepare(forge(keypair[0]), canonical_host="beta.example/x")


# --- keyId, keys --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key_id", ["acct:alice@alpha.example", "alice", "ftp://alpha.example/k", "https://127.1/k"]
)
def test_key_id_must_be_an_http_url(keypair: tuple[str, str], key_id: str) -> None:
    rejected(forge(keypair[0], key_id=key_id), 401)


def test_key_host_keeps_a_non_default_port(keypair: tuple[str, str]) -> None:
    headers = forge(keypair[0], key_id="https://Alpha.Example:8443/actor#main-key")
    assert prepare(headers).key_host == "alpha.example:8443"


def test_1024_bit_keys_are_refused(keypair: tuple[str, str]) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak_public = (
        weak.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    pending = prepare(forge(keypair[0]))
    message = pending.signing_strings[0]
    forged = dataclasses.replace(
        pending,
        params=dataclasses.replace(
            pending.params, signature=weak.sign(message, padding.PKCS1v15(), hashes.SHA256())
        ),
    )
    assert not verify_signature(forged, weak_public)
    weak_private = weak.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    with pytest.raises(ValueError):
        sign_request(
            "GET", "https://beta.example/", key_id=KEY_ID, private_key_pem=weak_private, now=NOW
        )


def test_unusable_public_keys_give_false(keypair: tuple[str, str]) -> None:
    pending = prepare(forge(keypair[0]))
    ec_public = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    for pem in ["", "garbage", keypair[0], ec_public, "é", "-----BEGIN PUBLIC KEY-----\n"]:
        assert not verify_signature(pending, pem)


def test_keypair_helpers(keypair: tuple[str, str]) -> None:
    private_pem, public_pem = keypair
    assert private_pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert public_pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert public_key_pem_of(private_pem) == public_pem
    assert _private(private_pem).key_size == 2048


# --- signing ------------------------------------------------------------------------------


def test_sign_request_host_forms(keypair: tuple[str, str]) -> None:
    def host_of(url: str) -> str:
        return sign_request("GET", url, key_id=KEY_ID, private_key_pem=keypair[0], now=NOW)["Host"]

    assert host_of("https://Beta.Example:443/x") == "beta.example"
    assert host_of("https://beta.example:8443/x") == "beta.example:8443"
    assert host_of("http://127.0.0.1:8001/x") == "127.0.0.1:8001"


@pytest.mark.parametrize(
    ("url", "extra", "key_id"),
    [
        ("https://beta.example/in box", {}, KEY_ID),
        ("https://beta.example/é", {}, KEY_ID),
        ("ftp://beta.example/", {}, KEY_ID),
        ("https://beta.example/", {"Date": "x"}, KEY_ID),
        ("https://beta.example/", {"host": "x"}, KEY_ID),
        ("https://beta.example/", {"Signature": "x"}, KEY_ID),
        ("https://beta.example/", {"Accept": "é"}, KEY_ID),
        ("https://beta.example/", {"Bad Name": "x"}, KEY_ID),
        ("https://beta.example/", {"Accept": "a", "accept": "b"}, KEY_ID),
        ("https://beta.example/", {}, 'https://alpha.example/k",x="'),
        ("https://beta.example/", {}, ""),
    ],
)
def test_sign_request_rejects_bad_arguments(
    keypair: tuple[str, str], url: str, extra: dict[str, str], key_id: str
) -> None:
    with pytest.raises(ValueError):
        sign_request(
            "POST",
            url,
            key_id=key_id,
            private_key_pem=keypair[0],
            body=b"",
            now=NOW,
            extra_headers=extra,
        )


# --- robustness ---------------------------------------------------------------------------


def test_fuzzed_requests_only_ever_raise_signature_error(keypair: tuple[str, str]) -> None:
    rng = random.Random(42)
    base = forge(keypair[0])
    alphabet = '",= ()-:;\\\t\n\x00éAZaz09+/'
    outcomes = {"ok": 0, "rejected": 0}
    for _ in range(2000):
        headers = list(base)
        index = rng.randrange(len(headers))
        name, value = headers[index]
        chars = list(value)
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(chars) + 1)
            if rng.random() < 0.5 and chars:
                del chars[min(pos, len(chars) - 1)]
            else:
                chars.insert(pos, rng.choice(alphabet))
        headers[index] = (name, "".join(chars))
        try:
            pending = prepare(headers)
        except SignatureError as exc:
            assert exc.status in (400, 401)
            outcomes["rejected"] += 1
            continue
        verify_signature(pending, keypair[1])  # must not raise
        outcomes["ok"] += 1
    assert outcomes["rejected"] > 1000


# --- interop with httpsig's own signer and verifier ---------------------------------------


def test_httpsig_header_signer_verifies_with_our_verifier(keypair: tuple[str, str]) -> None:
    import httpsig  # noqa: TID251 -- interop check against another signer implementation

    private_pem, public_pem = keypair
    covered = ["(request-target)", "host", "date", "digest"]
    signer = httpsig.HeaderSigner(
        KEY_ID, private_pem, algorithm="rsa-sha256", headers=covered, sign_header="signature"
    )
    date = formatdate(NOW, usegmt=True)
    signed = signer.sign(
        {"Date": date, "Digest": _digest(BODY)}, host=HOST, method="POST", path="/inbox"
    )
    headers: Headers = [
        ("Host", HOST),
        ("Date", date),
        ("Digest", _digest(BODY)),
        ("Signature", signed["signature"]),
    ]
    assert verify_signature(prepare(headers), public_pem)


def test_our_signatures_verify_with_httpsig(keypair: tuple[str, str]) -> None:
    import httpsig  # noqa: TID251 -- interop check against another verifier implementation

    private_pem, public_pem = keypair
    sent = sign_request(
        "POST",
        "https://beta.example/inbox?a=1",
        key_id=KEY_ID,
        private_key_pem=private_pem,
        body=BODY,
        now=NOW,
        extra_headers={"Content-Type": CT},
    )
    verifier = httpsig.HeaderVerifier(
        sent,
        public_pem,
        required_headers=["(request-target)", "host", "date", "digest", "content-type"],
        method="POST",
        path="/inbox?a=1",
        host=HOST,
        sign_header="signature",
    )
    assert verifier.verify()
