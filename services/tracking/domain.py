"""Tracking's rules, without I/O: is a hit a person or a machine, which hit is a mail's
first open, what a report or an unsubscribe request says, and what a page may show.

Machine hits are recorded and flagged, never dropped. Each hit is judged on signals;
only the verdict and the names of the signals that fired are kept, never the user agent
or the IP address the signals were read from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit
from uuid import UUID

from shared.branding import PLATFORM_NAME, brand_colour_or_default

Signal = Literal[
    "scanner_user_agent",
    "no_user_agent",
    "prefetch",
    "head_request",
    "link_burst",
    "instant_click",
    "fast_after_send",
    "privacy_proxy_user_agent",
]

# One of these alone makes a hit likely automated.
STRONG_SIGNALS: frozenset[Signal] = frozenset(
    {"scanner_user_agent", "no_user_agent", "prefetch", "head_request", "link_burst", "instant_click"}
)
# Each of these alone is what a person can do too; two together are a machine.
WEAK_SIGNALS: frozenset[Signal] = frozenset({"fast_after_send", "privacy_proxy_user_agent"})
_SIGNAL_ORDER: tuple[Signal, ...] = (
    "scanner_user_agent",
    "no_user_agent",
    "prefetch",
    "head_request",
    "link_burst",
    "instant_click",
    "fast_after_send",
    "privacy_proxy_user_agent",
)

# Lower-case substrings of user agents that security scanners, link checkers, crawlers
# and HTTP libraries send. A person's mail client or browser sends none of them.
# Sources: the vendors' own documentation of their URL-scanning and preview fetchers.
SCANNER_USER_AGENT_PARTS: tuple[str, ...] = (
    # security gateways that follow every link of a mail on delivery
    "barracuda",
    "mimecast",
    "proofpoint",
    "symantec",
    "messagelabs",
    "forcepoint",
    "trendmicro",
    "trend micro",
    "sophos",
    "fireeye",
    "zscaler",
    "cisco",
    "ironport",
    "safelinks",
    "google-safety",
    # crawlers and link previews
    "googlebot",
    "bingbot",
    "bingpreview",
    "slackbot",
    "twitterbot",
    "facebookexternalhit",
    "linkedinbot",
    "whatsapp",
    "telegrambot",
    "discordbot",
    "applebot",
    "yandex",
    "baiduspider",
    "crawler",
    "spider",
    "headlesschrome",
    "phantomjs",
    # HTTP libraries and command-line tools
    "python-",
    "aiohttp",
    "httpx",
    "curl/",
    "wget/",
    "go-http-client",
    "java/",
    "okhttp",
    "libwww",
    "apache-httpclient",
    "axios/",
    "node-fetch",
    "undici",
    "postmanruntime",
)
# Apple Mail Privacy Protection fetches every image at delivery with this bare user
# agent; Yahoo's proxy caches images ahead of the reader. Google's image proxy fetches
# when the reader opens the mail, so it is no signal.
PRIVACY_PROXY_USER_AGENTS: frozenset[str] = frozenset({"mozilla/5.0"})
PRIVACY_PROXY_USER_AGENT_PARTS: tuple[str, ...] = ("yahoomailproxy",)
_PREFETCH_HEADERS = (b"purpose", b"sec-purpose", b"x-purpose", b"x-moz")
# One pass over the user agent instead of one per listed part: every pixel hit is judged.
_SCANNER = re.compile("|".join(re.escape(part) for part in SCANNER_USER_AGENT_PARTS))
_PRIVACY_PROXY = re.compile("|".join(re.escape(part) for part in PRIVACY_PROXY_USER_AGENT_PARTS))


@dataclass(frozen=True)
class HitFacts:
    """What one HTTP request tells about its sender; read, judged and then forgotten."""

    method: str
    user_agent: str | None
    prefetch: bool = False


@dataclass(frozen=True)
class MailFacts:
    """What tracking knows about the mail a hit belongs to, at the moment of the hit."""

    seconds_since_sent: float
    distinct_links_in_window: int = 0
    """Different links of this mail hit within the burst window, this hit's own link included."""


@dataclass(frozen=True)
class JudgeRules:
    """Thresholds of the judgement (from the settings)."""

    fast_hit_s: float = 60.0
    instant_click_s: float = 10.0
    burst_min_links: int = 2


@dataclass(frozen=True)
class Verdict:
    """A person or probably a machine, and the signals that fired."""

    likely_automated: bool
    signals: tuple[Signal, ...]


def read_hit_facts(method: str, headers: Iterable[tuple[bytes, bytes]]) -> HitFacts:
    """The facts of a request from its raw (ASGI) headers."""
    user_agent, prefetch = _raw_facts(headers)
    return HitFacts(method=method.upper(), user_agent=_user_agent_text(user_agent), prefetch=prefetch)


