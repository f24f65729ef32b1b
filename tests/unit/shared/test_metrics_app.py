"""The metrics-only app of a process without an API (tracking's hit processor): /metrics behind
the same bearer token as every service's, and /healthz."""

from starlette.testclient import TestClient

from shared.metrics import metrics_app


def test_metrics_want_the_token_when_one_is_set() -> None:
    client = TestClient(metrics_app("tracking-hit-processor", "s3cret"))
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert refused.json()["error"]["status"] == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    answered = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert answered.status_code == 200 and "meer_outbox_backlog" in answered.text


def test_without_a_token_metrics_are_open_and_healthz_names_the_process() -> None:
    client = TestClient(metrics_app("tracking-hit-processor", None))
    assert client.get("/metrics").status_code == 200
    assert client.get("/healthz").json() == {"status": "ok", "service": "tracking-hit-processor"}
    assert client.get("/anything").status_code == 404
