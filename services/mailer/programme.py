"""The programme pack: loading, validating and rendering the daily lessons of Meer contact."""

from __future__ import annotations

import argparse
import functools
import html
import math
import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

import yaml
from frontmatter.default_handlers import YAMLHandler
from markdown_it import MarkdownIt
from markdown_it.token import Token

from shared.events import LOCAL_OFFER_KINDS

ALLOWED_PLACEHOLDERS: frozenset[str] = frozenset({"voornaam", "organisatie", "coach", "telefoon_organisatie"})
LOCAL_OFFER_PLACEHOLDER = "lokaal_aanbod"
"""`{lokaal_aanbod:<word>}` on a paragraph of its own in a lesson's body: the organisation's offers of that kind
(the words are in shared.events.LOCAL_OFFER_KINDS). Without such offers the paragraph is left out, so the text
around it must read well on its own: that general text is the fallback."""
LOCAL_OFFER_WORDS: Mapping[str, str] = MappingProxyType({word: kind for kind, (word, _) in LOCAL_OFFER_KINDS.items()})
"""The pack's word for each kind of local offer, to the kind enrolment and the events use."""
DEFAULT_PACK_DIR: Path = Path(__file__).resolve().parent / "content" / "meer-contact" / "v1"
# B1 readers read slowly, so reading time is ceil(words / 120) rather than the usual 200-250.
WORDS_PER_MINUTE: int = 120
MAX_READING_MINUTES = 10
# B1 asks for short sentences; above this average a lesson gets hard to follow.
MAX_AVG_SENTENCE_WORDS = 20.0

BASE_VARIANT = "standaard"
MANIFEST_NAME = "manifest.toml"

_MANIFEST_FIELDS: dict[str, type] = {
    "name": str,
    "version": str,
    "language": str,
    "days": int,
    "variants": list,
    "default_variant": str,
}
_FRONT_MATTER_KEYS = frozenset({"day", "title", "reading_minutes", "assignment", "look_ahead", "variants"})
_VARIANT_KEYS = frozenset({"assignment", "title"})

_DAY_FILE_RE = re.compile(r"^day-(\d{2})\.md$")
_DAY_LIKE_RE = re.compile(r"^day-\d+\.md$")
_PLACEHOLDER_RE = re.compile(r"\{([^{}\n]*)\}")
_NAME_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_OFFER_RE = re.compile(r"\{" + LOCAL_OFFER_PLACEHOLDER + r":([^{}\n]*)\}")
_OFFER_PARAGRAPH_RE = re.compile(
    r"(?:\A|\n[ \t]*\n)[ \t]*\{" + LOCAL_OFFER_PLACEHOLDER + r":[^{}\n]*\}[ \t]*(?=\Z|\n[ \t]*\n)"
)
# Only what a browser would treat as markup: a tag, a closing tag, a comment/doctype or a processing instruction.
_HTML_RE = re.compile(r"<(?:/?[A-Za-z]|!|\?)")
_WORD_RE = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?…])[\"'”’)]*\s+")
# Front matter is YAML; a repeated top-level key would silently win, so it is caught on the raw text.
_TOP_LEVEL_KEY_RE = re.compile(r"^([A-Za-z_][\w-]*)\s*:", re.MULTILINE)

# Raw HTML stays off: lessons are written by people, and mail clients must never receive their markup as-is.
_MARKDOWN = MarkdownIt("commonmark", {"html": False})


