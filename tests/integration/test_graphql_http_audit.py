"""The graphql-http audit (the GraphQL-over-HTTP spec's server audits, run by the reference
implementation's own suite) against the real gateway: no error and no warning.

Needs Node.js; the test installs ``graphql-http`` into the cache folder the first time
(``<cache_dir>/node``, with npm) and is skipped where there is no Node.js or npm."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from shared.config import PROJECT_ROOT
from tests.integration.node_packages import node_modules, npm_available

pytestmark = pytest.mark.integration

GRAPHQL_HTTP = "graphql-http@1.23.1"
AUDIT = PROJECT_ROOT / "tests" / "integration" / "js" / "graphql_http_audit.js"


def test_the_gateway_passes_the_graphql_http_audit_without_warnings(system, stack_settings):
    if not npm_available():
        pytest.skip("no Node.js here: the graphql-http audit runs on Node")
    modules = node_modules(stack_settings.cache_dir, GRAPHQL_HTTP, "graphql@16")
    token = system["as"]("rita").token
    run = subprocess.run(["node", str(AUDIT), system["url"] + "/graphql", token], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "NODE_PATH": str(modules)})
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout)
    assert len(results) > 40, results  # the whole suite ran
    # MUSTs failing are errors, SHOULDs warnings; MAYs are notices (the spec leaves them open).
    failing = [r for r in results if r["status"] in ("error", "warn")]
    assert failing == [], json.dumps(failing, indent=1)
