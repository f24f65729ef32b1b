"""The mailer's schedule and sending, on real PostgreSQL and a real SMTP server, with an
injected clock: DST, pause/resume, completion after day 60, SMTP 4xx retry and 5xx failure.

The mailer's own components run in this process against a fresh database of their own (so
the running mailer service does not race them); events are handed to the same handlers the
Kafka consumer calls.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from email import message_from_bytes, policy
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import select, text

from services.mailer.delivery import MAX_SEND_ATTEMPTS, DeliveryWorker, RateLimits
from services.mailer.handlers import build_handlers
from services.mailer.mail import MailSettings
from services.mailer.programme import load_pack
from services.mailer.smtp import SmtpClient
from services.mailer.tables import Delivery, Recipient
from services.mailer.use_cases import schedule_due_deliveries
from shared.db import Database, DedicatedConnection
from shared.events import (
    Branding,
    CoachAdded,
    ContactDetailsSet,
    Envelope,
    OrganisationLicensed,
    ParticipantEnrolled,
    ParticipantPaused,
    ParticipantResumed,
    Payload,
    QuestionnaireAnswered,
)
from shared.kafka import Subscription, apply_events
from shared.mailer_links import link_keys
from shared.tracking_tokens import TokenSigner
from tests.support.databases import fresh_database
from tests.support.smtp_sink import SmtpSink

pytestmark = pytest.mark.stack

PACK = load_pack()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class FakeClock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class MailerRig:
    """The mailer's scheduler, handlers and one sender, wired to a fresh database and a sink."""

    database: Database
    sink: SmtpSink
    clock: FakeClock
    worker: DeliveryWorker
    subscription: Subscription
    org_id: UUID = field(default_factory=uuid4)
    coach_id: UUID = field(default_factory=uuid4)

    async def deliver(self, payload: Payload, participant_id: UUID | None = None) -> None:
        envelope = Envelope.wrap(payload, org_id=self.org_id, participant_id=participant_id, occurred_at=self.clock())
        await apply_events(self.database, self.subscription, [envelope])

    async def at(self, moment: datetime) -> int:
        """Move the clock, schedule, and send everything due; returns how many mails went out."""
        self.clock.now = moment
        before = len(self.sink.handler.accepted)
        await schedule_due_deliveries(self.worker.connection, PACK, moment)
        while await self.worker.send_next():
            pass
        return len(self.sink.handler.accepted) - before

    async def enrol(self, *, start: date, send_time: time, timezone: str, email: str) -> UUID:
        participant_id = uuid4()
        await self.deliver(
            ContactDetailsSet(person_id=participant_id, kind="participant", name="Truus", email=email), participant_id
        )
        await self.deliver(
            ParticipantEnrolled(
                coach_id=self.coach_id,
                start_date=start,
                send_time=send_time,
                timezone=timezone,
                variant="standaard",
            ),
            participant_id,
        )
        return participant_id

    async def deliveries(self, participant_id: UUID) -> list[Delivery]:
        async with self.database.session() as session:
            rows = await session.execute(
                select(Delivery).where(Delivery.participant_id == participant_id).order_by(Delivery.day)  # type: ignore[arg-type]
            )
            return list(rows.scalars())


@pytest.fixture
async def database_url(infrastructure: None) -> AsyncIterator[str]:
    async with fresh_database("mailer") as url:
        yield url


TEST_LINK_KEYS = "test-link-key"


