"""Rendering the daily programme mail: the lesson from the pack, in the organisation's
branding, with a signed tracking pixel. Pure: no network, no database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any
from uuid import UUID

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from services.mailer.programme import Lesson, render_markdown
from shared.tracking_tokens import TokenSigner, TrackingToken

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    # HTML templates escape everything; the plain-text part must not (no "&amp;" in a text mail).
    autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


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


@dataclass(frozen=True)
class MailSettings:
    from_address: str
    message_id_domain: str
    tracking_base_url: str


def message_id(delivery_id: UUID, domain: str) -> str:
    """Derived from the delivery, so a resend after a crash carries the same id."""
    return f"<delivery-{delivery_id}@{domain}>"


def render_programme_mail(context: MailContext, settings: MailSettings, signer: TokenSigner) -> EmailMessage:
    """The multipart (plain text + HTML) message for one delivery."""
    values = {
        "voornaam": context.first_name,
        "organisatie": context.organisation_name,
        "coach": context.coach_name,
        "telefoon_organisatie": context.branding.get("contact_phone") or context.organisation_name,
    }
    body_html, body_text = render_markdown(context.lesson.body_markdown, values)
    assignment_html, assignment_text = render_markdown(context.lesson.assignment_markdown, values)
    look_ahead_html, look_ahead_text = (
        render_markdown(context.lesson.look_ahead, values) if context.lesson.look_ahead else ("", "")
    )
    pixel = TrackingToken(
        k="open",
        d=context.delivery_id,
        p=context.participant_id,
        o=context.org_id,
        n=context.day,
        t=int(context.sent_at.timestamp()),
    )
    template_values = {
        "ctx": context,
        "brand": {"brand_colour": "#1f5f8b", **context.branding},
        "subject": _subject(context),
        "body_html": Markup(body_html),  # noqa: S704 - rendered by render_markdown with escaped values
        "assignment_html": Markup(assignment_html),  # noqa: S704
        "look_ahead_html": Markup(look_ahead_html),  # noqa: S704
        "body_text": body_text,
        "assignment_text": assignment_text,
        "look_ahead_text": look_ahead_text,
        "pixel_url": f"{settings.tracking_base_url}/o/{signer.sign(pixel)}.gif",
    }
    message = EmailMessage()
    sender_name = context.branding.get("sender_name") or context.organisation_name
    message["From"] = formataddr((sender_name, settings.from_address))
    message["To"] = context.to_address
    if context.branding.get("reply_to") or context.branding.get("contact_email"):
        message["Reply-To"] = context.branding.get("reply_to") or context.branding["contact_email"]
    message["Subject"] = template_values["subject"]
    message["Date"] = format_datetime(context.sent_at)
    message["Message-ID"] = message_id(context.delivery_id, settings.message_id_domain)
    message.set_content(_templates.get_template("lesson.txt.j2").render(template_values))
    message.add_alternative(_templates.get_template("lesson.html.j2").render(template_values), subtype="html")
    return message


def _subject(context: MailContext) -> str:
    return f"Dag {context.day} van {context.programme_days}: {context.lesson.title}"
