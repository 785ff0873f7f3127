"""Wiring of the gateway: settings, service clients, rate limiter, the GraphQL blueprint."""

from __future__ import annotations

import os

from flask import request
from flask_sock import Sock

from services.gateway.clients import Services
from services.gateway.config import GatewaySettings
from services.gateway.http import graphql_api
from services.gateway.limits import RateLimiter
from services.gateway.live import LiveHub
from services.gateway.portal import portal
from services.gateway.ws import PROTOCOL, Connection
from shared.web import create_service_app

SERVICE = "gateway"


def _services_answer(services: Services):
    def check() -> None:
        for client in (services.requests, services.kudos, services.points):
            status = client.send("GET", "/healthz", timeout=1).status
            if status != 200:
                raise RuntimeError(f"the {client.name} service answers /healthz with HTTP {status}")

    return check


def create_app(settings: GatewaySettings, hub: LiveHub | None = None):
    services = Services.from_settings(settings)
    hub = hub or LiveHub(settings)

    def live_events() -> None:
        if not hub.ready():
            raise RuntimeError("not reading the live topics (yet)")

    app = create_service_app(SERVICE, settings, readiness={"services": _services_answer(services), "live": live_events})
    app.extensions["live_hub"] = hub
    sock = Sock(app)

    @sock.route("/graphql")
    def subscriptions(ws):
        Connection(ws, settings, services, hub, base_url=request.host_url.rstrip("/"),
                   init_timeout_s=settings.ws_init_timeout_s, active_cache=app.extensions["active_cache"]).run()

    app.root_path = os.path.dirname(__file__)  # static/graphiql.html lives beside this file
    app.static_folder = "static"
    app.extensions["services"] = services
    app.extensions["rate_limiter"] = RateLimiter(settings.rate_limit_per_minute)
    app.extensions["active_cache"] = {}
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["SOCK_SERVER_OPTIONS"] = {"subprotocols": [PROTOCOL], "ping_interval": 25,
                                         "max_message_size": settings.ws_max_message_bytes}
    app.register_blueprint(graphql_api)
    app.register_blueprint(portal)
    return app
