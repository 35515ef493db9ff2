"""Whether this run is CI's (`.ci/run` sets CI=true): there a missing service fails the
tests that need it instead of skipping them."""

from __future__ import annotations

import os

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
