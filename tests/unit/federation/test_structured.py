"""The strict RFC 8941 subset behind RFC 9421 signatures: what parses, what is refused, and
the canonical form that gets signed."""

from __future__ import annotations

import pytest

from federation.structured import (
    InnerList,
    Item,
    StructuredError,
    Token,
    parse_dictionary,
    serialize_inner_list,
)


def test_a_signature_input_parses_into_components_and_parameters() -> None:
    members = parse_dictionary(
        'sig1=("@method" "@target-uri" "content-digest");created=1618884473;'
        'keyid="https://b.example/users/bob#main-key";alg="rsa-v1_5-sha256", sig2=("date")'
    )
    assert list(members) == ["sig1", "sig2"]
    sig1 = members["sig1"]
    assert isinstance(sig1, InnerList)
    assert [item.value for item in sig1.items] == ["@method", "@target-uri", "content-digest"]
    assert dict(sig1.params) == {
        "created": 1618884473,
        "keyid": "https://b.example/users/bob#main-key",
        "alg": "rsa-v1_5-sha256",
    }


def test_items_of_every_supported_kind() -> None:
    members = parse_dictionary('a=:aGVsbG8=:, b="x\\"y\\\\z", c=tok/en:1, d=?0, e, f=-42;p')
    assert members["a"] == Item(b"hello")
    assert members["b"] == Item('x"y\\z')
    assert members["c"] == Item(Token("tok/en:1"))
    assert members["d"] == Item(False)
    assert members["e"] == Item(True)
    assert members["f"] == Item(-42, (("p", True),))
    assert parse_dictionary("") == {}
    # RFC 8941 §4.2.7: missing padding is tolerated, misplaced padding is not
    assert parse_dictionary("a=:aGVsbG8:")["a"] == Item(b"hello")
    with pytest.raises(StructuredError):
        parse_dictionary("a=:aGV=sbG8:")


def test_the_canonical_form_is_what_gets_signed() -> None:
    # Extra spaces inside the list and before a parameter key are allowed on the wire, and
    # the signed form has none of them.
    parsed = parse_dictionary('s=(  "@method"   "host" );  created=1;keyid="k\\"1";flag')["s"]
    assert isinstance(parsed, InnerList)
    assert serialize_inner_list(parsed) == '("@method" "host");created=1;keyid="k\\"1";flag'


@pytest.mark.parametrize(
    "text",
    [
        "a=1, a=2",  # a key twice: parsers would disagree on which one counts
        "a=1,",  # trailing comma
        "a=1.5",  # decimals are not used here
        "a=1234567890123456",  # more than 15 digits
        'a="unterminated',
        'a="bad \\n escape"',
        'a="tab\there"',
        "A=1",  # keys are lower case
        "a=:not base64!:",
        'a=("x""y")',  # items in an inner list need a space between them
        "a=?2",
        "a=1;p=1;p=2",  # a parameter twice
        "a=é",  # not ASCII
        "a=1 b=2",  # members need a comma
    ],
)
def test_malformed_fields_are_refused(text: str) -> None:
    with pytest.raises(StructuredError):
        parse_dictionary(text)