@pytest.fixture
async def rig(database_url: str) -> AsyncIterator[MailerRig]:
    database = Database(database_url, pool_size=2)
    clock = FakeClock(datetime(2026, 3, 1, tzinfo=UTC))
    port = free_port()
    with SmtpSink(port) as sink:
        worker = DeliveryWorker(
            database=database,
            connection=DedicatedConnection(database_url),
            transport=SmtpClient("127.0.0.1", port),
            pack=PACK,
            signer=TokenSigner(["test-key"]),
            mail_settings=MailSettings("training@test.example", "test.example", "http://tracking.test"),
            clock=clock,
            limits=RateLimits(1000, 1000),
            link_keys=link_keys(TEST_LINK_KEYS),
        )
        rig = MailerRig(database, sink, clock, worker, Subscription(build_handlers(lambda: None)))
        await rig.deliver(
            OrganisationLicensed(
                name="Buurtwerk Test",
                branding=Branding(display_name="Buurtwerk Test", contact_phone="010 123 4567"),
                licence_valid_from=date(2026, 1, 1),
                licence_valid_until=date(2027, 1, 1),
                max_active_participants=10,
                variants=("standaard", "op-afstand"),
            )
        )
        await rig.deliver(CoachAdded(coach_id=rig.coach_id))
        await rig.deliver(ContactDetailsSet(person_id=rig.coach_id, kind="staff", name="Coach Els", email=None))
        yield rig
        await worker.transport.close()
        await worker.connection.close()
    await database.dispose()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def test_two_time_zones_across_dst_get_mail_at_their_local_send_time(rig: MailerRig) -> None:
    # Amsterdam moves to summer time on 29 March, New York on 8 March 2026.
    amsterdam = await rig.enrol(
        start=date(2026, 3, 27), send_time=time(8, 0), timezone="Europe/Amsterdam", email="ams@test.example"
    )
    new_york = await rig.enrol(
        start=date(2026, 3, 7), send_time=time(9, 30), timezone="America/New_York", email="nyc@test.example"
    )

    # New York: 09:30 EST = 14:30 UTC on the 7th; 09:30 EDT = 13:30 UTC on the 8th.
    assert await rig.at(utc(2026, 3, 7, 14, 29)) == 0
    assert await rig.at(utc(2026, 3, 7, 14, 30)) == 1
    assert await rig.at(utc(2026, 3, 8, 13, 29)) == 0
    assert await rig.at(utc(2026, 3, 8, 13, 30)) == 1

    # Amsterdam: 08:00 CET = 07:00 UTC before the change, 08:00 CEST = 06:00 UTC after.
    for day in (27, 28):
        assert [m.to for m in rig.sink.handler.accepted].count("ams@test.example") == day - 27
        await rig.at(utc(2026, 3, day, 6, 59))
        assert await rig.at(utc(2026, 3, day, 7, 0)) >= 1
    await rig.at(utc(2026, 3, 29, 5, 59))
    assert len(rig.sink.handler.to("ams@test.example")) == 2, "not before 08:00 local on the 29th"
    await rig.at(utc(2026, 3, 29, 6, 0))
    assert len(rig.sink.handler.to("ams@test.example")) == 3

    deliveries = await rig.deliveries(amsterdam)
    sent = {d.day: d.sent_at for d in deliveries}
    assert sent == {1: utc(2026, 3, 27, 7, 0), 2: utc(2026, 3, 28, 7, 0), 3: utc(2026, 3, 29, 6, 0)}
    # Time-ordered ids: each day's mail was scheduled later, so its id's millisecond is later.
    assert {d.id.version for d in deliveries} == {7}
    made_at = [d.id.int >> 80 for d in sorted(deliveries, key=lambda d: d.day)]
    assert made_at == sorted(made_at)
    nyc_mails = rig.sink.handler.to("nyc@test.example")
    assert [m.subject.split(":")[0] for m in nyc_mails][:2] == ["Dag 1 van 60", "Dag 2 van 60"]
    assert (await rig.deliveries(new_york))[0].sent_at == utc(2026, 3, 7, 14, 30)


async def test_pause_stops_mails_and_resume_continues_with_the_next_lesson(rig: MailerRig) -> None:
    participant = await rig.enrol(start=date(2026, 4, 1), send_time=time(8, 0), timezone="UTC", email="p@test.example")
    for day in (1, 2, 3):
        assert await rig.at(utc(2026, 4, day, 8, 0)) == 1
    await rig.deliver(ParticipantPaused(reason="ziek"), participant)
    for day in (4, 5, 6):
        assert await rig.at(utc(2026, 4, day, 8, 0)) == 0
    await rig.deliver(ParticipantResumed(), participant)
    assert await rig.at(utc(2026, 4, 7, 8, 0)) == 1
    subjects = [m.subject for m in rig.sink.handler.to("p@test.example")]
    assert [s.split(":")[0] for s in subjects] == ["Dag 1 van 60", "Dag 2 van 60", "Dag 3 van 60", "Dag 4 van 60"]


async def test_pause_between_scheduling_and_sending_takes_the_lesson_back(rig: MailerRig) -> None:
    participant = await rig.enrol(start=date(2026, 4, 1), send_time=time(8, 0), timezone="UTC", email="q@test.example")
    rig.clock.now = utc(2026, 4, 1, 8, 0)
    await schedule_due_deliveries(rig.worker.connection, PACK, rig.clock.now)
    await rig.deliver(ParticipantPaused(), participant)
    assert await rig.at(utc(2026, 4, 1, 9, 0)) == 0
    await rig.deliver(ParticipantResumed(), participant)
    assert await rig.at(utc(2026, 4, 2, 8, 0)) == 1
    assert rig.sink.handler.to("q@test.example")[0].subject.startswith("Dag 1 van 60")


