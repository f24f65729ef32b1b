"""Tracking's database access: keyword-only functions on the caller's session, so each
record and its outbox row commit in the caller's one transaction. (The pixel's own append
is in recorder.py.)"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import delete, func, literal_column, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from services.tracking.domain import ReportAnswer, Verdict
from services.tracking.tables import (
    AssignmentReport,
    ErasedParticipant,
    FirstOpen,
    HeldOpen,
    LinkHit,
    OrganisationBranding,
    QuestionnaireAnswer,
    SentMail,
    UnsubscribeRequest,
)
from shared.db import utcnow
from shared.tracking_tokens import TrackingToken


@dataclass(frozen=True)
class MailKnown:
    """What tracking's database says about one mail at the moment of a pixel hit."""

    sent_at: datetime | None
    recent_links: frozenset[str]
    """The different links of this mail hit within the burst window."""
    first_open: bool = False
    """This transaction claimed the mail's first open (nobody opened it before)."""
    sent_to: tuple[UUID, UUID] | None = None
    """The participant and organisation mail.sent named, or None while tracking has not seen it sent."""


# One statement for a whole batch of pixel hits: claim the first open of each mail (the
# primary key decides, also between processors), and read when each mail was sent and
# which of its links were hit lately (a scanner's burst).
# Only a hit on a mail seen sent to the token's participant and organisation claims.
_CLAIM_AND_READ = text("""
    WITH hits AS (SELECT DISTINCT id, participant, org
                    FROM unnest(CAST(:ids AS uuid[]), CAST(:participants AS uuid[]), CAST(:orgs AS uuid[]))
                      AS d(id, participant, org)),
    ids AS (SELECT DISTINCT id FROM hits),
    claimed AS (
        INSERT INTO first_open (delivery_id, opened_at)
        SELECT DISTINCT s.delivery_id, CAST(:opened_at AS timestamptz)
          FROM hits JOIN sent_mail s ON s.delivery_id = hits.id AND s.participant_id = hits.participant
                                    AND s.org_id = hits.org
        ON CONFLICT (delivery_id) DO NOTHING
        RETURNING delivery_id
    )
    SELECT ids.id AS delivery_id, s.sent_at, s.participant_id AS sent_participant, s.org_id AS sent_org,
           ARRAY(SELECT DISTINCT h.target FROM link_hit h
                  WHERE h.delivery_id = ids.id AND h.hit_at >= CAST(:since AS timestamptz)) AS links,
           EXISTS (SELECT 1 FROM claimed c WHERE c.delivery_id = ids.id) AS first_open
      FROM ids
      LEFT JOIN sent_mail s ON s.delivery_id = ids.id
""")


async def claim_and_read_mails_in_session(
    *, session: AsyncSession, hits: Sequence[tuple[UUID, UUID, UUID]], opened_at: datetime, since: datetime
) -> dict[UUID, MailKnown]:
    """Claim first opens and read what is known of each mail of a batch of pixel hits, given
    as (delivery, participant, organisation)."""
    result = await session.execute(
        _CLAIM_AND_READ,
        {
            "ids": [delivery for delivery, _, _ in hits],
            "participants": [participant for _, participant, _ in hits],
            "orgs": [org for _, _, org in hits],
            "opened_at": opened_at,
            "since": since,
        },
    )
    return {
        row.delivery_id: MailKnown(
            row.sent_at,
            frozenset(row.links),
            row.first_open,
            (row.sent_participant, row.sent_org) if row.sent_at is not None else None,
        )
        for row in result
    }


async def mails_known(*, session: AsyncSession, delivery_ids: Sequence[UUID], since: datetime) -> dict[UUID, MailKnown]:
    """When each mail was sent and which of its links were hit lately (no claim)."""
    result = await session.execute(
        select(col(SentMail.delivery_id), col(SentMail.sent_at)).where(col(SentMail.delivery_id).in_(delivery_ids))
    )
    sent = {row.delivery_id: row.sent_at for row in result}
    links = await session.execute(
        select(col(LinkHit.delivery_id), col(LinkHit.target))
        .where(col(LinkHit.delivery_id).in_(delivery_ids), col(LinkHit.hit_at) >= since)
        .distinct()
    )
    recent: dict[UUID, set[str]] = {}
    for row in links:
        recent.setdefault(row.delivery_id, set()).add(row.target)
    return {
        delivery_id: MailKnown(sent.get(delivery_id), frozenset(recent.get(delivery_id, ())))
        for delivery_id in delivery_ids
    }


