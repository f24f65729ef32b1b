"""The mailer's copies of what other services tell it, folded per batch: a run of contact
details, enrolments, planned calls and alerts becomes one write per table that ends as if the
events had been applied one by one, in their order. No I/O: the handlers load what the fold
needs (contacts_to_load) and write what it returns (CopyWrites)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from uuid import UUID

from shared.events import (
    AlertCleared,
    AlertRaised,
    CallCancelled,
    CallLogged,
    CallMoved,
    CallPlanned,
    CallSuspended,
    ContactDetailsSet,
    Envelope,
    ParticipantEnrolled,
)

FOLDED_TYPES = frozenset(
    {
        ContactDetailsSet.TYPE,
        ParticipantEnrolled.TYPE,
        CallPlanned.TYPE,
        CallMoved.TYPE,
        CallSuspended.TYPE,
        CallCancelled.TYPE,
        CallLogged.TYPE,
        AlertRaised.TYPE,
        AlertCleared.TYPE,
    }
)
"""The event types fold_copies folds; every other change of the mailer writes at once, after
the run folded so far has been written."""

_CALL_STATES: dict[type[object], str] = {
    CallPlanned: "planned",
    CallMoved: "planned",
    CallSuspended: "suspended",
    CallCancelled: "cancelled",
}


@dataclass(frozen=True)
class Contact:
    """A person's contact copy: what contact.details_set said last."""

    org_id: UUID
    kind: str
    name: str
    email: str | None


@dataclass(frozen=True)
class EnrolledRecipient:
    """The recipient row an enrolment writes (inserted as enrolled, or updated keeping its status)."""

    participant_id: UUID
    org_id: UUID
    coach_id: UUID
    first_name: str | None
    email: str | None
    start_date: date
    send_time: time
    timezone: str
    variant: str


@dataclass(frozen=True)
class PlannedCallRow:
    participant_id: UUID
    number: int
    org_id: UUID
    lesson_day: int
    state: str
    due_date: date | None
    overdue_from: date | None
    lapses_after: date | None


@dataclass(frozen=True)
class AlertRow:
    participant_id: UUID
    code: str
    org_id: UUID
    holds_from: datetime | None


@dataclass
class CopyWrites:
    """What a folded run writes. Keys of an upsert and of an update or delete of the same table
    never overlap: the later event decides which one a key gets."""

    contacts: dict[UUID, Contact] = field(default_factory=dict)
    """Upserted contact copies."""
    recipients: dict[UUID, EnrolledRecipient] = field(default_factory=dict)
    """Upserted by an enrolment of the run (name and address as they stand after the run)."""
    recipient_contacts: dict[UUID, tuple[str, str | None]] = field(default_factory=dict)
    """Name and address for an existing recipient the run did not enrol."""
    coach_contacts: dict[UUID, tuple[str, str | None]] = field(default_factory=dict)
    """Name and address for an existing coach copy."""
    addressed_participants: set[UUID] = field(default_factory=set)
    """Participants whose address came: their lessons postponed for it go now."""
    addressed_contacts: set[UUID] = field(default_factory=set)
    """People whose address came: transactional mails postponed for it go now."""
    planned_calls: dict[tuple[UUID, int], PlannedCallRow] = field(default_factory=dict)
    """Upserted planned calls."""
    calls_done: set[tuple[UUID, int]] = field(default_factory=set)
    """Existing planned calls a reached call completed."""
    alerts: dict[tuple[UUID, str], AlertRow] = field(default_factory=dict)
    """Upserted alerts."""
    alerts_cleared: set[tuple[UUID, str]] = field(default_factory=set)
    """Deleted alerts."""


def contacts_to_load(events: Iterable[tuple[Envelope, object]]) -> set[UUID]:
    """The contact copies fold_copies reads: those of the participants the run enrols."""
    return {
        envelope.participant_id
        for envelope, payload in events
        if isinstance(payload, ParticipantEnrolled) and envelope.participant_id is not None
    }


def fold_copies(events: Sequence[tuple[Envelope, object]], stored: Mapping[UUID, Contact]) -> CopyWrites:
    """Fold a run of events of FOLDED_TYPES, in order, into the writes that leave the same rows as
    applying them one by one. `stored`: the contact copies of contacts_to_load() as they were
    before the run (a missing one has none)."""
    writes = CopyWrites()
    contacts = dict(stored)
    for envelope, payload in events:
        participant = envelope.participant_id
        if isinstance(payload, ContactDetailsSet):
            _set_contact(writes, contacts, envelope.org_id, payload)
        elif isinstance(payload, ParticipantEnrolled):
            assert participant is not None
            contact = contacts.get(participant)
            writes.recipients[participant] = EnrolledRecipient(
                participant_id=participant,
                org_id=envelope.org_id,
                coach_id=payload.coach_id,
                first_name=contact.name if contact else None,
                email=contact.email if contact else None,
                start_date=payload.start_date,
                send_time=payload.send_time,
                timezone=payload.timezone,
                variant=payload.variant,
            )
            # The upsert carries the name from here on; an earlier update would only be overwritten.
            writes.recipient_contacts.pop(participant, None)
        elif isinstance(payload, CallPlanned | CallMoved | CallSuspended | CallCancelled):
            assert participant is not None
            call = (participant, payload.number)
            writes.planned_calls[call] = PlannedCallRow(
                participant_id=participant,
                number=payload.number,
                org_id=envelope.org_id,
                lesson_day=payload.lesson_day,
                state=_CALL_STATES[type(payload)],
                due_date=payload.due_date,
                overdue_from=payload.overdue_from,
                lapses_after=payload.lapses_after,
            )
            writes.calls_done.discard(call)
        elif isinstance(payload, CallLogged):
            # Only a call in which the participant was reached completes a planned call.
            if payload.reached and payload.planned_call is not None:
                assert participant is not None
                call = (participant, payload.planned_call)
                if call in writes.planned_calls:
                    writes.planned_calls[call] = replace(writes.planned_calls[call], state="done")
                else:
                    writes.calls_done.add(call)
        elif isinstance(payload, AlertRaised):
            assert participant is not None
            alert = (participant, payload.code)
            writes.alerts[alert] = AlertRow(participant, payload.code, envelope.org_id, payload.holds_from)
            writes.alerts_cleared.discard(alert)
        elif isinstance(payload, AlertCleared):
            assert participant is not None
            alert = (participant, payload.code)
            writes.alerts.pop(alert, None)
            writes.alerts_cleared.add(alert)
        else:
            raise TypeError(f"not a folded event: {type(payload).__name__}")
    return writes


def _set_contact(writes: CopyWrites, contacts: dict[UUID, Contact], org_id: UUID, payload: ContactDetailsSet) -> None:
    person = payload.person_id
    contacts[person] = writes.contacts[person] = Contact(org_id, payload.kind, payload.name, payload.email)
    writes.addressed_contacts.add(person)
    if payload.kind == "participant":
        writes.addressed_participants.add(person)
        enrolled = writes.recipients.get(person)
        if enrolled is not None:
            writes.recipients[person] = replace(enrolled, first_name=payload.name, email=payload.email)
        else:
            writes.recipient_contacts[person] = (payload.name, payload.email)
    else:
        writes.coach_contacts[person] = (payload.name, payload.email)
