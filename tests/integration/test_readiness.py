import pytest

from shared.db import connect, disconnect
from shared.web import create_service_app, dependency_checks

pytestmark = pytest.mark.integration


def test_readyz_is_ready_when_mongo_and_kafka_answer_and_not_when_they_do_not(settings):
    db = connect(settings, "ready_test")
    try:
        app = create_service_app("demo", settings, readiness=dependency_checks(settings, db))
        ready = app.test_client().get("/readyz")
        assert ready.status_code == 200, ready.json
        assert set(ready.json["checks"]) == {"kafka", "mongo"}
    finally:
        disconnect()

    nowhere = settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:1", "mongo_url": "mongodb://127.0.0.1:1/", "mongo_timeout_ms": 300})
    db = connect(nowhere, "ready_test")
    try:
        app = create_service_app("demo", nowhere, readiness=dependency_checks(nowhere, db))
        unready = app.test_client().get("/readyz")
        assert unready.status_code == 503
        assert not unready.json["checks"]["kafka"]["ok"] and not unready.json["checks"]["mongo"]["ok"]
    finally:
        disconnect()
