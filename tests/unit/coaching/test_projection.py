"""The dashboard row recounts from the mails, so redeliveries and disorder are harmless;
the figures that need a clock are computed for the moment of reading."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from services.coaching.projection import (
    ReportAnswer,
    apply_lifecycle,
    apply_mail_change,
    mail_counts,
    mail_figures,
    record_click,
    record_failure,
    record_open,
    record_report,
    record_sent,
    report_trend,
    summarise_mails,
    two_low_scores_in_a_row,
)
from services.coaching.tables import DashboardRow, MailSeen, ReportSeen

T0 = datetime(2026, 11, 23, 8, tzinfo=UTC)


def mail(day: int, *, sent: bool = True, title: str = "Les") -> MailSeen:
    return MailSeen(
        delivery_id=uuid4(),
        participant_id=uuid4(),
        day=day,
        lesson_title=f"{title} {day}",
        sent_at=T0 + timedelta(days=day) if sent else None,
    )


def row() -> DashboardRow:
    return DashboardRow(participant_id=uuid4(), org_id=uuid4(), updated_at=T0)


def test_counts_sent_and_human_and_automated_opens_apart() -> None:
    mails = [mail(1), mail(2), mail(3)]
    record_open(mails[0], T0 + timedelta(days=1, hours=2), likely_automated=False)
    record_open(mails[1], T0 + timedelta(days=2, seconds=3), likely_automated=True)
    summary = summarise_mails(row(), mails)
    assert (summary.mails_sent, summary.mails_opened, summary.mails_opened_automated_only) == (3, 1, 1)
    assert summary.lesson_day == 3 and summary.lesson_title == "Les 3"
    assert summary.last_open_at == T0 + timedelta(days=1, hours=2)


def test_an_open_before_its_mail_sent_event_does_not_count_as_sent() -> None:
    early = mail(1, sent=False)
    record_open(early, T0, likely_automated=False)
    summary = summarise_mails(row(), [early])
    assert (summary.mails_sent, summary.mails_opened, summary.lesson_day) == (0, 1, 0)


def test_repeated_and_out_of_order_opens_keep_the_earliest_and_count_each() -> None:
    seen = mail(1)
    record_open(seen, T0 + timedelta(hours=5), likely_automated=False)
    record_open(seen, T0 + timedelta(hours=1), likely_automated=False)
    record_open(seen, T0 + timedelta(hours=9), likely_automated=False)
    assert seen.human_opened_at == T0 + timedelta(hours=1)
    assert seen.human_opens == 3


def test_a_human_open_after_an_automated_one_counts_as_opened() -> None:
    seen = mail(1)
    record_open(seen, T0, likely_automated=True)
    record_open(seen, T0 + timedelta(hours=3), likely_automated=False)
    summary = summarise_mails(row(), [seen])
    assert (summary.mails_opened, summary.mails_opened_automated_only) == (1, 0)


def test_a_failed_mail_counts_until_a_later_mail_goes_out() -> None:
    failed = mail(3, sent=False)
    record_failure(failed, failed_at=T0 + timedelta(days=3), reason="550 no such user")
    mails = [mail(1), mail(2), failed]
    summary = summarise_mails(row(), mails)
    assert summary.mails_failed == 1 and summary.lesson_day == 2
    assert mail_figures(mails, T0 + timedelta(days=4)).failure_unresolved
    mails.append(mail(4))
    assert not mail_figures(mails, T0 + timedelta(days=5)).failure_unresolved


def test_clicks_are_counted_per_mail() -> None:
    seen = mail(2)
    record_click(seen, T0 + timedelta(days=2, hours=3))
    record_click(seen, T0 + timedelta(days=2, hours=1))
    assert (seen.clicks, seen.first_clicked_at) == (2, T0 + timedelta(days=2, hours=1))
    assert summarise_mails(row(), [seen]).clicks == 2


def test_open_rates_overall_and_over_the_last_seven_days() -> None:
    mails = [mail(day) for day in range(1, 11)]  # sent on T0 + 1..10 days
    for seen in mails[:3] + mails[8:]:  # days 1-3 and 9-10 opened
        record_open(seen, T0 + timedelta(days=seen.day, hours=1), likely_automated=False)
    now = T0 + timedelta(days=10, hours=2)
    figures = mail_figures(mails, now)
    assert figures.open_rate == 5 / 10
    # Sent in the last 7 days: days 4..10 (7 mails), of which 9 and 10 were opened.
    assert figures.open_rate_7d == 2 / 7
    assert figures.days_without_open == 0


def test_days_without_an_open_are_whole_days_since_the_last_open_or_the_first_mail() -> None:
    mails = [mail(1), mail(2)]
    assert mail_figures(mails, T0 + timedelta(days=4, hours=23)).days_without_open == 3
    record_open(mails[1], T0 + timedelta(days=2, hours=1), likely_automated=False)
    assert mail_figures(mails, T0 + timedelta(days=5)).days_without_open == 2
    assert mail_figures([], T0).days_without_open is None


def test_automated_opens_do_not_count_for_the_open_rate() -> None:
    mails = [mail(1)]
    record_open(mails[0], T0 + timedelta(days=1, seconds=2), likely_automated=True)
    assert mail_figures(mails, T0 + timedelta(days=2)).open_rate == 0


def test_a_later_report_replaces_an_earlier_one_whatever_the_order() -> None:
    participant, delivery = uuid4(), uuid4()
    first = ReportAnswer(delivery_id=delivery, score=2, note="lastig", reported_at=T0, event_id=uuid4())
    later = ReportAnswer(
        delivery_id=delivery, score=4, note="toch gelukt", reported_at=T0 + timedelta(hours=2), event_id=uuid4()
    )
    for arrival in ((first, later), (later, first)):
        kept = ReportSeen(participant_id=participant, day=3, **vars(arrival[0]))
        record_report(kept, arrival[1])
        assert (kept.score, kept.note) == (4, "toch gelukt")


def test_report_trend_compares_the_latest_scores_with_the_ones_before() -> None:
    assert report_trend([3]) is None
    assert report_trend([2, 4]) == "up"
    assert report_trend([4, 4, 4, 2, 2, 1]) == "down"
    assert report_trend([3, 4, 4, 3]) == "steady"


def test_two_low_scores_in_a_row() -> None:
    assert two_low_scores_in_a_row([4, 2, 1])
    assert not two_low_scores_in_a_row([1, 3, 2])
    assert not two_low_scores_in_a_row([1])


def test_status_follows_the_participant_topic_and_the_mails_in_any_order() -> None:
    participant = row()
    apply_lifecycle(participant, "participant.enrolled", T0)
    assert participant.status == "enrolled"
    participant.mails_sent = 3
    apply_lifecycle(participant, "participant.paused", T0 + timedelta(days=4))
    assert participant.status == "paused"
    apply_lifecycle(participant, "participant.resumed", T0 + timedelta(days=6))
    assert participant.status == "active"
    participant.programme_completed_at = T0 + timedelta(days=62)
    apply_lifecycle(participant, "participant.details_changed", T0 + timedelta(days=62))
    assert participant.status == "completed"
    apply_lifecycle(participant, "participant.erased", T0 + timedelta(days=90))
    apply_lifecycle(participant, "participant.resumed", T0 + timedelta(days=91))
    assert participant.status == "erased"


def test_a_mail_before_the_enrolment_already_makes_the_participant_active() -> None:
    participant = row()
    participant.mails_sent = 1
    apply_lifecycle(participant, "participant.details_changed", T0)
    assert participant.status == "active"
    apply_lifecycle(participant, "participant.enrolled", T0 - timedelta(days=1))
    assert participant.status == "active"


def test_the_incremental_counts_equal_a_recount_in_any_order() -> None:
    """apply_mail_change (what the handlers do per event) keeps the row equal to summarise_mails."""
    rng = random.Random(3)
    for _ in range(50):
        mails = {day: mail(day, sent=False) for day in range(1, 9)}
        changes = []
        for day, seen in mails.items():
            changes.append(("sent", seen, T0 + timedelta(days=day)))
            if day % 3 == 0:
                changes.append(("failed", seen, T0 + timedelta(days=day, minutes=-5)))
            for hours in rng.sample(range(1, 30), rng.randint(0, 3)):
                changes.append(("open", seen, T0 + timedelta(days=day, hours=hours)))
            if rng.random() < 0.5:
                changes.append(("scanner", seen, T0 + timedelta(days=day, seconds=4)))
            if rng.random() < 0.3:
                changes.append(("click", seen, T0 + timedelta(days=day, hours=3)))
        rng.shuffle(changes)
        incremental = row()
        for kind, seen, at in changes:
            before = mail_counts(seen)
            if kind == "sent":
                record_sent(seen, title=f"Les {seen.day}", sent_at=at)
            elif kind == "failed":
                record_failure(seen, failed_at=at, reason="550")
            elif kind == "click":
                record_click(seen, at)
            else:
                record_open(seen, at, likely_automated=kind == "scanner")
            apply_mail_change(incremental, before, seen)
        recounted = summarise_mails(row(), mails.values())
        fields = (
            "mails_sent",
            "mails_opened",
            "mails_opened_automated_only",
            "mails_failed",
            "clicks",
            "last_open_at",
            "first_sent_at",
            "last_sent_at",
            "last_failed_at",
            "lesson_day",
            "lesson_title",
        )
        assert [getattr(incremental, f) for f in fields] == [getattr(recounted, f) for f in fields]
