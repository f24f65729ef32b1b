"""Subject-access exports, the pure rules: where an export stands, enrolment's own part,
the bundle of all parts and the readable Dutch page."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.enrolment.export import (
    BUNDLE_FORMAT,
    EXPECTED_PARTS,
    build_bundle,
    display_field,
    display_value,
    enrolment_part,
    export_status,
    render_page,
)
from shared.export_parts import make_part

REQUESTED = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
TIMEOUT = timedelta(minutes=30)


def parts() -> dict[str, dict]:  # type: ignore[type-arg]
    return {
        "coaching": make_part(
            "coaching",
            {
                "call_log": [{"called_at": "2026-11-30T10:00:00+00:00", "reached": True, "notes": "Fijn gesprek."}],
                "plan_version": [{"version": 1, "goals": "Elke week naar de soos <b>samen</b>."}],
            },
        ),
        "tracking": make_part("tracking", {"assignment_report": [{"day": 1, "score": 4, "note": None}]}),
        "mailer": make_part("mailer", {}),
        "enrolment": enrolment_part(
            participant={
                "id": "p-1",
                "first_name": "Ans",
                "email": "ans@example.org",
                "consented_at": "2026-11-29T08:00:00+00:00",
                "confirm_token_hash": "ab" * 32,
            },
            organisation_name="Welzijn Aan Zee",
            coach_name="Sanne de Vries",
        ),
    }


def bundle() -> dict:  # type: ignore[type-arg]
    return build_bundle(
        export_id=uuid.UUID(int=1),
        org_id=uuid.UUID(int=2),
        participant_id=uuid.UUID(int=3),
        requested_at=REQUESTED,
        completed_at=REQUESTED + timedelta(seconds=5),
        parts=parts(),
    )


def test_an_export_waits_for_the_parts_not_in_yet_then_says_which_are_missing() -> None:
    status = {
        "expected": EXPECTED_PARTS,
        "received": ["enrolment", "coaching"],
        "requested_at": REQUESTED,
        "completed_at": None,
    }
    assert export_status(**status, now=REQUESTED + TIMEOUT, timeout=TIMEOUT) == ("pending", ["mailer", "tracking"])
    assert export_status(**status, now=REQUESTED + TIMEOUT + timedelta(seconds=1), timeout=TIMEOUT) == (
        "timed_out",
        ["mailer", "tracking"],
    )


def test_a_completed_export_misses_nothing() -> None:
    assert export_status(
        expected=EXPECTED_PARTS,
        received=[],
        requested_at=REQUESTED,
        completed_at=REQUESTED,
        now=REQUESTED + timedelta(days=1),
        timeout=TIMEOUT,
    ) == ("complete", [])


def test_enrolments_part_keeps_consent_and_leaves_out_link_hashes() -> None:
    participant = parts()["enrolment"]["tables"]["participant"][0]
    assert participant["consented_at"] == "2026-11-29T08:00:00+00:00"
    assert "confirm_token_hash" not in participant
    assert parts()["enrolment"]["tables"]["coach"] == [{"name": "Sanne de Vries"}]


def test_the_bundle_holds_every_part_in_a_fixed_order_with_its_schema_version() -> None:
    found = bundle()

    assert found["format"] == BUNDLE_FORMAT
    assert list(found["parts"]) == ["enrolment", "mailer", "tracking", "coaching"]
    assert found["parts"]["mailer"] == {"schema_version": 1, "tables": {}}  # a service that never knew them
    assert found["parts"]["tracking"]["tables"]["assignment_report"][0]["score"] == 4
    assert found["parts"]["coaching"]["tables"]["call_log"][0]["notes"] == "Fijn gesprek."
    assert (found["participant_id"], found["completed_at"]) == (str(uuid.UUID(int=3)), "2026-11-30T09:00:05+00:00")
    assert found["questionnaires"] == []


def test_the_page_is_dutch_readable_and_escaped() -> None:
    page = render_page(bundle(), nonce="n0nce")

    assert '<html lang="nl">' in page
    assert "Jouw gegevens bij Meer contact: Ans" in page
    assert "Je aanmelding en toestemming" in page and "Toestemming gegeven op" in page
    assert "29-11-2026 09:00" in page  # Dutch time
    assert "Gesprekken met je coach" in page and "Fijn gesprek." in page
    assert "We hebben je nog geen mail gestuurd." in page
    assert "Je hebt geen vragenlijsten ingevuld." in page
    assert "&lt;b&gt;samen&lt;/b&gt;" in page and "<b>samen</b>" not in page
    assert 'nonce="n0nce"' in page


def test_values_read_as_a_person_reads_them() -> None:
    assert [display_value(v) for v in (True, False, None, [], ["a", "b"], "2026-12-01", 3)] == [
        "ja",
        "nee",
        "—",
        "—",
        "a, b",
        "01-12-2026",
        "3",
    ]


def test_stored_codes_read_in_dutch() -> None:
    assert display_field("status", "sent") == "verstuurd"
    assert display_field("stopped_by", "coach") == "je coach"
    assert display_field("send_time", "08:30:00") == "08:30"
    assert display_field("note", "sent") == "sent"  # only known codes of known columns
