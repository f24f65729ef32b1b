"""Rendering mails: the daily programme mail (the lesson from the pack, in the
organisation's branding, with signed tracking links) and the transactional mails.
Pure: no network, no database."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any
from uuid import UUID

import dkim
from cryptography.fernet import MultiFernet
from markupsafe import Markup
from pydantic import ValidationError

from services.mailer.programme import LOCAL_OFFER_WORDS, Lesson, local_offer_words, render_markdown
from shared.branding import brand_colour_or_default, readable_text_colour
from shared.events import LOCAL_OFFER_KINDS, Branding, LocalOffer
from shared.mailer_links import open_link
from shared.templating import template_environment
from shared.text import is_single_line
from shared.tracking_tokens import QuestionnaireMoment, QuestionnaireToken, TokenKind, TokenSigner, TrackingToken

_templates = template_environment(Path(__file__).parent / "templates")


class DkimSigner:
    """Signs outgoing mail with DKIM (dkimpy), covering the unsubscribe headers too."""

    HEADERS = (b"From", b"To", b"Subject", b"Date", b"Message-ID", b"List-Unsubscribe", b"List-Unsubscribe-Post")

    def __init__(self, *, domain: str, selector: str, private_key_pem: bytes) -> None:
        self.domain = domain.encode()
        self.selector = selector.encode()
        self.private_key_pem = private_key_pem

    def sign(self, raw: bytes) -> bytes:
        present = [h for h in self.HEADERS if h.lower() + b":" in raw.lower()]
        header = dkim.sign(raw, self.selector, self.domain, self.private_key_pem, include_headers=present)
        return bytes(header) + raw


@dataclass(frozen=True)
class MailSettings:
    from_address: str
    message_id_domain: str
    tracking_base_url: str
    dkim: DkimSigner | None = None


@dataclass(frozen=True)
class MailContext:
    """Everything one programme mail is made of."""

    delivery_id: UUID
    participant_id: UUID
    org_id: UUID
    to_address: str
    first_name: str
    coach_name: str
    organisation_name: str
    branding: dict[str, Any]
    lesson: Lesson
    day: int
    programme_days: int
    sent_at: datetime
    local_offers: Sequence[Mapping[str, Any]] = ()
    """The organisation's local offers as the mailer's copy holds them; none: lessons keep their general text."""


def message_id(mail_id: UUID, domain: str, kind: str = "delivery") -> str:
    """Derived from the delivery, so a resend after a crash carries the same id."""
    return f"<{kind}-{mail_id}@{domain}>"


# The classic (compat32) email API stores headers as given instead of parsing every one into
# objects: a third of the per-mail cost at 10,000 mails a day. Bodies go out as base64 (C-fast).
_WIRE_POLICY = compat32.clone(linesep="\r\n", max_line_length=998)  # long unsubscribe URLs stay on one line


def to_wire(message: MIMEMultipart, settings: MailSettings) -> bytes:
    """The bytes sent over SMTP (CRLF line ends), DKIM-signed when a key is configured."""
    raw = message.as_bytes(policy=_WIRE_POLICY)
    return settings.dkim.sign(raw) if settings.dkim else raw


def _brand(branding: dict[str, Any], organisation_name: str) -> dict[str, Any]:
    """Every Branding field present (older or partial copies lack some), with safe defaults,
    and the text colour that reads on the brand colour."""
    brand: dict[str, Any] = dict.fromkeys(Branding.model_fields)
    brand.update({"display_name": organisation_name, **{k: v for k, v in branding.items() if v is not None}})
    brand["brand_colour"] = brand_colour_or_default(brand["brand_colour"])
    brand["text_colour"] = readable_text_colour(brand["brand_colour"])
    return brand


def _message(text: str, html: str) -> MIMEMultipart:
    message = MIMEMultipart("alternative")
    message.attach(MIMEText(text, "plain", "utf-8"))
    message.attach(MIMEText(html, "html", "utf-8"))
    return message


class UnsafeHeaderError(ValueError):
    """A header value holds a control character (a CR/LF would start a header of its own)."""


def _header_value(name: str, value: str) -> str:
    # Never trust the copy: data written before input was checked, or by a path that skipped it.
    if not is_single_line(value):
        raise UnsafeHeaderError(f"the {name} header would contain a control character")
    return value


def _headers(
    message: MIMEMultipart,
    *,
    sender_name: str,
    settings: MailSettings,
    to: str,
    subject: str,
    reply_to: str | None,
    sent_at: datetime,
    msg_id: str,
) -> None:
    sender_name, to = _header_value("From", sender_name), _header_value("To", to)
    subject = _header_value("Subject", subject)
    message["From"] = formataddr((sender_name, settings.from_address), charset="utf-8")
    message["To"] = to
    if reply_to:
        message["Reply-To"] = _header_value("Reply-To", reply_to)
    message["Subject"] = subject if subject.isascii() else Header(subject, "utf-8").encode()
    message["Date"] = format_datetime(sent_at)
    message["Message-ID"] = msg_id


_OFFER_STYLE = "margin:0 0 16px;padding:12px 16px;border-left:4px solid {colour};background:#f6f8fa;"


def local_offer_blocks(
    words: frozenset[str], offers: Sequence[Mapping[str, Any]], link: Callable[[str], str], brand_colour: str
) -> dict[str, tuple[str, str]]:
    """The (html, text) block per pack word of a kind the organisation has offers of; a kind it has none
    of gets no block, so the lesson's general text stands. Offers come from an event copy: one that does
    not parse is left out rather than holding up the mail."""
    by_kind: dict[str, list[LocalOffer]] = {}
    for raw in offers:
        try:
            offer = LocalOffer.model_validate(raw)
        except ValidationError:
            continue
        by_kind.setdefault(offer.kind, []).append(offer)
    blocks: dict[str, tuple[str, str]] = {}
    for word in sorted(words):
        found = by_kind.get(LOCAL_OFFER_WORDS.get(word, ""), [])
        if found:
            heading = f"{LOCAL_OFFER_KINDS[found[0].kind][1]} bij jou in de buurt"
            items = "".join(_offer_html(offer, link) for offer in found)
            blocks[word] = (
                f'<div style="{_OFFER_STYLE.format(colour=html.escape(brand_colour))}">'
                f'<p style="margin:0 0 8px;"><strong>{html.escape(heading)}</strong></p>{items}</div>\n',
                heading.upper() + "\n\n" + "\n\n".join(_offer_text(offer) for offer in found),
            )
    return blocks


def _offer_facts(offer: LocalOffer) -> list[tuple[str, str]]:
    facts = [("Waar", offer.location), ("Wanneer", offer.schedule), ("Telefoon", offer.phone)]
    return [(label, value) for label, value in facts if value]


def _web_address(offer: LocalOffer) -> str | None:
    # Enrolment checks it; the copy is still not trusted with a link of another scheme.
    website = offer.website
    return website if website and website.lower().startswith(("https://", "http://")) else None


def _offer_html(offer: LocalOffer, link: Callable[[str], str]) -> str:
    lines = [f"<strong>{html.escape(offer.name)}</strong>"]
    if offer.description.strip():
        lines.append("<br>".join(html.escape(line) for line in offer.description.strip().splitlines()))
    lines += [f"{label}: {html.escape(value)}" for label, value in _offer_facts(offer)]
    website = _web_address(offer)
    if website:
        href = html.escape(link(website), quote=True)
        lines.append(f'Website: <a href="{href}" style="color:#1a4f73;">{html.escape(website)}</a>')
    return '<p style="margin:0 0 8px;">' + "<br>".join(lines) + "</p>"


def _offer_text(offer: LocalOffer) -> str:
    lines = [f"- {offer.name}"]
    if offer.description.strip():
        lines += [f"  {line}" for line in offer.description.strip().splitlines()]
    lines += [f"  {label}: {value}" for label, value in _offer_facts(offer)]
    website = _web_address(offer)
    if website:
        lines.append(f"  Website: {website}")
    return "\n".join(lines)


def render_programme_mail(context: MailContext, settings: MailSettings, signer: TokenSigner) -> MIMEMultipart:
    """The multipart (plain text + HTML) message for one delivery."""
    brand = _brand(context.branding, context.organisation_name)
    values = {
        "voornaam": context.first_name,
        "organisatie": brand["display_name"],
        "coach": context.coach_name,
        "telefoon_organisatie": brand.get("contact_phone") or brand.get("contact_email") or brand["display_name"],
    }

    def link(kind: TokenKind, url: str | None = None, suffix: str = "") -> str:
        token = TrackingToken(
            k=kind,
            d=context.delivery_id,
            p=context.participant_id,
            o=context.org_id,
            n=context.day,
            t=int(context.sent_at.timestamp()),
            u=url,
        )
        return f"{settings.tracking_base_url}/{kind[0]}/{signer.sign(token)}{suffix}"

    offers = local_offer_blocks(
        local_offer_words(context.lesson.body_markdown),
        context.local_offers,
        lambda url: link("click", url),
        brand["brand_colour"],
    )
    body_html, body_text = render_markdown(context.lesson.body_markdown, values, offers)
    assignment_html, assignment_text = render_markdown(context.lesson.assignment_markdown, values)
    look_ahead_html, look_ahead_text = (
        render_markdown(context.lesson.look_ahead, values) if context.lesson.look_ahead else ("", "")
    )

    unsubscribe_url = link("unsubscribe")
    # The loneliness questionnaire: at intake in the first mail, at the end in the last one.
    moment: QuestionnaireMoment | None = (
        "intake" if context.day == 1 else "end" if context.day == context.programme_days else None
    )
    questionnaire = (
        questionnaire_url(settings, signer, participant_id=context.participant_id, org_id=context.org_id, moment=moment)
        if moment
        else None
    )
    subject = f"Dag {context.day} van {context.programme_days}: {context.lesson.title}"
    template_values = {
        "ctx": context,
        "brand": brand,
        "subject": subject,
        "body_html": Markup(body_html),  # noqa: S704 - rendered by render_markdown with escaped values
        "assignment_html": Markup(assignment_html),  # noqa: S704
        "look_ahead_html": Markup(look_ahead_html),  # noqa: S704
        "body_text": body_text,
        "assignment_text": assignment_text,
        "look_ahead_text": look_ahead_text,
        "pixel_url": link("open", suffix=".gif"),
        "report_url": link("report"),
        "unsubscribe_url": unsubscribe_url,
        "questionnaire_url": questionnaire,
        "questionnaire_moment": moment,
        "website_url": link("click", brand["website"]) if brand.get("website") else None,
    }
    message = _message(
        _templates.get_template("lesson.txt.j2").render(template_values),
        _templates.get_template("lesson.html.j2").render(template_values),
    )
    _headers(
        message,
        sender_name=brand.get("sender_name") or brand["display_name"],
        settings=settings,
        to=context.to_address,
        subject=subject,
        reply_to=brand.get("reply_to") or brand.get("contact_email"),
        sent_at=context.sent_at,
        msg_id=message_id(context.delivery_id, settings.message_id_domain),
    )
    # RFC 8058 one-click unsubscribe: a POST to this URL unsubscribes, a GET only asks.
    message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return message


def questionnaire_url(
    settings: MailSettings, signer: TokenSigner, *, participant_id: UUID, org_id: UUID, moment: QuestionnaireMoment
) -> str:
    """The signed link to tracking's questionnaire page for one participant and one moment."""
    token = QuestionnaireToken(p=participant_id, o=org_id, m=moment)
    return f"{settings.tracking_base_url}/q/{signer.sign_questionnaire(token)}"


