# aichat backend. Mirrors `make install` (the wheel of this project, generated code and
# migrations inside). Unbuilt on our machines (no Docker engine there): keep it simple.

# --- build: a wheel of the project, its dependencies as wheels -------------------------
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY gen ./gen
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- run: non-root, gRPC health check -----------------------------------------------
FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /srv/aichat --create-home aichat
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER aichat
WORKDIR /srv/aichat
ENV AICHAT_GRPC_ADDRESS=0.0.0.0:50051 \
    AICHAT_DATA_DIR=/srv/aichat/var \
    AICHAT_LOG_FORMAT=json
# 50051 must only be reachable by Envoy and trusted services: whoever reaches it names
# the user. Publish Envoy's port instead.
EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["aichat-backend", "health", "--address", "127.0.0.1:50051"]
CMD ["aichat-backend", "serve", "--env-only"]
