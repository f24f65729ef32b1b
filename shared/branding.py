"""How an organisation's branding is shown, the same in every service: the platform's colour
when an organisation has none (or an unusable one), and which text colour reads on it.

Beside the `Branding` contract (shared/events.py), because every service that shows the
branding (mails, sign-up and tracking pages, dashboard, PDFs) must agree on these rules.
"""

from __future__ import annotations

import re
from typing import Final

DEFAULT_BRAND_COLOUR: Final = "#1f5f8b"
"""The platform's own colour: an organisation without a colour of its own gets this one."""
PLATFORM_NAME: Final = "Meer contact"
"""What a page shows when it does not know the organisation."""
BRAND_COLOUR_PATTERN: Final = r"^#[0-9a-fA-F]{6}$"
"""What enrolment accepts as a brand colour (#rrggbb)."""
WHITE: Final = "#ffffff"
BLACK: Final = "#000000"

# #rgb is read too: an older copy may hold one, and CSS means the same colour by it.
_COLOUR = re.compile(r"#(?:[0-9a-fA-F]{3}){1,2}")


def brand_colour_or_default(value: object) -> str:
    """The colour as #rrggbb when it is a plain #rgb/#rrggbb colour, else the platform's colour.

    Only a plain colour may go into a style attribute: autoescaping does not protect CSS.
    """
    if not isinstance(value, str):
        return DEFAULT_BRAND_COLOUR
    colour = value.strip()
    if not _COLOUR.fullmatch(colour):
        return DEFAULT_BRAND_COLOUR
    if len(colour) == 4:
        return "#" + "".join(digit * 2 for digit in colour[1:])
    return colour


def relative_luminance(colour: str) -> float:
    """WCAG 2 relative luminance of a #rrggbb colour (0 for black … 1 for white)."""
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratio(colour_a: str, colour_b: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours (1 … 21)."""
    high, low = sorted((relative_luminance(colour_a), relative_luminance(colour_b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def readable_text_colour(background: str) -> str:
    """White or black, whichever has the higher contrast on the brand colour.

    One of the two always reaches at least 4.58:1 (the square root of 21), above the
    4.5:1 that WCAG AA asks for normal text, whatever colour the organisation picks.
    """
    colour = brand_colour_or_default(background)
    return WHITE if contrast_ratio(colour, WHITE) >= contrast_ratio(colour, BLACK) else BLACK
