"""Each service's OpenAPI spec is true: a bounded schemathesis run against the running stack, as the
licensor, as an organisation admin and without credentials, finds no 5xx and no response that
the spec does not describe (status, content type, body schema, headers, Allow on 405).

The runs keep to their own data: the organisation admin's run to its own organisation (a small
licence, so enrolments and their mails stay few), the licensor's to the organisations it creates
itself (it never sees the list of all organisations, see EVERY_ORGANISATION). Every run is bounded
in work (`--max-examples` per operation; the coverage phase is a fixed set of cases) and in time
(a hard ceiling per service; not `--max-time`, which makes schemathesis generate until the time
is spent, and on a busy machine spent it before testing anything), and the runs of one service
go at once.

Not checked: `positive_data_acceptance` (that every schema-valid input is accepted): a valid
phone number or e-mail address is more than a JSON Schema can say, and 409 (licence full,
already stopped) is a correct answer to valid input. Its mirror, `negative_data_rejection`
(input the spec calls invalid is refused), is checked. GET /api/live is an endless event stream.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import (
    COACHING,
    ENROLMENT,
    LICENSOR,
    MAILER,
    TRACKING,
    add_coach,
    create_organisation,
    enrol_starting_now,
    eventually,
    staff_login,
    unique_email,
)

pytestmark = pytest.mark.stack

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
SKIPPED_CHECKS = "positive_data_acceptance"
LOGIN_PATHS = ("/api/auth/login", "/api/auth/set-password")
# Failed logins count against the caller's address (127.0.0.1, like every other test): they are
# tried once, without credentials, with the coverage phase's bounded set of cases only.
SEED = 20261130

PER_OPERATION = """
# 413 is how every service refuses a body over its route's cap before parsing it (shared.http.BodySizeLimit):
# a refusal like 400 and 422, which schemathesis does not count by default.
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]

[[operations]]
include-path-regex = "^/api/auth/(login|set-password)$"
phases.fuzzing.enabled = false
phases.stateful.enabled = false

