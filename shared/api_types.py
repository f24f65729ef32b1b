"""Input types whose JSON Schema says exactly what they accept (dates and times as ISO strings only)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError


def _iso_text(value: object) -> object:
    """Refuse numbers: pydantic would read 0 as 1970-01-01 where the schema promises a string."""
    if isinstance(value, int | float):
        raise PydanticCustomError("value_error", "a date or time is written as text (ISO 8601)")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_text)]
IsoDateTime = Annotated[datetime, BeforeValidator(_iso_text)]
