"""Gateway sign-on: bearer header parsing, token verification and issuing (HS256 and RS256)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.gateway.auth import Claims, bearer_token, issue_token, verify_token
from services.gateway.config import GatewaySettings
from shared.config import ConfigError, load_settings
from shared.errors import Unauthorized

SECRET = "unit-test-jwt-secret-0123456789-abcdef"  # 38 bytes: above HS256's 32-byte minimum
OTHER_SECRET = "some-other-jwt-secret-0123456789-abcdef"
ISSUER = "intranet-sso"
AUDIENCE = "insidetrack"
LEEWAY = 30
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
T = int(NOW.timestamp())


# --- helpers and fixtures ----------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(obj: dict) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def payload(**changes) -> dict:
    """A valid payload at NOW; a change to None removes the claim."""
    base = {
        "sub": "person-42",
        "email": "ada@example.com",
        "role": "seller",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": T,
        "nbf": T,
        "exp": T + 3600,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def hand_signed(claims: dict, key: str = SECRET) -> str:
    """An HS256 token built without PyJWT, so claims its encoder refuses can be sent."""
    signing_input = f"{b64url_json({'alg': 'HS256', 'typ': 'JWT'})}.{b64url_json(claims)}"
    return f"{signing_input}.{b64url(hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest())}"


def hs_token(claims: dict, key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def pem_private(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def pem_public(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def refusal(settings, token, now=NOW) -> Unauthorized:
    with pytest.raises(Unauthorized) as exc:
        verify_token(settings, token, now=now)
    return exc.value


@pytest.fixture
def hs() -> GatewaySettings:
    return load_settings(
        GatewaySettings, env={}, jwt_secret=SECRET, jwt_issuer=ISSUER, jwt_audience=AUDIENCE, jwt_leeway_s=LEEWAY
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def key_files(tmp_path, rsa_key) -> tuple[Path, Path]:
    private, public = tmp_path / "jwt-private.pem", tmp_path / "jwt-public.pem"
    private.write_bytes(pem_private(rsa_key))
    public.write_bytes(pem_public(rsa_key))
    return private, public


@pytest.fixture
def rs(key_files) -> GatewaySettings:
    private, public = key_files
    return load_settings(
        GatewaySettings,
        env={},
        jwt_algorithm="RS256",
        jwt_secret=SECRET,  # present but unused with RS256
        jwt_public_key_file=public,
        jwt_private_key_file=private,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwt_leeway_s=LEEWAY,
    )


def rs_token(claims: dict, key: rsa.RSAPrivateKey) -> str:
    return jwt.encode(claims, key, algorithm="RS256")


# --- the Authorization header --------------------------------------------------------------------


@pytest.mark.parametrize("header, expected", [("Bearer abc.def.ghi", "abc.def.ghi"), ("bearer t", "t"), ("BEARER t-1_x", "t-1_x")])
def test_bearer_token_takes_the_token_whatever_the_scheme_case(header, expected):
    assert bearer_token(header) == expected


@pytest.mark.parametrize("header", [None, "", "   "])
def test_no_authorization_header_is_missing_token(header):
    with pytest.raises(Unauthorized) as exc:
        bearer_token(header)
    assert exc.value.code == "missing_token" and exc.value.status == 401


@pytest.mark.parametrize("header", ["Basic x", "Bearer", "Bearer ", "Bearer  a b", "Bearer a b", "Bearer  t", "Token t", "Bearer a,b"])
def test_a_malformed_authorization_header_is_refused(header):
    with pytest.raises(Unauthorized) as exc:
        bearer_token(header)
    assert exc.value.code == "bad_authorization_header" and exc.value.status == 401


# --- round trips -------------------------------------------------------------------------------


def test_hs256_round_trip(hs):
    token = issue_token(hs, "person-42", "ada@example.com", "seller", now=NOW, ttl_minutes=60)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    # What is on the wire, checked independently of our verifier.
    raw = jwt.decode(token, SECRET, algorithms=["HS256"], audience=AUDIENCE, options={"verify_exp": False, "verify_iat": False, "verify_nbf": False})
    assert raw == payload()  # exactly the claims of a valid token issued at NOW for an hour
    claims = verify_token(hs, token, now=NOW + timedelta(minutes=5))
    assert claims == Claims(
        subject="person-42", email="ada@example.com", role="seller", expires_at=NOW + timedelta(minutes=60)
    )


def test_issue_token_uses_the_configured_ttl_by_default(hs):
    settings = hs.model_copy(update={"token_ttl_minutes": 90})
    claims = verify_token(settings, issue_token(settings, "p-1", "p@example.com", "admin", now=NOW), now=NOW)
    assert claims.expires_at == NOW + timedelta(minutes=90)
    assert (claims.subject, claims.email, claims.role) == ("p-1", "p@example.com", "admin")


def test_rs256_round_trip(rs, rsa_key):
    token = issue_token(rs, "person-7", "bo@example.com", "manager", now=NOW, ttl_minutes=30)
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    # Signed with the private key: the public key alone verifies it.
    raw = jwt.decode(token, rsa_key.public_key(), algorithms=["RS256"], audience=AUDIENCE, options={"verify_exp": False, "verify_iat": False, "verify_nbf": False})
    assert raw["sub"] == "person-7" and raw["iss"] == ISSUER and raw["exp"] == T + 1800
    claims = verify_token(rs, token, now=NOW + timedelta(minutes=29))
    assert claims == Claims(subject="person-7", email="bo@example.com", role="manager", expires_at=NOW + timedelta(minutes=30))


def test_rs256_accepts_a_token_signed_by_the_provider_key(rs, rsa_key):
    claims = verify_token(rs, rs_token(payload(), rsa_key), now=NOW)
    assert claims.subject == "person-42" and claims.expires_at == NOW + timedelta(hours=1)


def test_email_and_role_are_optional(hs):
    claims = verify_token(hs, hs_token(payload(email=None, role=None)), now=NOW)
    assert claims == Claims(subject="person-42", email=None, role=None, expires_at=NOW + timedelta(hours=1))


def test_a_naive_now_is_taken_as_utc(hs):
    token = hs_token(payload(exp=T + 60))
    naive = NOW.replace(tzinfo=None)
    assert verify_token(hs, token, now=naive + timedelta(seconds=60 + LEEWAY - 1)).subject == "person-42"
    assert refusal(hs, token, now=naive + timedelta(seconds=60 + LEEWAY + 1)).code == "token_expired"


def test_the_real_clock_is_used_when_now_is_not_given(hs):
    token = issue_token(hs, "p-1", "p@example.com", "seller")  # issued at the real now
    assert verify_token(hs, token).subject == "p-1"
    old = issue_token(hs, "p-1", "p@example.com", "seller", now=NOW, ttl_minutes=1)  # expired long ago
    with pytest.raises(Unauthorized) as exc:
        verify_token(hs, old)
    assert exc.value.code == "token_expired"


# --- algorithm attacks ---------------------------------------------------------------------------


def alg_none_token(claims: dict) -> str:
    return f"{b64url_json({'alg': 'none', 'typ': 'JWT'})}.{b64url_json(claims)}."


@pytest.mark.parametrize("settings_fixture", ["hs", "rs"])
def test_alg_none_is_refused(request, settings_fixture):
    settings = request.getfixturevalue(settings_fixture)
    token = alg_none_token(payload())
    assert token.endswith(".") and token.count(".") == 2
    err = refusal(settings, token)
    assert err.code == "invalid_token" and settings.jwt_algorithm in err.message


@pytest.mark.parametrize("alg", ["None", "NONE"])
def test_alg_none_spelled_otherwise_is_refused(hs, alg):
    token = f"{b64url_json({'alg': alg, 'typ': 'JWT'})}.{b64url_json(payload())}."
    assert refusal(hs, token).code == "invalid_token"


def test_hs256_signed_with_the_public_key_text_is_refused_under_rs256(rs, key_files):
    """The classic confusion: the public key is public, so an HS256 token "signed" with its PEM
    text would verify if the verifier let the token pick the algorithm."""
    _, public = key_files
    signing_input = f"{b64url_json({'alg': 'HS256', 'typ': 'JWT'})}.{b64url_json(payload(sub='attacker'))}"
    signature = hmac.new(public.read_bytes(), signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64url(signature)}"
    err = refusal(rs, token)
    assert err.code == "invalid_token" and "RS256" in err.message


def test_an_rs256_token_is_refused_when_hs256_is_configured(hs, rsa_key):
    assert refusal(hs, rs_token(payload(), rsa_key)).code == "invalid_token"


def test_another_hmac_algorithm_with_the_right_secret_is_refused(hs):
    with warnings.catch_warnings():  # our 38-byte secret is short for HS512; irrelevant here
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        token = hs_token(payload(), algorithm="HS512")
    assert refusal(hs, token).code == "invalid_token"


# --- wrong keys and tampering --------------------------------------------------------------------


def test_hs256_signed_with_another_secret_is_refused(hs):
    err = refusal(hs, hs_token(payload(), key=OTHER_SECRET))
    assert err.code == "invalid_token" and "signature" in err.message


def test_rs256_signed_with_another_key_is_refused(rs, other_rsa_key):
    err = refusal(rs, rs_token(payload(), other_rsa_key))
    assert err.code == "invalid_token" and "signature" in err.message


def test_a_payload_changed_by_one_character_is_refused(hs):
    token = hs_token(payload())
    header, body, signature = token.split(".")
    i = len(body) // 2
    flipped = "A" if body[i] != "A" else "B"
    tampered = f"{header}.{body[:i]}{flipped}{body[i + 1:]}.{signature}"
    assert tampered != token
    assert refusal(hs, tampered).code == "invalid_token"


def test_a_rewritten_payload_with_the_old_signature_is_refused(hs, rs, rsa_key):
    for settings, token in ((hs, hs_token(payload())), (rs, rs_token(payload(), rsa_key))):
        header, _, signature = token.split(".")
        forged = f"{header}.{b64url_json(payload(sub='someone-else', role='admin'))}.{signature}"
        err = refusal(settings, forged)
        assert err.code == "invalid_token" and "signature" in err.message


@pytest.mark.parametrize("garbage", ["garbage", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9", "eyJ.eyJ.sig", "", "x" * 20_000])
def test_garbage_is_an_invalid_token(hs, garbage):
    assert refusal(hs, garbage).code == "invalid_token"


# --- time ------------------------------------------------------------------------------------------


def test_expiry_honours_the_leeway_to_the_second(hs):
    token = hs_token(payload(exp=T + 60))
    exp = NOW + timedelta(seconds=60)
    assert verify_token(hs, token, now=exp + timedelta(seconds=LEEWAY - 1)).subject == "person-42"
    assert refusal(hs, token, now=exp + timedelta(seconds=LEEWAY + 1)).code == "token_expired"
    # A token is valid only *before* exp (RFC 7519), leeway included.
    assert refusal(hs, token, now=exp + timedelta(seconds=LEEWAY)).code == "token_expired"


def test_without_leeway_a_token_expires_at_exp(hs):
    strict = hs.model_copy(update={"jwt_leeway_s": 0})
    token = hs_token(payload(exp=T + 60))
    assert verify_token(strict, token, now=NOW + timedelta(seconds=59)).subject == "person-42"
    assert refusal(strict, token, now=NOW + timedelta(seconds=60)).code == "token_expired"


def test_not_before_in_the_future_is_refused_beyond_the_leeway(hs):
    assert refusal(hs, hs_token(payload(nbf=T + LEEWAY + 1))).code == "token_not_yet_valid"
    assert verify_token(hs, hs_token(payload(nbf=T + LEEWAY - 1)), now=NOW).subject == "person-42"


def test_issued_in_the_future_is_refused_beyond_the_leeway(hs):
    assert refusal(hs, hs_token(payload(iat=T + LEEWAY + 1, nbf=None))).code == "token_not_yet_valid"
    assert verify_token(hs, hs_token(payload(iat=T + LEEWAY - 1, nbf=None)), now=NOW).subject == "person-42"


def test_a_token_without_nbf_is_accepted(hs):
    assert verify_token(hs, hs_token(payload(nbf=None)), now=NOW).subject == "person-42"


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", ["tomorrow", True, float("inf"), float("nan"), [T]])
def test_a_time_claim_that_is_not_a_number_is_invalid(hs, claim, value):
    token = hs_token(payload(**{claim: value}))
    assert refusal(hs, token).code == "invalid_token"


def test_an_exp_out_of_range_is_invalid(hs):
    assert refusal(hs, hs_token(payload(exp=10**20))).code == "invalid_token"


# --- audience, issuer, subject ------------------------------------------------------------------


def test_a_token_for_another_audience_is_refused(hs):
    assert refusal(hs, hs_token(payload(aud="payroll"))).code == "wrong_audience"
    assert refusal(hs, hs_token(payload(aud=["payroll", "wiki"]))).code == "wrong_audience"


def test_a_token_listing_our_audience_among_others_is_accepted(hs):
    assert verify_token(hs, hs_token(payload(aud=["wiki", AUDIENCE])), now=NOW).subject == "person-42"


def test_a_token_from_another_issuer_is_refused(hs):
    assert refusal(hs, hs_token(payload(iss="evil-sso"))).code == "wrong_issuer"
    assert refusal(hs, hand_signed(payload(iss=[ISSUER]))).code == "wrong_issuer"  # PyJWT will not encode this


@pytest.mark.parametrize("claim", ["sub", "exp", "iat", "aud", "iss"])
def test_a_token_missing_a_required_claim_is_invalid(hs, claim):
    err = refusal(hs, hs_token(payload(**{claim: None})))
    assert err.code == "invalid_token" and f"'{claim}'" in err.message


@pytest.mark.parametrize("sub", [42, "", "   ", ["person-42"]])
def test_a_subject_that_is_not_a_person_id_is_invalid(hs, sub):
    assert refusal(hs, hs_token(payload(sub=sub))).code == "invalid_token"


# --- what refusals say ---------------------------------------------------------------------------


def test_no_refusal_leaks_the_secret_or_library_text(hs, rs, key_files, rsa_key, other_rsa_key):
    public_pem = key_files[1].read_text()
    public_body = public_pem.splitlines()[1]  # a line of the key material itself
    cases = [
        (hs, alg_none_token(payload())),
        (hs, hs_token(payload(), key=OTHER_SECRET)),
        (hs, hs_token(payload(exp=T - 3600))),
        (hs, hs_token(payload(nbf=T + 3600))),
        (hs, hs_token(payload(aud="payroll"))),
        (hs, hs_token(payload(iss="evil"))),
        (hs, hs_token(payload(sub=None))),
        (hs, "garbage"),
        (hs, rs_token(payload(), rsa_key)),
        (rs, rs_token(payload(), other_rsa_key)),
        (rs, hs_token(payload(), key=OTHER_SECRET)),
        (rs, "a.b.c"),
    ]
    seen = set()
    for settings, token in cases:
        err = refusal(settings, token)
        seen.add(err.code)
        text = f"{err.code} {err.message} {err} {err.to_dict()}"
        assert SECRET not in text and OTHER_SECRET not in text
        assert public_body not in text and "BEGIN" not in text
        assert "Traceback" not in text and "Signature verification failed" not in text
        # The library's exception is neither the cause nor shown as context.
        assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
        assert err.status == 401
    assert seen == {"invalid_token", "token_expired", "token_not_yet_valid", "wrong_audience", "wrong_issuer"}


# --- RS256 configuration -------------------------------------------------------------------------


def test_issuing_rs256_without_a_private_key_is_a_config_error(rs):
    settings = rs.model_copy(update={"jwt_private_key_file": None})
    with pytest.raises(ConfigError, match="INSIDETRACK_JWT_PRIVATE_KEY_FILE"):
        issue_token(settings, "p-1", "p@example.com", "seller", now=NOW)


def test_issuing_with_a_private_key_that_does_not_match_the_public_key_is_a_config_error(rs, tmp_path, other_rsa_key):
    wrong = tmp_path / "other-private.pem"
    wrong.write_bytes(pem_private(other_rsa_key))
    settings = rs.model_copy(update={"jwt_private_key_file": wrong})
    with pytest.raises(ConfigError, match="does not match"):
        issue_token(settings, "p-1", "p@example.com", "seller", now=NOW)


def test_an_unreadable_public_key_file_is_a_config_error_not_the_callers_fault(rs, rsa_key, tmp_path):
    missing = rs.model_copy(update={"jwt_public_key_file": tmp_path / "nope.pem"})
    with pytest.raises(ConfigError, match="INSIDETRACK_JWT_PUBLIC_KEY_FILE"):
        verify_token(missing, rs_token(payload(), rsa_key), now=NOW)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    with pytest.raises(ConfigError, match="not a PEM public key"):
        verify_token(rs.model_copy(update={"jwt_public_key_file": junk}), rs_token(payload(), rsa_key), now=NOW)


def test_the_public_key_is_read_once_and_again_when_the_file_changes(rs, key_files, rsa_key, other_rsa_key):
    from services.gateway import auth

    _, public = key_files
    auth._load_public_key.cache_clear()
    for _ in range(3):
        verify_token(rs, rs_token(payload(), rsa_key), now=NOW)
    assert auth._load_public_key.cache_info().misses == 1

    # The provider rotates its key: the new file is picked up without a restart.
    public.write_bytes(pem_public(other_rsa_key))
    stat = public.stat()
    os.utime(public, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert verify_token(rs, rs_token(payload(), other_rsa_key), now=NOW).subject == "person-42"
    assert refusal(rs, rs_token(payload(), rsa_key)).code == "invalid_token"
    assert auth._load_public_key.cache_info().misses == 2


@pytest.mark.parametrize("ttl", [0, -5, True])
def test_issue_token_refuses_a_nonsense_ttl(hs, ttl):
    with pytest.raises(ValueError):
        issue_token(hs, "p-1", "p@example.com", "seller", now=NOW, ttl_minutes=ttl)


def test_issue_token_refuses_an_empty_person_id(hs):
    with pytest.raises(ValueError):
        issue_token(hs, " ", "p@example.com", "seller", now=NOW)


# --- rotating the key ----------------------------------------------------------------------------


def test_hs256_rotation_accepts_tokens_of_the_previous_secret_and_signs_with_the_new(hs):
    old_token = hs_token(payload(), SECRET)
    rotated = hs.model_copy(update={"jwt_secret": OTHER_SECRET, "jwt_previous_secret": SECRET})
    assert verify_token(rotated, old_token, now=NOW).subject == "person-42"
    new_token = issue_token(rotated, "person-7", "p@example.com", "support", now=NOW)
    assert verify_token(rotated, new_token, now=NOW).subject == "person-7"
    # New tokens are signed with the new secret only: the old secret alone refuses them.
    assert refusal(hs, new_token).code == "invalid_token"
    # Once the previous secret is removed, its tokens are refused.
    assert refusal(rotated.model_copy(update={"jwt_previous_secret": None}), old_token).code == "invalid_token"


def test_rotation_still_checks_everything_else_with_the_previous_key(hs):
    rotated = hs.model_copy(update={"jwt_secret": OTHER_SECRET, "jwt_previous_secret": SECRET})
    assert refusal(rotated, hs_token(payload(exp=T - 3600), SECRET)).code == "token_expired"
    assert refusal(rotated, hs_token(payload(aud="other"), SECRET)).code == "wrong_audience"
    third = "a-third-jwt-secret-nobody-configured-0123"
    assert refusal(rotated, hs_token(payload(), third)).code == "invalid_token"


def test_rs256_rotation_accepts_tokens_of_the_previous_public_key(rs, rsa_key, other_rsa_key, tmp_path):
    new_public = tmp_path / "new-public.pem"
    new_public.write_bytes(pem_public(other_rsa_key))
    old_public = rs.jwt_public_key_file
    rotated = rs.model_copy(update={
        "jwt_public_key_file": new_public, "jwt_previous_public_key_file": old_public, "jwt_private_key_file": None,
    })
    assert verify_token(rotated, rs_token(payload(), rsa_key), now=NOW).subject == "person-42"
    assert verify_token(rotated, rs_token(payload(sub="p-9"), other_rsa_key), now=NOW).subject == "p-9"
    assert refusal(rotated.model_copy(update={"jwt_previous_public_key_file": None}), rs_token(payload(), rsa_key)).code == "invalid_token"


def test_an_unreadable_previous_public_key_is_a_config_error_naming_its_variable(rs, rsa_key, tmp_path):
    broken = rs.model_copy(update={"jwt_previous_public_key_file": tmp_path / "gone.pem"})
    with pytest.raises(ConfigError, match="INSIDETRACK_JWT_PREVIOUS_PUBLIC_KEY_FILE"):
        verify_token(broken, rs_token(payload(), rsa_key), now=NOW)


def test_a_previous_key_of_the_other_algorithm_is_refused_at_start(key_files):
    _, public = key_files
    with pytest.raises(ConfigError, match="INSIDETRACK_JWT_PREVIOUS_SECRET is for HS256"):
        load_settings(GatewaySettings, env={
            "INSIDETRACK_JWT_ALGORITHM": "RS256", "INSIDETRACK_JWT_PUBLIC_KEY_FILE": str(public),
            "INSIDETRACK_JWT_PREVIOUS_SECRET": OTHER_SECRET,
        })
    with pytest.raises(ConfigError, match="INSIDETRACK_JWT_PREVIOUS_PUBLIC_KEY_FILE is for RS256"):
        load_settings(GatewaySettings, env={"INSIDETRACK_JWT_PREVIOUS_PUBLIC_KEY_FILE": str(public)})
    with pytest.raises(ConfigError, match="INSIDETRACK_JWT_PREVIOUS_SECRET"):
        load_settings(GatewaySettings, env={"INSIDETRACK_JWT_PREVIOUS_SECRET": "too-short"})