# A new organisation has no API key and no logo yet: these 404s are answers, not lost resources.
[[operations]]
include-path = ["/api/organisations/{org_id}/api-key", "/logos/{org_id}/{filename}"]
checks.ensure_resource_availability.enabled = false
"""


@dataclass(frozen=True)
class Run:
    """One schemathesis run: who asks, how many cases per operation, and which parameters are fixed."""

    name: str
    examples: int
    authorization: str | None = None
    parameters: dict[str, str] | None = None
    exclude_paths: tuple[str, ...] = ()
    filters: tuple[str, ...] = ()
    # Without credentials every operation answers 401: a few fuzzed cases each show that it is documented.
    phases: str = "coverage,fuzzing,stateful"


@pytest.fixture(scope="module")
async def own_organisation(stack: None) -> dict[str, Any]:
    """An organisation with an admin, a coach and two participants, known to coaching.

    The admin's runs reach its participants through the lists' answers (schemathesis follows
    ids it has seen); only org_id is fixed, because a fixed path parameter confuses schemathesis's
    negative checks when the path also holds a typed one (e.g. call-guide/{number})."""
    async with httpx.AsyncClient(timeout=10) as http:
        organisation = await create_organisation(http, max_active_participants=25)
        org_id = organisation["id"]
        await add_coach(http, org_id)
        admin = await staff_login(http, org_id)
        participants = [(await enrol_starting_now(http, org_id, first_name=name))[0] for name in ("Schema", "Thesis")]

        async def known_to_coaching() -> bool:
            response = await http.get(f"{COACHING}/api/participants", headers=admin["headers"])
            return {str(p) for p in participants} <= {row["participant_id"] for row in response.json()}

        await eventually(known_to_coaching, what="coaching to know the participants")
    return {"org_id": org_id, "admin": f"Bearer {admin['token']}"}


# The licensor's list of every organisation is the one way to learn other organisations' ids;
# schemathesis reuses ids from responses, so that list is tried in a run of its own.
EVERY_ORGANISATION = "list_organisations_api_organisations_get"


def _runs(service: str, own: dict[str, Any]) -> list[Run]:
    own_org = {"org_id": own["org_id"]}
    licensor = LICENSOR["Authorization"]
    return {
        "enrolment": [
            Run("licensor", 5, licensor, None, LOGIN_PATHS, ("--exclude-operation-id", EVERY_ORGANISATION)),
            Run("licensor, list only", 10, licensor, filters=("--include-operation-id", EVERY_ORGANISATION)),
            Run("org admin", 5, own["admin"], own_org, LOGIN_PATHS),
            # The coverage phase is where login and set-password are tried (see PER_OPERATION).
            Run("no credentials", 5, phases="coverage,fuzzing"),
        ],
        "mailer": [
            Run("licensor", 10, licensor),
            Run("org admin", 10, own["admin"], own_org),
            Run("no credentials", 5, phases="fuzzing"),
        ],
        "tracking": [Run("no credentials", 10)],
        "coaching": [
            Run("org admin", 10, own["admin"], exclude_paths=("/api/live",)),
            Run("no credentials", 5, exclude_paths=("/api/live",), phases="fuzzing"),
        ],
    }[service]


def _command(base_url: str, run: Run, config: Path) -> list[str]:
    command = [str(SCHEMATHESIS), "--no-color", "--config-file", str(config), "run", f"{base_url}/openapi.json"]
    command += ["--max-examples", str(run.examples), "--exclude-checks", SKIPPED_CHECKS]
    command += ["--request-timeout", "10", "--generation-database", "none", "--max-failures", "20"]
    # A fixed seed: every run tries the same cases, so a failure is a defect to fix, not a roll of the dice.
    # Change SEED on purpose (and fix what the new cases find) to widen the search.
    command += ["--seed", str(SEED)]
    # Only the credentials given here: no generated Authorization or X-Api-Key values.
    command += ["--generation-with-security-parameters", "false"]
    # Hypothesis's "too slow" health check fails runs on a busy machine; the ceiling bounds time instead.
    command += ["--suppress-health-check", "all"]
    # No examples phase: the specs hold no examples, and preparing it cost 15-60 s on a busy machine.
    command += ["--wait-for-schema", "30", "--phases", run.phases]
    if run.authorization:
        command += ["--header", f"Authorization: {run.authorization}"]
    for path in run.exclude_paths:
        command += ["--exclude-path", path]
    return command + list(run.filters)


def _config(run: Run) -> str:
    lines = ["[parameters]"] + [f'{name} = "{value}"' for name, value in (run.parameters or {}).items()]
    return "\n".join(lines) + "\n" + PER_OPERATION


SERVICES = {"enrolment": ENROLMENT, "mailer": MAILER, "tracking": TRACKING, "coaching": COACHING}
# A run that tested nothing ends with "Empty test suite" and exit 0.
AT_LEAST_CASES = 5
CEILING_S = 300


def _cases_generated(output: str) -> int:
    found = re.search(r"Test cases:\s+(\d+) generated", output)
    return int(found.group(1)) if found else 0


@pytest.mark.parametrize("service", list(SERVICES))
def test_the_openapi_spec_holds_under_schemathesis(
    service: str, own_organisation: dict[str, Any], tmp_path: Path
) -> None:
    started = []
    for run in _runs(service, own_organisation):
        name = f"{service}-{run.name.replace(' ', '-').replace(',', '')}"
        config, output = tmp_path / f"{name}.toml", tmp_path / f"{name}.txt"
        config.write_text(_config(run))
        with output.open("wb") as sink:
            command = _command(SERVICES[service], run, config)
            started.append(
                (run, output, subprocess.Popen(command, cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT))
            )
    failed = []
    deadline = time.monotonic() + CEILING_S
    for run, output, process in started:
        try:
            returncode = process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            returncode = process.wait()
            failed.append(f"===== {service} as {run.name}: still running after {CEILING_S} s, stopped")
        text = output.read_text(errors="replace")
        if returncode != 0 or _cases_generated(text) < AT_LEAST_CASES:
            failed.append(f"===== {service} as {run.name}: exit {returncode}\n{text[-12000:]}")
    assert not failed, "\n".join(failed)


# --- the findings of the outside probe, one by one ------------------------------------------------


async def _spec(http: httpx.AsyncClient, base_url: str) -> Any:
    import schemathesis

    return schemathesis.openapi.from_dict((await http.get(f"{base_url}/openapi.json")).json())


async def test_an_enrolled_and_an_erased_participant_answer_as_the_spec_says(http: httpx.AsyncClient) -> None:
    """send_time "00:00:00" broke the declared format "time"; an erased participant's fields are null."""
    organisation = await create_organisation(http)
    org_id = organisation["id"]
    coach = await add_coach(http, org_id)
    admin = await staff_login(http, org_id)
    participant_id, _ = await enrol_starting_now(http, org_id, first_name="Gerda")
    enrolment, coaching = await _spec(http, ENROLMENT), await _spec(http, COACHING)
    one = "/api/organisations/{org_id}/participants/{participant_id}"
    url = f"{ENROLMENT}/api/organisations/{org_id}/participants/{participant_id}"

    response = await http.get(url, headers=LICENSOR)
    assert response.json()["send_time"] == "00:00:00"
    enrolment[one]["GET"].validate_response(response)

    erased = await http.post(f"{url}/erase", headers=LICENSOR)
    assert erased.status_code == 200 and erased.json()["first_name"] is None, erased.text
    enrolment[f"{one}/erase"]["POST"].validate_response(erased)
    enrolment[one]["GET"].validate_response(await http.get(url, headers=LICENSOR))
    listed = await http.get(f"{ENROLMENT}/api/organisations/{org_id}/participants", headers=LICENSOR)
    enrolment["/api/organisations/{org_id}/participants"]["GET"].validate_response(listed)

    async def erased_in_coaching() -> httpx.Response | None:
        response = await http.get(f"{COACHING}/api/participants/{participant_id}", headers=admin["headers"])
        return response if response.status_code == 410 else None

    coaching["/api/participants/{participant_id}"]["GET"].validate_response(
        await eventually(erased_in_coaching, what="coaching to learn of the erasure")
    )
    rows = await http.get(f"{COACHING}/api/coaches/{coach['id']}/participants", headers=admin["headers"])
    coaching["/api/coaches/{coach_id}/participants"]["GET"].validate_response(rows)
    dashboard = await http.get(f"{COACHING}/api/participants", headers=admin["headers"])
    coaching["/api/participants"]["GET"].validate_response(dashboard)


