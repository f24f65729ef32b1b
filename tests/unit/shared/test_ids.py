"""Time-ordered ids: new rows go to the right-hand edge of their index."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from uuid import UUID, uuid4

from shared.events import Envelope, MailOpened
from shared.ids import time_ordered_ids, uuid7


def test_ids_are_version_7_with_the_millisecond_they_were_made() -> None:
    before = time.time_ns() // 1_000_000
    ids = time_ordered_ids(1_000)
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == 1_000, "74 random bits each"
    for one in ids:
        assert isinstance(one, UUID) and one.version == 7 and one.variant == "specified in RFC 4122"
        assert before <= one.int >> 80 <= after, "the first 48 bits are the Unix time in milliseconds"


def test_later_ids_sort_after_earlier_ones() -> None:
    earlier = uuid7()
    time.sleep(0.002)
    later = time_ordered_ids(3)
    assert all(earlier < one for one in later)
    assert str(earlier) < min(str(one) for one in later), "also as text (an outbox row's event id)"


def test_every_event_gets_a_time_ordered_id() -> None:
    opened = MailOpened(
        delivery_id=uuid4(), day=1, opened_at=datetime(2026, 12, 1, tzinfo=UTC), first_open=True, likely_automated=False
    )
    first, second = (Envelope.wrap(opened, org_id=uuid4(), participant_id=uuid4()) for _ in range(2))
    assert first.event_id.version == 7 and second.event_id.version == 7
    assert first.event_id != second.event_id
    assert Envelope.model_validate_json(first.model_dump_json()).event_id == first.event_id