def _raw_facts(headers: Iterable[tuple[bytes, bytes]]) -> tuple[bytes | None, bool]:
    """The raw user agent and whether the request says it is a prefetch."""
    user_agent: bytes | None = None
    prefetch = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"user-agent":
            user_agent = value
        elif lowered in _PREFETCH_HEADERS and any(word in value.lower() for word in (b"prefetch", b"preview")):
            prefetch = True
    return user_agent, prefetch


def _user_agent_text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("latin-1").strip() or None


def user_agent_signals(user_agent: str | None) -> set[Signal]:
    """What a user agent alone says."""
    if user_agent is None:
        return {"no_user_agent"}
    lowered = user_agent.lower()
    if _SCANNER.search(lowered):
        return {"scanner_user_agent"}
    if lowered in PRIVACY_PROXY_USER_AGENTS or _PRIVACY_PROXY.search(lowered):
        return {"privacy_proxy_user_agent"}
    return set()


def request_signals(hit: HitFacts) -> set[Signal]:
    """What the request alone says (its user agent, a prefetch, a HEAD): all that is kept of
    the request itself, before the user agent is forgotten."""
    signals = user_agent_signals(hit.user_agent)
    if hit.prefetch:
        signals.add("prefetch")
    if hit.method == "HEAD":
        signals.add("head_request")
    return signals


REMEMBERED_USER_AGENT_MAX = 512
"""Longer user agents are matched every time, never kept: a real one is a few hundred characters."""


def request_signal_bits(headers: Iterable[tuple[bytes, bytes]]) -> int:
    """signal_bits(request_signals(read_hit_facts("GET", headers))) of a pixel's GET,
    remembered: most pixel hits come from a few mail clients and proxies, so the same user
    agents are matched again and again. The memory is bounded in entries and in their size,
    so a flood of made-up (or huge) user agents only evicts or passes by."""
    user_agent, prefetch = _raw_facts(headers)
    if user_agent is not None and len(user_agent) > REMEMBERED_USER_AGENT_MAX:
        return _signal_bits_of(user_agent, prefetch)
    return _remembered_signal_bits(user_agent, prefetch)


def _signal_bits_of(user_agent: bytes | None, prefetch: bool) -> int:
    return signal_bits(
        request_signals(HitFacts(method="GET", user_agent=_user_agent_text(user_agent), prefetch=prefetch))
    )


_remembered_signal_bits = lru_cache(maxsize=1024)(_signal_bits_of)


def signal_bits(signals: Iterable[Signal]) -> int:
    """Signals as a small bit set (a pixel hit stores these, not the request)."""
    return sum(1 << _SIGNAL_ORDER.index(signal) for signal in set(signals))


def signals_from_bits(bits: int) -> set[Signal]:
    """The signals of a bit set made by signal_bits; unknown bits are ignored."""
    return {signal for index, signal in enumerate(_SIGNAL_ORDER) if bits & (1 << index)}


def judge_hit(hit: HitFacts, mail: MailFacts, rules: JudgeRules, *, kind: Literal["open", "link"] = "open") -> Verdict:
    """Judge one hit: one strong signal, or two weak ones, make it likely automated.

    Opens and links differ in one way: a person may open a mail the moment it arrives,
    but nobody reads it and follows a link within seconds; a scanner does.
    """
    return judge_signals(request_signals(hit), mail, rules, kind=kind)


def judge_signals(
    request: Iterable[Signal], mail: MailFacts, rules: JudgeRules, *, kind: Literal["open", "link"] = "open"
) -> Verdict:
    """judge_hit on what the request said (request_signals), as a hit processor has it later."""
    signals = set(request)
    if mail.distinct_links_in_window >= rules.burst_min_links:
        signals.add("link_burst")
    # A negative age is a clock difference between hosts: the hit came right after sending.
    age = max(mail.seconds_since_sent, 0.0)
    if kind == "link" and age < rules.instant_click_s:
        signals.add("instant_click")
    elif age < rules.fast_hit_s:
        signals.add("fast_after_send")
    strong = signals & STRONG_SIGNALS
    automated = bool(strong) or len(signals & WEAK_SIGNALS) >= 2
    return Verdict(likely_automated=automated, signals=tuple(s for s in _SIGNAL_ORDER if s in signals))


def mail_facts(
    *,
    hit_at: datetime,
    sent_at: datetime | None,
    token_sent_at: int,
    recent_links: Iterable[str] = (),
    this_link: str | None = None,
) -> MailFacts:
    """The facts of a mail at a hit. The mailer's mail.sent may not have arrived yet; the
    token's own rendering time then stands in for the sending time (they differ by seconds)."""
    reference = sent_at.timestamp() if sent_at is not None else float(token_sent_at)
    links = set(recent_links)
    if this_link is not None:
        links.add(this_link)
    return MailFacts(seconds_since_sent=hit_at.timestamp() - reference, distinct_links_in_window=len(links))


