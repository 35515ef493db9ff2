"""Prometheus metrics: the usual gRPC server series plus what a chat service adds.

Served on AICHAT_METRICS_ADDRESS at /metrics (off when unset). Each App owns its own
registry, so tests (and several servers in one process) never share counters.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from aichat_backend.engine.observer import TurnObserver

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics(TurnObserver):
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        grpc_labels = ["grpc_type", "grpc_service", "grpc_method"]
        self.started = Counter(
            "grpc_server_started_total", "RPCs started on the server.", grpc_labels, registry=r
        )
        self.handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, regardless of success or failure.",
            [*grpc_labels, "grpc_code"],
            registry=r,
        )
        self.handling = Histogram(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its status.",
            grpc_labels,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "aichat_time_to_first_token_seconds",
            "Time from a chat request to the first token of its answer.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens_total = Counter(
            "aichat_tokens_total",
            "Tokens reported by providers.",
            ["model", "direction"],
            registry=r,
        )
        self.active_streams = Gauge(
            "aichat_active_streams", "Chat streams open right now.", registry=r
        )
        self.tool_calls = Counter(
            "aichat_tool_calls_total",
            "Tool calls by outcome (ok, error, timeout).",
            ["server", "tool", "outcome"],
            registry=r,
        )
        self.tool_seconds = Histogram(
            "aichat_tool_call_seconds",
            "Duration of tool calls.",
            ["server", "tool"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.provider_errors = Counter(
            "aichat_provider_errors_total",
            "Model calls that failed, by provider and reason.",
            ["provider", "reason"],
            registry=r,
        )
        self.rate_limited = Counter(
            "aichat_rate_limited_total", "Requests refused by a limit.", ["reason"], registry=r
        )
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    # --- gRPC ----------------------------------------------------------------------

    def rpc_started(self, grpc_type: str, method: str) -> None:
        service, name = _split(method)
        self.started.labels(grpc_type, service, name).inc()

    def rpc_handled(self, grpc_type: str, method: str, code: str, seconds: float) -> None:
        service, name = _split(method)
        self.handled.labels(grpc_type, service, name, code).inc()
        self.handling.labels(grpc_type, service, name).observe(seconds)

    # --- TurnObserver --------------------------------------------------------------

    def first_token(self, model: str, seconds: float) -> None:
        self.ttft.labels(model).observe(seconds)

    def tokens(self, model: str, input_tokens: int, output_tokens: int) -> None:
        if input_tokens:
            self.tokens_total.labels(model, "input").inc(input_tokens)
        if output_tokens:
            self.tokens_total.labels(model, "output").inc(output_tokens)

    def provider_error(self, provider: str, reason: str) -> None:
        self.provider_errors.labels(provider, reason).inc()

    def tool_call(self, server: str, tool: str, outcome: str, seconds: float) -> None:
        self.tool_calls.labels(server, tool, outcome).inc()
        self.tool_seconds.labels(server, tool).observe(seconds)

    # --- exposition ----------------------------------------------------------------

    def serve(self, address: str) -> int:
        host, _, port = address.rpartition(":")
        server, thread = start_http_server(
            int(port), addr=host or "127.0.0.1", registry=self.registry
        )
        self._server, self._thread = server, thread
        return int(server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _split(method: str) -> tuple[str, str]:
    # "/aichat.v1.ChatService/StreamChat" → ("aichat.v1.ChatService", "StreamChat")
    service, _, name = method.lstrip("/").partition("/")
    return service, name
