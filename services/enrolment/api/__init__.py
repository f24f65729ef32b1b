"""Enrolment's JSON API: thin routes — who is asking, validate, apply a use case, commit.

Who may do what: the licensor (bearer secret) everything; an organisation admin (staff
token) everything of their own organisation except the licence; a coach reads their
organisation and their own participants and may pause, resume or stop them; an
organisation API key (X-Api-Key) enrols and reads participants of its organisation.
"""

from __future__ import annotations

from fastapi import APIRouter

from services.enrolment.api import auth, local_offers, organisations, participants, staff
from services.enrolment.api.organisations import public_router

router = APIRouter()
router.include_router(participants.router)
router.include_router(auth.router)
router.include_router(organisations.router)
router.include_router(local_offers.router)
router.include_router(staff.router)

__all__ = ["public_router", "router"]