async def test_after_lesson_sixty_the_participant_is_completed(rig: MailerRig) -> None:
    participant = await rig.enrol(start=date(2026, 5, 1), send_time=time(7, 0), timezone="UTC", email="c@test.example")
    for offset in range(62):
        await rig.at(datetime.combine(date(2026, 5, 1) + timedelta(days=offset), time(7, 0), tzinfo=UTC))
    mails = rig.sink.handler.to("c@test.example")
    assert len(mails) == 60
    assert mails[-1].subject.startswith("Dag 60 van 60")
    assert len({m.message_id for m in mails}) == 60
    async with rig.database.session() as session:
        recipient = await session.get(Recipient, participant)
        assert recipient is not None and recipient.status == "completed"
        outbox = await session.execute(text("SELECT convert_from(value, 'UTF8') FROM outbox"))
        completed = [v for (v,) in outbox if '"programme.completed"' in v and str(participant) in v]
    assert len(completed) == 1


async def test_temporary_smtp_failure_is_retried_then_sent_once(rig: MailerRig) -> None:
    rig.sink.handler.fail_times["retry@test.example"] = (451, 1)
    participant = await rig.enrol(
        start=date(2026, 6, 1), send_time=time(8, 0), timezone="UTC", email="retry@test.example"
    )
    assert await rig.at(utc(2026, 6, 1, 8, 0)) == 0
    (delivery,) = await rig.deliveries(participant)
    assert delivery.status == "due" and delivery.attempts == 1 and delivery.due_at > utc(2026, 6, 1, 8, 0)
    assert await rig.at(delivery.due_at + timedelta(seconds=1)) == 1
    (delivery,) = await rig.deliveries(participant)
    assert delivery.status == "sent" and delivery.attempts == 2
    assert len(rig.sink.handler.to("retry@test.example")) == 1


async def test_permanent_smtp_failure_fails_the_delivery_and_publishes_mail_failed(rig: MailerRig) -> None:
    rig.sink.handler.fail_times["gone@test.example"] = (550, 1)
    participant = await rig.enrol(
        start=date(2026, 6, 1), send_time=time(8, 0), timezone="UTC", email="gone@test.example"
    )
    assert await rig.at(utc(2026, 6, 1, 8, 0)) == 0
    (delivery,) = await rig.deliveries(participant)
    assert delivery.status == "failed" and delivery.error is not None and delivery.error.startswith("550")
    async with rig.database.session() as session:
        values = [v for (v,) in await session.execute(text("SELECT convert_from(value, 'UTF8') FROM outbox"))]
    failed = [Envelope.model_validate_json(v) for v in values if '"mail.failed"' in v and str(participant) in v]
    assert len(failed) == 1 and failed[0].payload["reason"].startswith("550")
    assert not rig.sink.handler.to("gone@test.example")


async def test_mail_has_one_click_unsubscribe_and_tracked_links(rig: MailerRig) -> None:
    await rig.enrol(start=date(2026, 7, 1), send_time=time(8, 0), timezone="UTC", email="links@test.example")
    assert await rig.at(utc(2026, 7, 1, 8, 0)) == 1
    message = message_from_bytes(rig.sink.handler.to("links@test.example")[0].raw, policy=policy.default)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Unsubscribe"].startswith("<http://tracking.test/u/")
    html = message.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert "http://tracking.test/o/" in html and "http://tracking.test/r/" in html
    assert "Opdracht gedaan?" in html and "Afmelden" in html
    assert "links@test.example" not in message["List-Unsubscribe"]


@dataclass
class BrokenFor:
    """A transport that fails in an unforeseen way (not an SMTP answer) for one address."""

    transport: Any
    address: str

    async def send(self, raw: bytes, *, sender: str, recipient: str) -> None:
        if recipient == self.address:
            raise RuntimeError("unforeseen")
        await self.transport.send(raw, sender=sender, recipient=recipient)

    async def close(self) -> None:
        await self.transport.close()


