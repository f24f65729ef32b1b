"""domain.fold_copies against the events applied one by one: random runs of contact details,
enrolments, planned calls, call logs and alerts of a few people, on random stored rows, must
leave the same rows whether folded into one write per table or applied in order as the
mailer's handlers did before batches (the reference below mirrors those statements)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any
from uuid import UUID, uuid4

import pytest

from services.mailer.domain import Contact, CopyWrites, contacts_to_load, fold_copies
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
    Payload,
)

ORG = uuid4()
AT = datetime(2026, 3, 2, 8, tzinfo=UTC)


@dataclass
class Tables:
    """The rows the folded events touch, keyed as in PostgreSQL; a recipient or coach row is a
    dict of its columns, `addressed` what the address-came nudges reached."""

    contacts: dict[UUID, Contact] = field(default_factory=dict)
    recipients: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    coaches: dict[UUID, tuple[str | None, str | None]] = field(default_factory=dict)
    calls: dict[tuple[UUID, int], tuple[Any, ...]] = field(default_factory=dict)
    alerts: dict[tuple[UUID, str], tuple[Any, ...]] = field(default_factory=dict)
    addressed_participants: set[UUID] = field(default_factory=set)
    addressed_contacts: set[UUID] = field(default_factory=set)

    def copy(self) -> Tables:
        return Tables(
            dict(self.contacts),
            {k: dict(v) for k, v in self.recipients.items()},
            dict(self.coaches),
            dict(self.calls),
            dict(self.alerts),
            set(self.addressed_participants),
            set(self.addressed_contacts),
        )


def apply_one(tables: Tables, envelope: Envelope, p: object) -> None:
    """One event as the per-event handlers applied it."""
    participant = envelope.participant_id
    if isinstance(p, ContactDetailsSet):
        tables.contacts[p.person_id] = Contact(envelope.org_id, p.kind, p.name, p.email)
        tables.addressed_contacts.add(p.person_id)
        if p.kind == "participant":
            if p.person_id in tables.recipients:
                tables.recipients[p.person_id].update(first_name=p.name, email=p.email)
            tables.addressed_participants.add(p.person_id)
        elif p.person_id in tables.coaches:
            tables.coaches[p.person_id] = (p.name, p.email)
    elif isinstance(p, ParticipantEnrolled):
        assert participant is not None
        contact = tables.contacts.get(participant)
        values = {
            "org_id": envelope.org_id,
            "coach_id": p.coach_id,
            "first_name": contact.name if contact else None,
            "email": contact.email if contact else None,
            "start_date": p.start_date,
            "send_time": p.send_time,
            "timezone": p.timezone,
            "variant": p.variant,
        }
        tables.recipients.setdefault(participant, {"status": "enrolled", "last_day": 0}).update(values)
    elif isinstance(p, CallPlanned | CallMoved | CallSuspended | CallCancelled):
        assert participant is not None
        state = {CallPlanned: "planned", CallMoved: "planned", CallSuspended: "suspended", CallCancelled: "cancelled"}
        tables.calls[participant, p.number] = (
            envelope.org_id, p.lesson_day, state[type(p)], p.due_date, p.overdue_from, p.lapses_after,
        )  # fmt: skip
    elif isinstance(p, CallLogged):
        assert participant is not None
        if p.reached and p.planned_call is not None and (participant, p.planned_call) in tables.calls:
            row = tables.calls[participant, p.planned_call]
            tables.calls[participant, p.planned_call] = (*row[:2], "done", *row[3:])
    elif isinstance(p, AlertRaised):
        assert participant is not None
        tables.alerts[participant, p.code] = (envelope.org_id, p.holds_from)
    elif isinstance(p, AlertCleared):
        assert participant is not None
        tables.alerts.pop((participant, p.code), None)
    else:
        raise AssertionError(type(p))


def apply_writes(tables: Tables, writes: CopyWrites) -> None:
    """The folded writes as storage.write_copies's statements apply them."""
    tables.contacts.update(writes.contacts)
    for participant, row in writes.recipients.items():
        values = {k: v for k, v in vars(row).items() if k != "participant_id"}
        tables.recipients.setdefault(participant, {"status": "enrolled", "last_day": 0}).update(values)
    for participant, (name, email) in writes.recipient_contacts.items():
        if participant in tables.recipients:
            tables.recipients[participant].update(first_name=name, email=email)
    for coach, named in writes.coach_contacts.items():
        if coach in tables.coaches:
            tables.coaches[coach] = named
    tables.addressed_participants |= writes.addressed_participants
    tables.addressed_contacts |= writes.addressed_contacts
    for key, call in writes.planned_calls.items():
        tables.calls[key] = (
            call.org_id, call.lesson_day, call.state, call.due_date, call.overdue_from, call.lapses_after,
        )  # fmt: skip
    for key in writes.calls_done:
        if key in tables.calls:
            row = tables.calls[key]
            tables.calls[key] = (*row[:2], "done", *row[3:])
    for key, alert in writes.alerts.items():
        tables.alerts[key] = (alert.org_id, alert.holds_from)
    for key in writes.alerts_cleared:
        tables.alerts.pop(key, None)


