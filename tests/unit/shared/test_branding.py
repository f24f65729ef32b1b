"""The one branding rule every service shows: the platform's colour as fallback, and text that reads on it."""

from __future__ import annotations

import pytest

from shared.branding import (
    BLACK,
    DEFAULT_BRAND_COLOUR,
    WHITE,
    brand_colour_or_default,
    contrast_ratio,
    readable_text_colour,
)
from shared.events import Branding


def test_the_contract_and_the_fallback_share_the_platform_colour() -> None:
    assert Branding(display_name="Welzijn Noord").brand_colour == DEFAULT_BRAND_COLOUR
    assert brand_colour_or_default(None) == DEFAULT_BRAND_COLOUR


@pytest.mark.parametrize("unsafe", ["", "red", "red;} body{display:none", "#12345", "#1234567", "#ggg000", 42])
def test_only_a_plain_colour_goes_into_a_style(unsafe: object) -> None:
    assert brand_colour_or_default(unsafe) == DEFAULT_BRAND_COLOUR


def test_a_plain_colour_is_kept_and_a_short_one_written_out() -> None:
    assert brand_colour_or_default(" #7A3E9D ") == "#7A3E9D"
    assert brand_colour_or_default("#fa0") == "#ffaa00"


def test_contrast_ratio_runs_from_one_to_twenty_one() -> None:
    assert contrast_ratio(WHITE, BLACK) == pytest.approx(21)
    assert contrast_ratio(BLACK, WHITE) == pytest.approx(21)
    assert contrast_ratio("#1f5f8b", "#1f5f8b") == pytest.approx(1)


def test_text_on_the_brand_colour_is_the_colour_with_more_contrast() -> None:
    assert readable_text_colour(DEFAULT_BRAND_COLOUR) == WHITE
    assert readable_text_colour("#ffd400") == BLACK
    # Mid-tones that a "dark enough" threshold (luminance < 0.35) put white text on, at under 4.5:1.
    for colour in ("#e07000", "#3c8dbc", "#808080"):
        assert readable_text_colour(colour) == BLACK
        assert contrast_ratio(colour, WHITE) < 4.5 <= contrast_ratio(colour, BLACK)


def test_every_brand_colour_gets_text_that_passes_wcag_aa() -> None:
    # One of white and black always reaches 4.5:1 (at worst the square root of 21 ≈ 4.58).
    for n in range(0, 256, 5):
        for colour in (f"#{n:02x}{n:02x}{n:02x}", f"#{n:02x}8000", f"#00{n:02x}ff", f"#ff{n:02x}00"):
            text = readable_text_colour(colour)
            assert contrast_ratio(colour, text) >= 4.5, colour
            assert contrast_ratio(colour, text) >= contrast_ratio(colour, WHITE if text == BLACK else BLACK), colour
