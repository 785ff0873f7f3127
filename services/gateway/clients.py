"""HTTP clients to the services: one error shape, timeouts on every call, per-request caches."""

from __future__ import annotations

import json as _json
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import urllib3

from shared.auth import internal_headers

log = logging.getLogger(__name__)


def segment(value: Any) -> str:
    """``value`` as one path segment of a service URL: an id can never become another path.

    Without this, ``cancelRequest(id: "../people/p_1/deactivate?")`` would reach
    ``/people/p_1/deactivate`` (HTTP clients resolve dot segments; ``?`` starts a query).
    Every character but letters, digits, ``_``, ``-`` and ``~`` is percent-encoded, dots
    included, so ``..`` stays a (non-existent) id. An empty id names nothing: it is refused
    here as a service refuses an unknown id (``/requests//acknowledge`` would reach no
    command: a routing error, not an answer about the id). So is an id with a ``/``: a WSGI
    server decodes ``%2F`` before routing, so ``x/`` would reach ``/requests/x//cancel``, and
    no id the system makes has one.
    """
    text = "" if value is None else str(value)
    if not text:
        raise ServiceError("gateway", 404, "not_found", "no object has an empty id")
    if "/" in text:
        raise ServiceError("gateway", 404, "not_found", "no object has an id with a '/'")
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
    """Calls to one service over a pool of kept-alive connections (urllib3: requests' session
    machinery cost ~0.1 ms of CPU a call, a third of the gateway's own work on a leaderboard
    read: settings merged, cookies, hooks). No proxy, no redirects, no retries: an answer or
    ServiceUnavailable within the timeout."""

    name: str
    base_url: str
    token: str
    timeout: float
    pool_size: int = 10  # connections kept: one per serving thread (more are opened and closed)
    pool: urllib3.HTTPConnectionPool = field(init=False, repr=False)  # or its HTTPS subclass

    def __post_init__(self) -> None:
        url = urllib3.util.parse_url(self.base_url)
        self._prefix = url.path.rstrip("/") if url.path else ""
        # http:// or https:// (a service behind TLS): the pool of the URL's scheme.
        self.pool = urllib3.connection_from_url(self.base_url, maxsize=self.pool_size, block=False,
                                                timeout=urllib3.Timeout(total=self.timeout), retries=False)

    def send(self, method: str, path: str, *, params: dict | None = None, body: bytes | None = None,
             headers: dict | None = None, timeout: float | None = None) -> urllib3.BaseHTTPResponse:
        """One HTTP exchange with the service (no error handling: :meth:`call` adds it)."""
        target = self._prefix + path + (f"?{urlencode(params)}" if params else "")
        return self.pool.urlopen(method, target, body=body, headers=headers, redirect=False, preload_content=True,
                                 timeout=urllib3.Timeout(total=timeout) if timeout is not None else urllib3.util.Timeout.DEFAULT_TIMEOUT)

    def call(self, method: str, path: str, actor_id: str | None, *, json: Any = None, params: dict | None = None,
             data: Any = None, headers: dict | None = None) -> Any:
        sent = {**internal_headers(self.token, actor_id), **(headers or {})}
        if json is not None:
            data = _json.dumps(json).encode()
            sent["Content-Type"] = "application/json"
        elif isinstance(data, str):
            data = data.encode()
        try:
            response = self.send(method, path, params=params, body=data, headers=sent)
        except urllib3.exceptions.HTTPError as exc:
            log.warning("service call failed", extra={"service": self.name, "path": path, "error": repr(exc)})
            raise ServiceUnavailable(self.name, repr(exc)) from None
        if response.status >= 500 or 300 <= response.status < 400:  # a failure, or a redirect (never followed)
            log.warning("service error", extra={"service": self.name, "path": path, "status": response.status})
            raise ServiceUnavailable(self.name, f"HTTP {response.status}")
        try:
            body = _json.loads(response.data)
        except ValueError:
            raise ServiceUnavailable(self.name, f"HTTP {response.status} without JSON") from None
        if response.status >= 400:
            error = body.get("error", {}) if isinstance(body, dict) else {}
            raise ServiceError(self.name, response.status, error.get("code", "error"),
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
            # A connection kept per serving thread: with a pool of 10, the 11th concurrent call
            # opened a new TCP connection and threw it away afterwards.
            return ServiceClient(name, settings.service_url(name), settings.internal_token, settings.service_timeout_s,
                                 pool_size=settings.http_threads)

        return cls(requests=client("requests"), kudos=client("kudos"), points=client("points"),
                   notifications=client("notifications"))