def random_event(rng: random.Random, people: list[UUID]) -> Envelope:
    person = rng.choice(people)
    kind = rng.randrange(9)
    payload: Payload
    if kind == 0:
        payload = ContactDetailsSet(
            person_id=person,
            kind=rng.choice(["participant", "participant", "staff"]),
            name=rng.choice(["Ans", "Joop", "Henk"]),
            email=rng.choice([None, "a@example.org", "b@example.org"]),
        )
    elif kind == 1:
        payload = ParticipantEnrolled(
            coach_id=rng.choice(people),
            start_date=date(2026, 3, rng.randint(1, 9)),
            send_time=time(rng.randint(7, 9)),
            timezone="Europe/Amsterdam",
            variant=rng.choice(["standard", "short"]),
        )
    elif kind in (2, 3):
        cls = rng.choice([CallPlanned, CallMoved, CallSuspended, CallCancelled])
        payload = cls(
            number=rng.randint(1, 2),
            lesson_day=rng.randint(1, 60),
            due_date=rng.choice([None, date(2026, 3, rng.randint(1, 28))]),
        )
    elif kind == 4:
        payload = CallLogged(
            call_id=uuid4(),
            coach_id=uuid4(),
            called_at=AT,
            reached=rng.random() < 0.7,
            duration_minutes=5,
            planned_call=rng.choice([None, 1, 2]),
        )
    elif kind in (5, 6):
        payload = AlertRaised(code=rng.choice(["no_open_3_days", "low_scores"]), holds_from=rng.choice([None, AT]))
    else:
        payload = AlertCleared(code=rng.choice(["no_open_3_days", "low_scores"]))
    return Envelope.wrap(payload, org_id=ORG, participant_id=person, occurred_at=AT)


def stored_tables(rng: random.Random, people: list[UUID]) -> Tables:
    """Some of the people already known, with some of their rows."""
    tables = Tables()
    for person in people:
        if rng.random() < 0.4:
            tables.contacts[person] = Contact(ORG, "participant", "Greet", "g@example.org")
        if rng.random() < 0.4:
            tables.recipients[person] = {"status": "active", "last_day": 4, "first_name": "Greet", "email": None}
        if rng.random() < 0.3:
            tables.coaches[person] = (None, None)
        if rng.random() < 0.4:
            tables.calls[person, 1] = (ORG, 10, "planned", None, None, None)
        if rng.random() < 0.3:
            tables.alerts[person, "low_scores"] = (ORG, None)
    return tables


@pytest.mark.parametrize("seed", range(300))
def test_a_folded_run_ends_as_its_events_applied_one_by_one(seed: int) -> None:
    rng = random.Random(seed)
    people = [uuid4() for _ in range(rng.randint(1, 4))]
    events = [random_event(rng, people) for _ in range(rng.randint(1, 40))]
    stored = stored_tables(rng, people)

    one_by_one = stored.copy()
    for envelope in events:
        apply_one(one_by_one, envelope, envelope.parsed())

    run = [(envelope, envelope.parsed()) for envelope in events]
    loaded = {person: stored.contacts[person] for person in contacts_to_load(run) if person in stored.contacts}
    folded = stored.copy()
    apply_writes(folded, fold_copies(run, loaded))

    assert folded == one_by_one


def test_the_fold_reads_only_the_contacts_of_the_people_it_enrols() -> None:
    enrolled, addressed = uuid4(), uuid4()
    run = [
        (e, e.parsed())
        for e in (
            Envelope.wrap(
                ContactDetailsSet(person_id=addressed, kind="participant", name="Ans"),
                org_id=ORG,
                participant_id=addressed,
            ),
            Envelope.wrap(
                ParticipantEnrolled(
                    coach_id=uuid4(),
                    start_date=date(2026, 3, 2),
                    send_time=time(8),
                    timezone="Europe/Amsterdam",
                    variant="standard",
                ),
                org_id=ORG,
                participant_id=enrolled,
            ),
        )
    ]
    assert contacts_to_load(run) == {enrolled}


def test_an_enrolment_takes_the_name_set_before_it_in_the_same_run_and_any_set_after() -> None:
    person = uuid4()

    def contact(name: str) -> Envelope:
        payload = ContactDetailsSet(person_id=person, kind="participant", name=name, email=f"{name}@example.org")
        return Envelope.wrap(payload, org_id=ORG, participant_id=person)

    enrol = Envelope.wrap(
        ParticipantEnrolled(
            coach_id=uuid4(),
            start_date=date(2026, 3, 2),
            send_time=time(8),
            timezone="Europe/Amsterdam",
            variant="standard",
        ),
        org_id=ORG,
        participant_id=person,
    )
    before = fold_copies([(e, e.parsed()) for e in (contact("Ans"), enrol)], {})
    assert (before.recipients[person].first_name, before.recipient_contacts) == ("Ans", {})
    after = fold_copies([(e, e.parsed()) for e in (enrol, contact("Joop"))], {})
    assert (after.recipients[person].first_name, after.recipients[person].email) == ("Joop", "Joop@example.org")
    stored = fold_copies([(enrol, enrol.parsed())], {person: Contact(ORG, "participant", "Greet", None)})
    assert stored.recipients[person].first_name == "Greet"
