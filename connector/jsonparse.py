"""Limits every body from outside is checked against before a parser sees it: nesting depth
(JSON and XML) and the digits of a JSON number.

Python's json module raises RecursionError on deep nesting and ValueError past 4,300 integer
digits, pydantic's parser has limits of its own (200 levels, ~4,300 digits); neither is an
error a caller can name, and the values that do parse may fail later in the worker or the
database. The bodies the CRMs and Segment send are a few levels deep with ids of at most
20 digits, so these limits refuse only hand-made bodies, each with a message naming the
problem (PayloadError, a 400)."""

from __future__ import annotations

import json
import re
from typing import Any

from connector.errors import PayloadError

MAX_DEPTH = 64
MAX_NUMBER_DIGITS = 64

# A JSON string, escapes included; unrolled so the engine never backtracks.
_STRING = rb'"[^"\\]*(?:\\.[^"\\]*)*"'
_STRING_OR_LONG_NUMBER = re.compile(_STRING + rb"|-?[0-9]{%d,}" % (MAX_NUMBER_DIGITS + 1))
_STRING_OR_BRACKET = re.compile(_STRING + rb"|[\[\]{}]")
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * (MAX_NUMBER_DIGITS + 1)
# Every byte but quotes and brackets deleted, the brackets mapped to one pair.
_NOT_STRUCTURE = bytes(byte for byte in range(256) if byte not in b'"[]{}')
_ONE_PAIR = bytes.maketrans(b"[]{}", b"()()")
_DEEP_RUN = b"(" * (MAX_DEPTH + 1)


def check_limits(body: bytes | str) -> None:
    """PayloadError when `body` nests deeper than MAX_DEPTH or holds a number of more than
    MAX_NUMBER_DIGITS digits (outside strings). Anything else, malformed JSON included, is
    left to the parser. The common case costs a few C-speed passes over the bytes (a tenth of
    json.loads); only a body that may break a limit is scanned token by token, to say where."""
    data = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    if _LONG_RUN in data.translate(_DIGITS_AS_ZERO):
        _refuse_long_number(data)
    if data.count(b"[") + data.count(b"{") > MAX_DEPTH and _skeleton_deeper(data):
        _refuse_deep(data)


def _skeleton_deeper(data: bytes) -> bool:
    """Whether the brackets outside strings may nest deeper than MAX_DEPTH: exact for valid
    JSON, and never less deep than what a parser would go into before failing."""
    if b"\\" in data:
        # Without its escaped backslashes and quotes, every quote left opens or closes a string.
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Two quotes in a row enclose no bracket (a string without one, or the nothing between
    # two strings): dropping them keeps every other quote's parity, and most strings go.
    structure = data.translate(_ONE_PAIR, _NOT_STRUCTURE).replace(b'""', b"")
    skeleton = b"".join(structure.split(b'"')[::2]) if b'"' in structure else structure
    if _DEEP_RUN in skeleton:
        return True
    # Each pass removes the innermost pairs: a skeleton left after MAX_DEPTH passes nests
    # deeper (or is unbalanced, which the exact scan tells apart).
    for _ in range(MAX_DEPTH):
        shorter = skeleton.replace(b"()", b"")
        if len(shorter) == len(skeleton):
            break
        skeleton = shorter
    return bool(skeleton)


def loads(body: bytes | str) -> Any:
    """json.loads after check_limits; JSONDecodeError and UnicodeDecodeError pass through, so
    each caller words them for its own source."""
    check_limits(body)
    return json.loads(body)


def _refuse_long_number(data: bytes) -> None:
    for match in _STRING_OR_LONG_NUMBER.finditer(data):
        if match.group()[:1] != b'"':
            digits = len(match.group().lstrip(b"-"))
            raise PayloadError(
                f"JSON number with {digits} digits at position {match.start()}: at most "
                f"{MAX_NUMBER_DIGITS} digits are accepted"
            )


def _refuse_deep(data: bytes) -> None:
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(data):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > MAX_DEPTH:
                raise PayloadError(
                    f"JSON nested deeper than {MAX_DEPTH} levels (at position {match.start()})"
                )
        elif token in (b"]", b"}"):
            depth -= 1
