"""A small auth server for the ext_authz configuration, in the PMM way (seed 000).

Envoy shows it each request's credentials (path prefixed with /auth_request); it answers
200 with ``x-user-id`` naming the signed-in user, or 401/403. Credentials are
``Authorization: Bearer <word>``:

- ``session-<user>``: signed in as <user> → 200, ``x-user-id: <user>``;
- ``admin-<user>``: the same, plus ``x-aichat-role: admin`` (the operator API's role);
- ``anonymous``: let through without naming anyone → 200 and no ``x-user-id`` (an auth
  server that answers so is exactly when a client's own x-user-id would slip through
  ext_authz, were it not stripped first);
- ``forbidden``: signed in but not allowed → 403;
- anything else, or none → 401.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field


@dataclass
class Check:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class AuthServer:
    host: str = "127.0.0.1"
    port: int = 0
    checks: list[Check] = field(default_factory=list)
    _server: asyncio.Server | None = None

    async def __aenter__(self) -> AuthServer:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def decide(self, headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
        credential = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if credential.startswith("session-") and len(credential) > len("session-"):
            return 200, [("x-user-id", credential.removeprefix("session-"))], b""
        if credential.startswith("admin-") and len(credential) > len("admin-"):
            user = credential.removeprefix("admin-")
            return 200, [("x-user-id", user), ("x-aichat-role", "admin")], b""
        if credential == "anonymous":
            return 200, [], b""
        if credential == "forbidden":
            return 403, _json_type(), _error(7, "not allowed to use the chat")
        return 401, [*_json_type(), ("www-authenticate", "Bearer")], _error(16, "sign in first")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers = {}
                for line in lines:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                if length:
                    await reader.readexactly(length)
                self.checks.append(Check(method, path, headers))
                status, extra, body = self.decide(headers)
                reply = [f"HTTP/1.1 {status} {'OK' if status == 200 else 'Denied'}"]
                reply += [f"{k}: {v}" for k, v in extra]
                reply.append(f"content-length: {len(body)}")
                writer.write(("\r\n".join(reply) + "\r\n\r\n").encode() + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _json_type() -> list[tuple[str, str]]:
    return [("content-type", "application/json")]


def _error(code: int, message: str) -> bytes:
    return json.dumps({"code": code, "message": message}).encode()
