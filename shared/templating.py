"""One way to set up Jinja2 in every service: the same escaping, undefined and whitespace rules.

HTML and XML templates (and anything whose kind is not known) are autoescaped; only plain
text (`*.txt.j2`, the text part of a mail) is not, so no "&amp;" lands in a text mail.
A missing value is an error (StrictUndefined), never an empty spot in a page or mail.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from shared.branding import DEFAULT_BRAND_COLOUR, PLATFORM_NAME
from shared.http_security import csp_nonce

PLAIN_TEXT_EXTENSIONS = ("txt", "txt.j2")


def template_environment(
    folder: str | Path,
    *,
    filters: Mapping[str, Callable[..., Any]] | None = None,
    extra_globals: Mapping[str, Any] | None = None,
) -> Environment:
    """A Jinja2 environment for the templates in `folder`, with the platform's shared globals."""
    environment = Environment(
        loader=FileSystemLoader(Path(folder)),
        autoescape=select_autoescape(disabled_extensions=PLAIN_TEXT_EXTENSIONS, default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals.update(
        csp_nonce=csp_nonce, DEFAULT_BRAND_COLOUR=DEFAULT_BRAND_COLOUR, PLATFORM_NAME=PLATFORM_NAME
    )
    environment.globals.update(extra_globals or {})
    environment.filters.update(filters or {})
    return environment