async def test_the_spec_states_the_input_rules_that_the_api_applies(http: httpx.AsyncClient) -> None:
    spec = (await http.get(f"{ENROLMENT}/openapi.json")).json()
    shapes = spec["components"]["schemas"]
    assert shapes["ParticipantCreate"]["properties"]["email"]["format"] == "email"
    assert shapes["StaffCreate"]["properties"]["email"]["format"] == "email"
    phone = shapes["ParticipantCreate"]["properties"]["phone"]["anyOf"][0]
    assert phone["pattern"] and phone["maxLength"] == 40
    assert shapes["SetPasswordRequest"]["properties"]["password"]["minLength"] == 10
    website = shapes["BrandingUpdate"]["properties"]["website"]["anyOf"][0]
    assert website["pattern"].startswith(r"^\s*https?://")
    assert "format" not in shapes["ParticipantPublic"]["properties"]["send_time"]
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-Api-Key"

    organisation = await create_organisation(http)
    await add_coach(http, organisation["id"])
    participants = f"{ENROLMENT}/api/organisations/{organisation['id']}/participants"
    # What the schema now refuses, the API refuses too (before: accepted, with a zone or as a name).
    for field, value in (("send_time", "08:00:00+01:00"), ("send_time", "08:00:00.5"), ("phone", "06-BEL-MIJ-NU")):
        body = {"first_name": "Kees", "email": unique_email(), field: value}
        response = await http.post(participants, json=body, headers=LICENSOR)
        assert response.status_code == 422, (field, value, response.text)
        assert [f["field"] for f in response.json()["error"]["fields"]] == [field]


async def test_a_405_names_every_method_that_the_path_serves(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    response = await http.put(f"{ENROLMENT}/api/organisations/{organisation['id']}/participants", headers=LICENSOR)
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == {"GET", "POST"}
    assert response.json()["error"]["status"] == 405


async def test_every_service_documents_its_errors_in_the_one_shape(http: httpx.AsyncClient) -> None:
    """FastAPI's own 422 shape is gone, and a body that cannot be parsed has a documented 400."""
    for base_url in (ENROLMENT, MAILER, TRACKING, COACHING):
        spec = (await http.get(f"{base_url}/openapi.json")).json()
        assert "HTTPValidationError" not in spec["components"]["schemas"], base_url
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                if "requestBody" in operation:
                    assert "400" in operation["responses"], f"{base_url} {method} {path}"
    response = await http.post(
        f"{ENROLMENT}/api/organisations",
        content=b"\x12\xff\xfe",
        headers={**LICENSOR, "Content-Type": "application/json"},
    )
    assert response.status_code == 400 and response.json()["error"]["status"] == 400


async def test_the_mail_preview_answers_its_text_part_as_plain_text(http: httpx.AsyncClient) -> None:
    """part=text was a 500 (the e-mail package calls that part "plain"); found by the run above."""
    organisation = await create_organisation(http)
    url = f"{MAILER}/api/organisations/{organisation['id']}/preview"

    async def text_part() -> httpx.Response | None:
        response = await http.get(url, params={"day": 2, "part": "text"}, headers=LICENSOR)
        return response if response.status_code != 404 else None  # until the mailer knows the organisation

    response = await eventually(text_part, what="the mailer to know the organisation")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert "<html" not in response.text.lower() and "Welzijn Testdorp" in response.text
    (await _spec(http, MAILER))["/api/organisations/{org_id}/preview"]["GET"].validate_response(response)
