"""The programme pack: the real content validates, broken packs are caught, rendering is safe."""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import frontmatter
import pytest

from services.mailer.programme import (
    ALLOWED_PLACEHOLDERS,
    DEFAULT_PACK_DIR,
    LOCAL_OFFER_WORDS,
    WORDS_PER_MINUTE,
    PackError,
    count_words,
    load_pack,
    local_offer_words,
    main,
    render_markdown,
    validate_pack,
)

DEMO_VALUES = {
    "voornaam": "Ans",
    "organisatie": "Welzijn Noord",
    "coach": "Sanne",
    "telefoon_organisatie": "010 123 45 67",
}
VARIANTS = ("standaard", "op-afstand")
LEFTOVER_PLACEHOLDER = re.compile(r"[{}]|MCPLACEHOLDER|MCLOCALOFFER")


# --- the real pack ---------------------------------------------------------------------------------------------


def test_real_pack_validates_without_errors() -> None:
    report = validate_pack(DEFAULT_PACK_DIR)

    assert report.errors == ()
    assert report.ok
    assert {(day.variant, day.day) for day in report.days} == {(v, d) for v in VARIANTS for d in range(1, 61)}


def test_real_pack_loads_with_its_manifest() -> None:
    pack = load_pack()

    assert (pack.name, pack.version, pack.language, pack.days) == ("meer-contact", "1", "nl", 60)
    assert pack.variants == VARIANTS
    assert pack.default_variant == "standaard"


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_day_renders_without_leftover_placeholders(variant: str) -> None:
    pack = load_pack()
    assert set(DEMO_VALUES) == ALLOWED_PLACEHOLDERS

    for day in range(1, pack.days + 1):
        lesson = pack.lesson(variant, day)
        for part in (lesson.title, lesson.body_markdown, lesson.assignment_markdown, lesson.look_ahead):
            html, text = render_markdown(part, DEMO_VALUES)
            assert not LEFTOVER_PLACEHOLDER.search(html), f"day {day}: {html[:80]}"
            assert not LEFTOVER_PLACEHOLDER.search(text), f"day {day}: {text[:80]}"
        assert lesson.body_markdown and lesson.assignment_markdown


def test_coach_is_announced_on_days_1_and_14() -> None:
    pack = load_pack()

    for day in (1, 14):
        assert "{coach}" in pack.lesson("standaard", day).body_markdown


def test_op_afstand_uses_the_override_assignment_and_the_standaard_body() -> None:
    pack = load_pack()
    day = 22  # first day outside: its standaard assignment needs an at-home alternative
    override = frontmatter.load(DEFAULT_PACK_DIR / f"day-{day:02d}.md").metadata["variants"]
    assert isinstance(override, dict)

    standaard, op_afstand = pack.lesson("standaard", day), pack.lesson("op-afstand", day)

    assert op_afstand.assignment_markdown == override["op-afstand"]["assignment"].strip()
    assert op_afstand.assignment_markdown != standaard.assignment_markdown
    assert op_afstand.body_markdown == standaard.body_markdown
    assert (op_afstand.title, op_afstand.look_ahead) == (standaard.title, standaard.look_ahead)


def test_a_day_without_override_is_the_same_in_both_variants() -> None:
    pack = load_pack()

    assert pack.lesson("op-afstand", 2) == pack.lesson("standaard", 2)


@pytest.mark.parametrize(("variant", "day"), [("anders", 1), ("standaard", 0), ("standaard", 61)])
def test_unknown_variant_or_day_raises_pack_error(variant: str, day: int) -> None:
    with pytest.raises(PackError):
        load_pack().lesson(variant, day)


# --- broken packs ------------------------------------------------------------------------------------------------


def _edit_day(pack: Path, day: int, change: Callable[[frontmatter.Post], None]) -> None:
    file = pack / f"day-{day:02d}.md"
    post = frontmatter.load(file)
    change(post)
    file.write_text(frontmatter.dumps(post), encoding="utf-8")


def _set(key: str, value: object) -> Callable[[frontmatter.Post], None]:
    def change(post: frontmatter.Post) -> None:
        post.metadata[key] = value

    return change


def _drop(key: str) -> Callable[[frontmatter.Post], None]:
    def change(post: frontmatter.Post) -> None:
        del post.metadata[key]

    return change


def _append_to_body(text: str) -> Callable[[frontmatter.Post], None]:
    def change(post: frontmatter.Post) -> None:
        post.content += "\n\n" + text

    return change


def _missing_day(pack: Path) -> None:
    (pack / "day-05.md").unlink()


def _stray_file(pack: Path) -> None:
    (pack / "notes.md").write_text("kladje", encoding="utf-8")


def _manifest_without_days(pack: Path) -> None:
    manifest = pack / "manifest.toml"
    manifest.write_text(re.sub(r"(?m)^days = .*$", "", manifest.read_text(encoding="utf-8")), encoding="utf-8")


