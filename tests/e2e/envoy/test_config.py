"""envoy.yaml, its ext_authz variant and the dev tooling around them, checked without traffic.

`envoy --mode validate` runs the real binary's full configuration checks (every typed
config, the descriptor set, the JWKS file) without opening a port.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml

from aichat_backend.config import Settings
from aichat_devtools import dev_envoy
from aichat_devtools.dev_token import (
    AUDIENCE,
    ISSUER,
    DevKeys,
    ensure_keys,
    make_token,
    parse_ttl,
)
from tests.e2e.envoy.helpers import render_ext_authz
from tests.support.envoy import render_for_test, validate
from tests.support.tools import binary, run

pytestmark = pytest.mark.timeout(30)

SOURCE: dict[str, Any] = yaml.safe_load(dev_envoy.CONFIG.read_text())


def manager(config: dict[str, Any]) -> dict[str, Any]:
    typed: dict[str, Any] = config["static_resources"]["listeners"][0]["filter_chains"][0][
        "filters"
    ][0]["typed_config"]
    return typed


def http_filter(config: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(f for f in manager(config)["http_filters"] if f["name"] == name)
    return found["typed_config"]  # type: ignore[no-any-return]


def seconds(duration: str) -> float:
    assert duration.endswith("s"), duration
    return float(duration[:-1])


def port_values(node: Any) -> list[int]:
    if isinstance(node, dict):
        own = [node["port_value"]] if "port_value" in node else []
        return own + [p for v in node.values() for p in port_values(v)]
    if isinstance(node, list):
        return [p for v in node for p in port_values(v)]
    return []


async def test_envoy_yaml_validates(dev_keys: DevKeys, tmp_path: Path) -> None:
    config = render_for_test(backend_port=50051, jwks_path=dev_keys.jwks_path)
    code, out = await validate(config, tmp_path)
    assert code == 0, out
    assert "Deprecated" not in out, out


async def test_ext_authz_variant_validates(tmp_path: Path) -> None:
    code, out = await validate(render_ext_authz(backend_port=50051, auth_port=3002), tmp_path)
    assert code == 0, out
    assert "Deprecated" not in out, out


def test_the_three_ports_are_literal_and_rendered_away(dev_keys: DevKeys) -> None:
    assert sorted(port_values(SOURCE)) == [8080, 9901, 50051]
    config = dev_envoy.render(
        ports={8080: 18080, 9901: 19901, 50051: 15051},
        paths={"var/dev-jwks.json": dev_keys.jwks_path},
    )
    assert sorted(port_values(config)) == [15051, 18080, 19901]
    transcoder = http_filter(config, "envoy.filters.http.grpc_json_transcoder")
    assert Path(transcoder["proto_descriptor"]) == dev_envoy.ROOT / "gen" / "aichat.pb"
    provider = http_filter(config, "envoy.filters.http.jwt_authn")["providers"]["aichat"]
    assert provider["local_jwks"]["filename"] == str(dev_keys.jwks_path)


def test_filter_order_strips_identity_before_anything_sets_it() -> None:
    names = [f["name"].removeprefix("envoy.filters.http.") for f in manager(SOURCE)["http_filters"]]
    assert names == [
        "header_mutation",
        "health_check",
        "cors",
        "jwt_authn",
        "buffer",
        "lua",  # unknown REST body fields refused (after buffer: it holds the whole body)
        "grpc_json_transcoder",
        "router",
    ]
    removed = {
        m["remove"]
        for m in http_filter(SOURCE, "envoy.filters.http.header_mutation")["mutations"][
            "request_mutations"
        ]
    }
    assert removed == {"x-user-id", "x-email-user", "x-aichat-role", "x-api-key-id"}
    settings = Settings()
    assert {settings.auth_header, settings.admin_role_header, settings.api_key_header} <= removed
    provider = http_filter(SOURCE, "envoy.filters.http.jwt_authn")["providers"]["aichat"]
    assert provider["forward"] is False
    assert provider["claim_to_headers"] == [
        {"header_name": "x-user-id", "claim_name": "sub"},
        {"header_name": "x-aichat-role", "claim_name": "aichat_role"},
        {"header_name": "x-api-key-id", "claim_name": "api_key_id"},
    ]
    assert (provider["issuer"], provider["audiences"]) == (ISSUER, [AUDIENCE])


def test_timeouts_fit_streams() -> None:
    heartbeat = Settings().heartbeat_seconds
    assert seconds(manager(SOURCE)["stream_idle_timeout"]) > 3 * heartbeat
    routes = {
        r["name"]: r["route"]
        for r in manager(SOURCE)["route_config"]["virtual_hosts"][0]["routes"]
        if "route" in r  # not the direct responses
    }
    assert routes["stream_chat"]["timeout"] == "0s"
    assert routes["resolve_tool_calls"]["timeout"] == "0s"


def test_body_limit_fits_an_attachment_and_the_grpc_message_limit() -> None:
    settings = Settings()
    transcoder = http_filter(SOURCE, "envoy.filters.http.grpc_json_transcoder")
    limit = transcoder["max_request_body_size"]
    base64_attachment = -(-settings.max_attachment_bytes // 3) * 4
    assert base64_attachment < limit <= settings.max_message_bytes


def test_cors_origins_come_from_the_seeds_variable() -> None:
    assert dev_envoy.cors_origins_from(None) is None
    assert dev_envoy.cors_origins_from(" ") is None
    origins = dev_envoy.cors_origins_from("https://pmm.example, http://localhost:3000,")
    assert origins == ["https://pmm.example", "http://localhost:3000"]
    config = dev_envoy.render(cors_origins=origins)
    policy = manager(config)["route_config"]["virtual_hosts"][0]["typed_per_filter_config"][
        "envoy.filters.http.cors"
    ]
    assert policy["allow_origin_string_match"] == [{"exact": o} for o in origins]


async def test_dev_token_command(tmp_path: Path) -> None:
    cli = binary("aichat-dev")
    keys_dir = tmp_path / "var"
    code, out, err = await run(cli, "token", "--user", "alice", "--dir", str(keys_dir))
    assert code == 0, err
    assert "created development keys" in err
    token = out.strip()
    assert token.count(".") == 2 and "\n" not in token  # stdout is the token alone
    keys = DevKeys(keys_dir)
    assert {p.name for p in keys_dir.iterdir()} == {
        "dev-signing-key",
        "dev-hmac-key",
        "dev-jwks.json",
    }
    assert all(p.stat().st_mode & 0o077 == 0 for p in keys_dir.iterdir())
    jwks = jwt.PyJWKSet.from_json(keys.jwks_path.read_text())
    claims = jwt.decode(
        token, jwks[jwt.get_unverified_header(token)["kid"]], audience=AUDIENCE, issuer=ISSUER
    )
    assert claims["sub"] == "alice" and 3590 <= claims["exp"] - claims["iat"] <= 3600

    jwks_before = keys.jwks_path.read_text()
    code, out, err = await run(
        cli, "dev-token", "--user", "bob", "--ttl", "15m", "--alg", "HS256", "--dir", str(keys_dir)
    )
    assert code == 0 and "created" not in err  # the keys are made once
    assert keys.jwks_path.read_text() == jwks_before
    hs_token = out.strip()
    assert jwt.get_unverified_header(hs_token)["alg"] == "HS256"
    claims = jwt.decode(
        hs_token, jwks[jwt.get_unverified_header(hs_token)["kid"]], audience=AUDIENCE
    )
    assert claims["sub"] == "bob" and claims["exp"] - claims["iat"] == 900

    code, _out, err = await run(cli, "token", "--user", "x", "--ttl", "soon")
    assert code == 2 and "ttl" in err


def test_ttl_and_keys_helpers(tmp_path: Path) -> None:
    assert [parse_ttl(t) for t in ("90", "90s", "15m", "1h", "2d")] == [
        90,
        90,
        900,
        3600,
        172800,
    ]
    for bad in ("", "0", "-1h", "1w", "h"):
        with pytest.raises(ValueError):
            parse_ttl(bad)
    keys, created = ensure_keys(tmp_path)
    assert created and ensure_keys(tmp_path) == (keys, False)
    keys.jwks_path.unlink()  # regenerated from the keys that are there
    assert ensure_keys(tmp_path)[1] and keys.jwks_path.exists()
    expired = make_token(keys, "carol", now=time.time() - 7200)
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(
            expired, keys.rsa_private_key().public_key(), algorithms=["RS256"], audience=AUDIENCE
        )


def test_make_run_banner_says_how_to_get_a_token_and_stream() -> None:
    text = dev_envoy.banner()
    assert "aichat-dev token --user" in text
    assert "curl -N" in text and ":streamChat" in text and "/v1/chat/sessions" in text
