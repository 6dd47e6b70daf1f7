"""The limits every JSON body is checked against before a parser sees it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic_core import from_json

from connector.errors import PayloadError
from connector.jsonparse import MAX_DEPTH, MAX_NUMBER_DIGITS, check_limits, loads


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_nesting_at_the_limit_is_accepted() -> None:
    assert loads(nested(MAX_DEPTH)) is not None


def test_nesting_past_the_limit_is_refused_with_its_position() -> None:
    with pytest.raises(PayloadError, match=r"JSON nested deeper than 64 levels \(at position 64\)"):
        check_limits(nested(MAX_DEPTH + 1))


def test_very_deep_json_is_refused_before_any_parser_recurses() -> None:
    body = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    # What the limit spares the callers: both parsers fail without naming a JSON problem.
    with pytest.raises(RecursionError):
        json.loads(body)
    with pytest.raises(ValueError, match="recursion limit"):
        from_json(body)
    with pytest.raises(PayloadError, match="nested deeper than 64"):
        check_limits(body)


def test_unterminated_deep_json_is_refused() -> None:
    with pytest.raises(PayloadError, match="nested deeper"):
        check_limits(b"[" * 10_000)


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"a": "[" * 500, "b": "]" * 500 + '\\"[{', "c": [[1]]})
    assert loads(text.encode())["c"] == [[1]]


def test_closing_brackets_inside_strings_do_not_hide_deep_nesting() -> None:
    # Read as structure, the string's brackets would close the outer ones early.
    body = b'[[[["]]]]",' + nested(MAX_DEPTH - 3) + b"]]]]"
    with pytest.raises(PayloadError, match="nested deeper"):
        check_limits(body)


def test_escaped_quotes_do_not_end_a_string_early() -> None:
    body = b'["\\\\\\"' + b"[" * 100 + b'"]'
    assert loads(body) == ['\\"' + "[" * 100]


def test_a_long_integer_is_refused_with_its_length_and_position() -> None:
    body = b'{"a": ' + b"9" * 5000 + b"}"
    with pytest.raises(ValueError, match="4300"):
        json.loads(body)
    with pytest.raises(PayloadError, match="JSON number with 5000 digits at position 6"):
        check_limits(body)


def test_a_negative_integer_at_the_limit_is_accepted() -> None:
    assert loads(b"[-" + b"9" * MAX_NUMBER_DIGITS + b"]") == [-int("9" * MAX_NUMBER_DIGITS)]


@pytest.mark.parametrize(
    "number", [b"1" * 65, b"-" + b"1" * 65, b"0." + b"1" * 65, b"1e" + b"1" * 65]
)
def test_any_digit_run_past_the_limit_in_a_number_is_refused(number: bytes) -> None:
    with pytest.raises(PayloadError, match="65 digits"):
        check_limits(b"[1, " + number + b"]")


def test_long_digit_strings_are_accepted() -> None:
    assert loads(b'{"id": "' + b"7" * 5000 + b'"}') == {"id": "7" * 5000}


def test_text_is_checked_like_its_bytes() -> None:
    with pytest.raises(PayloadError, match="nested deeper"):
        check_limits(nested(MAX_DEPTH + 1).decode())
    check_limits('["\udc80"]')


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(item) for item in value.values()), default=0)
    return 0


def _documents() -> st.SearchStrategy[Any]:
    text = st.text(alphabet=st.sampled_from('ab[]{}"\\\n'), max_size=8)
    leaves = st.none() | st.booleans() | st.integers() | text
    # Chains are how documents get deep; the extend builds shallow but wide ones around them.
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3)
        ),
        max_leaves=12,
    )


@settings(max_examples=300, deadline=None)
@given(document=_documents(), extra=st.integers(min_value=0, max_value=MAX_DEPTH + 2))
def test_the_check_agrees_with_the_real_depth(document: Any, extra: int) -> None:
    wrapped = document
    for _ in range(extra):
        wrapped = [wrapped, "]}"]
    body = json.dumps(wrapped).encode()
    if _depth(wrapped) > MAX_DEPTH:
        with pytest.raises(PayloadError, match="nested deeper"):
            check_limits(body)
    else:
        check_limits(body)
