"""The intake of the local method, before a personal plan: a partner or colleague signals
loneliness, the coordinator hands the signal to a coach, the coach makes contact, clarifies the
person's own question and the causes, and then enrols, refers or closes. Rules without I/O:
what a signal may hold, which step may follow which, what the signaller is told, the counts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Literal

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from shared.errors import Refusal
from shared.text import is_multi_line, is_single_line

NOTICED: Mapping[str, str] = {
    "withdraws": "Trekt zich terug",
    "little_contact": "Weinig contact met anderen",
    "says_lonely": "Zegt zich eenzaam te voelen",
    "lost_someone": "Verlies van een naaste",
    "just_moved": "Net verhuisd",
    "health_limits": "Gezondheid beperkt",
    "self_neglect": "Zorgt slecht voor zichzelf of het huis",
    "other": "Anders",
}
"""What a signaller noticed, from the method's checklist: keys are stored, labels are shown."""

CLOSE_REASONS: Mapping[str, str] = {
    "not_reached": "Niet bereikt",
    "no_question": "Geen hulpvraag op dit moment",
    "declined": "Wil geen hulp",
    "help_elsewhere": "Krijgt al hulp van een ander",
    "outside_area": "Woont buiten ons werkgebied",
    "other": "Anders",
}
"""Why a coach closes a signal without enrolling or referring."""

State = Literal["new", "assigned", "contacted", "enrolled", "referred", "closed"]
FINISHED: frozenset[str] = frozenset({"enrolled", "referred", "closed"})
Stage = Literal["received", "picked_up", "contact_made", "closed"]
STAGE_LABELS: Mapping[str, str] = {
    "received": "Ontvangen",
    "picked_up": "Opgepakt",
    "contact_made": "Contact gelegd",
    "closed": "Afgesloten",
}
"""What the signaller sees of the follow-up: how far it is, never how it went."""

MAX_NOTE = 1000
MAX_NAME = 100
MAX_QUESTION = 4000
PHONE_REGION = "NL"
WORKING_DAYS_TO_PICK_UP = 5


def _invalid(message: str, field: str, dutch: str) -> Refusal:
    return Refusal("invalid", message, field=field, dutch=dutch)


