"""Free text from outside (API bodies, forms, CSV rows, events): the one rule on which characters
it may hold. A single-line text has no control characters at all (no CR/LF that could split a mail
header, no NUL that PostgreSQL cannot store); a multi-line text may hold line breaks and tabs."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator
from pydantic_core import PydanticCustomError

# C0 and C1 controls, DEL, the Unicode line and paragraph separators (they end a line too), and
# lone surrogates (JSON can carry them; they cannot be encoded as UTF-8, so cannot be stored).
_SINGLE_LINE_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_CONTROL_RUNS = re.compile(f"(?:{_SINGLE_LINE_FORBIDDEN.pattern})+")
_MULTI_LINE_FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")

SINGLE_LINE_REASON = "must be one line without control characters (no line breaks, tabs or NUL)"
MULTI_LINE_REASON = "must not contain control characters such as NUL (line breaks and tabs are fine)"


def is_single_line(value: str) -> bool:
    """True when `value` holds no control character at all (safe in a mail header or a log line)."""
    return _SINGLE_LINE_FORBIDDEN.search(value) is None


def is_multi_line(value: str) -> bool:
    """True when `value` holds no control character other than a line feed or a tab."""
    return _MULTI_LINE_FORBIDDEN.search(value) is None


def check_single_line(value: str) -> str:
    """Pydantic after-validator: refuse control characters."""
    if not is_single_line(value):
        raise PydanticCustomError("control_character", SINGLE_LINE_REASON)
    return value


def _normalise_line_ends(value: object) -> object:
    # Browsers send a textarea's line breaks as CRLF; keep one kind of line end.
    return value.replace("\r\n", "\n").replace("\r", "\n") if isinstance(value, str) else value


def check_multi_line(value: str) -> str:
    """Pydantic after-validator: refuse control characters other than line feed and tab."""
    if not is_multi_line(value):
        raise PydanticCustomError("control_character", MULTI_LINE_REASON)
    return value


def _single_line_input(value: object) -> object:
    return check_single_line(value) if isinstance(value, str) else value


def _multi_line_input(value: object) -> object:
    value = _normalise_line_ends(value)
    return check_multi_line(value) if isinstance(value, str) else value


def _normalised_multi_line(value: str) -> str:
    return check_multi_line(value.replace("\r\n", "\n").replace("\r", "\n"))


def as_single_line(value: object) -> object:
    """Each run of control characters becomes one space: for text already stored or published
    (events are history, a consumer must still read an old one), where refusing is too late."""
    return _CONTROL_RUNS.sub(" ", value).strip() if isinstance(value, str) else value


SINGLE_LINE = AfterValidator(check_single_line)
"""Put last in an Annotated[str, ...] that has other constraints (length, pattern)."""
MULTI_LINE = AfterValidator(_normalised_multi_line)
"""The same for multi-line text (line ends become LF)."""

# Checked before the str schema, so that Field(max_length=…) on a field of these types still
# applies to the string itself (same message, same JSON schema).
SingleLineText = Annotated[str, BeforeValidator(_single_line_input)]
"""A name, title, address line …: no control characters at all."""
MultiLineText = Annotated[str, BeforeValidator(_multi_line_input)]
"""A note or plan text: line feeds (CRLF and CR become LF) and tabs, no other control characters."""
CleanedLine = Annotated[str, BeforeValidator(as_single_line)]
"""Text from history (an event, a stored copy) made single-line instead of refused."""
