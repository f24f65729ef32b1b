"""The intake's rules: what a signal may hold (consent), the order of the steps, what the
signaller is told, and the counts (working days)."""

from __future__ import annotations

from datetime import date

import pytest

from services.coaching import intake
from services.coaching.plan import CAUSES
from shared.errors import Refusal


def signal(**overrides: object) -> intake.SignalContent:
    values: dict[str, object] = {
        "consent": True,
        "first_name": " Ria ",
        "phone": "06 1234 5678",
        "email": None,
        "noticed": ["says_lonely", "withdraws"],
        "note": "Zit veel binnen.\r\nZegt weinig.",
    }
    values.update(overrides)
    return intake.normalise_signal(**values)  # type: ignore[arg-type]


def refused(field: str, **overrides: object) -> Refusal:
    with pytest.raises(Refusal) as caught:
        signal(**overrides)
    assert caught.value.kind == "invalid"
    assert caught.value.field == field
    return caught.value


def test_a_signal_with_consent_is_tidied() -> None:
    found = signal()
    assert found.first_name == "Ria"
    assert found.phone == "+31612345678"
    assert found.noticed == ("withdraws", "says_lonely")  # checklist order
    assert found.note == "Zit veel binnen.\nZegt weinig."


def test_an_e_mail_address_alone_is_a_way_to_reach() -> None:
    found = signal(phone=None, email=" Ria@Example.ORG ")
    assert (found.phone, found.email) == (None, "ria@example.org")


def test_without_consent_the_signal_is_anonymous_and_keeps_only_the_checklist() -> None:
    found = signal(consent=False, first_name=None, phone=None)
    assert found == intake.SignalContent(
        consent=False, first_name=None, phone=None, email=None, noticed=("withdraws", "says_lonely"), note=None
    )


@pytest.mark.parametrize(
    "given",
    [
        {"first_name": "Ria", "phone": None},
        {"first_name": None},
        {"first_name": None, "phone": None, "email": "a@b.nl"},
    ],
)
def test_without_consent_a_name_or_contact_is_refused_in_dutch(given: dict[str, object]) -> None:
    refusal = refused("consent", consent=False, **given)
    assert "Zonder toestemming" in refusal.dutch


def test_consent_must_be_answered() -> None:
    refused("consent", consent=None)


def test_with_consent_a_name_and_a_way_to_reach_are_required() -> None:
    refused("first_name", first_name="  ")
    refused("phone", phone=None, email=None)


@pytest.mark.parametrize("phone", ["12", "06 1234", "bel me"])
def test_a_wrong_phone_number_is_refused(phone: str) -> None:
    assert "telefoonnummer" in refused("phone", phone=phone).dutch


def test_foreign_numbers_with_a_country_code_are_fine() -> None:
    assert signal(phone="+32 470 12 34 56").phone == "+32470123456"
    assert intake.display_phone("+31612345678") == "06 12345678"


def test_the_checklist_and_the_note_are_checked() -> None:
    refused("noticed", noticed=[])
    refused("noticed", noticed=["made_up"])
    refused("note", note="x" * 1001)
    refused("note", note="nul\x00teken")
    refused("first_name", first_name="Ria\nJansen")
    refused("email", phone=None, email="geen-adres")


def test_the_steps_come_in_order() -> None:
    today, received = date(2026, 11, 30), date(2026, 11, 20)
    with pytest.raises(Refusal, match="Assign"):
        intake.check_first_contact(state="new", contact_date=today, received_on=received, today=today)
    intake.check_first_contact(state="assigned", contact_date=today, received_on=received, today=today)
    with pytest.raises(Refusal, match="already"):
        intake.check_first_contact(state="contacted", contact_date=today, received_on=received, today=today)
    with pytest.raises(Refusal) as future:
        intake.check_first_contact(state="assigned", contact_date=date(2026, 12, 1), received_on=received, today=today)
    assert future.value.field == "contact_date"
    with pytest.raises(Refusal):
        intake.check_first_contact(state="assigned", contact_date=date(2026, 11, 19), received_on=received, today=today)
    for finished in ("enrolled", "referred", "closed"):
        with pytest.raises(Refusal) as done:
            intake.check_first_contact(state=finished, contact_date=today, received_on=received, today=today)
        assert done.value.kind == "conflict"


def test_the_question_follows_the_first_contact_and_is_not_empty() -> None:
    with pytest.raises(Refusal, match="first contact"):
        intake.normalise_question(state="assigned", own_question="Meer mensen zien", causes=[], checklist=CAUSES)
    with pytest.raises(Refusal):
        intake.normalise_question(state="contacted", own_question=" ", causes=[], checklist=CAUSES)
    with pytest.raises(Refusal):
        intake.normalise_question(state="contacted", own_question=None, causes=["nonsense"], checklist=CAUSES)
    found = intake.normalise_question(
        state="contacted", own_question=" Meer mensen zien ", causes=["health", "moved_house"], checklist=CAUSES
    )
    assert found == intake.Question(own_question="Meer mensen zien", causes=("moved_house", "health"))


def test_enrolling_needs_the_question_referring_only_the_contact() -> None:
    with pytest.raises(Refusal, match="own question"):
        intake.check_outcome(state="contacted", question_recorded=False, enrol=True)
    intake.check_outcome(state="contacted", question_recorded=True, enrol=True)
    intake.check_outcome(state="contacted", question_recorded=False, enrol=False)
    with pytest.raises(Refusal):
        intake.check_outcome(state="assigned", question_recorded=True, enrol=False)


