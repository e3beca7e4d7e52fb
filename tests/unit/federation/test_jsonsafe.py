"""Strict JSON: JSONRejected for every bad input, never another exception (SECURITY.md §1.6)."""

from __future__ import annotations

import random

import pytest

from federation.jsonsafe import JSONRejected, loads_activity


def test_parses_an_object() -> None:
    body = '{"type": "Note", "n": 12345678901234567890, "f": 1.5, "ok": true, "x": null}'
    assert loads_activity(body.encode()) == {
        "type": "Note",
        "n": 12345678901234567890,
        "f": 1.5,
        "ok": True,
        "x": None,
    }


def test_unicode_and_escaped_pairs_are_fine() -> None:
    assert loads_activity('{"a": "é\\ud83d\\ude00"}'.encode()) == {"a": "é😀"}


def test_one_leading_byte_order_mark_is_ignored() -> None:
    """RFC 8259 §8.1 lets a receiver ignore it; a sender that writes one is not refused."""
    assert loads_activity(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"null",
        b"[]",
        b'"text"',
        b"42",
        b'{"a": 1',
        b'{"a": 1}{"b": 2}',
        b"{'a': 1}",
        b'{"a": 1,}',
        b'{"a": 1, "a": 2}',
        b'{"o": {"k": 1, "k": 1}}',
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": -Infinity}',
        b'{"a": 1e400}',
        b'{"a": -1e400}',
        b'{"a": 123456789012345678901}',
        b'{"a": -123456789012345678901}',
        b'{"a": ' + b"1" * 5000 + b"}",
        b'{"a": 0.' + b"1" * 200 + b"}",
        b'{"a": "\\ud800"}',
        b'{"\\udc00": 1}',
        b'{"a": "\xff"}',
        b'\xef\xbb\xbf\xef\xbb\xbf{"a": 1}',  # one byte order mark is ignored, not two
        '{"a": 1}'.encode("utf-16"),
        b'{"a": "\x00"}',
    ],
)
def test_rejects(body: bytes) -> None:
    with pytest.raises(JSONRejected) as info:
        loads_activity(body)
    assert info.value.reason
    assert len(info.value.reason) <= 100


def test_is_a_value_error() -> None:
    assert issubclass(JSONRejected, ValueError)


def _nested(depth: int) -> bytes:
    # depth counts the top-level object as 1
    return b'{"a":' * depth + b"1" + b"}" * depth


def test_depth_limit() -> None:
    assert loads_activity(_nested(32))
    with pytest.raises(JSONRejected, match="deep"):
        loads_activity(_nested(33))
    assert loads_activity(_nested(5), max_depth=5)
    with pytest.raises(JSONRejected):
        loads_activity(_nested(6), max_depth=5)


def test_arrays_count_towards_depth() -> None:
    body = b'{"a":' + b"[" * 31 + b"]" * 31 + b"}"
    assert loads_activity(body)
    body = b'{"a":' + b"[" * 32 + b"]" * 32 + b"}"
    with pytest.raises(JSONRejected):
        loads_activity(body)


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_very_deep_nesting_is_rejected_not_a_recursion_error(depth: int) -> None:
    with pytest.raises(JSONRejected):
        loads_activity(b'{"a":' + b"[" * depth + b"]" * depth + b"}")


def test_many_small_objects_within_depth_are_fine() -> None:
    body = b'{"items": [' + b",".join([b"{}"] * 10_000) + b"]}"
    assert len(loads_activity(body)["items"]) == 10_000


def test_not_bytes() -> None:
    with pytest.raises(JSONRejected):
        loads_activity("{}")  # type: ignore[arg-type]


def test_fuzz_never_raises_anything_else() -> None:
    rng = random.Random(1234)
    seed = b'{"id": "https://a.example/1", "n": [1, 2.5, {"x": null}], "s": "\\u00e9"}'
    alphabet = b'{}[]",:\\-+.0123456789eEnultrfasNIy \xff\xc3\xa9'
    for _ in range(3000):
        data = bytearray(seed)
        for _ in range(rng.randint(1, 6)):
            pos = rng.randrange(len(data))
            choice = rng.random()
            if choice < 0.4:
                data[pos] = rng.choice(alphabet)
            elif choice < 0.7:
                del data[pos]
            else:
                data.insert(pos, rng.choice(alphabet))
        try:
            result = loads_activity(bytes(data))
        except JSONRejected:
            continue
        assert isinstance(result, dict)
