"""End to end through the real Envoy: REST/JSON, SSE, identity (JWT and ext_authz)."""
