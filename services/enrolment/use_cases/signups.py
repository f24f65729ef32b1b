"""Public sign-ups with double opt-in: sign-up limits, the pending sign-up, its confirmation, and
forgetting sign-ups that were replaced or never confirmed."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from sqlmodel.ext.asyncio.session import AsyncSession

from services.enrolment import domain, security, signup_limits, storage
from services.enrolment.domain import ParticipantFields
from services.enrolment.settings import EnrolmentSettings
from services.enrolment.tables import Organisation, Participant
from services.enrolment.use_cases.participants import capacity, enrolled_event, erase_contact, publish, publish_contact
from shared.errors import Refusal
from shared.events import ParticipantConfirmationRequested, ParticipantErased
from shared.mailer_links import link_keys, seal_link

SIGNUP_RESEND_AFTER = timedelta(minutes=10)


class SignupLimited(Exception):
    """Too many sign-ups from one source or for one mailbox: nothing is stored or sent."""

    def __init__(self, kind: signup_limits.LimitKind, retry_after_s: int) -> None:
        super().__init__(f"too many sign-ups per {kind}")
        self.kind = kind
        self.retry_after_s = retry_after_s


def signup_limits_of(settings: EnrolmentSettings) -> signup_limits.SignupLimits:
    """The sign-up limits the settings ask for."""
    return signup_limits.SignupLimits(
        per_source=settings.signups_per_source_per_hour, per_mailbox=settings.signups_per_mailbox_per_day
    )


async def count_signup(
    *, session: AsyncSession, kind: signup_limits.LimitKind, value: str, settings: EnrolmentSettings, now: datetime
) -> None:
    """Count one sign-up from a source or for a mailbox; SignupLimited when it is one too many.

    The caller commits the count even when it is refused, so a client that keeps trying
    stays refused until the window ends.
    """
    limits = signup_limits_of(settings)
    window = limits.window(kind)
    key = signup_limits.counter_key(kind, value)
    current_start = signup_limits.window_start(now, window)
    current = await storage.count_signup(session=session, key=key, window_start=current_start)
    previous = await storage.signup_count(session=session, key=key, window_start=current_start - window)
    count = signup_limits.sliding_count(current=current, previous=previous, now=now, window=window)
    if signup_limits.over_limit(count, kind, limits):
        raise SignupLimited(kind, signup_limits.retry_after_s(now, window))


async def sign_up(
    *,
    session: AsyncSession,
    organisation: Organisation,
    fields: ParticipantFields,
    settings: EnrolmentSettings,
    now: datetime,
) -> Participant:
    """A public sign-up waits for its confirmation (participant.confirmation_requested only).

    A new sign-up replaces an unconfirmed earlier one of the same address, but not within
    SIGNUP_RESEND_AFTER: the public form must not become a way to flood someone's mailbox.
    """
    await capacity(session=session, organisation=organisation, now=now)
    coach = domain.choose_coach(
        None, await storage.active_participants_per_coach(session=session, org_id=organisation.id)
    )
    earlier_sign_ups = await storage.pending_signups(session=session, org_id=organisation.id, email=fields.email)
    for earlier in earlier_sign_ups:
        if now - earlier.created_at < SIGNUP_RESEND_AFTER:
            return earlier
    # Only a sign-up that sends a mail counts against the mailbox, in every organisation.
    mailbox = signup_limits.normalised_mailbox(fields.email)
    await count_signup(session=session, kind="mailbox", value=mailbox, settings=settings, now=now)
    for earlier in earlier_sign_ups:
        await forget_sign_up(session=session, participant=earlier)
    token = security.new_link_token()
    confirm_expires_at = now + timedelta(hours=settings.confirmation_ttl_hours)
    participant = Participant(
        org_id=organisation.id,
        coach_id=coach,
        first_name=fields.first_name,
        email=fields.email,
        phone=fields.phone,
        start_date=domain.default_start_date(now, fields.timezone),
        send_time=fields.send_time,
        timezone=fields.timezone,
        variant=organisation.variants[0],
        status="pending",
        source="signup",
        confirm_token_hash=security.digest(token),
        confirm_expires_at=confirm_expires_at,
        consent_text_version=settings.consent_text_version,
        consented_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(participant)
    publish_contact(session, participant)
    publish(
        session,
        participant,
        ParticipantConfirmationRequested(
            sealed_link=seal_link(
                f"{settings.enrolment_base_url.rstrip('/')}/bevestigen/{token}",
                keys=link_keys(settings.mailer_link_keys),
                expires_at=confirm_expires_at,
                now=now,
            ),
        ),
    )
    return participant


async def forget_sign_up(*, session: AsyncSession, participant: Participant) -> None:
    """Delete an unconfirmed sign-up (replaced, or never confirmed): nothing started, nothing
    is kept. participant.erased lets the mailer drop its copy for the confirmation mail."""
    publish(session, participant, ParticipantErased())
    erase_contact(session, participant)
    await session.delete(participant)


FORGET_BATCH = 500


async def forget_expired_sign_ups(*, session: AsyncSession, expired_before: datetime) -> int:
    """Forget up to FORGET_BATCH sign-ups whose link expired before the given moment."""
    expired = await storage.expired_signups(session=session, expired_before=expired_before, limit=FORGET_BATCH)
    for participant in expired:
        await forget_sign_up(session=session, participant=participant)
    return len(expired)


ConfirmOutcome = Literal["confirmed", "unknown", "used", "expired", "already_enrolled", "licence"]


async def pending_sign_up(
    *, session: AsyncSession, token: str, now: datetime
) -> tuple[Participant | None, ConfirmOutcome]:
    """The sign-up behind a confirmation link, and whether it can be confirmed now."""
    participant = await storage.participant_by_confirm_token(session=session, token_hash=security.digest(token))
    if participant is None:
        return None, "unknown"
    if not domain.awaits_confirmation(participant.status):
        return participant, "used"
    if participant.confirm_expires_at is None or now >= participant.confirm_expires_at:
        return participant, "expired"
    return participant, "confirmed"


async def confirm_sign_up(
    *, session: AsyncSession, token: str, now: datetime
) -> tuple[Participant | None, ConfirmOutcome]:
    """Confirm a sign-up through its mail link: only now does the programme start (participant.enrolled)."""
    participant, outcome = await pending_sign_up(session=session, token=token, now=now)
    if participant is None or outcome != "confirmed":
        return participant, outcome
    organisation = await storage.get_organisation(session=session, org_id=participant.org_id, for_update=True)
    assert organisation is not None and participant.email is not None
    try:
        await capacity(session=session, organisation=organisation, now=now)
    except Refusal:
        return participant, "licence"
    if await storage.has_running_enrolment(session=session, org_id=organisation.id, email=participant.email):
        return participant, "already_enrolled"
    participant.status = domain.next_status(participant.status, "confirm")
    # The programme starts the day after the confirmation, not the day after the sign-up.
    participant.start_date = domain.default_start_date(now, participant.timezone)
    participant.confirmed_at = participant.updated_at = now
    session.add(participant)
    publish_contact(session, participant)
    publish(session, participant, enrolled_event(participant))
    return participant, "confirmed"
