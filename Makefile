# multiplane developer entry points. Every target does its own set-up on a fresh Debian 12 (as root).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# Debian's interpreter: the runtime tree carries it (and its bytecode must match the venv's).
BASE_PYTHON ?= /usr/bin/python3
APT_PACKAGES := containernetworking-plugins iproute2 busybox-static python3-venv python3-dev make gcc libc6-dev golang-go golang-github-appc-cni-dev openssl procps containerd runc podman etcd-server etcd-client

.PHONY: help setup test test-unit demo clean binary

help:
	@echo "make demo   - the seed scenario with dist/multiplane: a node, a LAN host, two pods with eth0 + net1; then three nodes sharing its range through cluster-wide IPAM (etcd)"
	@echo "make test   - install what the tests need, build dist/multiplane, then run the whole suite (as root)"
	@echo "make binary - build dist/multiplane (static launcher + the runtime tree: interpreter, libraries, multiplane)"
	@echo "make fuzz   - the fuzz suite (tests/fuzz) with MP_FUZZ_EXAMPLES=$(MP_FUZZ_EXAMPLES) random examples per test (as root)"
	@echo "make soak   - MP_SOAK_CYCLES=$(MP_SOAK_CYCLES) pod ADD/DEL cycles through the node daemon, its RSS reported (as root)"
	@echo "make torture - SIGKILL the meta-plugin MP_TORTURE_KILLS=$(MP_TORTURE_KILLS) times during ADD/DEL (as root)"

$(VENV)/.deps-stamp: pyproject.toml
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	test -x $(BASE_PYTHON) || { echo "error: $(BASE_PYTHON) is missing" >&2; exit 1; }
	test -x $(PY) || $(BASE_PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,build]'
	touch $@

setup: $(VENV)/.deps-stamp

dist/multiplane: $(VENV)/.deps-stamp $(shell find src -name '*.py') packaging/build_runtime.py packaging/runtime/launcher.c
	$(PY) packaging/build_runtime.py

binary: dist/multiplane

test: binary
	@[ "$$(id -u)" = 0 ] || { echo "error: make test needs root (network namespaces, reference plugins)" >&2; exit 1; }
	$(VENV)/bin/ruff check src tests packaging
	$(PY) -m pytest tests

test-unit: setup
	$(PY) -m pytest tests/unit

demo: binary
	$(PY) packaging/demo/demo_seed.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .hypothesis

.PHONY: lint
lint: setup
	$(VENV)/bin/ruff format --check src tests packaging
	$(VENV)/bin/ruff check src tests packaging

# Long runs of two suites `make test` runs briefly: hostile input (tests/fuzz) and kills (tests/integration/test_kill.py).
MP_FUZZ_EXAMPLES ?= 10000
MP_TORTURE_KILLS ?= 400
MP_SOAK_CYCLES ?= 1000

.PHONY: fuzz torture soak
fuzz: binary
	@[ "$$(id -u)" = 0 ] || { echo "error: make fuzz needs root (network namespaces)" >&2; exit 1; }
	MP_FUZZ_EXAMPLES=$(MP_FUZZ_EXAMPLES) $(PY) -m pytest tests/fuzz -p no:cacheprovider

torture: setup
	@[ "$$(id -u)" = 0 ] || { echo "error: make torture needs root (network namespaces)" >&2; exit 1; }
	MP_TORTURE_KILLS=$(MP_TORTURE_KILLS) $(PY) -m pytest tests/integration/test_kill.py -p no:cacheprovider

soak: setup
	@[ "$$(id -u)" = 0 ] || { echo "error: make soak needs root (network namespaces)" >&2; exit 1; }
	mkdir -p build && MP_SOAK_CYCLES=$(MP_SOAK_CYCLES) MP_SOAK_REPORT=build/soak.txt $(PY) -m pytest tests/integration/test_daemon_load.py -k cycles -s -p no:cacheprovider

.PHONY: bench
bench: binary
	$(PY) tests/bench/bench.py
