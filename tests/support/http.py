"""One TLS context for every HTTP client the tests make.

An httpx client builds its own otherwise, loading the system's CA bundle again: ~25 ms
of CPU per client, and the suite makes thousands (Envoy's readiness polls alone make one
per try). The same trust as a client's default: the system's CAs, or SSL_CERT_FILE.
"""

from __future__ import annotations

import ssl

TLS = ssl.create_default_context()