BREAKS: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "missing day": (_missing_day, ("day-05.md", "missing")),
    "unknown placeholder": (
        lambda pack: _edit_day(pack, 3, _append_to_body("Groeten van {naam}.")),
        ("day-03.md", "'body'", "{naam}"),
    ),
    "stray brace": (
        lambda pack: _edit_day(pack, 3, _append_to_body("Groeten van {voornaam.")),
        ("day-03.md", "'body'", "stray"),
    ),
    "unknown kind of local offer": (
        lambda pack: _edit_day(pack, 3, _append_to_body("{lokaal_aanbod:zwembad}")),
        ("day-03.md", "'body'", "{lokaal_aanbod:zwembad}", "unknown kind of local offer"),
    ),
    "local offer inside a sentence": (
        lambda pack: _edit_day(pack, 3, _append_to_body("Kijk eens bij {lokaal_aanbod:bibliotheek} in de buurt.")),
        ("day-03.md", "'body'", "paragraph of its own"),
    ),
    "local offer in the assignment": (
        lambda pack: _edit_day(pack, 4, _set("assignment", "Ga erheen.\n\n{lokaal_aanbod:buurthuis}")),
        ("day-04.md", "'assignment'", "only be named in the body"),
    ),
    "raw html in body": (
        lambda pack: _edit_day(pack, 4, _append_to_body("<b>Let op!</b>")),
        ("day-04.md", "'body'", "raw HTML"),
    ),
    "raw html in assignment": (
        lambda pack: _edit_day(pack, 4, _set("assignment", "Schrijf het op. <!-- todo -->")),
        ("day-04.md", "'assignment'", "raw HTML"),
    ),
    "reading time too long": (
        lambda pack: _edit_day(pack, 6, _append_to_body("Dit is een korte zin met negen woorden erin. " * 140)),
        ("day-06.md", "reading time"),
    ),
    "sentences too long": (
        lambda pack: _edit_day(pack, 8, lambda post: setattr(post, "content", ("woord " * 30 + ". ") * 8)),
        ("day-08.md", "readability"),
    ),
    "missing assignment": (lambda pack: _edit_day(pack, 7, _drop("assignment")), ("day-07.md", "'assignment'")),
    "empty title": (lambda pack: _edit_day(pack, 9, _set("title", "  ")), ("day-09.md", "'title'")),
    "missing look_ahead": (lambda pack: _edit_day(pack, 10, _drop("look_ahead")), ("day-10.md", "'look_ahead'")),
    "unknown front-matter key": (
        lambda pack: _edit_day(pack, 11, _set("titel", "Tikfout")),
        ("day-11.md", "'titel'"),
    ),
    "unknown variant": (
        lambda pack: _edit_day(pack, 12, _set("variants", {"op-afstnd": {"assignment": "Bel iemand."}})),
        ("day-12.md", "op-afstnd"),
    ),
    "standaard under variants": (
        lambda pack: _edit_day(pack, 12, _set("variants", {"standaard": {"assignment": "Bel iemand."}})),
        ("day-12.md", "standaard"),
    ),
    "unknown key in variant": (
        lambda pack: _edit_day(pack, 13, _set("variants", {"op-afstand": {"body": "Nieuwe tekst."}})),
        ("day-13.md", "body"),
    ),
    "day does not match file name": (lambda pack: _edit_day(pack, 15, _set("day", 16)), ("day-15.md", "'day'")),
    "stray file": (_stray_file, ("notes.md", "stray")),
    "manifest incomplete": (_manifest_without_days, ("manifest.toml", "'days'")),
}


@pytest.fixture
def pack_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "v1"
    shutil.copytree(DEFAULT_PACK_DIR, copy)
    return copy


@pytest.mark.parametrize("name", BREAKS)
def test_broken_pack_is_reported_and_refused(pack_copy: Path, name: str) -> None:
    breaker, expected = BREAKS[name]
    before = set(validate_pack(pack_copy).errors)

    breaker(pack_copy)
    report = validate_pack(pack_copy)

    new_errors = [error for error in report.errors if error not in before]
    matching = [error for error in new_errors if all(part in error for part in expected)]
    assert matching, f"no new error with {expected} in {new_errors}"
    assert not report.ok
    with pytest.raises(PackError) as refused:
        load_pack(pack_copy)
    assert matching[0] in refused.value.problems
    assert matching[0] in str(refused.value)


def test_load_pack_lists_all_problems_at_once(pack_copy: Path) -> None:
    _missing_day(pack_copy)
    _edit_day(pack_copy, 11, _set("titel", "Tikfout"))

    with pytest.raises(PackError) as refused:
        load_pack(pack_copy)

    message = str(refused.value)
    assert "day-05.md" in message
    assert "'titel'" in message


def test_last_day_may_close_without_look_ahead(pack_copy: Path) -> None:
    _edit_day(pack_copy, 60, _set("look_ahead", ""))

    assert load_pack(pack_copy).lesson("standaard", 60).look_ahead == ""


