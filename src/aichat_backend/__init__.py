"""aichat backend: a gRPC-first AI chat service."""

__version__ = "0.1.0"
