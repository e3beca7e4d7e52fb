"""Strict JSON for bytes that came from another server.

``json.loads`` is lenient in ways that matter for signed, de-duplicated activities
(SECURITY.md §1.6, §4): duplicate keys silently keep the last value (so two parsers can
disagree about what was signed), ``NaN``/``Infinity`` and ``1e400`` (infinity) are
accepted, deep nesting raises ``RecursionError`` (a ``RuntimeError``, not a
``ValueError``), and integers of thousands of digits are parsed at quadratic cost.

Invariants:

- :func:`loads_activity` returns a ``dict`` parsed from UTF-8 JSON (one leading byte order
  mark ignored) whose top level is an object, or raises :class:`JSONRejected` (a
  ``ValueError``) with a short reason. It never raises anything else, whatever the input.
- The result contains no duplicate keys, only finite numbers, integers of at most 20
  digits, no lone surrogates (so it can always be re-encoded as UTF-8), and no nesting
  deeper than ``max_depth`` (the top-level object is depth 1).
- Size limits are the caller's job: bound the body before calling.
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

__all__ = ["JSONRejected", "loads_activity"]

_MAX_INT_DIGITS = 20
# No sender needs more; bounds the cost of float() on hostile literals.
_MAX_FLOAT_CHARS = 100


class JSONRejected(ValueError):
    """The body is not acceptable strict JSON; ``reason`` is short and safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def loads_activity(body: bytes, *, max_depth: int = 32) -> dict[str, Any]:
    """Parse *body* as a strict JSON object, or raise :class:`JSONRejected`."""
    if not isinstance(body, bytes | bytearray | memoryview):
        raise JSONRejected("body is not bytes")
    try:
        # RFC 8259 lets a parser ignore a leading byte order mark; some senders write one.
        text = bytes(body).decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise JSONRejected("body is not UTF-8") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object_without_duplicates,
            parse_constant=_reject_constant,
            parse_int=_bounded_int,
            parse_float=_finite_float,
        )
    except JSONRejected:
        raise
    except RecursionError:
        raise JSONRejected("JSON nested too deeply") from None
    except ValueError as exc:
        # JSONDecodeError's message names the position only; it never echoes content.
        raise JSONRejected(f"invalid JSON: {_short(exc)}") from None
    except Exception:
        # The promise is "JSONRejected or a result", whatever the parser does.
        raise JSONRejected("invalid JSON") from None
    if not isinstance(value, dict):
        raise JSONRejected("top level is not an object")
    _check_tree(value, max_depth)
    return value


def _short(exc: ValueError) -> str:
    text = str(exc)
    return text if len(text) <= 80 else text[:77] + "..."


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise JSONRejected("duplicate key in object")
    return result


def _reject_constant(name: str) -> NoReturn:
    raise JSONRejected(f"non-finite number {name}")


def _bounded_int(text: str) -> int:
    digits = text[1:] if text.startswith("-") else text
    if len(digits) > _MAX_INT_DIGITS:
        raise JSONRejected("integer too long")
    return int(text)


def _finite_float(text: str) -> float:
    if len(text) > _MAX_FLOAT_CHARS:
        raise JSONRejected("number too long")
    value = float(text)
    if not math.isfinite(value):
        raise JSONRejected("number out of range")
    return value


def _check_tree(root: dict[str, Any], max_depth: int) -> None:
    # Iterative walk: the tree may legally be as deep as the C parser allowed (~1000),
    # which is too deep for a recursive Python check to be safe.
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            if depth > max_depth:
                raise JSONRejected("JSON nested too deeply")
            for key, item in value.items():
                _check_text(key)
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            if depth > max_depth:
                raise JSONRejected("JSON nested too deeply")
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            _check_text(value)


def _check_text(text: str) -> None:
    # "\ud800" is valid JSON syntax but yields a str that cannot be stored or re-sent
    # as UTF-8; reject it here rather than fail later in storage or delivery.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise JSONRejected("lone surrogate in string") from None
