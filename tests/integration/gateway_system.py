"""The whole system as `make up` runs it: the requests, kudos and points processes and the
gateway, each a real subprocess on its own free port, against the test stack.

``running_system(settings)`` starts them, imports a few people through the gateway and yields
what a test needs to talk GraphQL as any of them. The ``system`` fixture (conftest.py) is the
usual way in; a module that wants one system for all its tests uses the context manager.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from typing import Iterator

import requests as http

from services.gateway.auth import issue_token
from services.gateway.config import GatewaySettings
from shared.config import PROJECT_ROOT
from shared.db import mongo_client
from tests.conftest import wait_until
from tests.integration.service_helpers import free_port

PEOPLE_CSV = """email,name,role,department,title,manager_email
mona@example.com,Mona Berg,manager,sales,Sales Director,
rita@example.com,Rita Okafor,rep,sales,Account Executive,mona@example.com
jonas@example.com,Jonas Weiß,rep,sales,Account Executive,mona@example.com
pia@example.com,Pía Novák,support,pricing,Pricing Analyst,
li@example.com,Li Wei,support,pricing,Pricing Analyst,
"""

SERVICES = (("requests", "services.requests"), ("kudos", "services.recognition.kudos"),
            ("points", "services.recognition.points"), ("notifications", "services.notifications"),
            ("gateway", "services.gateway"))


class GraphQL:
    def __init__(self, url: str, token: str | None):
        self.url, self.token = url, token

    def __call__(self, query: str, variables: dict | None = None, method: str = "POST", headers: dict | None = None):
        h = {"Accept": "application/graphql-response+json", **({"Authorization": f"Bearer {self.token}"} if self.token else {}),
             **(headers or {})}
        if method == "GET":
            params = {"query": query, **({"variables": json.dumps(variables)} if variables else {})}
            return http.get(self.url + "/graphql", params=params, headers=h, timeout=15)
        return http.post(self.url + "/graphql", json={"query": query, "variables": variables or {}}, headers=h, timeout=15)


def start_service(module: str, settings, ports: dict[str, int], env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``python -m module`` against the test stack; ``env`` adds INSIDETRACK_* settings."""
    child = {k: v for k, v in os.environ.items() if not k.startswith("INSIDETRACK_")}
    child.update({"INSIDETRACK_KAFKA_PORT": str(settings.kafka_port), "INSIDETRACK_MONGO_PORT": str(settings.mongo_port),
                  "INSIDETRACK_NAME_PREFIX": settings.name_prefix, "INSIDETRACK_LOG_LEVEL": "WARNING",
                  "INSIDETRACK_VAR_DIR": str(settings.var_dir), "PYTHONPATH": str(PROJECT_ROOT),
                  "INSIDETRACK_WS_INIT_TIMEOUT_S": "2",
                  **{f"INSIDETRACK_{name.upper()}_PORT": str(port) for name, port in ports.items()},
                  **(env or {})})
    return subprocess.Popen([sys.executable, "-m", module], env=child, cwd=PROJECT_ROOT)


def ready(port: int) -> bool:
    try:
        return http.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except http.RequestException:
        return False


@contextmanager
def running_system_at(settings, clock_file, now) -> Iterator[dict]:
    """The whole system on a company clock that starts at ``now`` (the demo clock file every
    process reads), so weeks and boards do not depend on the real date."""
    from shared.clock import OffsetClock

    OffsetClock(clock_file).start_at(now)
    with running_system(settings, env={"INSIDETRACK_DEMO_CLOCK_FILE": str(clock_file)}) as running:
        yield running


@contextmanager
def running_system(settings, env: dict[str, str] | None = None) -> Iterator[dict]:
    """The five processes, ready, with PEOPLE_CSV imported; stopped (SIGTERM) afterwards.

    Yields ``url``, ``as`` (a GraphQL client signed in as a person of ``people``, by the
    local part of their email), ``as_admin``, ``people``, ``settings`` (the gateway's),
    ``ports``, ``processes`` and ``anonymous``. ``people`` may be refreshed by the caller
    (``refresh_people``) after importing more.
    """
    ports = {name: free_port() for name, _ in SERVICES}
    processes = {name: start_service(module, settings, ports, env) for name, module in SERVICES}
    try:
        for name, port in ports.items():
            assert wait_until(lambda: ready(port), timeout=60), f"{name} did not become ready"
        gateway_settings = GatewaySettings(**{**settings.model_dump(), "gateway_port": ports["gateway"]})
        with mongo_client(settings) as client:  # the admin the requests service created on its first start
            admin = client[settings.database("requests")]["people"].find_one({"email": "admin@example.com"})
        gateway_url = f"http://127.0.0.1:{ports['gateway']}"
        as_admin = GraphQL(gateway_url, issue_token(gateway_settings, admin["_id"], admin["email"], "admin"))
        imported = as_admin('mutation($csv: String!) { importPeople(csv: $csv) { created rowErrors { line } errors { code } } }',
                            {"csv": PEOPLE_CSV}).json()
        assert imported["data"]["importPeople"]["created"] == 5, imported
        people: dict[str, dict] = {}

        def refresh_people() -> dict[str, dict]:
            listed = as_admin("{ people(first: 100) { edges { node { id email role } } } }").json()
            people.update({e["node"]["email"].split("@")[0]: e["node"] for e in listed["data"]["people"]["edges"]})
            return people

        def as_(name: str) -> GraphQL:
            p = people[name]
            return GraphQL(gateway_url, issue_token(gateway_settings, p["id"], p["email"], p["role"].lower()))

        refresh_people()
        # The recognition processes learn people from the people topic: every imported person is
        # known to the kudos service (an allowance) and to the points service (points), which
        # refuse a caller they have not heard of yet.
        def known_everywhere(name: str) -> bool:
            me = (as_(name)("{ me { kudosAllowance { left } points(period: WEEK) } }").json().get("data") or {}).get("me") or {}
            return me.get("kudosAllowance") is not None and me.get("points") is not None

        assert wait_until(lambda: all(known_everywhere(name) for name in people if name != "admin"), 30)
        yield {"url": gateway_url, "as": as_, "as_admin": as_admin, "people": people, "refresh_people": refresh_people,
               "settings": gateway_settings, "ports": ports, "processes": processes,
               "anonymous": GraphQL(gateway_url, None), "admin_id": admin["_id"]}
    finally:
        for proc in processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in processes.values():
            proc.wait(30)
