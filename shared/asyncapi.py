"""The event catalogue as an AsyncAPI 3.0 document, built from the code that is the contract:
the payload models and their topics (shared/events.py) and each topic's configuration
(shared/kafka.topic_config). `python -m shared.asyncapi > docs/asyncapi.yaml` writes the
committed copy; every service serves the same document as /asyncapi.json beside its OpenAPI docs.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import sys
import textwrap
from collections import defaultdict
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.events import Envelope, Payload, Topic, known_event_types, payload_class
from shared.kafka import topic_config

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
REGENERATE = "python -m shared.asyncapi > docs/asyncapi.yaml"
_REF = "#/components/schemas/{model}"

DEAD_LETTER_HEADERS: dict[str, str] = {
    "dlt-reason": "Why the consumer gave up: the error's type and, for a validation error, where and which rule; "
    "never a value.",
    "dlt-consumer": "The service (consumer group) that could not handle the record.",
    "dlt-topic": "The topic the record was read from.",
    "dlt-partition": "The partition it was read from.",
    "dlt-offset": "Its offset there.",
}
"""The headers shared/kafka.py puts on a dead letter (shared/deadletters.py reads them)."""


def message_name(type_: str, version: int) -> str:
    """The component name of one event type and version, e.g. 'participant.enrolled.v2'."""
    return f"{type_}.v{version}"


def _summary(cls: type[BaseModel]) -> str:
    return " ".join((inspect.getdoc(cls) or "").split())


def _topic_configuration(topic: str) -> dict[str, Any]:
    """topic_config() in the Kafka binding's types (numbers as numbers, cleanup.policy a list)."""
    configuration: dict[str, Any] = {}
    for name, value in topic_config(topic).items():
        if name == "cleanup.policy":
            configuration[name] = value.split(",")
        elif value.lstrip("-").isdigit():
            configuration[name] = int(value)
        else:
            configuration[name] = float(value)
    return configuration


def _key_schema(cls: type[Payload]) -> dict[str, Any]:
    if cls.KEY_FIELD is not None:
        description = f"The payload's {cls.KEY_FIELD}."
    elif cls.TOPIC in (Topic.ORGANISATION, Topic.STAFF):
        description = "The organisation id."
    else:
        description = "The participant id, else (no participant) the organisation id."
    return {"type": "string", "format": "uuid", "description": description}


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI document of every registered event, its topic, key and envelope."""
    events = [payload_class(type_, version) for type_, version in known_event_types()]
    models: list[type[BaseModel]] = [Envelope, *dict.fromkeys(events)]
    _, definitions = models_json_schema([(model, "validation") for model in models], ref_template=_REF)
    schemas: dict[str, Any] = dict(sorted(definitions.get("$defs", {}).items()))
    newest: dict[str, int] = defaultdict(int)
    for cls in events:
        newest[cls.TYPE] = max(newest[cls.TYPE], cls.VERSION)

    messages: dict[str, Any] = {}
    on_topic: dict[str, list[str]] = defaultdict(list)
    for cls in events:
        name = message_name(cls.TYPE, cls.VERSION)
        on_topic[cls.TOPIC].append(name)
        envelope = {
            "allOf": [
                {"$ref": _REF.format(model="Envelope")},
                {
                    "type": "object",
                    "properties": {
                        "type": {"const": cls.TYPE},
                        "version": {"const": cls.VERSION},
                        "payload": {"$ref": _REF.format(model=cls.__name__)},
                    },
                },
            ]
        }
        messages[name] = {
            "name": cls.TYPE,
            "title": f"{cls.TYPE} v{cls.VERSION}",
            "summary": _summary(cls),
            "contentType": "application/json",
            "payload": envelope,
            "bindings": {"kafka": {"key": _key_schema(cls), "bindingVersion": KAFKA_BINDING_VERSION}},
            **({"x-superseded-by-version": newest[cls.TYPE]} if newest[cls.TYPE] > cls.VERSION else {}),
        }
    for topic in Topic.COMPACTED:
        name = f"{topic}.tombstone"
        on_topic[topic].append(name)
        messages[name] = {
            "name": "tombstone",
            "title": f"Tombstone on {topic}",
            "summary": "A null value under a key: erase everything kept for that key (compaction then drops it).",
            "payload": {"type": "null"},
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "format": "uuid", "description": "The person's id."},
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            },
        }
    messages["dead_letter"] = {
        "name": "dead_letter",
        "title": "Dead letter",
        "summary": "A record a consumer could not handle, moved unchanged (value and key) with the reason in its "
        "headers; `python -m shared.deadletters` lists and replays them.",
        "headers": {
            "type": "object",
            "required": list(DEAD_LETTER_HEADERS),
            "properties": {name: {"type": "string", "description": text} for name, text in DEAD_LETTER_HEADERS.items()},
        },
        "payload": {"description": "The original record's value: an envelope, or whatever could not be parsed as one."},
    }

    descriptions = _topic_descriptions()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in Topic.ALL:
        for address, names, description in (
            (topic, on_topic[topic], descriptions.get(topic, "")),
            (Topic.dead_letter(topic), ["dead_letter"], f"Records a consumer of {topic} could not handle."),
        ):
            channel = address
            channels[channel] = {
                "address": address,
                "description": description,
                "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in names},
                "bindings": {
                    "kafka": {
                        "topic": address,
                        "topicConfiguration": _topic_configuration(address),
                        "bindingVersion": KAFKA_BINDING_VERSION,
                    }
                },
            }
            operations[f"publish_{channel}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{channel}"},
                "summary": (
                    f"A consumer dead-letters a record of {topic}."
                    if address != topic
                    else f"A service publishes to {topic} through its transactional outbox."
                ),
                "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in names],
            }

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Meer contact events",
            "version": "1",
            "description": (
                "Every event the Meer contact services exchange on Kafka: one JSON envelope per record "
                "(event_id is the idempotency key), the typed payload per type and version, the topic and key. "
                "Adding a payload field is backwards compatible; a change of meaning is a new version. "
                f"Generated from shared/events.py and shared/kafka.py: `{REGENERATE}`."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def _topic_descriptions() -> dict[str, str]:
    """The docstring under each Topic constant, by topic name (Python keeps no attribute docstrings)."""
    (cls,) = ast.parse(textwrap.dedent(inspect.getsource(Topic))).body
    assert isinstance(cls, ast.ClassDef)
    found: dict[str, str] = {}
    for statement, following in itertools.pairwise(cls.body):
        if (
            isinstance(statement, ast.Assign)
            and isinstance(statement.value, ast.Constant)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
        ):
            found[str(statement.value.value)] = " ".join(str(following.value.value).split())
    return found


def render_yaml(document: dict[str, Any]) -> str:
    """The committed form: YAML in the document's own key order, long lines kept whole."""
    import yaml  # only the generator and the tests need it; the services serve JSON

    return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=1_000_000))


def main() -> None:
    sys.stdout.write(render_yaml(asyncapi_document()))


if __name__ == "__main__":
    main()
