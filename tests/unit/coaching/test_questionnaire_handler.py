"""questionnaire.answered in coaching's projection: latest answer per moment, gone on erasure."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from uuid import uuid4

from services.coaching.handlers import APPLIERS
from services.coaching.rebuild import MemoryProjectionStore
from services.coaching.tables import QuestionnaireAnswerSeen
from shared.events import Envelope, ParticipantEnrolled, ParticipantErased, QuestionnaireAnswered

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
ORG, COACH, PARTICIPANT = uuid4(), uuid4(), uuid4()


def answered(moment: str, total: int, at: datetime) -> Envelope:
    payload = QuestionnaireAnswered(
        participant_id=PARTICIPANT,
        moment=moment,  # type: ignore[arg-type]
        scale_version="djg6-2006",
        answers={"e1": "ja", "e2": "ja", "e3": "nee", "s1": "nee", "s2": "nee", "s3": None},
        emotional=min(total, 3),
        social=max(0, total - 3),
        total=total,
        total_imputed=False,
        category="not_lonely" if total <= 1 else "moderately_lonely" if total <= 4 else "severely_lonely",
        answered_at=at,
    )
    return Envelope.wrap(payload, org_id=ORG, participant_id=PARTICIPANT, occurred_at=at)


def enrolled() -> Envelope:
    payload = ParticipantEnrolled(
        first_name="Gerrit",
        email="g@example.org",
        phone=None,
        coach_id=COACH,
        start_date=date(2026, 3, 2),
        send_time=time(8),
        timezone="Europe/Amsterdam",
        variant="standard",
    )
    return Envelope.wrap(payload, org_id=ORG, participant_id=PARTICIPANT, occurred_at=T0 - timedelta(days=1))


async def apply(store: MemoryProjectionStore, *events: Envelope) -> None:
    for envelope in events:
        if store.claim(envelope.event_id):
            await APPLIERS[envelope.topic][envelope.type](store, envelope)


async def test_the_latest_answer_per_moment_wins_whatever_the_arrival_order() -> None:
    store = MemoryProjectionStore()
    later = answered("intake", 5, T0 + timedelta(hours=2))
    earlier = answered("intake", 2, T0)
    await apply(store, enrolled(), later, earlier, answered("end", 1, T0 + timedelta(days=60)))
    rows = store.tables[QuestionnaireAnswerSeen]
    intake = rows[(PARTICIPANT, "intake")]
    assert (intake.total, intake.category, intake.org_id) == (5, "severely_lonely", ORG)
    assert rows[(PARTICIPANT, "end")].total == 1


async def test_erasure_deletes_the_answers_and_a_late_answer_is_not_kept() -> None:
    store = MemoryProjectionStore()
    await apply(store, enrolled(), answered("intake", 4, T0))
    erased = Envelope.wrap(ParticipantErased(), org_id=ORG, participant_id=PARTICIPANT, occurred_at=T0 + timedelta(1))
    await apply(store, erased, answered("end", 2, T0 + timedelta(days=2)))
    assert store.tables[QuestionnaireAnswerSeen] == {}
