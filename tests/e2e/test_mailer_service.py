"""The running mailer service: transactional mails asked for through Kafka, and the preview."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from services.mailer.settings import MailerSettings
from shared.events import (
    Branding,
    ContactDetailsSet,
    Envelope,
    OrganisationLicensed,
    ParticipantConfirmationRequested,
    ParticipantConfirmationRequestedV1,
    Payload,
    StaffInvited,
)
from shared.mailer_links import link_keys, seal_link
from tests.e2e.conftest import KAFKA, LICENSOR, MAILER, db_fetch, eventually, mails_to, raw_mail, unique_email

pytestmark = pytest.mark.stack
# The local stack's mailer runs with the development keys.
LINK_KEYS = link_keys(MailerSettings.model_fields["mailer_link_keys"].default)


def sealed(url: str, *, expires_in: timedelta = timedelta(hours=72)) -> str:
    now = datetime.now(UTC)
    return seal_link(url, keys=LINK_KEYS, expires_at=now + expires_in, now=now)


async def publish(*envelopes: Envelope) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for envelope in envelopes:
            await producer.send_and_wait(envelope.topic, envelope.model_dump_json().encode(), key=envelope.key)
    finally:
        await producer.stop()


def licensed(org_id: object) -> Envelope:
    payload: Payload = OrganisationLicensed(
        name="Stichting Samen",
        branding=Branding(display_name="Stichting Samen", contact_phone="050 765 4321"),
        licence_valid_from=date.today() - timedelta(days=1),
        licence_valid_until=date.today() + timedelta(days=90),
        max_active_participants=5,
        variants=("standaard",),
    )
    return Envelope.wrap(payload, org_id=org_id)  # type: ignore[arg-type]


async def test_invitation_and_confirmation_mails_are_sent_from_their_events(http: httpx.AsyncClient) -> None:
    org_id, staff_id, participant_id = uuid4(), uuid4(), uuid4()
    coach_address, participant_address = unique_email("coach"), unique_email("aanmelder")
    earlier_address, expired_address = unique_email("v1-aanmelder"), unique_email("te-laat")
    expired_id = uuid4()
    await publish(
        licensed(org_id),
        Envelope.wrap(
            ContactDetailsSet(person_id=staff_id, kind="staff", name="Karin", email=coach_address), org_id=org_id
        ),
        Envelope.wrap(
            ContactDetailsSet(person_id=participant_id, kind="participant", name="Joop", email=participant_address),
            org_id=org_id,
            participant_id=participant_id,
        ),
        Envelope.wrap(
            ContactDetailsSet(person_id=expired_id, kind="participant", name="Bep", email=expired_address),
            org_id=org_id,
            participant_id=expired_id,
        ),
        # No address, no name, no readable link on the topic: ids and the link sealed for the mailer.
        Envelope.wrap(
            StaffInvited(
                staff_id=staff_id, role="coach", sealed_link=sealed("http://enrolment.test/wachtwoord/eenmalig")
            ),
            org_id=org_id,
        ),
        Envelope.wrap(
            ParticipantConfirmationRequested(sealed_link=sealed("http://enrolment.test/bevestig/xyz")),
            org_id=org_id,
            participant_id=participant_id,
        ),
        # A link that expired before the mail went is not sent: it would only disappoint.
        Envelope.wrap(
            ParticipantConfirmationRequested(
                sealed_link=sealed("http://enrolment.test/bevestig/oud", expires_in=timedelta(seconds=-1))
            ),
            org_id=org_id,
            participant_id=expired_id,
        ),
        # Version 1 (address and live link in the event) is still mailed during an upgrade.
        Envelope.wrap(
            ParticipantConfirmationRequestedV1(
                first_name="Truus", email=earlier_address, confirm_url="http://enrolment.test/bevestig/v1"
            ),
            org_id=org_id,
            participant_id=uuid4(),
        ),
    )
    invitation = (await eventually(lambda: mails_to(http, coach_address), what="the staff invitation"))[0]
    confirmation = (await eventually(lambda: mails_to(http, participant_address), what="the confirmation"))[0]
    assert invitation["subject"] == "Je account voor Meer contact bij Stichting Samen"
    assert confirmation["subject"] == "Bevestig je aanmelding bij Stichting Samen"
    text = (await raw_mail(http, confirmation["id"])).get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "http://enrolment.test/bevestig/xyz" in text and "050 765 4321" in text
    assert "Joop" not in text, "the name typed into the public form is not repeated to the mailbox"
    text = (await raw_mail(http, invitation["id"])).get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "http://enrolment.test/wachtwoord/eenmalig" in text and "coach" in text
    earlier = (await eventually(lambda: mails_to(http, earlier_address), what="the version-1 confirmation"))[0]
    text = (await raw_mail(http, earlier["id"])).get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "http://enrolment.test/bevestig/v1" in text
    failed = await eventually(
        lambda: db_fetch(
            "mailer",
            "SELECT error, coalesce(context, 'null') = 'null' AS dropped, to_address FROM transactional_mail"
            " WHERE status = 'failed' AND org_id = $1",
            org_id,
        ),
        what="the expired link's mail given up",
    )
    # Given up with its address and sealed link dropped (JSON null), like a sent mail.
    assert [(row["error"], row["dropped"], row["to_address"]) for row in failed] == [
        ("cannot render: SealedLinkError", True, None)
    ]
    assert not await mails_to(http, expired_address)


async def test_an_invitation_waits_for_the_address_from_the_contact_topic_and_goes_once_it_arrives(
    http: httpx.AsyncClient,
) -> None:
    """Order between topics is not guaranteed: the mail waits in the mailer, never fails or is lost."""
    org_id, staff_id, address = uuid4(), uuid4(), unique_email("later")
    await publish(
        licensed(org_id),
        Envelope.wrap(
            StaffInvited(staff_id=staff_id, role="org_admin", sealed_link=sealed("http://e.test/w/1")), org_id=org_id
        ),
    )

    async def waiting() -> bool:
        rows = await db_fetch(
            "mailer", "SELECT status, attempts FROM transactional_mail WHERE contact_id = $1", staff_id
        )
        return bool(rows) and rows[0]["status"] == "due"

    await eventually(waiting, what="the invitation, queued without an address")
    await publish(
        Envelope.wrap(
            ContactDetailsSet(person_id=staff_id, kind="staff", name="Ineke Later", email=address), org_id=org_id
        )
    )
    [mail] = await eventually(lambda: mails_to(http, address), what="the invitation once the address came")
    text = (await raw_mail(http, mail["id"])).get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "http://e.test/w/1" in text
    [row] = await db_fetch(
        "mailer", "SELECT status, to_address FROM transactional_mail WHERE contact_id = $1", staff_id
    )
    assert (row["status"], row["to_address"]) == ("sent", None), "only the fact that it was sent stays"


async def test_the_follow_up_questionnaire_takes_the_newest_address_and_name_and_waits_for_its_day(
    http: httpx.AsyncClient,
) -> None:
    """Written at completion without an address (as the mailer does); months later it goes to
    the address and first name on meer.contact then. New details do not send it early."""
    org_id, participant_id = uuid4(), uuid4()
    old_address, new_address = unique_email("oud-adres"), unique_email("nieuw-adres")
    now = datetime.now(UTC)
    for kind, due_at in (
        ("questionnaire_follow_up", now + timedelta(days=1)),
        ("questionnaire_reminder", now + timedelta(days=7)),
    ):
        await db_fetch(
            "mailer",
            "INSERT INTO transactional_mail (id, kind, org_id, participant_id, contact_id, context, status,"
            " attempts, due_at, created_at) VALUES ($1, $2, $3, $4, $4, $5::jsonb, 'due', 0, $6, now())",
            uuid4(),
            kind,
            org_id,
            participant_id,
            '{"questionnaire_url": "http://tracking.test/q/abc"}',
            due_at,
        )
    contact = ContactDetailsSet(person_id=participant_id, kind="participant", name="Wim", email=old_address)
    await publish(
        licensed(org_id),
        Envelope.wrap(contact, org_id=org_id, participant_id=participant_id),
        Envelope.wrap(
            contact.model_copy(update={"name": "Willem", "email": new_address}),
            org_id=org_id,
            participant_id=participant_id,
        ),
    )

    async def newest_copy() -> bool:
        rows = await db_fetch("mailer", "SELECT email FROM contact_copy WHERE person_id = $1", participant_id)
        return bool(rows) and rows[0]["email"] == new_address

    await eventually(newest_copy, what="the newest contact details in the mailer's copy")

    async def schedule() -> list[tuple[Any, ...]]:
        rows = await db_fetch(
            "mailer",
            "SELECT kind, status, to_address, due_at > now() AS later FROM transactional_mail WHERE contact_id = $1"
            " ORDER BY kind",
            participant_id,
        )
        return [tuple(row) for row in rows]

    assert await schedule() == [
        ("questionnaire_follow_up", "due", None, True),
        ("questionnaire_reminder", "due", None, True),
    ], "new contact details do not bring the questionnaire forward"
    # Its day comes.
    await db_fetch(
        "mailer",
        "UPDATE transactional_mail SET due_at = now() WHERE contact_id = $1 AND kind = 'questionnaire_follow_up'",
        participant_id,
    )
    [mail] = await eventually(lambda: mails_to(http, new_address), what="the follow-up questionnaire")
    text = (await raw_mail(http, mail["id"])).get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "Beste Willem," in text and "http://tracking.test/q/abc" in text
    assert not await mails_to(http, old_address)
    assert await schedule() == [
        ("questionnaire_follow_up", "sent", None, False),
        ("questionnaire_reminder", "due", None, True),
    ]


async def test_preview_shows_any_day_for_the_licensor_and_refuses_bad_input(http: httpx.AsyncClient) -> None:
    org_id = uuid4()
    await publish(licensed(org_id))

    async def preview(day: int = 35, variant: str = "op-afstand", headers: dict[str, str] = LICENSOR) -> httpx.Response:
        return await http.get(
            f"{MAILER}/api/organisations/{org_id}/preview", params={"day": day, "variant": variant}, headers=headers
        )

    async def known() -> httpx.Response | None:
        response = await preview()
        return response if response.status_code == 200 else None

    page = await eventually(known, what="the preview once the mailer knows the organisation")
    assert "dag 35 van 60" in page.text and "Stichting Samen" in page.text and "Voorbeeld" in page.text
    assert (await preview(day=61)).status_code == 404
    assert (await preview(variant="onbekend")).json()["error"]["fields"][0]["field"] == "variant"
    assert (await preview(day=0)).status_code == 422
    assert (await preview(headers={})).status_code == 401
    assert (await preview(headers={"Authorization": "Bearer fout"})).status_code == 401
