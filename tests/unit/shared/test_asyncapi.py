"""The event catalogue (docs/asyncapi.yaml): generated from the code, valid AsyncAPI 3.0,
complete, and describing the records the services really write; served beside the API docs.

The AsyncAPI 3.0.0 JSON Schema is vendored in asyncapi-3.0.0-schema.json, from the npm package
@asyncapi/specs 6.11.1 (schemas/3.0.0-without-$id.json, Apache-2.0), with descriptions, titles
and examples left out; jsonschema (pinned in constraints.txt) applies it.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import jsonschema
import pytest
import yaml
from fastapi import FastAPI
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from shared.asyncapi import DEAD_LETTER_HEADERS, REGENERATE, asyncapi_document, message_name, render_yaml
from shared.events import (
    Branding,
    CallPlanned,
    ContactDetailsSet,
    Envelope,
    MailSent,
    OrganisationLicensed,
    ParticipantEnrolled,
    Payload,
    QuestionnaireAnswered,
    Topic,
    known_event_types,
    payload_class,
)
from shared.kafka import topic_config
from shared.runtime import Runtime, create_service_app
from shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "docs" / "asyncapi.yaml"
ASYNCAPI_SCHEMA = json.loads(Path(__file__).with_name("asyncapi-3.0.0-schema.json").read_text())
URI = "urn:meer:asyncapi"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    # Through JSON, as the services serve it and as YAML/JSON readers see it (tuples become lists).
    return dict(json.loads(json.dumps(asyncapi_document())))


def test_the_committed_document_is_what_the_code_generates() -> None:
    generated = render_yaml(asyncapi_document())
    assert COMMITTED.read_text() == generated, f"docs/asyncapi.yaml drifted from shared/events.py: run `{REGENERATE}`"


def test_the_document_is_valid_asyncapi_3(document: dict[str, Any]) -> None:
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message[:200]}"
        for error in jsonschema.Draft7Validator(ASYNCAPI_SCHEMA).iter_errors(document)
    ]
    assert errors == []
    assert yaml.safe_load(COMMITTED.read_text()) == document


def test_the_validator_finds_what_is_not_asyncapi(document: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(ASYNCAPI_SCHEMA)
    broken = json.loads(json.dumps(document))
    broken["operations"][f"publish_{Topic.MAIL}"]["action"] = "publish"  # AsyncAPI 2's word, not 3's
    broken["components"]["messages"]["mail.sent.v1"]["payload"] = {"type": "not-a-type"}
    del broken["info"]["version"]
    assert len(list(validator.iter_errors(broken))) == 3


def references(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in references(value)]
    if isinstance(node, list):
        return [r for item in node for r in references(item)]
    return []


def test_every_reference_points_into_the_document(document: dict[str, Any]) -> None:
    """What the JSON Schema cannot see and an AsyncAPI parser checks: each $ref resolves, and an
    operation names only messages of its own channel."""
    found = references(document)
    assert len(found) > 100
    for ref in found:
        assert ref.startswith("#/"), ref
        target: Any = document
        for part in ref[2:].split("/"):
            assert isinstance(target, dict) and part in target, ref
            target = target[part]
    for operation in document["operations"].values():
        channel = operation["channel"]["$ref"]
        assert all(message["$ref"].startswith(f"{channel}/messages/") for message in operation["messages"])


def test_every_event_type_and_version_is_a_message_on_its_topic(document: dict[str, Any]) -> None:
    messages = document["components"]["messages"]
    channels = document["channels"]
    for type_, version in known_event_types():
        cls = payload_class(type_, version)
        name = message_name(type_, version)
        assert messages[name]["name"] == type_
        assert messages[name]["summary"], f"{name} says when it happens"
        assert channels[cls.TOPIC]["messages"][name] == {"$ref": f"#/components/messages/{name}"}
    events = {message_name(t, v) for t, v in known_event_types()}
    assert events | {f"{t}.tombstone" for t in Topic.COMPACTED} | {"dead_letter"} == set(messages)
    assert len(events) >= 23


def test_every_topic_and_its_dead_letter_topic_is_a_channel_with_its_configuration(document: dict[str, Any]) -> None:
    channels = document["channels"]
    assert set(channels) == {name for topic in Topic.ALL for name in (topic, Topic.dead_letter(topic))}
    for address, channel in channels.items():
        configuration = channel["bindings"]["kafka"]["topicConfiguration"]
        expected = topic_config(address)
        assert {name: str(value) for name, value in configuration.items() if name != "cleanup.policy"} == {
            name: value for name, value in expected.items() if name != "cleanup.policy"
        }
        assert ",".join(configuration["cleanup.policy"]) == expected["cleanup.policy"]
        assert channel["address"] == address and channel["description"]
    assert channels[Topic.CONTACT]["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"] == ["compact"]
    dead_letter = document["components"]["messages"]["dead_letter"]
    assert set(dead_letter["headers"]["required"]) == set(DEAD_LETTER_HEADERS)
    operations = document["operations"]
    assert {op["channel"]["$ref"] for op in operations.values()} == {f"#/channels/{name}" for name in channels}


def test_every_payload_and_schema_is_a_json_schema(document: dict[str, Any]) -> None:
    schemas = [message["payload"] for message in document["components"]["messages"].values()]
    schemas += [message["headers"] for message in document["components"]["messages"].values() if "headers" in message]
    for schema in [*schemas, *document["components"]["schemas"].values()]:
        jsonschema.Draft7Validator.check_schema(schema)  # raises SchemaError, naming the fault
    with pytest.raises(jsonschema.SchemaError):
        jsonschema.Draft7Validator.check_schema({"type": "not-a-type"})


def message_validator(document: dict[str, Any], name: str) -> jsonschema.Validator:
    """A validator of one message's record value, its references resolved within the document."""
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(URI, resource)
    schema = json.loads(json.dumps(document["components"]["messages"][name]["payload"]).replace('"#/', f'"{URI}#/'))
    return jsonschema.Draft202012Validator(schema, registry=registry, format_checker=jsonschema.FormatChecker())


