# Every target creates or refreshes the virtualenv first, so a fresh clone needs
# nothing but Python 3.11+, make and the package registries.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROTO_FILES := $(shell find proto -name '*.proto' | sort)
GATEWAY_PROTO_FILES := $(filter proto/gateway/%,$(PROTO_FILES))
PRODUCT_PROTO_FILES := $(filter-out proto/gateway/%,$(PROTO_FILES))
GOOGLE_PROTOS := google/api/annotations.proto google/api/http.proto google/api/httpbody.proto \
                 google/api/field_behavior.proto google/rpc/status.proto google/rpc/code.proto \
                 google/rpc/error_details.proto

.DEFAULT_GOAL := help
.PHONY: help serve test check lint generate check-generate breaking bench wrk samples clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP) ## start the product on embedded SQLite (./var/), gRPC :50051, HTTP :5099, dev data
	$(BIN)/orchestrator serve --dev

test: $(STAMP) ## run the whole test suite (SQLite file and PostgreSQL on 127.0.0.1:5432)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP) ## ruff format --check, ruff check, mypy, import contracts, buf lint, buf format diff
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code

generate: $(STAMP) ## regenerate gen/, gateway/v1/ and third_party/proto from proto/ (reproducible)
	rm -rf gen/orchestrator third_party/proto/google
	rm -f gateway/v1/*_pb2.py gateway/v1/*_pb2.pyi
	for f in $(GOOGLE_PROTOS); do \
	  mkdir -p third_party/proto/$$(dirname $$f); \
	  cp $$($(BIN)/python -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))')/$$f third_party/proto/$$f; \
	done
	mkdir -p gen/orchestrator
	# The gateway's own options are Python of the hand-written `gateway` package
	# (gateway/v1/, generated code only), importable without anything of the product.
	$(BIN)/python -m grpc_tools.protoc -Iproto -Ithird_party/proto \
	  --python_out=. --plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy --mypy_out=. \
	  $(patsubst proto/%,%,$(GATEWAY_PROTO_FILES))
	$(BIN)/python -m grpc_tools.protoc -Iproto -Ithird_party/proto \
	  --python_out=gen --grpc_python_out=gen \
	  --plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy --mypy_out=gen \
	  --plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc --mypy_grpc_out=gen \
	  $(patsubst proto/%,%,$(PRODUCT_PROTO_FILES))
	# One descriptor set of every API, with comments (the OpenAPI descriptions).
	$(BIN)/python -m grpc_tools.protoc -Iproto -Ithird_party/proto \
	  --include_imports --include_source_info --descriptor_set_out=gen/orchestrator/descriptor_set.binpb \
	  $(patsubst proto/%,%,$(PROTO_FILES))
	find gen/orchestrator -type d -exec sh -c 'touch "$$0/__init__.py"' {} \;
	touch gen/orchestrator/py.typed

check-generate: generate ## fail when gen/, gateway/v1/ or third_party/ differ from what proto/ generates
	git add -N gen third_party gateway/v1
	git diff --exit-code --stat -- gen third_party gateway/v1

breaking: $(STAMP) ## buf breaking against main (skipped when there is no main to compare with)
	@if git rev-parse --verify --quiet main >/dev/null && git ls-tree -r --name-only main -- proto | grep -q .; then \
	  $(BIN)/buf breaking --against '.git#branch=main'; \
	else echo "buf breaking: no proto/ on main yet, nothing to compare"; fi

check: lint check-generate breaking ## everything CI checks before the tests

# Each bench runs with its defaults: bench/jobs.py's full run (1,000,000 rows for the
# page ratio, SQLite and PostgreSQL at ORCHESTRATOR_BENCH_PG_URL) takes about three
# minutes on the 2-core box; `bench/jobs.py --quick` is the same shape in about 80 s.
# bench/orchestra.py's full run takes about five minutes; `--quick` about 60 s.
bench: $(STAMP) wrk ## run the benchmarks in bench/ (installs wrk first when missing)
	for b in bench/[!_]*.py; do $(BIN)/python $$b || exit 1; done

# bench/transcoding.py drives HTTP load with wrk in its own process. As root with apt
# the Debian package is installed; otherwise the one command that does is printed.
wrk: ## install wrk, the HTTP load generator of bench/transcoding.py (Debian package)
	@if command -v wrk >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "wrk is missing: apt-get install -y wrk"; \
	  apt-get install -y --no-install-recommends wrk \
	    || { apt-get update && apt-get install -y --no-install-recommends wrk; }; \
	else \
	  echo "make bench needs wrk (HTTP load for bench/transcoding.py); install it with:" >&2; \
	  echo "  sudo apt-get install -y wrk" >&2; \
	  exit 1; \
	fi

samples: $(STAMP) ## record docs/api/gateway/samples/ from a running server (scripts/record_samples.py)
	$(BIN)/python scripts/record_samples.py

clean: ## remove the virtualenv, caches and the local database
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
