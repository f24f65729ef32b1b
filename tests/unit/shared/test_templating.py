"""Every service's Jinja2 set-up: HTML escaped, plain text not, a missing value an error."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2 import Environment, StrictUndefined, UndefinedError

from shared.branding import DEFAULT_BRAND_COLOUR
from shared.templating import template_environment


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in ("page.html.j2", "mail.txt.j2", "feed.xml.j2", "other.j2"):
        (tmp_path / name).write_text("{{ name }}")
    (tmp_path / "colour.html.j2").write_text("{{ DEFAULT_BRAND_COLOUR }} {{ 0.25 | pct }} {{ extra }}")
    return tmp_path


def test_markup_is_escaped_except_in_plain_text(folder: Path) -> None:
    environment = template_environment(folder)
    name = "<b>Ans & Joop</b>"
    assert environment.get_template("page.html.j2").render(name=name) == "&lt;b&gt;Ans &amp; Joop&lt;/b&gt;"
    assert environment.get_template("feed.xml.j2").render(name=name) == "&lt;b&gt;Ans &amp; Joop&lt;/b&gt;"
    # A template whose kind the name does not tell is escaped too: the safe side.
    assert environment.get_template("other.j2").render(name=name) == "&lt;b&gt;Ans &amp; Joop&lt;/b&gt;"
    assert environment.get_template("mail.txt.j2").render(name=name) == name
    assert environment.from_string("{{ name }}").render(name=name) == "&lt;b&gt;Ans &amp; Joop&lt;/b&gt;"


def test_a_missing_value_is_an_error_not_an_empty_spot(folder: Path) -> None:
    with pytest.raises(UndefinedError):
        template_environment(folder).get_template("page.html.j2").render()


def test_shared_globals_and_a_services_own_filters_and_globals(folder: Path) -> None:
    environment = template_environment(
        folder, filters={"pct": lambda rate: f"{round(rate * 100)}%"}, extra_globals={"extra": "ja"}
    )
    assert environment.get_template("colour.html.j2").render() == f"{DEFAULT_BRAND_COLOUR} 25% ja"
    assert callable(environment.globals["csp_nonce"])


def service_environments() -> dict[str, Environment]:
    from services.coaching.web import build_templates
    from services.enrolment import export, pages
    from services.mailer import mail
    from services.tracking import api

    return {
        "enrolment pages": pages.templates.env,
        "enrolment export": export._templates,
        "mailer": mail._templates,
        "tracking": api._templates,
        "coaching": build_templates().env,
    }


@pytest.mark.parametrize("service", ["enrolment pages", "enrolment export", "mailer", "tracking", "coaching"])
def test_every_service_template_compiles_in_its_environment(service: str) -> None:
    environment = service_environments()[service]
    assert environment.undefined is StrictUndefined
    names = environment.list_templates()
    assert names
    for name in names:
        environment.get_template(name)
