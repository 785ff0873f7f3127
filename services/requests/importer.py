"""``insidetrack import-people``: through the running requests service, so its relay publishes.

The command used to write the directory in its own process, whose outbox relay exited with it:
the people stayed ``outbox_pending`` (unknown to kudos and points) until the service's next
safety-net search. Now it asks the running service for the configured admin
(``POST /people/admin``, internal token) and posts the file to ``POST /people/import`` as that
admin: the service writes in bulk and its relay publishes at once. When no service answers,
:func:`import_in_process` does the import here and runs this process's relay until every
event is published before returning.
"""

from __future__ import annotations

from typing import Any

import requests as http

from shared.auth import internal_headers


class ImportFailed(RuntimeError):
    """The service refused the file (bad header, too many rows) or did not answer."""


def import_through_service(url: str, token: str, text: str, timeout: float = 600.0) -> tuple[dict, dict[str, Any]]:
    """(admin, report) of importing ``text`` through the requests service at ``url``."""
    admin = admin_through_service(url, token)
    response = http.post(f"{url}/people/import", data=text.encode("utf-8"),
                         headers={**internal_headers(token, admin["id"]), "Content-Type": "text/csv; charset=utf-8"},
                         timeout=timeout)
    return admin, service_answer(response)


def admin_through_service(url: str, token: str) -> dict:
    """The configured admin, as the requests service at ``url`` answers (created on an empty
    directory), for tools holding the internal token that then act as the admin."""
    return service_answer(http.post(f"{url}/people/admin", headers=internal_headers(token, None), timeout=30))


def service_answer(response) -> dict:
    """The JSON body of a requests service answer; ImportFailed with its message when refused."""
    try:
        body = response.json()
    except ValueError:
        raise ImportFailed(f"the requests service answered {response.status_code} without JSON") from None
    if response.status_code >= 400:
        error = body.get("error") or {}
        raise ImportFailed(error.get("message") or f"the requests service answered {response.status_code}")
    return body


def import_in_process(settings, text: str) -> tuple[dict, dict[str, Any]]:
    """The import without a running service: here, then publish every event before returning."""
    from services.requests.app import build_runtime
    from shared.errors import AppError

    runtime = build_runtime(settings)
    try:
        admin = runtime.service.ensure_admin(settings.admin_email)
        try:
            report = runtime.service.import_people(admin.id, text)
        except AppError as exc:
            raise ImportFailed(exc.message) from None
        while runtime.relay.relay_once():  # the first pass also publishes whatever was left pending
            pass
        return {"id": admin.id, "email": admin.email}, report
    finally:
        runtime.stop()
