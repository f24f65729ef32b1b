"""The partner signaller role: its own organisation is required for a partner and refused for
anyone else, stored roles map back to the contract, partner tokens verify, coaching's staff
pages refuse them, and their invitation mail says what a partner does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from uuid import uuid4

import pytest
from fastapi import HTTPException
from pydantic import ValidationError

from services.coaching.auth import staff_only
from services.enrolment import domain
from services.enrolment.schemas import Me, StaffCreate, StaffPublic
from services.mailer.mail import MailSettings, render_transactional_mail, to_wire
from shared.errors import Refusal
from shared.events import StaffAccessChanged, StaffInvited
from shared.staff_tokens import StaffClaims, generate_key_pair, issue_staff_token, verify_staff_token


def staff(role: str, partner_organisation: str | None = None) -> StaffCreate:
    body = {"name": "Petra Smit", "email": "petra@woonstichting.example.org", "role": role}
    if partner_organisation is not None:
        body["partner_organisation"] = partner_organisation
    return StaffCreate.model_validate(body)


def test_a_partner_names_their_own_organisation() -> None:
    body = staff("partner", "  Woonstichting De Kust ")
    assert body.partner_organisation == "Woonstichting De Kust"
    assert domain.check_partner_organisation(body.role, body.partner_organisation) == "Woonstichting De Kust"


def test_a_partner_without_organisation_is_refused_on_that_field() -> None:
    with pytest.raises(Refusal) as refused:
        domain.check_partner_organisation("partner", None)
    assert (refused.value.kind, refused.value.field) == ("invalid", "partner_organisation")


@pytest.mark.parametrize("role", ["coach", "org_admin"])
def test_only_a_partner_has_a_partner_organisation(role: domain.StaffRole) -> None:
    assert domain.check_partner_organisation(role, None) is None
    with pytest.raises(Refusal) as refused:
        domain.check_partner_organisation(role, "Huisartsenpraktijk Duin")
    assert (refused.value.kind, refused.value.field) == ("invalid", "partner_organisation")


@pytest.mark.parametrize("bad", ["Woon\nstichting", "Woon\tstichting", "Woon\x00stichting", "x" * 121, "   "])
def test_a_partner_organisation_is_one_short_line(bad: str) -> None:
    with pytest.raises(ValidationError) as invalid:
        staff("partner", bad)
    assert [error["loc"] for error in invalid.value.errors()] == [("partner_organisation",)]


def test_stored_roles_map_to_the_contract_and_an_unknown_one_is_a_bug() -> None:
    assert [domain.staff_role(role) for role in ("org_admin", "coach", "partner")] == ["org_admin", "coach", "partner"]
    with pytest.raises(ValueError, match="unknown staff role"):
        domain.staff_role("admin")


def test_the_public_shapes_and_events_carry_role_and_partner_organisation() -> None:
    me = Me(
        staff_id=uuid4(),
        org_id=uuid4(),
        role="partner",
        coach_id=None,
        partner_organisation="Duin",
        name="P",
        email="p@x.nl",
    )
    assert me.role == "partner" and me.partner_organisation == "Duin"
    assert "partner_organisation" in StaffPublic.model_fields
    invited = StaffInvited(staff_id=uuid4(), role="partner", sealed_link="x", partner_organisation="Duin")
    changed = StaffAccessChanged(staff_id=uuid4(), role="partner", token_version=2, active=False)
    assert invited.partner_organisation == "Duin" and changed.partner_organisation is None
    # Older events without the field still parse (consumers replay them).
    assert StaffAccessChanged.model_validate(
        {"staff_id": str(uuid4()), "role": "coach", "token_version": 1, "active": True}
    )


def test_a_partner_token_verifies_with_role_partner_and_no_coach(tmp_path: Path) -> None:
    generate_key_pair(tmp_path / "key.pem", tmp_path / "key.pub")
    claims = StaffClaims(staff_id=uuid4(), role="partner", org_id=uuid4())
    token = issue_staff_token(claims, (tmp_path / "key.pem").read_bytes(), ttl=timedelta(minutes=15))
    verified = verify_staff_token(token, (tmp_path / "key.pub").read_bytes())
    assert verified.role == "partner" and verified.coach_id is None


def test_coachings_staff_pages_refuse_a_partner_and_let_staff_in() -> None:
    with pytest.raises(HTTPException) as refused:
        staff_only(StaffClaims(staff_id=uuid4(), role="partner", org_id=uuid4()))
    assert refused.value.status_code == 403
    staff_only(StaffClaims(staff_id=uuid4(), role="org_admin", org_id=uuid4()))
    staff_only(StaffClaims(staff_id=uuid4(), role="coach", org_id=uuid4(), coach_id=uuid4()))


@pytest.mark.parametrize(
    ("role", "says", "not_says"),
    [("partner", "zorgen over iemand", "beheren"), ("coach", "als coach", "zorgen over iemand")],
)
def test_the_invitation_mail_says_what_the_role_is_for(role: str, says: str, not_says: str) -> None:
    settings = MailSettings("training@meer.test", "meer.test", "https://t.meer.test")
    mail = render_transactional_mail(
        kind="invitation",
        mail_id=uuid4(),
        to_address="petra@woonstichting.example.org",
        organisation_name="Welzijn Zuid",
        branding={"display_name": "Welzijn Zuid", "brand_colour": "#aa3300"},
        context={"name": "Petra", "role": role, "set_password_url": "https://e.example/pw/x"},
        settings=settings,
        sent_at=datetime.now(UTC),
    )
    message = message_from_bytes(to_wire(mail, settings), policy=policy.default)
    assert isinstance(message, EmailMessage)
    for kind in ("plain", "html"):
        part = message.get_body(preferencelist=(kind,))
        assert part is not None
        text = " ".join(str(part.get_content()).split())
        assert says in text and not_says not in text
