import pytest

from shared.config import load_settings
from shared.errors import Conflict
from shared.web import create_service_app


def failing_check():
    raise ConnectionError("refused")


@pytest.fixture
def app():
    app = create_service_app("demo", load_settings(env={}), readiness={"ok": lambda: None, "mongo": failing_check})

    @app.get("/conflict")
    def conflict():
        raise Conflict("illegal_transition", "cannot deliver a cancelled request", field="status")

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    return app


def test_healthz_says_the_process_answers(app):
    response = app.test_client().get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok", "service": "demo"}


def test_readyz_reports_each_dependency_and_fails_when_one_is_down(app):
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["status"] == "unready"
    assert response.json["checks"]["ok"]["ok"] is True
    assert response.json["checks"]["mongo"] == {"ok": False, "error": "ConnectionError: refused"}


def test_errors_share_one_shape_and_never_leak_internals(app):
    client = app.test_client()
    conflict = client.get("/conflict")
    assert conflict.status_code == 409
    assert conflict.json == {"error": {"code": "illegal_transition", "message": "cannot deliver a cancelled request", "field": "status"}}
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"
    boom = client.get("/boom")
    assert boom.status_code == 500 and "secret" not in boom.get_data(as_text=True)
    assert boom.json["error"]["code"] == "internal"


def test_logs_are_one_json_object_per_line_with_extras(capsys):
    import json
    import logging

    from shared.logging import configure_logging

    configure_logging("kudos", "INFO", "json")
    try:
        logging.getLogger("shared.test").info("kudos given", extra={"kudos_id": "k1", "count": 2})
        line = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        logging.getLogger().handlers.clear()
    entry = json.loads(line)
    assert entry["msg"] == "kudos given" and entry["service"] == "kudos" and entry["level"] == "INFO"
    assert entry["kudos_id"] == "k1" and entry["count"] == 2 and entry["time"].endswith("+00:00")


def test_a_double_slash_is_no_route_never_a_redirect(app):
    @app.post("/requests/<request_id>/cancel")
    def cancel(request_id):
        return {"id": request_id}

    client = app.test_client()
    assert client.post("/requests/r_1/cancel").json == {"id": "r_1"}
    # An id "x/" encoded as x%2F is decoded by the WSGI server before routing.
    doubled = client.post("/requests/x//cancel")
    assert doubled.status_code == 404 and doubled.json["error"]["code"] == "not_found"
