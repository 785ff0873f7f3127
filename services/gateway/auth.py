"""Who is calling the gateway: the person behind ``Authorization: Bearer <JWT>``.

Tokens come from the intranet's sign-on, signed with HS256 (a shared secret) or RS256 (the
provider's private key; we hold the public key). Only the configured algorithm is accepted,
so ``alg: none`` and HS/RS confusion (an HS256 token "signed" with the public key's PEM text)
are refused. Signature, audience and issuer are checked by PyJWT; the time claims (exp, nbf,
iat) are checked here against an injectable ``now`` with the configured leeway.

Every refusal is :class:`~shared.errors.Unauthorized` with a stable code:
``missing_token``, ``bad_authorization_header``, ``invalid_token``, ``token_expired``,
``token_not_yet_valid``, ``wrong_audience``, ``wrong_issuer``. Messages are ours, never the
library's text, and never contain key material. A broken key *configuration* (unreadable
key file, wrong key type) is a :class:`~shared.config.ConfigError`: it is the operator's
problem, not the caller's.

Rotating a key: the previous secret or public key (``INSIDETRACK_JWT_PREVIOUS_SECRET`` /
``_PREVIOUS_PUBLIC_KEY_FILE``) is still accepted for verifying while tokens signed with it
live; tokens are only ever signed with the current key (``docs/operations.md``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import jwt
from jwt import exceptions as jwt_errors
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from services.gateway.config import GatewaySettings
from shared.clock import utc
from shared.config import ConfigError
from shared.errors import Unauthorized

SUPPORTED_ALGORITHMS = ("HS256", "RS256")
REQUIRED_CLAIMS = ("exp", "iat", "sub", "aud", "iss")
# A signed-on person's token is a few hundred bytes; refuse absurd ones before parsing them.
MAX_TOKEN_CHARS = 16 * 1024
# RFC 6750 b64token: what may follow "Bearer ".
_B64TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")


SCREEN_SCOPE = "screen"


@dataclass(frozen=True)
class Claims:
    subject: str  # the person id ("sub")
    email: str | None
    role: str | None  # as the token says; services decide from their directory anyway
    expires_at: datetime
    # A screen token (claim ``scope: screen``) may read and subscribe, never change anything.
    read_only: bool = False


# --- the Authorization header ------------------------------------------------------------


def bearer_token(authorization_header: str | None) -> str:
    """Return ``<t>`` from ``Bearer <t>`` (scheme case-insensitive, one space between)."""
    if authorization_header is None or not authorization_header.strip():
        raise Unauthorized("missing_token", "sign in first: send 'Authorization: Bearer <token>'")
    # HTTP strips whitespace around a field value; inside it we want exactly "<scheme> <token>".
    parts = authorization_header.strip().split(" ")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise Unauthorized(
            "bad_authorization_header", "the Authorization header must be 'Bearer <token>' (one space, no other parts)"
        )
    scheme, token = parts
    if scheme.lower() != "bearer":
        raise Unauthorized("bad_authorization_header", "the Authorization header must use the Bearer scheme")
    if not _B64TOKEN.match(token):
        raise Unauthorized("bad_authorization_header", "the bearer token contains characters a token cannot have")
    return token


# --- keys ----------------------------------------------------------------------------------


def _algorithm(settings: GatewaySettings) -> str:
    algorithm = settings.jwt_algorithm
    if algorithm not in SUPPORTED_ALGORITHMS:  # the settings pattern already says so; belt and braces
        raise ConfigError(f"INSIDETRACK_JWT_ALGORITHM={algorithm!r}: expected one of {', '.join(SUPPORTED_ALGORITHMS)}")
    return algorithm


def _read_key_file(path: Path, variable: str) -> tuple[str, int, int]:
    """Return (resolved path, mtime_ns, size): the cache key, so a replaced file is re-read."""
    try:
        resolved = path.expanduser().resolve()
        stat = resolved.stat()
    except OSError as exc:
        raise ConfigError(f"{variable}={str(path)!r}: cannot read the key file ({exc.strerror or 'error'})") from None
    return str(resolved), stat.st_mtime_ns, stat.st_size


@lru_cache(maxsize=8)
def _load_public_key(path: str, _mtime_ns: int, _size: int, variable: str = "INSIDETRACK_JWT_PUBLIC_KEY_FILE") -> rsa.RSAPublicKey:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{variable}={path!r}: cannot read the key file ({exc.strerror or 'error'})") from None
    key: Any
    try:
        key = load_pem_public_key(data)
    except ValueError:
        try:  # a provider may publish a certificate rather than a bare key
            key = x509.load_pem_x509_certificate(data).public_key()
        except ValueError:
            raise ConfigError(
                f"{variable}={path!r}: not a PEM public key or certificate (expected '-----BEGIN PUBLIC KEY-----')"
            ) from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ConfigError(f"{variable}={path!r}: RS256 needs an RSA public key, this is {type(key).__name__}")
    return key


@lru_cache(maxsize=8)
def _load_private_key(path: str, _mtime_ns: int, _size: int) -> rsa.RSAPrivateKey:
    variable = "INSIDETRACK_JWT_PRIVATE_KEY_FILE"
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{variable}={path!r}: cannot read the key file ({exc.strerror or 'error'})") from None
    try:
        key = load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(f"{variable}={path!r}: the private key is encrypted; use an unencrypted PEM key") from None
    except ValueError:
        raise ConfigError(f"{variable}={path!r}: not a PEM private key (expected '-----BEGIN PRIVATE KEY-----')") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{variable}={path!r}: RS256 needs an RSA private key, this is {type(key).__name__}")
    return key


def _public_key(settings: GatewaySettings) -> rsa.RSAPublicKey:
    if settings.jwt_public_key_file is None:
        raise ConfigError("RS256 needs INSIDETRACK_JWT_PUBLIC_KEY_FILE")
    return _load_public_key(*_read_key_file(settings.jwt_public_key_file, "INSIDETRACK_JWT_PUBLIC_KEY_FILE"))


def _verification_keys(settings: GatewaySettings, algorithm: str) -> list[Any]:
    """The current key, then the previous one while a rotation is under way."""
    if algorithm == "HS256":
        keys: list[Any] = [settings.jwt_secret]
        if settings.jwt_previous_secret:
            keys.append(settings.jwt_previous_secret)
        return keys
    keys = [_public_key(settings)]
    if settings.jwt_previous_public_key_file is not None:
        variable = "INSIDETRACK_JWT_PREVIOUS_PUBLIC_KEY_FILE"
        keys.append(_load_public_key(*_read_key_file(settings.jwt_previous_public_key_file, variable), variable))
    return keys


def _private_key(settings: GatewaySettings) -> rsa.RSAPrivateKey:
    if settings.jwt_private_key_file is None:
        raise ConfigError(
            "issuing RS256 tokens needs the signing key: set INSIDETRACK_JWT_PRIVATE_KEY_FILE "
            "(the gateway itself only needs the public key to verify)"
        )
    key = _load_private_key(*_read_key_file(settings.jwt_private_key_file, "INSIDETRACK_JWT_PRIVATE_KEY_FILE"))
    if key.public_key().public_numbers() != _public_key(settings).public_numbers():
        raise ConfigError(
            "INSIDETRACK_JWT_PRIVATE_KEY_FILE does not match INSIDETRACK_JWT_PUBLIC_KEY_FILE: "
            "tokens signed with it would be refused"
        )
    return key


# --- verifying -----------------------------------------------------------------------------


def _invalid(message: str) -> Unauthorized:
    return Unauthorized("invalid_token", message)


def _numeric_date(payload: dict[str, Any], claim: str) -> float:
    value = payload[claim]
    # bool is an int in Python; JSON's NaN/Infinity parse as floats: none is a date.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _invalid(f"the token's '{claim}' claim is not a number of seconds")
    return float(value)


def _optional_text(payload: dict[str, Any], claim: str) -> str | None:
    value = payload.get(claim)
    return value if isinstance(value, str) and value else None


def verify_token(settings: GatewaySettings, token: str, now: datetime | None = None) -> Claims:
    """Check ``token`` (signature, algorithm, audience, issuer, times) and return its claims.

    ``now`` defaults to the real clock; naive datetimes are taken as UTC.
    """
    algorithm = _algorithm(settings)
    keys = _verification_keys(settings, algorithm)
    if not isinstance(token, str) or not token:
        raise _invalid("no token was presented")
    if len(token) > MAX_TOKEN_CHARS:
        raise _invalid("the token is too long")

    try:
        payload = _decode(settings, token, keys, algorithm)
    # Order matters: several of these subclass DecodeError / InvalidTokenError.
    except jwt_errors.InvalidAlgorithmError:
        raise _invalid(f"the token is not signed with the accepted algorithm ({algorithm})") from None
    except jwt_errors.InvalidSignatureError:
        raise _invalid("the token's signature does not verify") from None
    except jwt_errors.MissingRequiredClaimError as exc:
        claim = exc.claim if exc.claim in REQUIRED_CLAIMS else "a required"
        raise _invalid(f"the token has no '{claim}' claim") from None
    except jwt_errors.InvalidAudienceError:
        raise Unauthorized("wrong_audience", "the token was issued for another audience") from None
    except jwt_errors.InvalidIssuerError:
        raise Unauthorized("wrong_issuer", "the token was issued by another issuer") from None
    except jwt_errors.InvalidSubjectError:
        raise _invalid("the token's 'sub' claim is not a person id") from None
    except jwt_errors.DecodeError:
        raise _invalid("the token is malformed") from None
    except jwt_errors.PyJWTError:  # anything else the library refuses (subject type, key problems...)
        raise _invalid("the token is not valid") from None

    subject = payload.get("sub")
    if not isinstance(subject, str) or not subject.strip():
        raise _invalid("the token's 'sub' claim is not a person id")

    exp = _numeric_date(payload, "exp")
    iat = _numeric_date(payload, "iat")
    nbf = _numeric_date(payload, "nbf") if payload.get("nbf") is not None else None

    current = utc(now).timestamp() if now is not None else datetime.now(timezone.utc).timestamp()
    leeway = float(settings.jwt_leeway_s)
    # RFC 7519: valid only *before* exp; leeway widens every window by the same margin.
    if current >= exp + leeway:
        raise Unauthorized("token_expired", "the token has expired: sign in again")
    if nbf is not None and nbf > current + leeway:
        raise Unauthorized("token_not_yet_valid", "the token is not valid yet (check the clocks)")
    if iat > current + leeway:
        raise Unauthorized("token_not_yet_valid", "the token was issued in the future (check the clocks)")

    try:
        expires_at = datetime.fromtimestamp(exp, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise _invalid("the token's 'exp' claim is out of range") from None

    return Claims(
        subject=subject,
        email=_optional_text(payload, "email"),
        role=_optional_text(payload, "role"),
        expires_at=expires_at,
        read_only=payload.get("scope") == SCREEN_SCOPE,
    )


def _decode(settings: GatewaySettings, token: str, keys: list[Any], algorithm: str) -> dict[str, Any]:
    """PyJWT's checks with the first key whose signature verifies (PyJWT checks the signature
    before any claim, so a token signed with another key fails the same way with each)."""
    for index, key in enumerate(keys):
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
                options={
                    # Times are checked by the caller against `now`; PyJWT would use the real clock.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_signature": True,
                    "verify_aud": True,
                    "verify_iss": True,
                    "require": list(REQUIRED_CLAIMS),
                },
            )
        except jwt_errors.InvalidSignatureError:
            if index == len(keys) - 1:
                raise
    raise AssertionError("unreachable: there is always a current key")


# --- issuing (local development, the CLI) -----------------------------------------------------


def issue_token(
    settings: GatewaySettings,
    person_id: str,
    email: str,
    role: str,
    now: datetime | None = None,
    ttl_minutes: int | None = None,
    screen: bool = False,
) -> str:
    """Sign a token the gateway accepts, as the intranet's sign-on would (``screen``: read-only)."""
    if not isinstance(person_id, str) or not person_id.strip():
        raise ValueError("person_id must be a non-empty string")
    ttl = settings.token_ttl_minutes if ttl_minutes is None else ttl_minutes
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
        raise ValueError("ttl_minutes must be a whole number of minutes, at least 1")

    algorithm = _algorithm(settings)
    key: Any = settings.jwt_secret if algorithm == "HS256" else _private_key(settings)

    issued = utc(now) if now is not None else datetime.now(timezone.utc)
    iat = int(issued.timestamp())
    payload = {
        "sub": person_id,
        "email": email,
        "role": role,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": iat,
        "nbf": iat,
        "exp": iat + int(timedelta(minutes=ttl).total_seconds()),
    }
    if screen:
        payload["scope"] = SCREEN_SCOPE
    return jwt.encode(payload, key, algorithm=algorithm)