class PackError(Exception):
    """A programme pack (or a request against it) is invalid; the message names the file and the field."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems: tuple[str, ...] = tuple(problems) or (message,)


@dataclass(frozen=True)
class Lesson:
    """One day of one variant, ready to render."""

    day: int
    title: str
    body_markdown: str
    assignment_markdown: str
    look_ahead: str
    reading_minutes: int


@dataclass(frozen=True)
class ProgrammePack:
    """A validated programme pack: its manifest and every lesson of every variant."""

    name: str
    version: str
    language: str
    days: int
    variants: tuple[str, ...]
    default_variant: str
    _lessons: Mapping[tuple[str, int], Lesson] = field(default_factory=dict, repr=False, compare=False)

    def lesson(self, variant: str, day: int) -> Lesson:
        """The lesson for a variant and day; PackError (never KeyError) when either is unknown."""
        if variant not in self.variants:
            raise PackError(f"unknown variant {variant!r} (pack has: {', '.join(self.variants)})")
        if not 1 <= day <= self.days:
            raise PackError(f"day {day} is outside 1..{self.days}")
        try:
            return self._lessons[(variant, day)]
        except KeyError:
            raise PackError(f"day {day} of variant {variant!r} is not in the pack") from None


@dataclass(frozen=True)
class DayReport:
    """Figures for one day of one variant, as shown by the validate command."""

    variant: str
    day: int
    title: str
    words: int
    reading_minutes: int
    avg_sentence_words: float


@dataclass(frozen=True)
class ValidationReport:
    """Everything wrong with a pack (errors) and the figures of every day that could be read."""

    errors: tuple[str, ...]
    days: tuple[DayReport, ...]

    @property
    def ok(self) -> bool:
        """True when the pack has no errors."""
        return not self.errors


@dataclass(frozen=True)
class _Manifest:
    name: str
    version: str
    language: str
    days: int
    variants: tuple[str, ...]
    default_variant: str


@dataclass(frozen=True)
class _Scan:
    manifest: _Manifest | None
    lessons: Mapping[tuple[str, int], Lesson]
    errors: tuple[str, ...]
    reports: tuple[DayReport, ...]


def load_pack(path: Path = DEFAULT_PACK_DIR) -> ProgrammePack:
    """Load and strictly validate a pack; raises PackError listing every problem found."""
    scan = _scan_pack(path)
    if scan.errors or scan.manifest is None:
        problems = scan.errors or (f"{path}: pack could not be read",)
        listing = "\n".join(f"- {problem}" for problem in problems)
        raise PackError(f"{path}: {len(problems)} problem(s) in programme pack:\n{listing}", problems)
    manifest = scan.manifest
    return ProgrammePack(
        name=manifest.name,
        version=manifest.version,
        language=manifest.language,
        days=manifest.days,
        variants=manifest.variants,
        default_variant=manifest.default_variant,
        _lessons=MappingProxyType(dict(scan.lessons)),
    )


def validate_pack(path: Path) -> ValidationReport:
    """Check a pack against every rule; content problems are returned as errors, never raised."""
    scan = _scan_pack(path)
    return ValidationReport(errors=scan.errors, days=scan.reports)


def render_markdown(
    text: str, values: Mapping[str, str], offers: Mapping[str, tuple[str, str]] | None = None
) -> tuple[str, str]:
    """Return (html, plain_text) of a Markdown snippet with placeholders filled.

    Raw HTML in the snippet is escaped, not passed on. Placeholder values are HTML-escaped in the html output
    and never read as Markdown: they are swapped in after rendering. The plain text drops Markdown markup
    (bullets become "- ", bold markers go). Raises PackError if a placeholder in the text has no value.
    `offers` maps a kind's pack word to its (html, text) block, already escaped; a `{lokaal_aanbod:<word>}`
    paragraph without a block is left out (the lesson's general text stands).
    """
    rendered_html, plain, sentinels, offer_sentinels = _render_with_sentinels(text)
    missing = [name for name in sentinels if name not in values]
    if missing:
        raise PackError("no value for placeholder(s): " + ", ".join(f"{{{name}}}" for name in missing))
    for name, sentinel in sentinels.items():
        rendered_html = rendered_html.replace(sentinel, html.escape(values[name], quote=True))
        plain = plain.replace(sentinel, values[name])
    for word, sentinel in offer_sentinels.items():
        block_html, block_text = (offers or {}).get(word, ("", ""))
        rendered_html = rendered_html.replace(f"<p>{sentinel}</p>\n", block_html)
        paragraphs = [block_text if paragraph == sentinel else paragraph for paragraph in plain.split("\n\n")]
        plain = "\n\n".join(paragraph for paragraph in paragraphs if paragraph)
    return rendered_html, plain


@functools.lru_cache(maxsize=2048)
def _render_with_sentinels(text: str) -> tuple[str, str, dict[str, str], dict[str, str]]:
    """Markdown rendered once per text (the mailer renders the same lesson for thousands of people)."""
    names = sorted(set(_NAME_RE.findall(text)))
    words = sorted(set(_OFFER_RE.findall(text)))
    # Plain letters and digits pass through Markdown untouched (no emphasis, escaping or URL encoding),
    # so the values can be put back into the output without ever being parsed.
    sentinels = {name: f"MCPLACEHOLDER{index}X" for index, name in enumerate(names)}
    offer_sentinels = {word: f"MCLOCALOFFER{index}X" for index, word in enumerate(words)}
    prepared = _OFFER_RE.sub(lambda match: offer_sentinels[match.group(1)], text)
    prepared = _NAME_RE.sub(lambda match: sentinels[match.group(1)], prepared)
    return _MARKDOWN.render(prepared), _markdown_to_plain(prepared), sentinels, offer_sentinels


def local_offer_words(text: str) -> frozenset[str]:
    """The kinds of local offer (pack words) a lesson text names."""
    return frozenset(_OFFER_RE.findall(text))


def count_words(text: str) -> int:
    """Words in a Markdown snippet as a reader sees them (a placeholder counts as one word)."""
    return _count_words_plain(_reader_text(text))


def average_sentence_words(text: str) -> float:
    """Average words per sentence; list items and lines count as sentences, as readers take them in one go."""
    return _average_sentence_words_plain(_reader_text(text))


@functools.lru_cache(maxsize=4096)
def _reader_text(text: str) -> str:
    # Cached because every variant, check and test re-reads the same day texts; Markdown parsing dominates.
    # A local-offer paragraph is a list of facts, not prose: it is left out of reading time and sentence length.
    return _markdown_to_plain(_PLACEHOLDER_RE.sub("X", _OFFER_PARAGRAPH_RE.sub("", text)))


def _count_words_plain(plain: str) -> int:
    return len(_WORD_RE.findall(plain))


def _average_sentence_words_plain(plain: str) -> float:
    counts = [
        len(_WORD_RE.findall(sentence)) for line in plain.splitlines() for sentence in _SENTENCE_END_RE.split(line)
    ]
    counts = [count for count in counts if count]
    return sum(counts) / len(counts) if counts else 0.0


def reading_minutes(words: int) -> int:
    """Minutes a B1 reader needs for this many words (at least one)."""
    return max(1, math.ceil(words / WORDS_PER_MINUTE))


# --- scanning -------------------------------------------------------------------------------------------------


def _scan_pack(path: Path) -> _Scan:
    errors: list[str] = []
    if not path.is_dir():
        return _Scan(None, {}, (f"{path}: pack folder not found",), ())
    manifest = _read_manifest(path / MANIFEST_NAME, errors)
    days = manifest.days if manifest else None
    # Without a manifest the variant names are unknown: check the base text and the overrides' shape only.
    known_variants = manifest.variants if manifest else None
    variants = known_variants or (BASE_VARIANT,)

    day_files: dict[int, Path] = {}
    for entry in sorted(path.iterdir()):
        if entry.name == MANIFEST_NAME:
            continue
        match = _DAY_FILE_RE.match(entry.name)
        if match is None or not entry.is_file():
            hint = " (name day files day-NN.md, two digits)" if _DAY_LIKE_RE.match(entry.name) else ""
            errors.append(f"{entry.name}: stray file in pack folder{hint}")
            continue
        number = int(match.group(1))
        if days is not None and not 1 <= number <= days:
            errors.append(f"{entry.name}: stray file, the pack has days 1..{days}")
            continue
        day_files[number] = entry
    if days is not None:
        for number in range(1, days + 1):
            if number not in day_files:
                errors.append(f"day-{number:02d}.md: day {number:02d} is missing (all variants)")

    lessons: dict[tuple[str, int], Lesson] = {}
    reports: list[DayReport] = []
    claimed: dict[int, list[str]] = {}
    last_day = days if days is not None else max(day_files, default=0)
    for number, file in sorted(day_files.items()):
        parsed = _read_day(file, number, last_day, known_variants, errors)
        if parsed is None:
            continue
        claimed_day, day_lessons = parsed
        if claimed_day is not None:
            claimed.setdefault(claimed_day, []).append(file.name)
        for variant, day_lesson in day_lessons.items():
            lessons[(variant, number)] = day_lesson
    for claimed_day, files in sorted(claimed.items()):
        if len(files) > 1:
            errors.append(f"day {claimed_day:02d} is claimed by more than one file: {', '.join(files)}")

    for variant in variants:
        for number in sorted(day_files):
            lesson = lessons.get((variant, number))
            if lesson is None:
                continue
            report, problems = _check_lesson(day_files[number].name, variant, lesson)
            reports.append(report)
            errors.extend(problems)
    return _Scan(manifest, lessons, tuple(errors), tuple(reports))


def _read_manifest(file: Path, errors: list[str]) -> _Manifest | None:
    name = file.name
    if not file.is_file():
        errors.append(f"{name}: manifest is missing")
        return None
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        errors.append(f"{name}: not valid TOML: {error}")
        return None
    before = len(errors)
    for key in sorted(set(data) - set(_MANIFEST_FIELDS)):
        errors.append(f"{name}: unknown key {key!r}")
    for key, expected in _MANIFEST_FIELDS.items():
        if key not in data:
            errors.append(f"{name}: {key!r} is missing")
        elif not isinstance(data[key], expected) or isinstance(data[key], bool):
            errors.append(f"{name}: {key!r} must be a {expected.__name__}")
    if len(errors) > before:
        return None

    days, variants, default = data["days"], data["variants"], data["default_variant"]
    if days < 1:
        errors.append(f"{name}: 'days' must be at least 1")
    if not variants or not all(isinstance(variant, str) and variant for variant in variants):
        errors.append(f"{name}: 'variants' must be a non-empty list of names")
    elif len(set(variants)) != len(variants):
        errors.append(f"{name}: 'variants' lists a name twice")
    elif BASE_VARIANT not in variants:
        errors.append(f"{name}: 'variants' must include the base variant {BASE_VARIANT!r}")
    elif default not in variants:
        errors.append(f"{name}: 'default_variant' {default!r} is not in 'variants'")
    for key in ("name", "version", "language"):
        if not data[key].strip():
            errors.append(f"{name}: {key!r} is empty")
    if len(errors) > before:
        return None
    return _Manifest(data["name"], data["version"], data["language"], days, tuple(variants), default)


def _read_day(
    file: Path, number: int, last_day: int, variants: tuple[str, ...] | None, errors: list[str]
) -> tuple[int | None, dict[str, Lesson]] | None:
    """Parse one day file into a lesson per variant; problems go to errors, None when unusable."""
    name = file.name
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        errors.append(f"{name}: not valid UTF-8")
        return None
    handler = YAMLHandler()
    text = text.strip()
    if not handler.detect(text):
        errors.append(f"{name}: front matter is missing (the file must start with ---)")
        return None
    try:
        front, body = handler.split(text)
    except ValueError:
        errors.append(f"{name}: front matter is not closed with ---")
        return None
    try:
        meta = handler.load(front)
    except yaml.YAMLError as error:
        errors.append(f"{name}: front matter is not valid YAML: {error}".replace("\n", " "))
        return None
    if not isinstance(meta, dict):
        errors.append(f"{name}: front matter must be a mapping of keys")
        return None
    before = len(errors)

    keys = _TOP_LEVEL_KEY_RE.findall(front)
    for key in sorted({key for key in keys if keys.count(key) > 1}):
        errors.append(f"{name}: {key!r} appears more than once in the front matter")
    for key in sorted(set(map(str, meta)) - _FRONT_MATTER_KEYS):
        errors.append(f"{name}: unknown front-matter key {key!r}")

    claimed: int | None = None
    day = meta.get("day")
    if day is None:
        errors.append(f"{name}: 'day' is missing")
    elif not isinstance(day, int) or isinstance(day, bool):
        errors.append(f"{name}: 'day' must be a whole number")
    else:
        claimed = day
        if day != number:
            errors.append(f"{name}: 'day' is {day} but the file name says {number}")
    minutes = meta.get("reading_minutes")
    if minutes is not None and (not isinstance(minutes, int) or isinstance(minutes, bool) or minutes < 1):
        errors.append(f"{name}: 'reading_minutes' must be a whole number of at least 1")

    title = _text_field(meta, "title", name, errors, one_line=True)
    assignment = _text_field(meta, "assignment", name, errors)
    # The last day has no tomorrow: it may close with a line of its own, or with nothing.
    look_ahead = _text_field(meta, "look_ahead", name, errors, one_line=True, required=number != last_day)
    body = body.strip()
    if not body:
        errors.append(f"{name}: 'body' is empty")
    else:
        _check_text(body, f"{name}: 'body'", errors, offers_allowed=True)

    overrides = _read_variants(meta.get("variants"), name, variants, errors)
    if len(errors) > before or title is None or assignment is None or look_ahead is None:
        return claimed, {}

    base = Lesson(number, title, body, assignment, look_ahead, 0)
    lessons: dict[str, Lesson] = {}
    for variant in variants or (BASE_VARIANT,):
        override = overrides.get(variant, {})
        lesson = Lesson(
            day=number,
            title=override.get("title", base.title),
            body_markdown=base.body_markdown,
            assignment_markdown=override.get("assignment", base.assignment_markdown),
            look_ahead=base.look_ahead,
            reading_minutes=0,
        )
        lessons[variant] = replace(lesson, reading_minutes=reading_minutes(_count_words_plain(_lesson_plain(lesson))))
    return claimed, lessons


def _text_field(
    meta: Mapping[str, object],
    key: str,
    where: str,
    errors: list[str],
    *,
    one_line: bool = False,
    required: bool = True,
) -> str | None:
    value = meta.get(key)
    if value is None:
        if required:
            errors.append(f"{where}: {key!r} is missing")
            return None
        return ""
    if not isinstance(value, str):
        errors.append(f"{where}: {key!r} must be text")
        return None
    value = value.strip()
    if not value:
        if required:
            errors.append(f"{where}: {key!r} is empty")
            return None
        return ""
    if one_line and "\n" in value:
        errors.append(f"{where}: {key!r} must be a single line")
    _check_text(value, f"{where}: {key!r}", errors)
    return value


def _read_variants(
    raw: object, where: str, variants: tuple[str, ...] | None, errors: list[str]
) -> dict[str, dict[str, str]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        errors.append(f"{where}: 'variants' must be a mapping of variant names")
        return {}
    overrides: dict[str, dict[str, str]] = {}
    for variant, fields in raw.items():
        label = f"variants.{variant}"
        if variant == BASE_VARIANT:
            errors.append(f"{where}: {label!r}: {BASE_VARIANT!r} is the base text and cannot be a variant")
            continue
        if variants is not None and variant not in variants:
            errors.append(f"{where}: {label!r}: unknown variant {variant!r} (pack has: {', '.join(variants)})")
            continue
        if not isinstance(fields, dict) or not fields:
            errors.append(f"{where}: {label!r} must set 'assignment' and/or 'title'")
            continue
        for key in sorted(set(map(str, fields)) - _VARIANT_KEYS):
            errors.append(f"{where}: unknown key {label + '.' + key!r} (a variant may only replace assignment, title)")
        override: dict[str, str] = {}
        for key in sorted(_VARIANT_KEYS & set(fields)):
            value = _text_field(fields, key, where, errors, one_line=key == "title")
            if value is not None:
                override[key] = value
        overrides[variant] = override
    return overrides


def _check_text(text: str, where: str, errors: list[str], *, offers_allowed: bool = False) -> None:
    html_match = _HTML_RE.search(text)
    if html_match:
        snippet = text[html_match.start() :].split("\n")[0][:30]
        errors.append(f"{where} contains raw HTML near {snippet!r}")
    for match in _PLACEHOLDER_RE.finditer(text):
        inner = match.group(1)
        if inner.startswith(LOCAL_OFFER_PLACEHOLDER + ":"):
            word = inner.partition(":")[2]
            if word not in LOCAL_OFFER_WORDS:
                errors.append(
                    f"{where} has unknown kind of local offer {match.group(0)!r} "
                    f"(allowed: {', '.join(sorted(LOCAL_OFFER_WORDS))})"
                )
            elif not offers_allowed:
                errors.append(f"{where} has {match.group(0)!r}, but local offers can only be named in the body")
        elif inner not in ALLOWED_PLACEHOLDERS:
            errors.append(
                f"{where} has unknown placeholder {match.group(0)!r} "
                f"(allowed: {', '.join('{' + name + '}' for name in sorted(ALLOWED_PLACEHOLDERS))}, "
                f"{{{LOCAL_OFFER_PLACEHOLDER}:<kind>}})"
            )
    standalone = {match.start() + match.group(0).index("{") for match in _OFFER_PARAGRAPH_RE.finditer(text)}
    for match in _OFFER_RE.finditer(text):
        if offers_allowed and match.start() not in standalone:
            errors.append(
                f"{where}: {match.group(0)!r} must be a paragraph of its own (blank lines around it), "
                "so the lesson reads well without it"
            )
    leftover = _PLACEHOLDER_RE.sub("", text)
    for brace in "{}":
        if brace in leftover:
            errors.append(f"{where} has a stray {brace!r}")


def _lesson_plain(lesson: Lesson) -> str:
    """What the reader reads of a lesson (body, assignment, look-ahead), as plain text."""
    parts = (lesson.body_markdown, lesson.assignment_markdown, lesson.look_ahead)
    return "\n\n".join(_reader_text(part) for part in parts if part)


def _check_lesson(file_name: str, variant: str, lesson: Lesson) -> tuple[DayReport, list[str]]:
    plain = _lesson_plain(lesson)
    words = _count_words_plain(plain)
    average = _average_sentence_words_plain(plain)
    report = DayReport(variant, lesson.day, lesson.title, words, lesson.reading_minutes, round(average, 1))
    problems: list[str] = []
    where = f"{file_name} ({variant})"
    if lesson.reading_minutes > MAX_READING_MINUTES:
        problems.append(
            f"{where}: 'reading time' is {lesson.reading_minutes} min ({words} words), more than {MAX_READING_MINUTES}"
        )
    if average > MAX_AVG_SENTENCE_WORDS:
        problems.append(
            f"{where}: 'readability': sentences average {average:.1f} words, more than {MAX_AVG_SENTENCE_WORDS:g}"
        )
    return report, problems


# --- Markdown to plain text -------------------------------------------------------------------------------------


def _markdown_to_plain(text: str) -> str:
    """Readable plain text of a Markdown snippet: no markup, bullets as "- ", paragraphs apart."""
    blocks: list[tuple[str, int]] = []  # (text, number of the outermost list it is in, 0 outside lists)
    lists: list[bool] = []  # True for an ordered list
    list_number = 0
    quote_depth = 0
    marker = ""
    for token in _MARKDOWN.parse(text):
        if token.type in ("bullet_list_open", "ordered_list_open"):
            list_number += not lists
            lists.append(token.type == "ordered_list_open")
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif token.type == "list_item_open":
            marker = f"{token.info}. " if lists and lists[-1] and token.info else "- "
        elif token.type in ("inline", "fence", "code_block"):
            content = _inline_to_plain(token.children or []) if token.type == "inline" else token.content.rstrip("\n")
            # A list item's first block carries the marker; later blocks of the item line up under its text.
            lead = "  " * max(0, len(lists) - 1) + marker if marker else "  " * len(lists)
            marker = ""
            hang = " " * len(lead)
            lines = content.split("\n")
            content = "\n".join([lead + lines[0], *(hang + line for line in lines[1:])])
            if quote_depth:
                content = "\n".join("> " * quote_depth + line for line in content.split("\n"))
            blocks.append((content, list_number if lists else 0))
        elif token.type == "hr":
            blocks.append(("----------", 0))
        elif token.type == "blockquote_open":
            quote_depth += 1
        elif token.type == "blockquote_close":
            quote_depth -= 1
    # Items of one list stay on consecutive lines; everything else is a paragraph of its own.
    out = ""
    previous_list = 0
    for index, (block, in_list) in enumerate(blocks):
        if index:
            out += "\n" if in_list and in_list == previous_list else "\n\n"
        out += block
        previous_list = in_list
    return out


def _inline_to_plain(children: Sequence[Token]) -> str:
    parts: list[str] = []
    href_stack: list[str] = []
    link_start: list[int] = []
    for child in children:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif child.type == "image":
            parts.append(child.content)
        elif child.type == "link_open":
            href_stack.append(str(child.attrGet("href") or ""))
            link_start.append(len(parts))
        elif child.type == "link_close" and href_stack:
            href, start = href_stack.pop(), link_start.pop()
            label = "".join(parts[start:])
            # Readers of plain text cannot click, so the address goes next to its label.
            if href and href not in (label, f"mailto:{label}", f"tel:{label}"):
                parts.append(f" ({href})")
    return "".join(parts)


# --- command line -----------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: `validate [PATH]` checks a pack, `titles [PATH] [--variant NAME]` lists its titles."""
    parser = argparse.ArgumentParser(prog="python -m services.mailer.programme", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check a pack and show reading time and sentence length per day")
    validate.add_argument("path", nargs="?", type=Path, default=DEFAULT_PACK_DIR)
    titles = commands.add_parser("titles", help="list the titles of one variant")
    titles.add_argument("path", nargs="?", type=Path, default=DEFAULT_PACK_DIR)
    titles.add_argument("--variant", default=BASE_VARIANT)
    args = parser.parse_args(argv)
    if args.command == "validate":
        return _print_validation(args.path)
    return _print_titles(args.path, args.variant)


def _print_validation(path: Path) -> int:
    report = validate_pack(path)
    width = max((len(day.variant) for day in report.days), default=len(BASE_VARIANT))
    for day in report.days:
        print(
            f"{day.variant:<{width}}  day {day.day:02d}  {day.reading_minutes:>2} min  {day.words:>4} words  "
            f"avg {day.avg_sentence_words:4.1f} w/sentence  {day.title}"
        )
    print()
    variants = list(dict.fromkeys(day.variant for day in report.days))
    for variant in variants:
        days = [day for day in report.days if day.variant == variant]
        minutes = [day.reading_minutes for day in days]
        averages = [day.avg_sentence_words for day in days]
        words = [day.words for day in days]
        print(
            f"{variant:<{width}}  {len(days)} days  reading time {min(minutes)}-{max(minutes)} min  "
            f"words {min(words)}-{max(words)}  avg sentence {min(averages):.1f}-{max(averages):.1f} words"
        )
    print(f"{len(report.errors)} error(s)")
    for error in report.errors:
        print(f"ERROR {error}")
    return 0 if report.ok else 1


def _print_titles(path: Path, variant: str) -> int:
    scan = _scan_pack(path)
    known = scan.manifest.variants if scan.manifest else (BASE_VARIANT,)
    if variant not in known:
        print(f"unknown variant {variant!r} (pack has: {', '.join(known)})", file=sys.stderr)
        return 2
    for (lesson_variant, day), lesson in sorted(scan.lessons.items(), key=lambda item: item[0][1]):
        if lesson_variant == variant:
            print(f"{day:02d}. {lesson.title}")
    if scan.errors:
        # Titles are still useful while a pack is being written; the warning keeps it from passing as valid.
        print(f"{len(scan.errors)} error(s) in the pack; run `validate` for details", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