_TAKE_RELEASABLE = text("""
    WITH ready AS (
        SELECT h.id FROM held_open h
          JOIN sent_mail s ON s.delivery_id = h.delivery_id AND s.participant_id = h.participant_id
                          AND s.org_id = h.org_id
         ORDER BY h.opened_at
         LIMIT :limit
           FOR UPDATE OF h SKIP LOCKED
    )
    DELETE FROM held_open WHERE id IN (SELECT id FROM ready)
    RETURNING id, delivery_id, participant_id, org_id, day, opened_at, likely_automated, signals
""")


async def take_releasable_held_opens(*, session: AsyncSession, limit: int) -> list[HeldOpen]:
    """Remove and return held hits whose mail is now seen sent (oldest first); other
    replicas skip the rows this transaction took."""
    rows = (await session.execute(_TAKE_RELEASABLE, {"limit": limit})).mappings().all()
    held = [HeldOpen(**dict(row)) for row in rows]
    return sorted(held, key=lambda item: item.opened_at)


async def claim_first_opens(*, session: AsyncSession, opened_at: dict[UUID, datetime]) -> set[UUID]:
    """Claim the first open of these mails (each at its time); the ones nobody had opened before."""
    if not opened_at:
        return set()
    result = await session.execute(
        pg_insert(FirstOpen)
        .values([{"delivery_id": delivery_id, "opened_at": at} for delivery_id, at in opened_at.items()])
        .on_conflict_do_nothing()
        .returning(col(FirstOpen.delivery_id))
    )
    return set(result.scalars().all())


async def delete_expired_held_opens(*, session: AsyncSession, opened_before: datetime) -> int:
    """Delete held hits whose mail was never seen sent."""
    result = await session.execute(delete(HeldOpen).where(col(HeldOpen.opened_at) < opened_before))
    return int(getattr(result, "rowcount", 0) or 0)


async def add_link_hit(
    *, session: AsyncSession, token: TrackingToken, target: str, hit_at: datetime, verdict: Verdict
) -> None:
    """Record one GET of a link (click, report page or unsubscribe page)."""
    session.add(
        LinkHit(
            delivery_id=token.delivery_id,
            participant_id=token.participant_id,
            org_id=token.org_id,
            day=token.day,
            kind=token.kind,
            target=target,
            hit_at=hit_at,
            likely_automated=verdict.likely_automated,
            signals=list(verdict.signals),
        )
    )


async def get_report(*, session: AsyncSession, participant_id: UUID, day: int) -> ReportAnswer | None:
    """The participant's current answer for a day, if there is one."""
    report = await session.get(AssignmentReport, (participant_id, day))
    return ReportAnswer(report.score, report.note) if report else None


