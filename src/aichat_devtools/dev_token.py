"""Development identity: a local signing key, the JWKS file Envoy reads, tokens for anyone.

``aichat-dev token --user alice`` creates, once, under ``var/`` (gitignored, never
committed):

- ``dev-signing-key``: an RSA private key (PEM) that signs RS256 tokens;
- ``dev-hmac-key``: a random secret that signs HS256 tokens;
- ``dev-jwks.json``: the JWKS that ``envoy.yaml`` verifies tokens with. It holds the RSA
  public key and, because HS256 is symmetric, the HMAC secret too: this file is a secret
  for as long as the HS256 key is in it.

then prints a token for the user on stdout (and nothing else there, so
``TOKEN=$(aichat-dev token --user alice)`` works). Envoy's jwt_authn checks the
issuer and audience below and copies ``sub`` into ``x-user-id``.

These keys exist for ``make run`` and the tests. A deployment points jwt_authn at its
identity provider's JWKS (``remote_jwks``) and issuer instead.
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: `aichat-backend serve` should not pay for them
    from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "aichat-dev"
AUDIENCE = "aichat"
RS256_KID = "aichat-dev-rs256"
HS256_KID = "aichat-dev-hs256"
ALGORITHMS = ("RS256", "HS256")
DEFAULT_DIR = Path("var")
DEFAULT_TTL_SECONDS = 3600
# envoy.yaml copies this claim into x-aichat-role; "admin" opens the operator API.
ADMIN_CLAIM = "aichat_role"
ADMIN_ROLE = "admin"

_TTL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64url(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _write_private(path: Path, data: bytes) -> None:
    """Create a file only its owner can read, atomically (never a half-written key)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    tmp.replace(path)


@dataclass(frozen=True)
class DevKeys:
    """The development key material in one directory."""

    directory: Path

    @property
    def signing_key_path(self) -> Path:
        return self.directory / "dev-signing-key"

    @property
    def hmac_key_path(self) -> Path:
        return self.directory / "dev-hmac-key"

    @property
    def jwks_path(self) -> Path:
        return self.directory / "dev-jwks.json"

    def rsa_private_key(self) -> rsa.RSAPrivateKey:
        pem = self.signing_key_path.read_bytes()
        return _loaded_rsa_key(pem, str(self.signing_key_path))

    def hmac_secret(self) -> bytes:
        return base64.urlsafe_b64decode(self.hmac_key_path.read_text().strip() + "==")

    def jwks(self) -> dict[str, Any]:
        public = self.rsa_private_key().public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "kid": RS256_KID,
                    "alg": "RS256",
                    "use": "sig",
                    "n": _int_b64url(public.n),
                    "e": _int_b64url(public.e),
                },
                {
                    "kty": "oct",
                    "kid": HS256_KID,
                    "alg": "HS256",
                    "use": "sig",
                    "k": _b64url(self.hmac_secret()),
                },
            ]
        }


def ensure_keys(directory: Path = DEFAULT_DIR) -> tuple[DevKeys, bool]:
    """The keys in ``directory``, created if missing; True when anything was created."""
    keys = DevKeys(directory)
    directory.mkdir(parents=True, exist_ok=True)
    created = False
    if not keys.signing_key_path.exists():
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_private(keys.signing_key_path, pem)
        created = True
    if not keys.hmac_key_path.exists():
        _write_private(keys.hmac_key_path, _b64url(secrets.token_bytes(32)).encode() + b"\n")
        created = True
    if created or not keys.jwks_path.exists():
        _write_private(keys.jwks_path, json.dumps(keys.jwks(), indent=2).encode() + b"\n")
        created = True
    return keys, created


def make_token(
    keys: DevKeys,
    user: str,
    *,
    ttl_seconds: float = DEFAULT_TTL_SECONDS,
    algorithm: str = "RS256",
    issuer: str = ISSUER,
    audience: str | list[str] = AUDIENCE,
    now: float | None = None,
    extra_claims: dict[str, Any] | None = None,
) -> str:
    """A signed JWT naming ``user`` in ``sub``; arguments other than the user are for tests."""
    import jwt

    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": user,
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(ttl_seconds),
    }
    claims.update(extra_claims or {})
    if algorithm == "RS256":
        return jwt.encode(
            claims, keys.rsa_private_key(), algorithm="RS256", headers={"kid": RS256_KID}
        )
    if algorithm == "HS256":
        return jwt.encode(claims, keys.hmac_secret(), algorithm="HS256", headers={"kid": HS256_KID})
    raise ValueError(f"unsupported algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}")


def parse_ttl(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``2d`` → seconds (positive)."""
    match = _TTL.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"invalid ttl {text!r}: use e.g. 90s, 15m, 1h or 2d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", required=True, help="the user id the token names (sub)")
    parser.add_argument("--ttl", default="1h", help="lifetime, e.g. 90s, 15m, 1h, 2d (1h)")
    parser.add_argument("--alg", choices=ALGORITHMS, default="RS256", help="signature (RS256)")
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_DIR, help="where the dev keys live (./var)"
    )
    parser.add_argument(
        "--admin", action="store_true", help=f"add the operator API's role ({ADMIN_CLAIM})"
    )


def run(args: argparse.Namespace) -> int:
    user = args.user.strip()
    if not user or not user.isprintable():
        print("aichat-dev token: --user must be printable and non-empty", file=sys.stderr)
        return 2
    try:
        ttl = parse_ttl(args.ttl)
    except ValueError as exc:
        print(f"aichat-dev token: {exc}", file=sys.stderr)
        return 2
    keys, created = ensure_keys(args.dir)
    if created:
        print(
            f"created development keys in {keys.directory}/ ({keys.jwks_path.name} is what "
            "envoy.yaml reads; restart a running Envoy to pick up new keys)",
            file=sys.stderr,
        )
    claims = {ADMIN_CLAIM: ADMIN_ROLE} if args.admin else None
    print(make_token(keys, user, ttl_seconds=ttl, algorithm=args.alg, extra_claims=claims))
    return 0


@functools.lru_cache(maxsize=8)
def _loaded_rsa_key(pem: bytes, path: str) -> rsa.RSAPrivateKey:
    """The key of these PEM bytes, loaded once: loading checks the key (~25 ms of CPU),
    and the test suite signs thousands of tokens with the same one."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = serialization.load_pem_private_key(pem, None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path} is not an RSA private key")
    return key