def examples() -> list[Payload]:
    at = datetime(2026, 11, 30, 9, tzinfo=UTC)
    return [
        OrganisationLicensed(
            name="Welzijn Aan Zee",
            branding=Branding(display_name="Welzijn Aan Zee", contact_phone="0223 123 456"),
            licence_valid_from=date(2026, 1, 1),
            licence_valid_until=date(2026, 12, 31),
            max_active_participants=200,
            variants=("standard",),
        ),
        ParticipantEnrolled(
            coach_id=uuid4(), start_date=date(2026, 12, 1), send_time=time(8), timezone="Europe/Amsterdam", variant="a"
        ),
        ContactDetailsSet(person_id=uuid4(), kind="participant", name="Ans", email="ans@example.org"),
        MailSent(
            delivery_id=uuid4(),
            day=3,
            lesson_title="Les 3",
            pack="meer-contact",
            pack_version="v1",
            message_id="<x@meercontact.local>",
            sent_at=at,
        ),
        QuestionnaireAnswered(
            participant_id=uuid4(),
            moment="intake",
            scale_version="djg6-2006",
            answers={"e1": "ja", "e2": "nee", "e3": None, "s1": "min_of_meer", "s2": "nee", "s3": "ja"},
            emotional=None,
            social=2,
            total=3,
            total_imputed=True,
            category="moderately_lonely",
            answered_at=at,
        ),
        CallPlanned(number=1, lesson_day=3, due_date=date(2026, 12, 3)),
    ]


@pytest.mark.parametrize("payload", examples(), ids=lambda p: p.TYPE)
def test_a_record_as_the_outbox_writes_it_matches_its_message(document: dict[str, Any], payload: Payload) -> None:
    envelope = Envelope.wrap(payload, org_id=uuid4(), participant_id=uuid4())
    record = json.loads(envelope.model_dump_json())
    validator = message_validator(document, message_name(payload.TYPE, payload.VERSION))
    assert list(validator.iter_errors(record)) == []
    other = "mail.sent.v1" if payload.TYPE != MailSent.TYPE else "participant.enrolled.v2"
    assert list(message_validator(document, other).iter_errors(record)), "one type's record is not another's"


def test_a_record_that_breaks_the_contract_does_not_match(document: dict[str, Any]) -> None:
    record = json.loads(Envelope.wrap(examples()[3], org_id=uuid4(), participant_id=uuid4()).model_dump_json())
    validator = message_validator(document, "mail.sent.v1")
    assert list(validator.iter_errors(record)) == []
    breakages = [
        {"payload": {**record["payload"], "day": 0}},
        {"payload": {**record["payload"], "lesson_title": 3}},
        {"payload": {key: value for key, value in record["payload"].items() if key != "delivery_id"}},
        {"type": "mail.opened"},
        {"version": 2},
        {"org_id": "not-a-uuid"},
    ]
    for change in breakages:
        assert list(validator.iter_errors({**record, **change})), change


def app_for(**settings: object) -> FastAPI:
    return create_service_app(Runtime.create("test", ServiceSettings(**settings)), title="t", description="d")  # type: ignore[arg-type]


async def get(app: FastAPI, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://meer.test") as client:
        return await client.get(path)


async def test_every_service_serves_the_catalogue_under_the_api_docs_switch(document: dict[str, Any]) -> None:
    served = await get(app_for(), "/asyncapi.json")
    assert served.status_code == 200 and served.headers["content-type"] == "application/json"
    assert served.json() == document
    assert (await get(app_for(api_docs=False), "/asyncapi.json")).status_code == 404
    production = {"env": "production", "metrics_token": "t"}
    assert (await get(app_for(**production), "/asyncapi.json")).status_code == 404
    assert (await get(app_for(**production, api_docs=True), "/asyncapi.json")).status_code == 200
    assert "/asyncapi.json" not in (await get(app_for(), "/openapi.json")).json()["paths"]