async def save_report(
    *, session: AsyncSession, token: TrackingToken, answer: ReportAnswer, now: datetime
) -> ReportAnswer | None:
    """Store the answer (a later one for the same day replaces it); returns the previous one.

    The row is locked, so two answers sent at the same moment are taken one after the other.
    """
    existing = await session.get(AssignmentReport, (token.participant_id, token.day), with_for_update=True)
    if existing is None:
        inserted = await session.execute(
            pg_insert(AssignmentReport)
            .values(
                participant_id=token.participant_id,
                day=token.day,
                delivery_id=token.delivery_id,
                org_id=token.org_id,
                score=answer.score,
                note=answer.note,
                reported_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing()
            .returning(col(AssignmentReport.day))
        )
        if inserted.first() is not None:
            return None
        # Another answer for the same day was committed in between: replace that one.
        return await save_report(session=session, token=token, answer=answer, now=now)
    previous = ReportAnswer(existing.score, existing.note)
    existing.score, existing.note, existing.updated_at = answer.score, answer.note, now
    session.add(existing)
    return previous


async def claim_unsubscribe(*, session: AsyncSession, token: TrackingToken, via: str, now: datetime) -> bool:
    """Record the request to stop; False if this mail's unsubscribe was already requested."""
    result = await session.execute(
        pg_insert(UnsubscribeRequest)
        .values(
            delivery_id=token.delivery_id,
            participant_id=token.participant_id,
            org_id=token.org_id,
            via=via,
            requested_at=now,
        )
        .on_conflict_do_nothing()
        .returning(col(UnsubscribeRequest.delivery_id))
    )
    return result.first() is not None


async def unsubscribe_requested(*, session: AsyncSession, participant_id: UUID) -> bool:
    """Whether the participant asked to stop from any of their mails."""
    result = await session.execute(
        select(func.count())
        .select_from(UnsubscribeRequest)
        .where(col(UnsubscribeRequest.participant_id) == participant_id)
    )
    return bool(result.scalar_one())


_UPSERT_SENT_MAILS = text(
    """
    INSERT INTO sent_mail (delivery_id, participant_id, org_id, day, sent_at)
    SELECT * FROM unnest(CAST(:delivery_ids AS uuid[]), CAST(:participant_ids AS uuid[]),
                         CAST(:org_ids AS uuid[]), CAST(:days AS integer[]), CAST(:sent_ats AS timestamptz[]))
    ON CONFLICT DO NOTHING
    """
)


async def upsert_sent_mails(*, session: AsyncSession, mails: Sequence[dict[str, Any]]) -> None:
    """Remember when mails were sent, in one statement of the same shape however many (a resend
    after a crash keeps the first time). Each mail: delivery_id, participant_id, org_id, day, sent_at."""
    if mails:
        columns = {
            f"{name}s": [mail[name] for mail in mails]
            for name in ("delivery_id", "participant_id", "org_id", "day", "sent_at")
        }
        await session.execute(_UPSERT_SENT_MAILS, columns)


async def upsert_branding(*, session: AsyncSession, org_id: UUID, branding: dict[str, Any], now: datetime) -> None:
    """Keep the organisation's latest branding for the public pages."""
    await session.execute(
        pg_insert(OrganisationBranding)
        .values(org_id=org_id, branding=branding, updated_at=now)
        .on_conflict_do_update(index_elements=["org_id"], set_={"branding": branding, "updated_at": now})
    )


async def get_branding(*, session: AsyncSession, org_id: UUID) -> dict[str, Any] | None:
    """The organisation's branding, or None while its organisation event has not arrived."""
    row = await session.get(OrganisationBranding, org_id)
    return dict(row.branding) if row else None


async def erase_participant(*, session: AsyncSession, participant_id: UUID) -> None:
    """Remove what a participant wrote (their notes, their questionnaire answers) and close their
    questionnaire links; the ids left say nothing about a person."""
    await session.execute(
        update(AssignmentReport).where(col(AssignmentReport.participant_id) == participant_id).values(note=None)
    )
    await session.execute(delete(QuestionnaireAnswer).where(col(QuestionnaireAnswer.participant_id) == participant_id))
    await session.execute(
        pg_insert(ErasedParticipant).values(participant_id=participant_id, erased_at=utcnow()).on_conflict_do_nothing()
    )


async def questionnaire_closed(*, session: AsyncSession, participant_id: UUID) -> bool:
    """True when the participant was erased: their links accept no new answers."""
    return await session.get(ErasedParticipant, participant_id) is not None


async def next_lesson_sent_at(*, session: AsyncSession, participant_id: UUID) -> datetime | None:
    """When the participant's first lesson after day 1 was sent (None: not yet): the end of the intake."""
    found = await session.execute(
        select(func.min(col(SentMail.sent_at))).where(
            col(SentMail.participant_id) == participant_id, col(SentMail.day) >= 2
        )
    )
    return found.scalar_one_or_none()


async def get_questionnaire_answer(
    *, session: AsyncSession, participant_id: UUID, moment: str
) -> QuestionnaireAnswer | None:
    return await session.get(QuestionnaireAnswer, (participant_id, moment))


async def save_questionnaire_answer(*, session: AsyncSession, row: QuestionnaireAnswer) -> bool:
    """Store the answers for the moment, replacing earlier ones; True when there were earlier ones."""
    values = row.model_dump(exclude={"participant_id", "moment"})
    inserted = await session.execute(
        pg_insert(QuestionnaireAnswer)
        .values(participant_id=row.participant_id, moment=row.moment, **values)
        .on_conflict_do_update(index_elements=["participant_id", "moment"], set_=values)
        .returning(literal_column("(xmax = 0)"))
    )
    return not bool(inserted.scalar_one())
