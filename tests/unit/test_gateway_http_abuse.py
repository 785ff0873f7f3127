"""The gateway's HTTP door, in process (no services needed): sign-on with RS256 keys and
request shapes that must be refused before anything runs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timezone

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from shared.config import load_settings

NOWHERE = "http://127.0.0.1:1"  # no service answers: only the door is tested
LEAKS = ("Traceback", ".py", "Error:", "-----BEGIN")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64_json(obj: dict) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


@pytest.fixture(scope="module")
def keys():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048), rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def rs_app(tmp_path, keys):
    public = tmp_path / "public.pem"
    public.write_bytes(keys[0].public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    settings = load_settings(GatewaySettings, env={}, jwt_algorithm="RS256", jwt_public_key_file=public,
                             requests_url=NOWHERE, kudos_url=NOWHERE, points_url=NOWHERE, service_timeout_s=1)
    return create_app(settings), settings, public


def claims(settings, **changes) -> dict:
    now = int(datetime.now(timezone.utc).timestamp())
    return {"sub": "p_1", "iss": settings.jwt_issuer, "aud": settings.jwt_audience, "iat": now, "exp": now + 300, **changes}


def ask(app, token: str | None, query: str = "{ me { name } }"):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return app.test_client().post("/graphql", json={"query": query}, headers=headers)


def assert_refused(response, status=401, code="UNAUTHENTICATED"):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert "data" not in body and body["errors"][0]["extensions"]["code"] == code
    text = response.get_data(as_text=True)
    assert not any(leak in text for leak in LEAKS), text


def test_an_rs256_gateway_refuses_hs_rs_confusion_alg_none_and_other_keys(rs_app, keys):
    app, settings, public = rs_app
    signing_input = f"{b64_json({'alg': 'HS256', 'typ': 'JWT'})}.{b64_json(claims(settings, sub='attacker'))}"
    confused = f"{signing_input}.{b64(hmac.new(public.read_bytes(), signing_input.encode(), hashlib.sha256).digest())}"
    alg_none = f"{b64_json({'alg': 'none', 'typ': 'JWT'})}.{b64_json(claims(settings))}."
    other_key = jwt.encode(claims(settings), keys[1], algorithm="RS256")
    hs_with_secret = jwt.encode(claims(settings), settings.jwt_secret, algorithm="HS256")
    for token in (confused, alg_none, other_key, hs_with_secret, None):
        assert_refused(ask(app, token))
    # The right key passes the door (the directory is unreachable here, so fields fail later).
    signed = jwt.encode(claims(settings), keys[0], algorithm="RS256")
    assert ask(app, signed).status_code == 200


@pytest.fixture
def hs_app():
    settings = load_settings(GatewaySettings, env={}, requests_url=NOWHERE, kudos_url=NOWHERE, points_url=NOWHERE,
                             service_timeout_s=1)
    return create_app(settings), settings


def test_deeply_nested_json_is_a_clear_400_over_post_and_get(hs_app):
    app, settings = hs_app
    token = jwt.encode(claims(settings), settings.jwt_secret, algorithm="HS256")
    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    nested = '{"query": "{ me { name } }", "variables": {"v": ' + "[" * 20000 + "]" * 20000 + "}}"
    for response in (client.post("/graphql", data=nested, content_type="application/json", headers=auth),
                     client.get("/graphql", query_string={"query": "{ me { name } }", "variables": "[" * 20000 + "]" * 20000},
                                headers=auth)):
        assert_refused(response, 400, "BAD_REQUEST")
        assert response.get_json()["errors"][0]["message"] == "the JSON is nested too deeply"


def test_a_batch_is_refused_with_a_message_that_says_so(hs_app):
    app, settings = hs_app
    response = app.test_client().post("/graphql", json=[{"query": "{ me { name } }"}] * 3)
    assert_refused(response, 400, "BAD_REQUEST")
    assert "batched operations" in response.get_json()["errors"][0]["message"]


GRAPHQL_RESPONSE = "application/graphql-response+json"


def test_media_types_and_statuses_follow_the_graphql_over_http_spec(hs_app):
    """The graphql-http audit's SHOULDs: no Accept or ``*/*`` answers ``application/json``;
    in ``application/json`` a document that cannot run (syntax, validation, variable values)
    is a 200 whose errors say why, in ``application/graphql-response+json`` a 400."""
    app, settings = hs_app
    token = jwt.encode(claims(settings), settings.jwt_secret, algorithm="HS256")
    client = app.test_client()

    def post(query: str, accept: str | None, variables: dict | None = None):
        headers = {"Authorization": f"Bearer {token}", **({"Accept": accept} if accept is not None else {})}
        return client.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)

    for accept, media_type in ((None, "application/json"), ("*/*", "application/json"),
                               ("application/json", "application/json"), (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
                               (f"{GRAPHQL_RESPONSE}, application/json", GRAPHQL_RESPONSE),
                               (f"application/json;q=0.9, {GRAPHQL_RESPONSE}", GRAPHQL_RESPONSE)):
        answer = post("{ __typename }", accept)
        assert (answer.status_code, answer.mimetype, answer.get_json()["data"]) == (200, media_type, {"__typename": "Query"}), accept

    unrunnable = {
        "syntax": ("{ me { name ", None),
        "validation": ("{ me { nickname } }", None),
        "variable values": ("query($n: Int) { leaderboard(period: WEEK, first: $n) { key } }", {"n": "ten"}),
    }
    for name, (query, variables) in unrunnable.items():
        for accept, status in (("application/json", 200), (None, 200), (GRAPHQL_RESPONSE, 400)):
            answer = post(query, accept, variables)
            body = answer.get_json()
            assert answer.status_code == status and body.get("data") is None and body["errors"], (name, accept, body)
