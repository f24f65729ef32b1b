"""Sealing of subject-access export parts: a round trip with the export's key, nothing
readable without it, and an unreadable part refused with a clear error."""

from __future__ import annotations

import base64
import uuid

import pytest
from pydantic import ValidationError

from services.coaching.tables import CoachingTable
from services.mailer.tables import MailerTable
from shared.events import ExportRequested
from shared.export_parts import (
    PART_SCHEMA_VERSION,
    UnreadablePartError,
    make_part,
    new_key_pair,
    participant_tables,
    seal,
    unseal,
)

PART = make_part(
    "tracking",
    {
        "assignment_report": [{"day": 1, "score": 4, "note": "Ans Vermeulen belde de buurvrouw"}],
        "open_record": [],
    },
)


def test_a_sealed_part_opens_with_the_exports_private_key() -> None:
    private_key, public_key = new_key_pair()

    assert unseal(private_key, seal(public_key, PART)) == {
        "service": "tracking",
        "schema_version": PART_SCHEMA_VERSION,
        "tables": {"assignment_report": [{"day": 1, "score": 4, "note": "Ans Vermeulen belde de buurvrouw"}]},
    }


def test_the_sealed_text_holds_nothing_readable() -> None:
    _, public_key = new_key_pair()
    sealed = seal(public_key, PART)

    raw = base64.b64decode(sealed)
    assert b"Vermeulen" not in raw and b"assignment_report" not in raw
    assert "Vermeulen" not in sealed


def test_another_key_cannot_open_a_part() -> None:
    _, public_key = new_key_pair()
    other_private_key, _ = new_key_pair()

    with pytest.raises(UnreadablePartError):
        unseal(other_private_key, seal(public_key, PART))


def test_a_damaged_part_is_unreadable_not_a_crash() -> None:
    private_key, public_key = new_key_pair()
    sealed = bytearray(base64.b64decode(seal(public_key, PART)))
    sealed[-1] ^= 1

    with pytest.raises(UnreadablePartError):
        unseal(private_key, base64.b64encode(bytes(sealed)).decode())
    with pytest.raises(UnreadablePartError):
        unseal(private_key, "not base64!")


def test_each_export_gets_a_key_pair_of_its_own() -> None:
    assert new_key_pair()[1] != new_key_pair()[1]


def test_an_export_request_carries_only_a_valid_public_key() -> None:
    _, public_key = new_key_pair()
    assert ExportRequested(export_id=uuid.uuid4(), public_key=public_key).public_key == public_key

    for bad in ("", "bm90IGEga2V5", "not base64!"):
        with pytest.raises(ValidationError):
            ExportRequested(export_id=uuid.uuid4(), public_key=bad)


def test_the_copies_of_contact_details_are_part_of_the_export() -> None:
    mailer = {table.name for table in participant_tables(MailerTable.metadata)}
    coaching = {table.name for table in participant_tables(CoachingTable.metadata)}
    assert {"contact_copy", "recipient"} <= mailer
    assert {"contact_view", "dashboard_row"} <= coaching
