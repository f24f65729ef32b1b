"""Rendering the programme and transactional mails: branding, links, headers, DKIM."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from uuid import uuid4

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.mailer.mail import (
    DkimSigner,
    MailContext,
    MailSettings,
    UnsafeHeaderError,
    render_programme_mail,
    render_transactional_mail,
    to_wire,
    with_opened_link,
)
from services.mailer.programme import load_pack
from services.mailer.smtp import SmtpRefused, without_addresses
from shared.mailer_links import SealedLinkError, link_keys, seal_link
from shared.tracking_tokens import TokenSigner

PACK = load_pack()
SETTINGS = MailSettings("training@meer.test", "meer.test", "https://t.meer.test")
SIGNER = TokenSigner(["unit-key"])
BRANDING = {
    "display_name": "Welzijn Zuid",
    "contact_person": "Fatima El Amrani",
    "contact_phone": "040 123 4567",
    "contact_email": "info@zuid.example",
    "website": "https://zuid.example",
    "brand_colour": "#aa3300",
    "logo_url": "https://enrolment.example/logos/x.png",
}


def parsed(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def transactional(kind: str, context: dict[str, object], branding: dict[str, object] = BRANDING) -> EmailMessage:
    return parsed(
        to_wire(
            render_transactional_mail(
                kind=kind,
                mail_id=uuid4(),
                to_address="x@example.org",
                organisation_name="Welzijn Zuid",
                branding=branding,
                context=context,
                settings=SETTINGS,
                sent_at=datetime.now(UTC),
            ),
            SETTINGS,
        )
    )


def programme(day: int = 1, variant: str = "standaard", first_name: str = "Ans") -> EmailMessage:
    context = MailContext(
        delivery_id=uuid4(),
        participant_id=uuid4(),
        org_id=uuid4(),
        to_address="ans@example.org",
        first_name=first_name,
        coach_name="Sanne",
        organisation_name="Welzijn Zuid",
        branding=BRANDING,
        lesson=PACK.lesson(variant, day),
        day=day,
        programme_days=PACK.days,
        sent_at=datetime(2026, 11, 23, 8, tzinfo=UTC),
    )
    return parsed(to_wire(render_programme_mail(context, SETTINGS, SIGNER), SETTINGS))


def test_programme_mail_carries_branding_lesson_and_links_in_both_parts() -> None:
    message = programme(day=1)
    html = message.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    text = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    title = PACK.lesson("standaard", 1).title
    assert message["Subject"] == f"Dag 1 van 60: {title}"
    assert message["From"].addresses[0].display_name == "Welzijn Zuid"
    assert message["Reply-To"] == "info@zuid.example"
    for part in (html, text):
        assert "040 123 4567" in part and "Sanne" in part and "Ans" in part
        assert "Contactpersoon: Fatima El Amrani" in part
        assert "https://t.meer.test/r/" in part and "https://t.meer.test/u/" in part
    assert 'src="https://enrolment.example/logos/x.png"' in html and "#aa3300" in html
    assert "https://t.meer.test/o/" in html and html.count("https://t.meer.test/c/") == 1, "website via tracking"
    assert "{" not in text and "{" not in html.split("<style")[0]


def test_message_id_is_stable_per_delivery() -> None:
    delivery = uuid4()

    def render() -> str:
        context = MailContext(
            delivery,
            uuid4(),
            uuid4(),
            "a@b.example",
            "A",
            "C",
            "O",
            {},
            PACK.lesson("standaard", 2),
            2,
            60,
            datetime.now(UTC),
        )
        return str(render_programme_mail(context, SETTINGS, SIGNER)["Message-ID"])

    assert render() == render() == f"<delivery-{delivery}@meer.test>"


def test_names_with_markup_are_escaped() -> None:
    html = programme(first_name="<b>Ans & co</b>").get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert "<b>Ans" not in html and "&lt;b&gt;Ans &amp; co&lt;/b&gt;" in html


@pytest.mark.parametrize(
    ("kind", "context", "expected"),
    [
        (
            "confirmation",
            {"confirm_url": "https://e.example/bevestig/abc"},
            "https://e.example/bevestig/abc",
        ),
        (
            "invitation",
            {"name": "Sanne", "role": "coach", "set_password_url": "https://e.example/pw/x"},
            "https://e.example/pw/x",
        ),
        ("stop_confirmation", {"first_name": "Ans"}, "geen mails meer"),
        (
            "questionnaire_follow_up",
            {"first_name": "Ans", "questionnaire_url": "https://t.meer.test/q/abc"},
            "https://t.meer.test/q/abc",
        ),
        (
            "questionnaire_reminder",
            {"first_name": "Ans", "questionnaire_url": "https://t.meer.test/q/abc"},
            "vrijwillig",
        ),
        (
            "digest",
            {
                "coach_name": "Sanne",
                "date": "23-11-2026",
                "calls": [
                    {
                        "first_name": "Ans",
                        "number": 2,
                        "urgency": "overdue",
                        "due_date": "20-11",
                        "day": 14,
                        "days": 60,
                        "url": "https://coaching.example/deelnemers/1",
                    }
                ],
                "attention": [],
            },
            "gesprek 2 van 4",
        ),
    ],
)
def test_transactional_mails_render_in_dutch_with_their_links(
    kind: str, context: dict[str, object], expected: str
) -> None:
    message = transactional(kind, context)
    for part in ("plain", "html"):
        assert expected in message.get_body(preferencelist=(part,)).get_content()  # type: ignore[union-attr]
    assert "Welzijn Zuid" in str(message["Subject"]) or kind == "digest"


def test_the_confirmation_mail_carries_no_text_typed_into_the_public_form() -> None:
    # Whoever fills in the public form may not own the mailbox: a first name like this one
    # must not reach a stranger in the organisation's branded mail (an older queued mail
    # may still carry the name in its context).
    lure = "Uw account is geblokkeerd, bel 0900-1234"
    message = transactional("confirmation", {"first_name": lure, "confirm_url": "https://e.example/bevestigen/abc"})
    for part in ("plain", "html"):
        body = message.get_body(preferencelist=(part,)).get_content()  # type: ignore[union-attr]
        assert "https://e.example/bevestigen/abc" in body and "0900" not in body and "geblokkeerd" not in body


@pytest.mark.parametrize(
    ("colour", "shown", "text_colour"),
    [("#ffd400", "#ffd400", "#000000"), ("#1f5f8b", "#1f5f8b", "#ffffff"), ("red;} a{x:y", "#1f5f8b", "#ffffff")],
)
def test_the_brand_band_and_buttons_carry_text_that_reads_on_the_colour(
    colour: str, shown: str, text_colour: str
) -> None:
    message = transactional(
        "confirmation", {"confirm_url": "https://e.example/bevestigen/abc"}, {**BRANDING, "brand_colour": colour}
    )
    html = message.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert html.count(f"background:{shown};color:{text_colour};") == 2, "the header band and the button"
    assert colour == shown or colour not in html


def test_dkim_signature_verifies_and_covers_the_unsubscribe_headers() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    settings = MailSettings(
        "training@meer.test",
        "meer.test",
        "https://t.meer.test",
        DkimSigner(domain="meer.test", selector="s1", private_key_pem=private_pem),
    )
    context = MailContext(
        uuid4(),
        uuid4(),
        uuid4(),
        "a@b.example",
        "A",
        "C",
        "O",
        BRANDING,
        PACK.lesson("standaard", 3),
        3,
        60,
        datetime.now(UTC),
    )
    raw = to_wire(render_programme_mail(context, settings, SIGNER), settings)

    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public_der)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.meer.test."
        return record

    assert dkim.verify(raw, dnsfunc=dns)
    signature = raw.split(b"\r\n\r\n")[0].decode()
    assert "list-unsubscribe" in signature.lower() and "list-unsubscribe-post" in signature.lower()
    tampered = raw.replace(b"Dag 3 van 60", b"Dag 4 van 60", 1)
    assert not dkim.verify(tampered, dnsfunc=dns)


@pytest.mark.parametrize("field", ["sender_name", "display_name", "reply_to"])
@pytest.mark.parametrize("bad", ["Zuid\r\nBcc: iedereen@example.org", "Zuid\nX", "Zuid\x00", "Zuid\u2028X"])
def test_a_control_character_in_a_header_value_is_refused_not_sent(field: str, bad: str) -> None:
    branding = {**BRANDING, field: bad}
    with pytest.raises(UnsafeHeaderError):
        render_transactional_mail(
            kind="invitation",
            mail_id=uuid4(),
            to_address="karin@example.org",
            organisation_name="Welzijn Zuid",
            branding=branding,
            context={"name": "Karin", "role": "coach", "set_password_url": "https://e.example/w/x"},
            settings=SETTINGS,
            sent_at=datetime(2026, 11, 23, 8, tzinfo=UTC),
        )


def test_smtp_replies_are_kept_without_the_addresses_they_quote() -> None:
    assert str(SmtpRefused(550, "5.1.1 <ans@example.org>: Recipient address rejected")) == (
        "550 5.1.1 <address>: Recipient address rejected"
    )
    assert (
        without_addresses("4.2.2 mailbox of ans.devries+x@mail.example.org full") == "4.2.2 mailbox of <address> full"
    )


def _questionnaire_links(message: EmailMessage) -> list[str]:
    text = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    return re.findall(r"https://t\.meer\.test/q/(\S+)", text)


def test_the_first_mail_asks_the_intake_questionnaire_and_the_last_the_end_one() -> None:
    first, middle, last = programme(day=1), programme(day=30), programme(day=PACK.days)
    (intake,) = _questionnaire_links(first)
    assert SIGNER.verify_questionnaire(intake).moment == "intake"
    html = first.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert "/q/" in html and "vrijwillig" in html and "minder dan twee minuten" in html
    assert _questionnaire_links(middle) == []
    (end,) = _questionnaire_links(last)
    assert SIGNER.verify_questionnaire(end).moment == "end"


def test_a_sealed_link_is_opened_into_the_kinds_template_variable_only_for_rendering() -> None:
    keys = link_keys("test-link-key")
    now = datetime(2026, 11, 23, 8, tzinfo=UTC)
    sealed = seal_link("https://e.example/set-password/abc", keys=keys, expires_at=now + timedelta(hours=1), now=now)
    stored = {"name": "Karin", "role": "coach", "sealed_link": sealed}
    opened = with_opened_link("invitation", stored, keys=keys, now=now)
    assert opened == {"name": "Karin", "role": "coach", "set_password_url": "https://e.example/set-password/abc"}
    assert stored["sealed_link"] == sealed  # the stored context keeps only the sealed form
    assert with_opened_link("confirmation", {"sealed_link": sealed}, keys=keys, now=now) == {
        "confirm_url": "https://e.example/set-password/abc"
    }
    assert with_opened_link("digest", {"coach_name": "Sanne"}, keys=keys, now=now) == {"coach_name": "Sanne"}
    with pytest.raises(SealedLinkError):
        with_opened_link("invitation", stored, keys=keys, now=now + timedelta(hours=1))
