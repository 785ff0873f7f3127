"""The base of every service's Flask app: health, readiness, the one error shape, JSON logs.

``create_service_app("kudos", settings, readiness={"mongo": ..., "kafka": ...})`` returns an
app with ``/healthz`` (the process answers) and ``/readyz`` (every dependency answers).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from shared.config import Settings
from shared.errors import AppError, BadInput, error_body

log = logging.getLogger(__name__)

Check = Callable[[], None]  # raises when the dependency does not answer


def create_service_app(service: str, settings: Settings, readiness: Mapping[str, Check] | None = None) -> Flask:
    app = Flask(service)
    app.config["SETTINGS"] = settings
    app.config["SERVICE"] = service
    app.config["MAX_CONTENT_LENGTH"] = 1 * 1024 * 1024
    # A path is routed as it is: ``/requests/x//cancel`` is no route (404), never a 308 redirect
    # to ``/requests/x/cancel`` (callers do not follow redirects; the gateway counts one a failure).
    app.url_map.merge_slashes = False
    checks = dict(readiness or {})

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", service=service)

    @app.get("/readyz")
    def readyz():
        results, ready = {}, True
        for name, check in checks.items():
            started = time.perf_counter()
            try:
                check()
                results[name] = {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready", with the reason
                ready = False
                results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        body = {"status": "ready" if ready else "unready", "service": service, "checks": results}
        return jsonify(body), 200 if ready else 503

    @app.errorhandler(AppError)
    def app_error(exc: AppError):
        return jsonify(exc.to_dict()), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        return jsonify(error_body(code, exc.description or exc.name)), exc.code

    @app.errorhandler(Exception)
    def internal_error(exc: Exception):
        log.exception("unhandled error", extra={"service": service})
        return jsonify(error_body("internal", "internal error; the details are in the service log")), 500

    return app


def dependency_checks(settings: Settings, db=None) -> dict[str, Check]:
    """The readiness checks most services want: their database answers ping, Kafka accepts."""
    from shared.bus.kafka import kafka_reachable
    from shared.db import ping

    checks: dict[str, Check] = {"kafka": lambda: kafka_reachable(settings)}
    if db is not None:
        checks["mongo"] = lambda: ping(db)
    return checks


def json_body() -> dict[str, Any]:
    """The request's body, a JSON object; a 400 (``invalid_json``) when it is not one."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadInput("invalid_json", "the body must be a JSON object")
    return body


def csv_body() -> str | None:
    """The CSV an import sends: the body's text, or JSON ``{"csv": ...}``."""
    if request.mimetype == "application/json":
        return json_body().get("csv")
    return request.get_data(as_text=True)


def line_offset() -> int:
    """``?line_offset=N``: added to the line numbers an import reports (a part of a bigger file)."""
    try:
        return int(request.args.get("line_offset") or 0)
    except ValueError:
        raise BadInput("invalid_line_offset", "line_offset must be a whole number", field="line_offset") from None
