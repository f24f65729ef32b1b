"""Tracking's public endpoints, hit from mail clients."""

from __future__ import annotations

import base64

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import Counter
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col

from services.tracking.tables import FirstOpen, OpenRecord
from shared.db import utcnow
from shared.events import Envelope, MailOpened
from shared.outbox import add_to_outbox
from shared.runtime import Runtime
from shared.tracking_tokens import InvalidTokenError, TokenSigner

router = APIRouter()

TRANSPARENT_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0", "Pragma": "no-cache", "Expires": "0"}

HITS = Counter("meer_tracking_hits_total", "Tracking hits by kind and outcome.", ["kind", "outcome"])
INVALID_TOKENS = Counter(
    "meer_tracking_invalid_tokens_total", "Hits with a forged, tampered or retired token.", ["kind"]
)


@router.get("/o/{token}.gif", tags=["tracking"], summary="Tracking pixel: records an open")
async def open_pixel(token: str, request: Request) -> Response:
    """Always the same transparent GIF; a valid token records one open first."""
    runtime: Runtime = request.app.state.runtime
    signer: TokenSigner = request.app.state.signer
    try:
        claims = signer.verify(token)
        if claims.kind != "open":
            raise InvalidTokenError("not an open token")
    except InvalidTokenError:
        INVALID_TOKENS.labels("open").inc()
        HITS.labels("open", "invalid").inc()
        return Response(TRANSPARENT_GIF, media_type="image/gif", headers=NO_CACHE)
    now = utcnow()
    async with runtime.database.session() as session:
        first = await session.execute(
            insert(FirstOpen)
            .values(delivery_id=claims.delivery_id, opened_at=now)
            .on_conflict_do_nothing()
            .returning(col(FirstOpen.delivery_id))
        )
        first_open = first.first() is not None
        session.add(
            OpenRecord(
                delivery_id=claims.delivery_id,
                participant_id=claims.participant_id,
                org_id=claims.org_id,
                day=claims.day,
                opened_at=now,
                first_open=first_open,
                likely_automated=False,
                signals=[],
            )
        )
        add_to_outbox(
            session,
            Envelope.wrap(
                MailOpened(
                    delivery_id=claims.delivery_id,
                    day=claims.day,
                    opened_at=now,
                    first_open=first_open,
                    likely_automated=False,
                    signals=(),
                ),
                org_id=claims.org_id,
                participant_id=claims.participant_id,
                occurred_at=now,
            ),
        )
        await session.commit()
    HITS.labels("open", "first" if first_open else "repeat").inc()
    return Response(TRANSPARENT_GIF, media_type="image/gif", headers=NO_CACHE)
