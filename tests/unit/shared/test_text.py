"""The one rule on control characters in free text (shared/text.py)."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import BaseModel, StringConstraints, ValidationError

from shared.events import Branding
from shared.text import SINGLE_LINE, MultiLineText, SingleLineText


class Form(BaseModel):
    name: SingleLineText
    note: MultiLineText
    short: Annotated[str, StringConstraints(strip_whitespace=True, max_length=5), SINGLE_LINE] = "x"


BAD_SINGLE = ["a\rb", "a\nb", "a\tb", "a\x00b", "a\x1bb", "a\x7fb", "a\x85b", "a\u2028b", "a\ud800b"]


@pytest.mark.parametrize("bad", BAD_SINGLE)
def test_single_line_text_refuses_every_control_character(bad: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Form(name=bad, note="ok")
    (error,) = raised.value.errors()
    assert error["type"] == "control_character" and error["loc"] == ("name",)


@pytest.mark.parametrize("bad", ["a\x00b", "a\x0bb", "a\x0cb", "a\x1bb", "a\x9bb", "a\u2029b", "a\udfffb"])
def test_multi_line_text_refuses_control_characters_other_than_line_feed_and_tab(bad: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Form(name="ok", note=bad)
    assert raised.value.errors()[0]["type"] == "control_character"


def test_ordinary_text_passes_and_line_ends_become_line_feeds() -> None:
    form = Form(name="Ans de Vries-Öztürk 🙂", note="regel één\r\nregel twee\rdrie\n\tvier", short="  abc ")
    assert form.name == "Ans de Vries-Öztürk 🙂"
    assert form.note == "regel één\nregel twee\ndrie\n\tvier"
    assert form.short == "abc"


def test_the_marker_keeps_other_constraints_and_their_schema() -> None:
    with pytest.raises(ValidationError):
        Form(name="ok", note="ok", short="123456")
    with pytest.raises(ValidationError):
        Form(name="ok", note="ok", short="a\nb")
    assert Form.model_json_schema()["properties"]["short"]["maxLength"] == 5


def test_branding_in_events_turns_control_characters_into_spaces_so_old_events_stay_readable() -> None:
    branding = Branding(display_name="Zuid\x00", sender_name="Zuid\r\nBcc: x@example.org")
    assert branding.sender_name == "Zuid Bcc: x@example.org" and branding.display_name == "Zuid"
    assert Branding(display_name="Zuid", sender_name="Welzijn Zuid").sender_name == "Welzijn Zuid"