def test_an_anonymous_signal_is_not_handed_over_and_a_finished_one_not_again() -> None:
    with pytest.raises(Refusal):
        intake.check_assign(state="new", consent=False)
    with pytest.raises(Refusal):
        intake.check_assign(state="closed", consent=True)
    intake.check_assign(state="contacted", consent=True)


def test_closing_needs_a_reason_from_the_list() -> None:
    assert intake.check_close(state="assigned", reason="not_reached", note="  ") is None
    assert intake.check_close(state="new", reason="other", note="Dubbel signaal") == "Dubbel signaal"
    with pytest.raises(Refusal):
        intake.check_close(state="assigned", reason="because", note=None)
    with pytest.raises(Refusal):
        intake.check_close(state="enrolled", reason="other", note=None)


def test_the_signaller_sees_how_far_it_is_and_since_when() -> None:
    received, assigned, contact, done = date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 5), date(2026, 11, 9)
    assert intake.signaller_stage(intake.SignalDates(received, None, None, None)) == ("received", received)
    assert intake.signaller_stage(intake.SignalDates(received, assigned, None, None)) == ("picked_up", assigned)
    assert intake.signaller_stage(intake.SignalDates(received, assigned, contact, None)) == ("contact_made", contact)
    assert intake.signaller_stage(intake.SignalDates(received, assigned, contact, done)) == ("closed", done)
    assert intake.signaller_stage(intake.SignalDates(received, assigned, None, done)) == ("closed", done)


@pytest.mark.parametrize(
    ("start", "end", "days"),
    [
        (date(2026, 11, 27), date(2026, 11, 27), 0),  # same Friday
        (date(2026, 11, 27), date(2026, 11, 30), 1),  # Friday -> Monday
        (date(2026, 11, 28), date(2026, 11, 29), 0),  # Saturday -> Sunday
        (date(2026, 11, 23), date(2026, 11, 30), 5),  # Monday -> next Monday
        (date(2026, 11, 23), date(2026, 12, 1), 6),
        (date(2026, 11, 30), date(2026, 11, 27), 0),
    ],
)
def test_working_days_count_mondays_to_fridays(start: date, end: date, days: int) -> None:
    assert intake.working_days_between(start, end) == days


def test_picked_up_within_five_working_days_spans_the_weekend() -> None:
    friday = date(2026, 11, 27)
    assert intake.picked_up_in_time(friday, date(2026, 12, 4))  # next Friday: 5 working days
    assert not intake.picked_up_in_time(friday, date(2026, 12, 7))  # the Monday after: 6
    assert not intake.picked_up_in_time(friday, None)


def test_counts_per_organisation_and_per_partner_organisation() -> None:
    monday = date(2026, 11, 23)
    report = intake.count_signals(
        [
            intake.CountedSignal("Woonstichting", monday, monday, monday, "enrolled"),
            intake.CountedSignal("Woonstichting", monday, date(2026, 12, 7), None, "closed"),
            intake.CountedSignal("Woonstichting", monday, None, None, None),  # anonymous or not yet picked up
            intake.CountedSignal("Huisartsenpraktijk", monday, date(2026, 11, 24), date(2026, 11, 25), "referred"),
            intake.CountedSignal(None, monday, None, None, None),
        ]
    )
    assert vars(report.total) == {
        "received": 5,
        "picked_up_within_5_working_days": 2,
        "contact_made": 2,
        "enrolled": 1,
        "referred": 1,
        "closed": 1,
    }
    assert [(name, counts.received) for name, counts in report.by_partner] == [
        ("Woonstichting", 3),
        (None, 1),
        ("Huisartsenpraktijk", 1),
    ]
    assert report.by_partner[0][1].picked_up_within_5_working_days == 1


def test_the_timeline_says_each_step_without_personal_data() -> None:
    assert intake.step_text("signal.received", {"consent": False}) == "Anoniem signaal ontvangen (alleen geteld)"
    assert intake.step_text("signal.assigned", {}, coach_name="Sanne") == "Toegewezen aan een coach: Sanne"
    assert "bespreekbaar gemaakt" in intake.step_text("signal.contact_made", {"discussable": True})
    assert intake.step_text("signal.closed", {"reason": "not_reached"}) == "Afgesloten: niet bereikt"
    assert (
        intake.step_text("signal.referred", {}, offer_name="Wandelgroep")
        == "Doorverwezen naar lokaal aanbod: Wandelgroep"
    )


def test_a_plan_version_can_name_local_offers_once_each() -> None:
    from services.coaching import plan

    offer = "0b6d1c2e-0000-4000-8000-000000000001"
    only_offers = plan.normalise(
        noticed_how=None,
        own_question=None,
        causes=[],
        causes_other=None,
        goals=None,
        steps=None,
        offer_ids=[offer, offer],
    )
    assert only_offers.offer_ids == (offer,)  # naming an offer is content: not an empty plan
    without = plan.normalise(
        noticed_how=None, own_question=None, causes=["health"], causes_other=None, goals=None, steps=None
    )
    with_offer = plan.normalise(
        noticed_how=None,
        own_question=None,
        causes=["health"],
        causes_other=None,
        goals=None,
        steps=None,
        offer_ids=[offer],
    )
    assert plan.changed(without, with_offer)
