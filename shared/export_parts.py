"""Subject-access exports: the sealing every service agrees on, and the one way a service
answers `export.requested` with what its own tables hold about the participant.

A part is JSON ({"service", "schema_version", "tables": {table: [rows]}}), compressed and
sealed to the export's X25519 public key (a NaCl sealed box: anonymous sender, only the
private key opens it). Enrolment keeps the private key and destroys it once the bundle is
built, so the ciphertexts left on Kafka can never be read again (crypto-shredding).
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox
from pydantic_core import to_jsonable_python
from sqlalchemy import MetaData, Table, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel.ext.asyncio.session import AsyncSession as SessionOfWork

from shared.events import Envelope, ExportPartProvided, ExportRequested, Topic
from shared.kafka import Change
from shared.logging import get_logger
from shared.outbox import add_to_outbox

log = get_logger(__name__)

PART_SCHEMA_VERSION = 1
"""Version of a part's JSON shape: {"service", "schema_version", "tables": {table: [row, …]}}."""

Part = dict[str, Any]


class UnreadablePartError(ValueError):
    """A sealed part does not open with this key, or is not a part."""


def new_key_pair() -> tuple[bytes, str]:
    """A fresh X25519 key pair: (private key bytes, public key as base64)."""
    private = PrivateKey.generate()
    return bytes(private), base64.b64encode(bytes(private.public_key)).decode()


def seal(public_key: str, part: Mapping[str, Any]) -> str:
    """The part as JSON, compressed and sealed to `public_key`; base64."""
    plain = zlib.compress(json.dumps(to_jsonable_python(part), ensure_ascii=False).encode())
    box = SealedBox(PublicKey(base64.b64decode(public_key, validate=True)))
    return base64.b64encode(box.encrypt(plain)).decode()


def unseal(private_key: bytes, sealed: str) -> Part:
    """Open a sealed part with the export's private key."""
    try:
        plain = SealedBox(PrivateKey(private_key)).decrypt(base64.b64decode(sealed, validate=True))
        part = json.loads(zlib.decompress(plain))
    except (CryptoError, binascii.Error, zlib.error, ValueError) as error:
        raise UnreadablePartError(type(error).__name__) from None
    if not isinstance(part, dict):
        raise UnreadablePartError("not an object")
    return part


def make_part(service: str, tables: Mapping[str, list[dict[str, Any]]]) -> Part:
    """A part in the agreed shape (tables without rows are left out)."""
    return {
        "service": service,
        "schema_version": PART_SCHEMA_VERSION,
        "tables": {name: rows for name, rows in sorted(tables.items()) if rows},
    }


PERSON_COLUMNS = ("participant_id", "person_id")
"""Columns that name a participant: their id, or a person id (copies of meer.contact)."""


def participant_tables(metadata: MetaData, *, exclude_tables: Iterable[str] = ()) -> list[Table]:
    """The service's tables that hold rows of one participant (a participant_id or person_id column)."""
    skipped = set(exclude_tables)
    return [
        table
        for name, table in sorted(metadata.tables.items())
        if any(column in table.c for column in PERSON_COLUMNS) and name not in skipped
    ]


def _person_column(table: Table) -> Any:
    return next(table.c[column] for column in PERSON_COLUMNS if column in table.c)


async def collect_part(
    session: AsyncSession,
    metadata: MetaData,
    *,
    service: str,
    participant_id: UUID,
    org_id: UUID,
    exclude_columns: Mapping[str, Iterable[str]] | None = None,
    exclude_tables: Iterable[str] = (),
) -> Part:
    """Every row of every table of the service that names the participant, as JSON values.

    A participant the service never knew gives an empty part; one it knows in another
    organisation too (the request is refused quietly, and logged with ids only)."""
    tables = participant_tables(metadata, exclude_tables=exclude_tables)
    for table in tables:
        if "org_id" in table.c:
            statement = select(table.c.org_id).where(_person_column(table) == participant_id, table.c.org_id != org_id)
            if (await session.execute(statement.limit(1))).first() is not None:
                log.warning("export requested for another organisation's participant", service=service)
                return make_part(service, {})
    dropped = {name: set(columns) for name, columns in (exclude_columns or {}).items()}
    found: dict[str, list[dict[str, Any]]] = {}
    for table in tables:
        columns = [column for column in table.c if column.name not in dropped.get(table.name, set())]
        rows = await session.execute(select(*columns).where(_person_column(table) == participant_id))
        found[table.name] = [to_jsonable_python(dict(row._mapping)) for row in rows]
    return make_part(service, found)


def export_part_handlers(
    *,
    service: str,
    metadata: MetaData,
    exclude_columns: Mapping[str, Iterable[str]] | None = None,
    exclude_tables: Iterable[str] = (),
) -> dict[str, dict[str, Change]]:
    """The change of export.requested for one service: collect its part, seal it to the
    request's key and publish export.part_provided through the outbox, once per request."""

    async def on_export_requested(session: SessionOfWork, envelope: Envelope, payload: Any) -> None:
        if not isinstance(payload, ExportRequested) or envelope.participant_id is None:
            raise TypeError(f"expected {ExportRequested.TYPE} of a participant, got {envelope.type}")
        part = await collect_part(
            session,
            metadata,
            service=service,
            participant_id=envelope.participant_id,
            org_id=envelope.org_id,
            exclude_columns=exclude_columns,
            exclude_tables=exclude_tables,
        )
        answer = ExportPartProvided(
            export_id=payload.export_id,
            service=service,
            schema_version=PART_SCHEMA_VERSION,
            sealed=seal(payload.public_key, part),
        )
        add_to_outbox(session, Envelope.wrap(answer, org_id=envelope.org_id, participant_id=envelope.participant_id))

    return {Topic.EXPORT: {ExportRequested.TYPE: on_export_requested}}
