"""The event envelope: typed payloads, keys and topics, and strict parsing."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from uuid import uuid4

import pytest
from pydantic import ValidationError

from shared.events import (
    CallPlanned,
    CoachAdded,
    ContactDetailsSet,
    Envelope,
    LocalOffer,
    MailOpened,
    OrganisationLocalOffersChanged,
    ParticipantEnrolled,
    Topic,
    UnknownEventError,
    known_event_types,
    people_made_from_two_topics,
)


def opened() -> MailOpened:
    return MailOpened(
        delivery_id=uuid4(),
        day=3,
        opened_at=datetime(2026, 11, 23, 9, tzinfo=UTC),
        first_open=True,
        likely_automated=False,
    )


def test_envelope_round_trips_through_json_with_its_typed_payload() -> None:
    org, participant = uuid4(), uuid4()
    envelope = Envelope.wrap(opened(), org_id=org, participant_id=participant)
    again = Envelope.model_validate_json(envelope.model_dump_json())
    assert again == envelope
    assert again.parsed() == opened().model_copy(update={"delivery_id": again.parsed().delivery_id})  # type: ignore[attr-defined]
    assert again.type == "mail.opened" and again.version == 1


def test_key_is_the_participant_and_falls_back_to_the_organisation() -> None:
    org, participant = uuid4(), uuid4()
    assert Envelope.wrap(opened(), org_id=org, participant_id=participant).key == str(participant).encode()
    assert Envelope.wrap(opened(), org_id=org).key == str(org).encode()


def test_topic_comes_from_the_payload_type() -> None:
    assert Envelope.wrap(opened(), org_id=uuid4()).topic == Topic.ENGAGEMENT
    assert Topic.dead_letter(Topic.ENGAGEMENT) == "meer.engagement.dlt"


def test_unknown_type_or_version_is_refused() -> None:
    envelope = Envelope(type="mail.opened", version=99, occurred_at=datetime.now(UTC), org_id=uuid4(), payload={})
    with pytest.raises(UnknownEventError):
        envelope.parsed()


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValidationError):
        Envelope(type="mail.opened", version=1, occurred_at=datetime(2026, 1, 1), org_id=uuid4(), payload={})


def test_every_event_type_is_past_tense_and_registered_once() -> None:
    types = known_event_types()
    assert len(types) == len(set(types))
    assert ("participant.enrolled", 1) in types and ("mail.opened", 1) in types


def test_contact_details_are_keyed_by_the_person_and_an_unknown_type_keys_as_before() -> None:
    from shared.events import ContactDetailsSet

    org, staff = uuid4(), uuid4()
    details = ContactDetailsSet(person_id=staff, kind="staff", name="Karin", email="karin@example.org")
    envelope = Envelope.wrap(details, org_id=org)
    assert (envelope.topic, envelope.key) == (Topic.CONTACT, str(staff).encode())
    newer = Envelope(type="contact.something_new", version=1, occurred_at=datetime.now(UTC), org_id=org, payload={})
    assert newer.key == str(org).encode()


def test_old_versions_still_parse_and_their_personal_fields_are_not_in_the_new_contract() -> None:
    from shared.events import ParticipantEnrolled

    old = Envelope(
        type="participant.enrolled",
        version=1,
        occurred_at=datetime.now(UTC),
        org_id=uuid4(),
        participant_id=uuid4(),
        payload={
            "first_name": "Ans",
            "email": "ans@example.org",
            "coach_id": str(uuid4()),
            "start_date": "2026-03-02",
            "send_time": "09:00:00",
            "timezone": "Europe/Amsterdam",
            "variant": "standard",
        },
    )
    assert isinstance(old.parsed(), ParticipantEnrolled)
    assert not {"first_name", "email", "phone"} & set(ParticipantEnrolled.model_fields)


def test_a_local_offer_of_a_kind_this_code_does_not_know_still_parses_so_the_list_is_not_dead_lettered() -> None:
    offer_id = uuid4()
    envelope = Envelope.wrap(
        OrganisationLocalOffersChanged(offers=(LocalOffer(offer_id=offer_id, kind="zwembad", name="Bad\nZuid"),)),
        org_id=uuid4(),
    )

    parsed = Envelope.model_validate_json(envelope.model_dump_json()).parsed()

    assert isinstance(parsed, OrganisationLocalOffersChanged)
    assert parsed.offers[0].kind == "zwembad" and parsed.offers[0].name == "Bad Zuid"
    assert envelope.topic == "meer.organisation" and envelope.key == str(envelope.org_id).encode()


def test_the_payload_is_validated_once_per_envelope_and_never_compared_or_serialised() -> None:
    envelope = Envelope.wrap(opened(), org_id=uuid4(), participant_id=uuid4())
    unparsed = envelope.model_copy()
    first = envelope.parsed()
    assert envelope.parsed() is first
    assert envelope == unparsed and envelope.model_dump_json() == unparsed.model_dump_json()
    assert set(envelope.model_dump()) == set(Envelope.model_fields)


def test_a_copy_with_another_payload_validates_its_own() -> None:
    envelope = Envelope.wrap(opened(), org_id=uuid4(), participant_id=uuid4())
    assert isinstance(envelope.parsed(), MailOpened)
    later = envelope.model_copy(update={"payload": {**envelope.payload, "day": 9}})
    assert later.parsed().day == 9  # type: ignore[attr-defined]
    assert envelope.parsed().day == 3  # type: ignore[attr-defined]


def test_the_people_whose_rows_two_topics_make() -> None:
    org, participant, coach, staff, other = uuid4(), uuid4(), uuid4(), uuid4(), uuid4()
    enrolled = ParticipantEnrolled(
        coach_id=coach, start_date=date(2026, 3, 2), send_time=time(8), timezone="Europe/Amsterdam", variant="standard"
    )
    batch = [
        Envelope.wrap(enrolled, org_id=org, participant_id=participant),
        Envelope.wrap(CoachAdded(coach_id=coach), org_id=org),
        Envelope.wrap(ContactDetailsSet(person_id=staff, kind="staff", name="Karin"), org_id=org),
        # Makes no row from two topics.
        Envelope.wrap(CallPlanned(number=1, lesson_day=3, due_date=date(2026, 3, 4)), org_id=org, participant_id=other),
        # A malformed id is left to its change, which refuses it.
        Envelope.model_construct(
            event_id=uuid4(), type=CoachAdded.TYPE, version=2, org_id=org, payload={"coach_id": "no uuid"}
        ),
    ]

    assert people_made_from_two_topics(batch) == {participant, coach, staff}
