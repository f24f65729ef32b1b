"""The dead-letters CLI's pure parts: what a listing shows of a record, and record addresses."""

from __future__ import annotations

import json
import uuid

import pytest
from aiokafka import ConsumerRecord

from shared.deadletters import describe, parse_address, safe_reason

NAME = "Ans de Vries"


def record(value: bytes, headers: list[tuple[str, bytes]]) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="meer.mail.dlt",
        partition=2,
        offset=17,
        timestamp=1_780_000_000_000,
        timestamp_type=0,
        key=b"k",
        value=value,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=len(value),
        headers=headers,
    )


def test_a_listing_shows_ids_and_the_reasons_class_never_payload_values() -> None:
    event_id = str(uuid.uuid4())
    value = json.dumps({"event_id": event_id, "type": "mail.sent", "payload": {"first_name": NAME}}).encode()
    headers = [
        ("dlt-reason", f"IntegrityError: duplicate key (email)=({NAME})".encode()),
        ("dlt-consumer", b"coaching"),
        ("dlt-topic", b"meer.mail"),
        ("dlt-partition", b"5"),
        ("dlt-offset", b"99"),
    ]
    letter = describe(record(value, headers))
    assert (letter.topic, letter.original_partition, letter.original_offset) == ("meer.mail", 5, 99)
    assert (letter.consumer, letter.reason, letter.event_type, letter.event_id) == (
        "coaching",
        "IntegrityError",
        "mail.sent",
        event_id,
    )
    assert letter.address == "meer.mail.dlt:2:17"
    assert NAME not in repr(letter)


def test_a_record_without_headers_or_envelope_is_still_listed() -> None:
    letter = describe(record(f"garbage {NAME}".encode(), []))
    assert (letter.topic, letter.original_offset, letter.consumer) == ("meer.mail", None, "?")
    assert letter.event_type is None and letter.event_id is None and NAME not in repr(letter)


def test_the_reason_written_by_shared_kafka_itself_is_kept_whole() -> None:
    assert safe_reason("not a valid envelope: 3 errors") == "not a valid envelope: 3 errors"
    assert safe_reason("ValidationError: 1 validation error for MailSent\nday\n  input_value='x'") == "ValidationError"


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("meer.mail.dlt:2:17", ("meer.mail.dlt", 2, 17)), ("meer.staff.dlt:0:0", ("meer.staff.dlt", 0, 0))],
)
def test_record_addresses(text: str, parsed: tuple[str, int, int]) -> None:
    assert parse_address(text) == parsed


@pytest.mark.parametrize("text", ["meer.mail:2:17", "meer.mail.dlt:2", "meer.mail.dlt:a:1", "meer.mail.dlt:1:-1"])
def test_only_dead_letter_records_can_be_addressed(text: str) -> None:
    with pytest.raises(ValueError, match="dead-letter record address"):
        parse_address(text)
