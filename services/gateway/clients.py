"""HTTP clients to the services: one error shape, timeouts on every call, per-request caches."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests as http

from shared.auth import internal_headers

log = logging.getLogger(__name__)


def segment(value: Any) -> str:
    """``value`` as one path segment of a service URL: an id can never become another path.

    Without this, ``cancelRequest(id: "../people/p_1/deactivate?")`` would reach
    ``/people/p_1/deactivate`` (HTTP clients resolve dot segments; ``?`` starts a query).
    Every character but letters, digits, ``_``, ``-`` and ``~`` is percent-encoded, dots
    included, so ``..`` stays a (non-existent) id. An empty id names nothing: it is refused
    here as a service refuses an unknown id (``/requests//acknowledge`` would reach no
    command: a routing error, not an answer about the id).
    """
    text = "" if value is None else str(value)
    if not text:
        raise ServiceError("gateway", 404, "not_found", "no object has an empty id")
    return quote(text, safe="").replace(".", "%2E")


class ServiceError(Exception):
    """A service refused (4xx): its stable code, message and field, and the HTTP status."""

    def __init__(self, service: str, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.service, self.status, self.code, self.message, self.field = service, status, code, message, field


class ServiceUnavailable(Exception):
    """A service did not answer in time, or failed (5xx): the fields it serves are null."""

    def __init__(self, service: str, detail: str):
        super().__init__(f"the {service} service is unavailable right now")
        self.service, self.detail = service, detail


@dataclass
class ServiceClient:
    name: str
    base_url: str
    token: str
    timeout: float
    session: http.Session = field(default_factory=http.Session)

    def call(self, method: str, path: str, actor_id: str | None, *, json: Any = None, params: dict | None = None,
             data: Any = None, headers: dict | None = None) -> Any:
        try:
            response = self.session.request(
                method, self.base_url + path, json=json, params=params, data=data, timeout=self.timeout,
                headers={**internal_headers(self.token, actor_id), **(headers or {})},
            )
        except http.RequestException as exc:
            log.warning("service call failed", extra={"service": self.name, "path": path, "error": repr(exc)})
            raise ServiceUnavailable(self.name, repr(exc)) from None
        if response.status_code >= 500:
            log.warning("service error", extra={"service": self.name, "path": path, "status": response.status_code})
            raise ServiceUnavailable(self.name, f"HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise ServiceUnavailable(self.name, f"HTTP {response.status_code} without JSON") from None
        if response.status_code >= 400:
            error = body.get("error", {}) if isinstance(body, dict) else {}
            raise ServiceError(self.name, response.status_code, error.get("code", "error"),
                               error.get("message", "refused"), error.get("field"))
        return body

    def get(self, path: str, actor_id: str | None, **params) -> Any:
        return self.call("GET", path, actor_id, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, actor_id: str | None, body: Any = None) -> Any:
        return self.call("POST", path, actor_id, json=body if body is not None else {})

    def delete(self, path: str, actor_id: str | None) -> Any:
        return self.call("DELETE", path, actor_id)


@dataclass
class Services:
    requests: ServiceClient
    kudos: ServiceClient
    points: ServiceClient
    notifications: ServiceClient | None = None  # webhooks (admins)

    @classmethod
    def from_settings(cls, settings) -> "Services":
        def client(name: str) -> ServiceClient:
            # Keep a connection per serving thread: with requests' default pool of 10, the 11th
            # concurrent call opened a new TCP connection and threw it away afterwards.
            session = http.Session()
            # Service calls never go through a proxy or use ~/.netrc; without this, requests reads
            # the proxy variables and stats ~/.netrc on every call (0.16 ms of CPU a call, measured).
            session.trust_env = False
            session.mount("http://", http.adapters.HTTPAdapter(pool_maxsize=settings.http_threads))
            return ServiceClient(name, settings.service_url(name), settings.internal_token, settings.service_timeout_s,
                                 session)

        return cls(requests=client("requests"), kudos=client("kudos"), points=client("points"),
                   notifications=client("notifications"))
