"""The sending lease on real PostgreSQL and a real SMTP server, with an injected clock: a
sender that dies after the server accepted a mail leaves a lease no one else claims through,
after which the mail goes again with the same Message-ID; a PostgreSQL loss between the
acceptance and the record repeats nothing; a stop while a mail is on its way leaves it recorded
as sent (the take-back leaves a mail being sent to its sender)."""

from __future__ import annotations

from datetime import date, time, timedelta
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from services.mailer.mail import message_id
from services.mailer.smtp import MailTransport
from shared.db import DedicatedConnection
from shared.events import ParticipantStopped
from tests.e2e.test_mailer_schedule import MailerRig, database_url, rig, utc

pytestmark = pytest.mark.stack
__all__ = ["database_url", "rig"]  # the fixtures this module uses, from the schedule tests


class ProcessKilled(BaseException):
    """Stands for SIGKILL: no handler of the worker runs after it (it is no Exception)."""


class AfterSending:
    """A transport that sends through the real one, then does `then` (once)."""

    def __init__(self, inner: MailTransport, then: Any) -> None:
        self.inner, self.then = inner, then

    async def send(self, raw: bytes, *, sender: str, recipient: str) -> None:
        await self.inner.send(raw, sender=sender, recipient=recipient)
        then, self.then = self.then, None
        if then is not None:
            await then()

    async def close(self) -> None:
        await self.inner.close()


def interrupted_sends() -> float:
    labels = {"kind": "programme", "outcome": "interrupted", "reason": ""}
    return REGISTRY.get_sample_value("meer_mailer_mails_total", labels) or 0.0


async def test_a_send_killed_after_the_server_accepted_goes_again_after_its_lease_with_the_same_message_id(
    rig: MailerRig,
) -> None:
    participant = await rig.enrol(start=date(2026, 8, 3), send_time=time(8, 0), timezone="UTC", email="kill@t.example")
    transport = rig.worker.transport

    async def die() -> None:
        raise ProcessKilled

    rig.worker.transport = AfterSending(transport, die)
    with pytest.raises(ProcessKilled):
        await rig.at(utc(2026, 8, 3, 8, 0))
    (delivery,) = await rig.deliveries(participant)
    assert delivery.status == "due" and delivery.sending_until == utc(2026, 8, 3, 8, 0) + timedelta(
        seconds=rig.worker.lease_s
    ), "the lease was committed before the SMTP call"
    assert len(rig.sink.handler.to("kill@t.example")) == 1

    rig.worker.transport = transport
    interrupted = interrupted_sends()
    assert await rig.at(delivery.sending_until - timedelta(seconds=1)) == 0, "no sender claims a leased mail"
    assert await rig.at(delivery.sending_until) == 1, "the interrupted send goes again when the lease ends"
    assert interrupted_sends() == interrupted + 1

    mails = rig.sink.handler.to("kill@t.example")
    assert [m.message_id for m in mails] == [message_id(delivery.id, "test.example")] * 2
    (delivery,) = await rig.deliveries(participant)
    assert delivery.status == "sent" and delivery.sending_until is None and delivery.attempts == 2


class LosesPostgres(DedicatedConnection):
    """A dedicated connection that finds PostgreSQL away for the next `outage` connection attempts."""

    outage = 0

    async def get(self) -> asyncpg.Connection:
        if self.outage:
            self.outage -= 1
            await self.close()
            raise ConnectionRefusedError("PostgreSQL is away")
        return await super().get()


async def test_postgres_lost_after_the_server_accepted_the_mail_is_recorded_once_it_is_back(rig: MailerRig) -> None:
    participant = await rig.enrol(start=date(2026, 8, 3), send_time=time(8, 0), timezone="UTC", email="pg@t.example")
    connection = LosesPostgres(rig.worker.connection.database_url)
    await rig.worker.connection.close()
    rig.worker.connection = connection

    async def lose_postgres() -> None:
        connection.outage = 3

    rig.worker.transport = AfterSending(rig.worker.transport, lose_postgres)
    assert await rig.at(utc(2026, 8, 3, 8, 0)) == 1
    assert connection.outage == 0, "the record waited for PostgreSQL"
    (delivery,) = await rig.deliveries(participant)
    assert delivery.status == "sent" and delivery.sending_until is None
    assert await rig.at(utc(2026, 8, 3, 8, 0) + timedelta(seconds=2 * rig.worker.lease_s)) == 0
    assert len(rig.sink.handler.to("pg@t.example")) == 1, "nothing repeated"


async def test_a_stop_while_the_mail_is_on_its_way_leaves_it_recorded_as_sent(rig: MailerRig) -> None:
    participant = await rig.enrol(start=date(2026, 8, 3), send_time=time(8, 0), timezone="UTC", email="st@t.example")

    async def stop() -> None:
        await rig.deliver(ParticipantStopped(by="coach"), participant)

    rig.worker.transport = AfterSending(rig.worker.transport, stop)
    assert await rig.at(utc(2026, 8, 3, 8, 0)) == 1
    (delivery,) = await rig.deliveries(participant)
    assert delivery.status == "sent", "what went out is recorded as sent, with its mail.sent"
    assert await rig.at(utc(2026, 8, 4, 8, 0)) == 0, "and nothing after the stop"
