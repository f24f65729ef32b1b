"""The consumer's cheap look at an envelope's type (shared.kafka.envelope_type)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from pydantic import ValidationError

from shared.events import Envelope, MailOpened
from shared.kafka import envelope_type


def dumped() -> bytes:
    payload = MailOpened(
        delivery_id=uuid4(),
        day=1,
        opened_at=datetime(2026, 3, 2, 8, tzinfo=UTC),
        first_open=True,
        likely_automated=False,
    )
    return Envelope.wrap(payload, org_id=uuid4(), participant_id=uuid4()).model_dump_json().encode()


def test_the_type_of_an_envelope_as_the_outbox_writes_it() -> None:
    assert envelope_type(dumped()) == "mail.opened"


def test_the_type_of_an_envelope_written_another_way_is_read_from_its_json() -> None:
    envelope = json.loads(dumped())
    reordered = {"payload": {"type": "not.this"}, **{k: v for k, v in envelope.items() if k != "payload"}}
    assert envelope_type(json.dumps(reordered, indent=2).encode()) == "mail.opened"
    assert envelope_type(b'{"type": "mail.sent"}') == "mail.sent"


def test_a_type_with_an_escape_is_read_from_its_json() -> None:
    value = dumped().replace(b'"mail.opened"', b'"mail.open\\u0065d"')
    assert envelope_type(value) == "mail.opened"


@pytest.mark.parametrize("value", [b"", b"\xff\x00garbage", b"[]", b'{"type": 1}', b'{"event_id": "x"}'])
def test_no_json_object_with_a_string_type_is_invalid(value: bytes) -> None:
    with pytest.raises(ValidationError):
        envelope_type(value)
