# aichat backend: the project's wheel (generated code and migrations inside) in a virtual
# environment, copied whole into the run stage: no wheels or build tools left behind.
# Built and run by tests/e2e/images/test_images.py (buildah, chroot isolation; BASE_IMAGE
# is then a Debian bookworm root made on the machine). docs/deployment.md says how to run it.
ARG BASE_IMAGE=python:3.11-slim

# --- build: dependencies first (a layer that changes only with pyproject.toml) ----------
FROM ${BASE_IMAGE} AS build
WORKDIR /src
RUN python3 -m venv /opt/aichat
COPY pyproject.toml README.md ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && /opt/aichat/bin/pip install --no-cache-dir --disable-pip-version-check -r requirements.txt
COPY src/aichat_backend ./src/aichat_backend
COPY gen ./gen
RUN /opt/aichat/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps . \
 && /opt/aichat/bin/pip uninstall --yes pip setuptools wheel

# --- run: non-root, gRPC health on the configured address -------------------------------
FROM ${BASE_IMAGE}
RUN useradd --system --uid 10001 --home-dir /srv/aichat --create-home aichat
COPY --from=build /opt/aichat /opt/aichat
ENV PATH=/opt/aichat/bin:$PATH \
    AICHAT_GRPC_ADDRESS=0.0.0.0:50051 \
    AICHAT_DATA_DIR=/srv/aichat/var \
    AICHAT_LOG_FORMAT=json
# Numeric, so that an orchestrator can check runAsNonRoot without reading /etc/passwd.
USER 10001
WORKDIR /srv/aichat
# 50051 must only be reachable by Envoy and trusted services: whoever reaches it names
# the user. Publish Envoy's port instead (the edge image, deploy/envoy/Dockerfile).
EXPOSE 50051
# `health` with no --address probes AICHAT_GRPC_ADDRESS (a wildcard host as 127.0.0.1):
# the address the server was given, whatever port that is.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["aichat-backend", "health", "--service", "aichat.readiness"]
ENTRYPOINT ["aichat-backend"]
CMD ["serve", "--env-only"]
