"""Arm O: the backend's OpenAI-compatible API (``/v1/chat/completions``), called by the same
client as the peers (the openai SDK on aiohttp), so that LiteLLM and ours are two servers
speaking one protocol to one client.

Straight to the backend's OpenAI listener (as LiteLLM is called straight), naming the
user with the header Envoy would set from a token: what Envoy in front adds is arm C's
difference from B, measured in the same run. Requests name no session, as an SDK's do,
so every turn makes a session holding its conversation and is stored there.
"""

from __future__ import annotations

from aichat_devtools.bench_peer import PeerArm

USER = "bench-openai"


class DoorArm(PeerArm):
    kind = "door"

    def __init__(self, name: str, base_url: str) -> None:
        super().__init__(name, base_url, api_key="unused", headers={"x-user-id": USER})