async def test_an_unforeseen_error_counts_as_an_attempt_and_never_blocks_other_mail(rig: MailerRig) -> None:
    rig.worker.transport = BrokenFor(rig.worker.transport, "broken@test.example")
    broken = await rig.enrol(start=date(2026, 8, 1), send_time=time(7, 0), timezone="UTC", email="broken@test.example")
    await rig.enrol(start=date(2026, 8, 1), send_time=time(8, 0), timezone="UTC", email="fine@test.example")
    assert await rig.at(utc(2026, 8, 1, 9, 0)) == 1  # the broken one is due first, the other is still sent
    (delivery,) = await rig.deliveries(broken)
    assert delivery.status == "due" and delivery.attempts == 1 and delivery.error == "error: RuntimeError"
    assert delivery.due_at > utc(2026, 8, 1, 9, 0)  # behind mails that are due now
    for _ in range(MAX_SEND_ATTEMPTS - 1):
        await rig.at(delivery.due_at + timedelta(seconds=1))
        (delivery,) = await rig.deliveries(broken)
    assert delivery.status == "failed" and delivery.attempts == MAX_SEND_ATTEMPTS
    async with rig.database.session() as session:
        values = [v for (v,) in await session.execute(text("SELECT convert_from(value, 'UTF8') FROM outbox"))]
    failed = [Envelope.model_validate_json(v) for v in values if '"mail.failed"' in v and str(broken) in v]
    assert len(failed) == 1 and failed[0].payload["reason"].endswith("error: RuntimeError")


def questionnaire_links(raw: bytes) -> list[str]:
    import re

    message = message_from_bytes(raw, policy=policy.default)
    html = message.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    return re.findall(r'"http://tracking\.test/q/([A-Za-z0-9_.\-]+)"', html)


async def test_the_questionnaire_is_asked_at_day_one_at_the_end_and_three_months_later_with_one_reminder(
    rig: MailerRig,
) -> None:
    signer = TokenSigner(["test-key"])
    answers, reminded = "answers@test.example", "reminded@test.example"
    start = date(2026, 5, 1)
    participants = {
        address: await rig.enrol(start=start, send_time=time(7, 0), timezone="UTC", email=address)
        for address in (answers, reminded)
    }
    for offset in range(61):
        await rig.at(datetime.combine(start + timedelta(days=offset), time(7, 0), tzinfo=UTC))
    mails = rig.sink.handler.to(answers)
    assert len(mails) == 60
    moments = {
        day: [signer.verify_questionnaire(token).moment for token in questionnaire_links(mails[day - 1].raw)]
        for day in (1, 2, 30, 59, 60)
    }
    assert moments == {1: ["intake"], 2: [], 30: [], 59: [], 60: ["end"]}

    async def send_transactional_at(moment: datetime) -> None:
        rig.clock.now = moment
        while await rig.worker.send_next_transactional():
            pass

    completed = datetime.combine(start + timedelta(days=59), time(7, 0), tzinfo=UTC)
    await send_transactional_at(completed + timedelta(days=91))
    assert [len(rig.sink.handler.to(address)) for address in (answers, reminded)] == [60, 60], "not yet"
    await send_transactional_at(datetime(2026, 9, 29, 7, 0, tzinfo=UTC))  # three calendar months after 29 June
    for address, participant in participants.items():
        follow_up = rig.sink.handler.to(address)[-1]
        assert "Hoe gaat het nu met je?" in follow_up.subject
        (token,) = questionnaire_links(follow_up.raw)
        claims = signer.verify_questionnaire(token)
        assert (claims.participant_id, claims.moment) == (participant, "follow_up")

    # One of them answers the follow-up: only the other gets the one reminder a week later.
    now = rig.clock.now
    await rig.deliver(
        QuestionnaireAnswered(
            participant_id=participants[answers],
            moment="follow_up",
            scale_version="djg6-2006",
            answers=dict.fromkeys(("e1", "e2", "e3", "s1", "s2", "s3"), "nee"),
            emotional=0,
            social=3,
            total=3,
            total_imputed=False,
            category="moderately_lonely",
            answered_at=now,
        ),
        participants[answers],
    )
    await send_transactional_at(now + timedelta(days=7))
    await send_transactional_at(now + timedelta(days=60))
    assert len(rig.sink.handler.to(answers)) == 61
    reminders = rig.sink.handler.to(reminded)[61:]
    assert [m.subject.startswith("Nog even") for m in reminders] == [True]
    (token,) = questionnaire_links(reminders[0].raw)
    assert signer.verify_questionnaire(token).moment == "follow_up"