def normalise_phone(value: str) -> str:
    """E.164, as enrolment stores it; a number without a country code is read as Dutch."""
    try:
        number = phonenumbers.parse(value, PHONE_REGION)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise _invalid(
            "Not a valid phone number.",
            "phone",
            "Dit telefoonnummer klopt niet. Vul een Nederlands nummer in, of een nummer met landcode (+32 …).",
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def display_phone(value: str) -> str:
    """A stored (E.164) number the way people read it."""
    try:
        number = phonenumbers.parse(value, PHONE_REGION)
    except phonenumbers.NumberParseException:
        return value
    home = phonenumbers.region_code_for_number(number) == PHONE_REGION
    style = phonenumbers.PhoneNumberFormat.NATIONAL if home else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    return phonenumbers.format_number(number, style)


def normalise_email(value: str) -> str:
    """A syntactically valid address, lower case (no lookup: a signal is taken offline too)."""
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        raise _invalid(
            "Not a valid e-mail address.", "email", "Dit e-mailadres klopt niet. Controleer het nog eens."
        ) from None


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.replace("\r\n", "\n").replace("\r", "\n").strip()
    return value or None


@dataclass(frozen=True)
class SignalContent:
    """A signal as stored: without consent, no name and no way to reach the person."""

    consent: bool
    first_name: str | None
    phone: str | None
    email: str | None
    noticed: tuple[str, ...]
    note: str | None


def normalise_signal(
    *,
    consent: bool | None,
    first_name: str | None,
    phone: str | None,
    email: str | None,
    noticed: Sequence[str],
    note: str | None,
) -> SignalContent:
    """Check and tidy a submitted signal; refuse it as a whole (nothing is stored) when it is not right."""
    if consent is None:
        raise _invalid(
            "Say whether the person agreed to be contacted.",
            "consent",
            "Geef aan of de persoon het goed vindt dat er contact wordt opgenomen.",
        )
    name, phone_text, email_text, note_text = _clean(first_name), _clean(phone), _clean(email), _clean(note)
    unknown = [key for key in noticed if key not in NOTICED]
    if unknown:
        raise _invalid(f"Unknown checklist item: {unknown[0]}.", "noticed", "Kies uit de lijst wat u is opgevallen.")
    chosen = tuple(key for key in NOTICED if key in set(noticed))
    if not chosen:
        raise _invalid("Tick at least one thing you noticed.", "noticed", "Kruis ten minste één ding aan dat u opviel.")
    if note_text is not None and (len(note_text) > MAX_NOTE or not is_multi_line(note_text)):
        raise _invalid(
            f"The note holds at most {MAX_NOTE} characters, without control characters.",
            "note",
            f"De toelichting mag hooguit {MAX_NOTE} tekens hebben (zonder onzichtbare tekens).",
        )
    if not consent:
        if name or phone_text or email_text:
            raise _invalid(
                "Without consent, leave out the name and contact details.",
                "consent",
                "Zonder toestemming mag u geen naam, telefoonnummer of e-mailadres doorgeven. "
                "Laat die velden leeg; dan tellen we het signaal alleen mee, zonder gegevens.",
            )
        # An anonymous signal is only counted: a note could name the person, so it is not kept.
        return SignalContent(consent=False, first_name=None, phone=None, email=None, noticed=chosen, note=None)
    if name is None:
        raise _invalid("The first name is required.", "first_name", "Vul de voornaam in.")
    if len(name) > MAX_NAME or not is_single_line(name):
        raise _invalid(
            "The first name is too long or holds control characters.",
            "first_name",
            f"Vul een voornaam in van hooguit {MAX_NAME} tekens.",
        )
    if phone_text is None and email_text is None:
        raise _invalid(
            "Give a phone number or an e-mail address.",
            "phone",
            "Vul een telefoonnummer of e-mailadres in, zodat de coach de persoon kan bereiken.",
        )
    return SignalContent(
        consent=True,
        first_name=name,
        phone=normalise_phone(phone_text) if phone_text else None,
        email=normalise_email(email_text) if email_text else None,
        noticed=chosen,
        note=note_text,
    )


# --- the steps ----------------------------------------------------------------------------


def _conflict(message: str, dutch: str) -> Refusal:
    return Refusal("conflict", message, dutch=dutch)


def check_open(state: str) -> None:
    """No step after the signal was enrolled, referred or closed."""
    if state in FINISHED:
        raise _conflict("This signal is finished.", "Dit signaal is al afgerond.")


def check_assign(*, state: str, consent: bool) -> None:
    """The coordinator hands an open signal with consent to a coach (again, while it is open)."""
    if not consent:
        raise _conflict(
            "An anonymous signal is only counted.", "Een signaal zonder toestemming wordt alleen meegeteld."
        )
    check_open(state)


def check_first_contact(*, state: str, contact_date: date, received_on: date, today: date) -> None:
    """The first contact follows the hand-over, once, on a day between the signal and today."""
    check_open(state)
    if state == "new":
        raise _conflict("Assign the signal to a coach first.", "Wijs het signaal eerst toe aan een coach.")
    if state != "assigned":
        raise _conflict("The first contact is already recorded.", "Het eerste contact is al vastgelegd.")
    if contact_date > today:
        raise _invalid(
            "The first contact cannot be in the future.", "contact_date", "De datum kan niet in de toekomst liggen."
        )
    if contact_date < received_on:
        raise _invalid(
            "The first contact cannot be before the signal.",
            "contact_date",
            "De datum kan niet voor de datum van het signaal liggen.",
        )


@dataclass(frozen=True)
class Question:
    """The person's own question and the causes (keys of the plan's checklist)."""

    own_question: str | None
    causes: tuple[str, ...]


def normalise_question(
    *, state: str, own_question: str | None, causes: Sequence[str], checklist: Mapping[str, str]
) -> Question:
    """After the first contact, until the end: the own question and causes (again, the newest counts)."""
    check_open(state)
    if state in ("new", "assigned"):
        raise _conflict("Record the first contact first.", "Leg eerst het eerste contact vast.")
    unknown = [cause for cause in causes if cause not in checklist]
    if unknown:
        raise _invalid(f"Unknown cause: {unknown[0]}.", "causes", "Kies oorzaken uit de lijst.")
    text = _clean(own_question)
    if text is not None and (len(text) > MAX_QUESTION or not is_multi_line(text)):
        raise _invalid(
            f"The question holds at most {MAX_QUESTION} characters.",
            "own_question",
            f"Gebruik voor de vraag hooguit {MAX_QUESTION} tekens.",
        )
    chosen = tuple(key for key in checklist if key in set(causes))
    if text is None and not chosen:
        raise _invalid(
            "Give the own question or at least one cause.",
            "own_question",
            "Vul de eigen vraag in of kies ten minste één oorzaak.",
        )
    return Question(own_question=text, causes=chosen)


def check_outcome(*, state: str, question_recorded: bool, enrol: bool) -> None:
    """Enrol or refer after the first contact; enrolling also needs the question (it starts the plan)."""
    check_open(state)
    if state in ("new", "assigned"):
        raise _conflict("Record the first contact first.", "Leg eerst het eerste contact vast.")
    if enrol and not question_recorded:
        raise _conflict(
            "Record the own question or causes first: they start the personal plan.",
            "Leg eerst de eigen vraag of de oorzaken vast; daarmee begint het persoonlijk plan.",
        )


def check_close(*, state: str, reason: str, note: str | None) -> str | None:
    """Close an open signal with a reason from the list (and an optional note, which is not kept)."""
    check_open(state)
    if reason not in CLOSE_REASONS:
        raise _invalid("Choose a reason from the list.", "reason", "Kies een reden uit de lijst.")
    text = _clean(note)
    if text is not None and (len(text) > MAX_NOTE or not is_multi_line(text)):
        raise _invalid(
            f"The note holds at most {MAX_NOTE} characters.",
            "note",
            f"De toelichting mag hooguit {MAX_NOTE} tekens hebben.",
        )
    return text


# --- what the signaller sees ------------------------------------------------------------------


@dataclass(frozen=True)
class SignalDates:
    """When a signal reached each stage (the dates a status needs)."""

    received_on: date
    assigned_on: date | None
    contact_on: date | None
    finished_on: date | None


def signaller_stage(dates: SignalDates) -> tuple[Stage, date]:
    """How far the follow-up is, and since when: no coach, no notes, no outcome."""
    if dates.finished_on is not None:
        return "closed", dates.finished_on
    if dates.contact_on is not None:
        return "contact_made", dates.contact_on
    if dates.assigned_on is not None:
        return "picked_up", dates.assigned_on
    return "received", dates.received_on


# --- the counts -----------------------------------------------------------------------------------


def working_days_between(start: date, end: date) -> int:
    """Mondays to Fridays after `start` up to and including `end` (0 on the same day)."""
    if end <= start:
        return 0
    days = 0
    current = start
    while current < end:
        current += timedelta(days=1)
        if current.weekday() < 5:
            days += 1
    return days


def picked_up_in_time(received_on: date, assigned_on: date | None) -> bool:
    """Handed to a coach within five working days of the signal."""
    return assigned_on is not None and working_days_between(received_on, assigned_on) <= WORKING_DAYS_TO_PICK_UP


@dataclass(frozen=True)
class CountedSignal:
    """What the counts need of one signal."""

    partner_organisation: str | None
    received_on: date
    assigned_on: date | None
    contact_on: date | None
    outcome: str | None


@dataclass
class Counts:
    """Signals received and how far they came."""

    received: int = 0
    picked_up_within_5_working_days: int = 0
    contact_made: int = 0
    enrolled: int = 0
    referred: int = 0
    closed: int = 0

    def add(self, signal: CountedSignal) -> None:
        self.received += 1
        self.picked_up_within_5_working_days += picked_up_in_time(signal.received_on, signal.assigned_on)
        self.contact_made += signal.contact_on is not None
        self.enrolled += signal.outcome == "enrolled"
        self.referred += signal.outcome == "referred"
        self.closed += signal.outcome == "closed"


@dataclass
class CountsReport:
    """The organisation's counts, in total and per partner organisation (largest first)."""

    total: Counts = field(default_factory=Counts)
    by_partner: list[tuple[str | None, Counts]] = field(default_factory=list)


def count_signals(signals: Iterable[CountedSignal]) -> CountsReport:
    """Every signal counts as received, anonymous ones too; the rest as far as each came."""
    report = CountsReport()
    partners: dict[str | None, Counts] = {}
    for signal in signals:
        report.total.add(signal)
        partners.setdefault(signal.partner_organisation, Counts()).add(signal)
    report.by_partner = sorted(partners.items(), key=lambda item: (-item[1].received, item[0] or ""))
    return report


# --- the timeline -------------------------------------------------------------------------------

STEP_TEXT: Mapping[str, str] = {
    "signal.received": "Signaal ontvangen",
    "signal.assigned": "Toegewezen aan een coach",
    "signal.contact_made": "Eerste contact gelegd",
    "signal.question_recorded": "Eigen vraag en oorzaken vastgelegd",
    "signal.enrolled": "Aangemeld voor Meer contact",
    "signal.referred": "Doorverwezen naar lokaal aanbod",
    "signal.closed": "Afgesloten",
}


def step_text(
    kind: str, facts: Mapping[str, object], *, coach_name: str | None = None, offer_name: str | None = None
) -> str:
    """What the timeline says of one intake step, in Dutch."""
    text = STEP_TEXT.get(kind, kind)
    if kind == "signal.received" and facts.get("consent") is False:
        return "Anoniem signaal ontvangen (alleen geteld)"
    if kind == "signal.assigned" and coach_name:
        return f"{text}: {coach_name}"
    if kind == "signal.contact_made":
        discussable = "eenzaamheid bespreekbaar gemaakt" if facts.get("discussable") else "nog niet bespreekbaar"
        return f"{text} ({discussable})"
    if kind == "signal.referred" and offer_name:
        return f"{text}: {offer_name}"
    if kind == "signal.closed":
        reason = CLOSE_REASONS.get(str(facts.get("reason")))
        return f"{text}: {reason.lower()}" if reason else text
    return text
