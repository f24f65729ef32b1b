"""The dashboard row recounts from the mails, so redeliveries and disorder are harmless."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from services.coaching.projection import record_open, summarise_mails
from services.coaching.tables import DashboardRow, MailSeen

T0 = datetime(2026, 11, 23, 8, tzinfo=UTC)


def mail(day: int, *, sent: bool = True, title: str = "Les") -> MailSeen:
    return MailSeen(
        delivery_id=uuid4(),
        participant_id=uuid4(),
        day=day,
        lesson_title=f"{title} {day}",
        sent_at=T0 + timedelta(days=day) if sent else None,
    )


def test_counts_sent_and_human_and_automated_opens_apart() -> None:
    mails = [mail(1), mail(2), mail(3)]
    record_open(mails[0], T0 + timedelta(days=1, hours=2), likely_automated=False)
    record_open(mails[1], T0 + timedelta(days=2, seconds=3), likely_automated=True)
    row = summarise_mails(DashboardRow(participant_id=uuid4(), org_id=uuid4()), mails)
    assert (row.mails_sent, row.mails_opened, row.mails_opened_automated_only) == (3, 1, 1)
    assert row.lesson_day == 3 and row.lesson_title == "Les 3"
    assert row.last_open_at == T0 + timedelta(days=1, hours=2)


def test_an_open_before_its_mail_sent_event_does_not_count_as_sent() -> None:
    early = mail(1, sent=False)
    record_open(early, T0, likely_automated=False)
    row = summarise_mails(DashboardRow(participant_id=uuid4(), org_id=uuid4()), [early])
    assert (row.mails_sent, row.mails_opened, row.lesson_day) == (0, 1, 0)


def test_repeated_and_out_of_order_opens_keep_the_earliest() -> None:
    seen = mail(1)
    record_open(seen, T0 + timedelta(hours=5), likely_automated=False)
    record_open(seen, T0 + timedelta(hours=1), likely_automated=False)
    record_open(seen, T0 + timedelta(hours=9), likely_automated=False)
    assert seen.human_opened_at == T0 + timedelta(hours=1)


def test_a_human_open_after_an_automated_one_counts_as_opened() -> None:
    seen = mail(1)
    record_open(seen, T0, likely_automated=True)
    record_open(seen, T0 + timedelta(hours=3), likely_automated=False)
    row = summarise_mails(DashboardRow(participant_id=uuid4(), org_id=uuid4()), [seen])
    assert (row.mails_opened, row.mails_opened_automated_only) == (1, 0)
