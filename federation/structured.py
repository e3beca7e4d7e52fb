"""RFC 8941 structured field values: a strict parser for dictionaries, and the serializer
RFC 9421 needs for its signature base.

Only what HTTP Message Signatures use is supported: dictionaries whose members are items or
inner lists, with parameters; bare items that are integers, strings, tokens, byte sequences or
booleans. Decimals (and RFC 9651's dates and display strings) are refused. Parsing follows
RFC 8941 §4.2 step by step; anything it does not allow raises :class:`StructuredError`, and so
does a key given twice (the RFC would keep the last one: two parsers could then disagree about
which signature a request carries).

Invariants: :func:`serialize_inner_list` of a parsed inner list gives its canonical form
(§4.1), which is what RFC 9421 signs; parsing bounds every integer to 15 digits.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

_KEY = re.compile(r"[a-z*][a-z0-9_.*-]*")
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+.^_`|~0-9A-Za-z:/-]*")
_INTEGER = re.compile(r"-?[0-9]{1,15}")
_BYTES = re.compile(r":([A-Za-z0-9+/=]*):")


class StructuredError(ValueError):
    """The field is not a structured value of the expected shape."""


@dataclass(frozen=True, slots=True)
class Token:
    """A bare token (as opposed to a quoted string with the same characters)."""

    value: str


BareItem = bool | int | str | bytes | Token
Params = tuple[tuple[str, BareItem], ...]


@dataclass(frozen=True, slots=True)
class Item:
    value: BareItem
    params: Params = ()


@dataclass(frozen=True, slots=True)
class InnerList:
    items: tuple[Item, ...]
    params: Params = ()


def parse_dictionary(text: str) -> dict[str, Item | InnerList]:
    """The members of a dictionary field, in order (§4.2.2)."""
    parser = _Parser(text)
    members: dict[str, Item | InnerList] = {}
    parser.skip(" ")
    if parser.at_end():
        return members
    while True:
        key = parser.key()
        if key in members:
            raise StructuredError(f"dictionary key {key} given twice")
        if parser.take("="):
            members[key] = parser.item_or_inner_list()
        else:
            members[key] = Item(True, parser.params())
        parser.skip(" \t")
        if parser.at_end():
            return members
        parser.expect(",")
        parser.skip(" \t")
        if parser.at_end():
            raise StructuredError("dictionary ends with a comma")


def serialize_inner_list(value: InnerList) -> str:
    """The canonical form of an inner list with its parameters (§4.1.1.1)."""
    inner = " ".join(
        _serialize_bare(item.value) + _serialize_params(item.params) for item in value.items
    )
    return f"({inner}){_serialize_params(value.params)}"


def serialize_string(value: str) -> str:
    return _serialize_bare(value)


class _Parser:
    __slots__ = ("_pos", "_text")

    def __init__(self, text: str) -> None:
        if not text.isascii():
            raise StructuredError("structured fields are ASCII")
        self._text = text
        self._pos = 0

    def at_end(self) -> bool:
        return self._pos >= len(self._text)

    def peek(self) -> str:
        return self._text[self._pos] if self._pos < len(self._text) else ""

    def skip(self, chars: str) -> None:
        while self._pos < len(self._text) and self._text[self._pos] in chars:
            self._pos += 1

    def take(self, char: str) -> bool:
        if self.peek() == char:
            self._pos += 1
            return True
        return False

    def expect(self, char: str) -> None:
        if not self.take(char):
            raise StructuredError(f"expected {char!r} at {self._pos}")

    def _match(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        match = pattern.match(self._text, self._pos)
        if match is not None:
            self._pos = match.end()
        return match

    def key(self) -> str:
        match = self._match(_KEY)
        if match is None:
            raise StructuredError(f"expected a key at {self._pos}")
        return match.group()

    def item_or_inner_list(self) -> Item | InnerList:
        if self.peek() == "(":
            return self.inner_list()
        return Item(self.bare_item(), self.params())

    def inner_list(self) -> InnerList:
        self.expect("(")
        items: list[Item] = []
        while True:
            self.skip(" ")
            if self.take(")"):
                return InnerList(tuple(items), self.params())
            items.append(Item(self.bare_item(), self.params()))
            if self.peek() not in (" ", ")"):
                raise StructuredError(f"expected a space or ')' at {self._pos}")

    def params(self) -> Params:
        found: dict[str, BareItem] = {}
        while self.take(";"):
            self.skip(" ")
            key = self.key()
            if key in found:
                raise StructuredError(f"parameter {key} given twice")
            found[key] = self.bare_item() if self.take("=") else True
        return tuple(found.items())

    def bare_item(self) -> BareItem:
        char = self.peek()
        if char == '"':
            return self.string()
        if char == ":":
            match = self._match(_BYTES)
            if match is None:
                raise StructuredError(f"malformed byte sequence at {self._pos}")
            encoded = match.group(1)
            # RFC 8941 §4.2.7: a parser should not fail on missing padding; "=" anywhere but
            # at the end still fails below.
            encoded += "=" * (-len(encoded) % 4) if not encoded.endswith("=") else ""
            try:
                return base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise StructuredError("byte sequence is not base64") from None
        if char == "?":
            self._pos += 1
            if self.take("1"):
                return True
            if self.take("0"):
                return False
            raise StructuredError(f"malformed boolean at {self._pos}")
        if char == "-" or char.isdigit():
            match = self._match(_INTEGER)
            if match is None or self.peek() == "." or self.peek().isdigit():
                raise StructuredError(f"unsupported number at {self._pos}")
            return int(match.group())
        match = self._match(_TOKEN)
        if match is None:
            raise StructuredError(f"expected an item at {self._pos}")
        return Token(match.group())

    def string(self) -> str:
        self.expect('"')
        out: list[str] = []
        while not self.at_end():
            char = self._text[self._pos]
            self._pos += 1
            if char == "\\":
                escaped = self.peek()
                if escaped not in ('"', "\\"):
                    raise StructuredError("bad escape in string")
                out.append(escaped)
                self._pos += 1
            elif char == '"':
                return "".join(out)
            elif not " " <= char <= "~":
                raise StructuredError("control character in string")
            else:
                out.append(char)
        raise StructuredError("unterminated string")


def _serialize_params(params: Params) -> str:
    return "".join(
        f";{key}" if value is True else f";{key}={_serialize_bare(value)}" for key, value in params
    )


def _serialize_bare(value: BareItem) -> str:
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Token):
        return value.value
    if isinstance(value, bytes):
        return ":" + base64.b64encode(value).decode("ascii") + ":"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
