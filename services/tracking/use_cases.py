"""Tracking's write paths, called by its routes: each records its state change and stages
its event (the transactional outbox) in the caller's session, and the caller commits once.
The routes keep only HTTP: reading the request, choosing the page. (Pixel hits take their
own path: recorder.py appends them, hit_processor.py turns them into opens.)"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from services.tracking import questionnaire, storage
from services.tracking.domain import ReportAnswer, UnsubscribeVia, Verdict, report_changed
from services.tracking.tables import QuestionnaireAnswer
from shared.events import (
    AssignmentReported,
    Envelope,
    LinkClicked,
    Payload,
    QuestionnaireAnswered,
    UnsubscribeRequested,
)
from shared.outbox import add_to_outbox
from shared.tracking_tokens import QuestionnaireToken, TrackingToken


def _publish(session: AsyncSession, token: TrackingToken | QuestionnaireToken, payload: Payload, now: datetime) -> None:
    """Stage the event of a participant's own action, under the ids the token carries."""
    add_to_outbox(
        session,
        Envelope.wrap(payload, org_id=token.org_id, participant_id=token.participant_id, occurred_at=now),
    )


async def record_link_hit(
    session: AsyncSession, *, token: TrackingToken, target: str, verdict: Verdict, now: datetime
) -> None:
    """A GET of a signed link (a click, the report or unsubscribe page); a click is published."""
    await storage.add_link_hit(session=session, token=token, target=target, hit_at=now, verdict=verdict)
    if token.kind == "click":
        _publish(
            session,
            token,
            LinkClicked(
                delivery_id=token.delivery_id,
                day=token.day,
                url=target,
                clicked_at=now,
                likely_automated=verdict.likely_automated,
                signals=verdict.signals,
            ),
            now,
        )


@dataclass(frozen=True)
class ReportSaved:
    """What a report submit did: the answer it replaced (if any), and whether it changed anything."""

    previous: ReportAnswer | None
    changed: bool


async def submit_report(
    session: AsyncSession, *, token: TrackingToken, answer: ReportAnswer, now: datetime
) -> ReportSaved:
    """Store the day's answer (a later one replaces it) and publish it, unless it repeats the last."""
    previous = await storage.save_report(session=session, token=token, answer=answer, now=now)
    changed = report_changed(previous, answer)
    if changed:
        _publish(
            session,
            token,
            AssignmentReported(
                delivery_id=token.delivery_id,
                day=token.day,
                score=answer.score,
                note=answer.note,
                reported_at=now,
            ),
            now,
        )
    return ReportSaved(previous=previous, changed=changed)


async def request_unsubscribe(
    session: AsyncSession, *, token: TrackingToken, via: UnsubscribeVia, now: datetime
) -> bool:
    """Record the request to stop and publish it once per mail; False for a repeat."""
    first = await storage.claim_unsubscribe(session=session, token=token, via=via, now=now)
    if first:
        _publish(
            session,
            token,
            UnsubscribeRequested(delivery_id=token.delivery_id, via=via, requested_at=now),
            now,
        )
    return first


async def submit_questionnaire(
    session: AsyncSession, *, token: QuestionnaireToken, answers: dict[str, questionnaire.Answer | None], now: datetime
) -> bool:
    """Store the answers and scores for the moment (replacing earlier ones) and publish them;
    True when earlier answers were replaced."""
    scores = questionnaire.score(answers)
    # The stored row and the event say the same: the answers, their scores, the moment.
    answered = {
        "participant_id": token.participant_id,
        "moment": token.moment,
        "scale_version": questionnaire.SCALE_VERSION,
        "answers": answers,
        **dataclasses.asdict(scores),
        "answered_at": now,
    }
    replaced = await storage.save_questionnaire_answer(
        session=session, row=QuestionnaireAnswer(org_id=token.org_id, **answered)
    )
    _publish(session, token, QuestionnaireAnswered(**answered), now)
    return replaced
