"""The OpenAI-compatible API: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Every OpenAI SDK talks to aichat unchanged through Envoy (the token is the SDK's api_key).
The requests become the same chat turns StreamChat runs (``ChatServicer.run_turn``: the
same engine, limits, metrics, logs and stored turns); this package only reads OpenAI's
request format and writes its response, stream and error formats:

- ``params``: the request's top-level parameters, each honoured or refused;
- ``messages``: its messages as a turn (a session's next message, or a whole conversation);
- ``wire``: ``chat.completion`` / ``chat.completion.chunk`` bodies and SSE framing;
- ``errors``: domain errors as OpenAI's error JSON and the HTTP codes its SDKs map;
- ``completions``: a request's checks, its session and its turn; ``completion_turn``: the
  turn's events as the response; ``models``: the catalogue as OpenAI lists it;
- ``http_server``: the small aiohttp listener Envoy routes the two paths to.
"""
