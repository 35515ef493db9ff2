# The two commands a newcomer needs: `make run` and `make test`. Everything else is detail.
# Paths inside .venv are recursively expanded (=): on a fresh clone they exist only once
# `install` has run, which make does before it expands a recipe that needs them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
PROTO_FILES := $(wildcard proto/aichat/v1/*.proto)
REASONS_PY := src/aichat_backend/reasons.py
WEB_INDEX := src/aichat_web/index.html
# Generated outside gen/ (committed too, compared by check-gen like gen/).
GENERATED := $(REASONS_PY) deploy/envoy/envoy.yaml deploy/compose/envoy.yaml \
  deploy/compose/web-config.json deploy/helm/aichat/files/envoy.yaml docs/configuration.md \
  $(WEB_INDEX)
GOOGLE_PROTOS = $(shell $(PY) -c "import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))" 2>/dev/null)
GRPC_TOOLS_PROTOS = $(shell $(PY) -c "import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), '_proto'))" 2>/dev/null)

# Bytecode is kept (__pycache__ is ignored by git and by the image builds). Where the
# environment sets PYTHONDONTWRITEBYTECODE, every one of the suite's ~250 Python processes
# (backends, tool servers, workers) compiled each module it imported from source: a
# backend's start took 3.1 s of CPU instead of 1.4 s.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install python-deps run test test-durations test-fast lint gen check-gen buf-lint envoy-validate clean bench bench-quick bench-peer node-deps

install: $(STAMP)

$(STAMP): pyproject.toml src/aichat_devtools/pyproject.toml tests/e2e/node/package.json src/aichat_web/package.json tests/e2e/web/package.json
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	# The node modules install beside the Python packages (npm waits on the network, uv on
	# the disk): the Node gRPC client of the e2e tests; the web page's modules (marked,
	# DOMPurify, highlight.js), which Envoy serves from node_modules; axe-core, which the
	# browser tests inject into the page to check its accessibility.
	@npm_log=$$(mktemp); \
	( set -e; for dir in tests/e2e/node src/aichat_web tests/e2e/web; do \
	    (cd $$dir && npm ci --no-audit --no-fund --loglevel=error); done ) >$$npm_log 2>&1 & npm_pid=$$!; \
	$(MAKE) --no-print-directory python-deps; python=$$?; \
	wait $$npm_pid; npm=$$?; cat $$npm_log; rm -f $$npm_log; \
	[ $$npm -eq 0 ] || echo "make install: npm ci failed (exit $$npm)"; \
	[ $$python -eq 0 ] && [ $$npm -eq 0 ]
	# The browser tests drive Debian's chromium (Playwright never downloads a browser).
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	# `make gen` writes the OpenAPI document with grpc-gateway's generator (Debian's binary).
	command -v protoc-gen-swagger >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-grpc-gateway; }
	# The image tests build with buildah (chroot isolation: no Docker daemon) on a base
	# debootstrap makes (tests/support/images.py).
	command -v buildah >/dev/null && command -v debootstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah debootstrap; }
	touch $(STAMP)

node-deps:
	cd tests/e2e/node && npm ci --no-audit --no-fund --loglevel=error

# uv installs the ~130 packages in ~7 s where pip took 45 s (a clean clone's `make test` has
# six minutes in all); pip stays in the venv (the bench installs its peers with it) and
# installs the same pins if uv cannot reach the index pip is configured for.
python-deps:
	$(BIN)/pip install -q uv
	$(BIN)/uv pip install -q --python $(PY) -e '.[dev]' -e src/aichat_devtools || { \
	  echo "uv could not install the packages; pip installs them"; \
	  $(BIN)/pip install -q -e '.[dev]' -e src/aichat_devtools; }

run: install
	$(BIN)/aichat-dev run

# Parallel test workers (pytest-xdist; tests/support/schedule.py says what shares a worker).
# The suite mostly waits on what it starts (servers, Envoy, chromium), so more workers than
# cores pay: 4 was the fastest count that stayed stable on the 2-core machine.
TEST_WORKERS ?= 4
PYTEST := $(BIN)/pytest -q -p no:cacheprovider -n $(TEST_WORKERS)

# Lint runs beside the suite (lint is CPU, the suite mostly waits); its output follows the
# suite's, and either failing fails the target.
test: install check-gen
	@lint_log=$$(mktemp); lint_pid=; \
	trap '[ -n "$$lint_pid" ] && kill $$lint_pid 2>/dev/null; rm -f $$lint_log' EXIT; \
	$(MAKE) --no-print-directory lint >$$lint_log 2>&1 & lint_pid=$$!; \
	$(PYTEST) --durations=15; tests=$$?; \
	wait $$lint_pid; lint=$$?; lint_pid=; \
	echo "--- make lint (ran beside the tests)"; cat $$lint_log; \
	[ $$lint -eq 0 ] || echo "make test: lint failed (exit $$lint)"; \
	[ $$tests -eq 0 ] || echo "make test: tests failed (exit $$tests)"; \
	[ $$lint -eq 0 ] && [ $$tests -eq 0 ]

# Measures every test again, for the scheduler's longest-first order (tests/durations.json).
test-durations: install
	$(PYTEST) --record-durations

test-fast: install
	$(BIN)/pytest -q -x -p no:cacheprovider tests/unit

# mypy's cache outside the checkout, as the image tests keep their base: a clean clone checks
# in ~3 s what takes ~26 s of CPU cold (files whose hash changed are checked again; a cache
# of another mypy version is not used).
MYPY_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/aichat/mypy

lint: install buf-lint envoy-validate
	$(BIN)/ruff check src tests
	$(BIN)/mypy --cache-dir $(MYPY_CACHE)
	$(BIN)/hadolint Dockerfile deploy/envoy/Dockerfile

# buf runs offline: the google/api and google/rpc protos come from the
# googleapis-common-protos wheel, staged next to ours in a temp tree.
buf-lint: install
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	cp -r proto/aichat $$tmp/; mkdir -p $$tmp/google; \
	cp -r $(GOOGLE_PROTOS)/google/api $(GOOGLE_PROTOS)/google/rpc $(GOOGLE_PROTOS)/google/type $$tmp/google/; \
	cp proto/buf.yaml $$tmp/; \
	cd $$tmp && $(CURDIR)/$(BIN)/buf lint --path aichat

# envoy.yaml as committed, checked by the real binary (it reads the dev JWKS it names).
envoy-validate: install
	@$(BIN)/aichat-dev token --user make-lint >/dev/null
	@$(BIN)/aichat-backend web-config --out var/web-config.json
	$(BIN)/envoy --mode validate -c envoy.yaml --log-level error

gen: install
	rm -rf gen/aichat gen/aichat.pb && mkdir -p gen/aichat/v1
	$(PY) -m grpc_tools.protoc -Iproto -I$(GOOGLE_PROTOS) -I$(GRPC_TOOLS_PROTOS) \
	  --plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy \
	  --plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc \
	  --python_out=gen --grpc_python_out=gen \
	  --mypy_out=gen --mypy_grpc_out=only_async:gen $(PROTO_FILES)
	# Envoy's transcoder needs every import, plus error_details for convert_grpc_status.
	$(PY) -m grpc_tools.protoc -Iproto -I$(GOOGLE_PROTOS) -I$(GRPC_TOOLS_PROTOS) \
	  --descriptor_set_out=gen/aichat.pb --include_imports \
	  $(PROTO_FILES) google/rpc/error_details.proto
	touch gen/aichat/__init__.py gen/aichat/v1/__init__.py gen/aichat/v1/py.typed
	# The ErrorInfo reasons as the server raises them (a StrEnum; the engine knows no protobuf).
	$(PY) -m aichat_devtools.gen_reasons proto/aichat/v1/error_reason.proto $(REASONS_PY)
	# The REST surface as OpenAPI 2.0: protoc-gen-swagger on the HTTP rules, then finished
	# for what Envoy serves (paths, SSE, errors, the token): see aichat_devtools/openapi_doc.py.
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	$(PY) -m grpc_tools.protoc -Iproto -I$(GOOGLE_PROTOS) -I$(GRPC_TOOLS_PROTOS) \
	  --plugin=protoc-gen-swagger=$(BIN)/aichat-openapi-plugin \
	  --swagger_out=allow_merge=true,merge_file_name=aichat,json_names_for_fields=true:$$tmp \
	  $(PROTO_FILES) && \
	$(PY) -m aichat_devtools.openapi_doc $$tmp/aichat.swagger.json gen/aichat.pb gen/aichat.openapi.json
	# The REST body fields each HTTP rule takes, for envoy.yaml's Lua filter.
	$(PY) -m aichat_devtools.rest_fields gen/aichat.pb gen/rest_fields.lua
	# envoy.yaml as the image, compose and the Helm chart run it; the settings reference.
	$(PY) -m aichat_devtools.deploy_configs
	$(PY) -m aichat_devtools.settings_doc docs/configuration.md
	# The web page's version (a hash of its files) in the URLs its index names.
	$(PY) -m aichat_devtools.web_version src/aichat_web >/dev/null

check-gen: install
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; cp -r gen $$tmp/before; \
	for f in $(GENERATED); do mkdir -p $$tmp/files/$$(dirname $$f); cp $$f $$tmp/files/$$f; done; \
	$(MAKE) -s gen >/dev/null; stale=""; \
	diff -r -x __pycache__ $$tmp/before gen >/dev/null || stale="gen/"; \
	for f in $(GENERATED); do diff -q $$tmp/files/$$f $$f >/dev/null || stale="$$stale $$f"; done; \
	if [ -n "$$stale" ]; then \
	  echo "stale: $$stale: run 'make gen' and commit the result"; \
	  diff -r -x __pycache__ $$tmp/before gen | head -20; \
	  for f in $(GENERATED); do diff $$tmp/files/$$f $$f | head -10; done; \
	  rm -rf gen; cp -r $$tmp/before gen; \
	  for f in $(GENERATED); do cp $$tmp/files/$$f $$f; done; exit 1; fi

bench: install
	$(PY) -m aichat_devtools.bench --full

bench-quick: install
	$(PY) -m aichat_devtools.bench --quick

# The full run with the LiteLLM proxy beside ours (installed into var/bench/peers/ on first use).
bench-peer: install
	$(PY) -m aichat_devtools.bench --full --peer litellm

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
