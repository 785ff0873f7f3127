"""The one error shape every internal API returns, and the exceptions that produce it.

Body: ``{"error": {"code": "rush_needs_reason", "message": "...", "field": "rushReason"}}``.
``code`` is stable (clients and the gateway branch on it); ``message`` is for people.
"""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """A refusal the caller can act on. Subclasses fix the HTTP status."""

    status = 400

    def __init__(self, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


class BadInput(AppError):
    status = 400


class Unauthorized(AppError):
    status = 401


class Forbidden(AppError):
    status = 403


class NotFound(AppError):
    status = 404


class Conflict(AppError):
    status = 409


class Unavailable(AppError):
    """Not answered here (this process does not hold what it needs); another process does."""

    status = 503


class RuleViolation(AppError):
    """Well-formed input that a business rule refuses (over allowance, kudos to yourself...)."""

    status = 422


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return AppError(code, message, field).to_dict()