def first_open_flags(delivery_ids: Sequence[UUID], newly_opened: set[UUID]) -> list[bool]:
    """Which hits of a batch (in arrival order) are first opens: the database claimed the
    delivery for this batch, and this is the batch's earliest hit on it."""
    seen: set[UUID] = set()
    flags = []
    for delivery_id in delivery_ids:
        flags.append(delivery_id in newly_opened and delivery_id not in seen)
        seen.add(delivery_id)
    return flags


def was_sent_as_claimed(sent: tuple[UUID, UUID] | None, *, participant_id: UUID, org_id: UUID) -> bool:
    """Whether tracking saw this mail sent (mail.sent) to the participant and organisation
    the token names: only then is a hit on it an open of a mail that was really sent."""
    return sent is not None and sent == (participant_id, org_id)


def pixel_token(path: str) -> str | None:
    """The token in a pixel path '/o/<token>.gif', or None for any other path."""
    if not path.startswith("/o/") or not path.endswith(".gif"):
        return None
    token = path[3:-4]
    return token if token and "/" not in token else None


# --- clicks ----------------------------------------------------------------------------------

_UNSAFE_URL_CHARS = re.compile(r"[\x00-\x20\x7f\\]")


def safe_redirect_url(url: str | None) -> str | None:
    """The signed URL if a browser may be sent there: http(s) with a host, nothing that a
    browser could read as another scheme or host. Anything else is refused."""
    if not url or len(url) > 2048 or _UNSAFE_URL_CHARS.search(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return url


# --- assignment reports --------------------------------------------------------------------

REPORT_SCALE: dict[int, str] = {
    1: "Niet gelukt",
    2: "Een klein beetje gelukt",
    3: "Redelijk gelukt",
    4: "Goed gelukt",
    5: "Heel goed gelukt",
}
NOTE_MAX_LENGTH = 500


class ReportRefused(ValueError):
    """The report form was not filled in as asked; the message is Dutch, for the participant."""


@dataclass(frozen=True)
class ReportAnswer:
    """A participant's answer: a score on the five-point scale and an optional note."""

    score: int
    note: str | None


def read_report_form(form: Mapping[str, str]) -> ReportAnswer:
    """The answer in the report form, or ReportRefused with what to change."""
    raw_score = (form.get("score") or "").strip()
    if not raw_score.isdigit() or int(raw_score) not in REPORT_SCALE:
        raise ReportRefused("Kies eerst hoe de opdracht ging.")
    note = _clean_note(form.get("note"))
    if note is not None and len(note) > NOTE_MAX_LENGTH:
        raise ReportRefused(f"Je toelichting is te lang. Gebruik hoogstens {NOTE_MAX_LENGTH} tekens.")
    return ReportAnswer(score=int(raw_score), note=note)


def _clean_note(raw: str | None) -> str | None:
    if raw is None:
        return None
    # Browsers send line breaks as CRLF; other control characters have no place in a note.
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(char for char in text if char == "\n" or char >= " ")
    return text.strip() or None


def report_changed(previous: ReportAnswer | None, answer: ReportAnswer) -> bool:
    """A repeated submit of the same answer (a double click) is no new report."""
    return previous != answer


# --- unsubscribe --------------------------------------------------------------------------

UnsubscribeVia = Literal["one_click", "page"]
PAGE_CONFIRM_FIELD = "bevestigen"


def unsubscribe_via(form: Mapping[str, str]) -> UnsubscribeVia | None:
    """How a POST asks to unsubscribe: RFC 8058's one-click body, our page's button, or not at all."""
    if form.get("List-Unsubscribe", "").strip() == "One-Click":
        return "one_click"
    if form.get(PAGE_CONFIRM_FIELD) == "ja":
        return "page"
    return None


# --- branding on the pages ------------------------------------------------------------------


def page_branding(branding: Mapping[str, object] | None) -> dict[str, str | None]:
    """What the public pages show of an organisation, safe to put in HTML and CSS."""
    branding = branding or {}

    def text(name: str) -> str | None:
        value = branding.get(name)
        return str(value).strip() or None if value else None

    logo = text("logo_url")
    return {
        "display_name": text("display_name") or PLATFORM_NAME,
        "brand_colour": brand_colour_or_default(branding.get("brand_colour")),
        "logo_url": logo if logo and safe_redirect_url(logo) else None,
        "contact_phone": text("contact_phone"),
        "contact_email": text("contact_email"),
    }