TRANSACTIONAL_SUBJECTS = {
    "confirmation": "Bevestig je aanmelding bij {organisation}",
    "invitation": "Je account voor Meer contact bij {organisation}",
    "stop_confirmation": "Je ontvangt geen mails meer van {organisation}",
    "digest": "Wie bel je vandaag? Je overzicht van {date}",
    "questionnaire_follow_up": "Hoe gaat het nu met je? Zes korte vragen van {organisation}",
    "questionnaire_reminder": "Nog even: zes korte vragen van {organisation}",
}


LINK_FIELDS = {"invitation": "set_password_url", "confirmation": "confirm_url"}
"""The template variable each kind's sealed link is opened into."""


def with_opened_link(kind: str, context: dict[str, Any], *, keys: MultiFernet, now: datetime) -> dict[str, Any]:
    """The context with its sealed link (if any) opened, for rendering only; never stored."""
    if "sealed_link" not in context:
        return context
    rest = {name: value for name, value in context.items() if name != "sealed_link"}
    return {**rest, LINK_FIELDS[kind]: open_link(str(context["sealed_link"]), keys=keys, now=now)}


def render_transactional_mail(
    *,
    kind: str,
    mail_id: UUID,
    to_address: str,
    organisation_name: str,
    branding: dict[str, Any],
    context: dict[str, Any],
    settings: MailSettings,
    sent_at: datetime,
) -> MIMEMultipart:
    """A one-off mail from templates/<kind>.txt.j2 and .html.j2 in the organisation's branding."""
    brand = _brand(branding, organisation_name)
    subject = TRANSACTIONAL_SUBJECTS[kind].format(organisation=brand["display_name"], date=context.get("date", ""))
    values = {"brand": brand, "subject": subject, **context}
    message = _message(
        _templates.get_template(f"{kind}.txt.j2").render(values),
        _templates.get_template(f"{kind}.html.j2").render(values),
    )
    _headers(
        message,
        sender_name=brand.get("sender_name") or brand["display_name"],
        settings=settings,
        to=to_address,
        subject=subject,
        reply_to=brand.get("reply_to") or brand.get("contact_email"),
        sent_at=sent_at,
        msg_id=message_id(mail_id, settings.message_id_domain, kind),
    )
    return message
