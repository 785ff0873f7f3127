"""Wiring of the gateway: settings, service clients, rate limiter, the GraphQL blueprint."""

from __future__ import annotations

import os
from dataclasses import dataclass

from services.gateway.clients import Services
from services.gateway.config import GatewaySettings
from services.gateway.http import graphql_api
from services.gateway.limits import RateLimiter
from shared.serve import ServiceRuntime
from shared.web import create_service_app

SERVICE = "gateway"


def _services_answer(services: Services):
    def check() -> None:
        for client in (services.requests, services.kudos, services.points):
            client.session.get(client.base_url + "/healthz", timeout=1).raise_for_status()

    return check


def create_app(settings: GatewaySettings):
    services = Services.from_settings(settings)
    app = create_service_app(SERVICE, settings, readiness={"services": _services_answer(services)})
    app.root_path = os.path.dirname(__file__)  # static/graphiql.html lives beside this file
    app.static_folder = "static"
    app.extensions["services"] = services
    app.extensions["rate_limiter"] = RateLimiter(settings.rate_limit_per_minute)
    app.extensions["active_cache"] = {}
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.register_blueprint(graphql_api)
    return app


@dataclass
class GatewayRuntime(ServiceRuntime):
    pass


class _NoProducer:
    def close(self) -> None:
        pass


def build_runtime(settings: GatewaySettings) -> GatewayRuntime:
    return GatewayRuntime(settings=settings, app=create_app(settings), producer=_NoProducer())