def test_reading_minutes_are_computed_not_taken_from_front_matter(pack_copy: Path) -> None:
    _edit_day(pack_copy, 2, _set("reading_minutes", 9))

    lesson = load_pack(pack_copy).lesson("standaard", 2)

    text = "\n\n".join((lesson.body_markdown, lesson.assignment_markdown, lesson.look_ahead))
    assert lesson.reading_minutes == math.ceil(count_words(text) / WORDS_PER_MINUTE)
    assert lesson.reading_minutes < 9


def test_validate_pack_reports_a_missing_folder_instead_of_raising(tmp_path: Path) -> None:
    report = validate_pack(tmp_path / "nergens")

    assert not report.ok
    assert "not found" in report.errors[0]


# --- rendering ---------------------------------------------------------------------------------------------------


def test_render_escapes_placeholder_values_in_html() -> None:
    values = {**DEMO_VALUES, "organisatie": "A&B <script>"}

    html, text = render_markdown("Welkom bij **{organisatie}**, {voornaam}!", values)

    assert "<strong>A&amp;B &lt;script&gt;</strong>" in html
    assert "<script>" not in html
    assert text == "Welkom bij A&B <script>, Ans!"
    assert not LEFTOVER_PLACEHOLDER.search(html + text)


def test_render_does_not_read_placeholder_values_as_markdown() -> None:
    html, text = render_markdown("Hallo {voornaam}.", {"voornaam": "*Ans* [klik](https://example.org)"})

    assert "<em>" not in html
    assert "<a " not in html
    assert text == "Hallo *Ans* [klik](https://example.org)."


def test_render_escapes_raw_html_in_the_text_itself() -> None:
    html, _ = render_markdown('<img src="x" onerror="alert(1)"> hallo', {})

    assert "<img" not in html
    assert "&lt;img" in html


def test_render_plain_text_drops_markdown_markup() -> None:
    markdown = "Lees dit **goed**.\n\n- Bel {coach}.\n- Schrijf het op.\n\n1. Eerst\n2. Dan"

    _, text = render_markdown(markdown, DEMO_VALUES)

    assert text == "Lees dit goed.\n\n- Bel Sanne.\n- Schrijf het op.\n\n1. Eerst\n2. Dan"


def test_render_raises_when_a_placeholder_has_no_value() -> None:
    with pytest.raises(PackError, match=r"\{coach\}"):
        render_markdown("Binnenkort belt {coach} je.", {"voornaam": "Ans"})


# --- command line ------------------------------------------------------------------------------------------------


def test_cli_validate_prints_days_and_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(DEFAULT_PACK_DIR)]) == 0

    out = capsys.readouterr().out
    assert re.search(r"^standaard +day 07 +\d+ min +\d+ words +avg +[\d.]+ w/sentence +\S", out, re.MULTILINE)
    assert "0 error(s)" in out


def test_cli_validate_fails_on_a_broken_pack(pack_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _missing_day(pack_copy)

    assert main(["validate", str(pack_copy)]) == 1
    assert re.search(r"^ERROR day-05\.md", capsys.readouterr().out, re.MULTILINE)


def test_cli_titles_lists_numbered_titles(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["titles", str(DEFAULT_PACK_DIR), "--variant", "op-afstand"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 60
    assert lines[0] == f"01. {load_pack().lesson('op-afstand', 1).title}"


# --- local offers -----------------------------------------------------------------------------------------------

OFFER_TEXT = "Eerst iets algemeens.\n\n{lokaal_aanbod:bibliotheek}\n\nDaarna gaat de les verder."


def test_local_offer_paragraph_becomes_the_block_it_is_given() -> None:
    html, text = render_markdown(OFFER_TEXT, DEMO_VALUES, {"bibliotheek": ("<div>blok</div>\n", "BLOK")})

    assert html == "<p>Eerst iets algemeens.</p>\n<div>blok</div>\n<p>Daarna gaat de les verder.</p>\n"
    assert text == "Eerst iets algemeens.\n\nBLOK\n\nDaarna gaat de les verder."


def test_local_offer_paragraph_without_a_block_leaves_the_general_text() -> None:
    for offers in (None, {}, {"buurthuis": ("<div>ander</div>\n", "ANDER")}):
        html, text = render_markdown(OFFER_TEXT, DEMO_VALUES, offers)

        assert html == "<p>Eerst iets algemeens.</p>\n<p>Daarna gaat de les verder.</p>\n"
        assert text == "Eerst iets algemeens.\n\nDaarna gaat de les verder."


def test_a_local_offer_paragraph_counts_for_neither_reading_time_nor_sentence_length() -> None:
    assert count_words(OFFER_TEXT) == count_words("Eerst iets algemeens.\n\nDaarna gaat de les verder.")


def test_the_pack_names_local_offers_where_lessons_send_people_out() -> None:
    pack = load_pack()
    named = {
        day: local_offer_words(pack.lesson(variant, day).body_markdown)
        for variant in VARIANTS
        for day in range(1, pack.days + 1)
    }
    assert "bibliotheek" in named[25] and "buurthuis" in named[33] and "vrijwilligerswerk" in named[40]
    assert {"wandelgroep", "bewegen", "creatief", "cursus"} <= named[38]
    assert set().union(*named.values()) <= set(LOCAL_OFFER_WORDS)
