# ferroloop — `make demo` and `make test` do everything on a fresh machine:
# create .venv, install build/test dependencies, build the extension (release).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DEPS   := $(VENV)/.deps-installed
export VIRTUAL_ENV := $(abspath $(VENV))

.PHONY: all build demo test test-rust test-py test-cpython test-virtual test-matrix bench-matrix matrix-tree wheels check-wheels bench bench-net bench-net-selftest bench-proc bench-tls bench-report bench-clients client-servers test-clients bench-scale-timers bench-scale-conns lint fmt clean build-faults test-faults soak memcheck fuzz-diff fuzz-engine

all: build

$(PY):
	$(PYTHON) -m venv $(VENV)

$(DEPS): requirements-dev.txt | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

# The editable install keeps python/ferroloop live and puts the release-built
# extension next to it.
build: $(DEPS)
	$(VENV)/bin/maturin develop --release -q

demo: build
	$(PY) demo/main.py

test: build test-rust test-cpython test-py

test-rust:
	cargo test -p ferroloop-engine -q

test-cpython: build
	$(PY) tests/cpython/run.py

# CPython's test_asyncio modules that do not measure real time (tasks, locks,
# queues, timeouts, taskgroups, waitfor) on the virtual-time test loop
# (ferroloop.testing); see docs/virtual-time.md.
test-virtual: build
	$(PY) tests/cpython/run.py --loop virtual

# Last, so `make test` ends with pytest's summary line.
test-py: build
	$(PY) -m pytest tests

# Python 3.13, 3.14 and 3.15 from Debian sid in a debootstrap tree (.matrix/,
# git-ignored; needs root): each version's venv, release build, its own
# test_asyncio and the pytest suite. MATRIX_VERSIONS picks versions.
MATRIX_VERSIONS ?= 3.13 3.14 3.15
MATRIX := tools/matrix/matrix.sh

matrix-tree:
	$(MATRIX) tree

test-matrix: matrix-tree
	@rc=0; for v in $(MATRIX_VERSIONS); do \
	    echo "=== CPython $$v"; $(MATRIX) test $$v || rc=1; \
	done; $(MATRIX) summary $(MATRIX_VERSIONS); exit $$rc

# The micro-benchmarks on each version of the matrix (uvloop and rloop where
# they install there).
bench-matrix: matrix-tree
	@for v in $(MATRIX_VERSIONS); do \
	    echo "=== CPython $$v"; $(MATRIX) bench $$v || exit 1; \
	done

# Release artifacts in dist/: a manylinux2014 wheel for each of CPython
# 3.11-3.15 (all built here with maturin + zig) and an sdist, audited and
# inspected (tools/wheels/build.sh). check-wheels installs each wheel into a
# fresh virtualenv of every interpreter there is (3.11 here, 3.13-3.15 in the
# matrix tree) and runs the pytest suite against it, and builds the sdist with
# pip (tools/wheels/check.sh).
wheels:
	tools/wheels/build.sh

check-wheels: matrix-tree
	tools/wheels/check.sh

# Each suite also writes its JSON into benchmarks/results/ (git-ignored), which
# bench-report turns into the charts of docs/bench/. BENCH_ARGS is passed to
# every suite (e.g. BENCH_ARGS=--quick).
BENCH_RESULTS := benchmarks/results
BENCH_ARGS ?=

bench: build
	@mkdir -p $(BENCH_RESULTS)
	$(PY) benchmarks/run.py --json $(BENCH_RESULTS)/micro.json $(BENCH_ARGS)

# Builds the load generator and the ceiling echo server (same crate).
LOADGEN := cargo build --release -q --manifest-path benchmarks/loadgen/Cargo.toml

bench-net: build
	$(LOADGEN)
	@mkdir -p $(BENCH_RESULTS)
	$(PY) benchmarks/net.py --json $(BENCH_RESULTS)/net.json $(BENCH_ARGS)

bench-proc: build
	@mkdir -p $(BENCH_RESULTS)
	$(PY) benchmarks/proc_udp.py --json $(BENCH_RESULTS)/proc.json $(BENCH_ARGS)

bench-tls: build
	@mkdir -p $(BENCH_RESULTS)
	$(PY) benchmarks/tls.py --json $(BENCH_RESULTS)/tls.json $(BENCH_ARGS)

# PNG charts of the latest results (one per family, plus headline.png) into
# docs/bench/; matplotlib is a dev-only dependency. BENCH_NOTE adds a line to
# every chart's subtitle (e.g. that the machine was busy).
BENCH_NOTE ?=
bench-report: $(DEPS)
	$(PY) benchmarks/charts.py --results $(BENCH_RESULTS) --out docs/bench \
	    $(if $(BENCH_NOTE),--note "$(BENCH_NOTE)")

# Real clients (asyncpg + PostgreSQL, redis-py + Redis): installs Debian's
# servers if absent (root, apt-get) and the client libraries into .venv; the
# script starts both servers on 127.0.0.1 in temp dirs and stops them by pid.
CLIENT_DEPS := $(VENV)/.clients-installed

$(CLIENT_DEPS): benchmarks/requirements-clients.txt $(DEPS)
	$(PY) -m pip install -q -r benchmarks/requirements-clients.txt
	touch $@

# Debian's PostgreSQL and Redis server binaries (nothing is started here).
client-servers:
	@if [ ! -x /usr/bin/redis-server ] || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then \
	    echo "installing postgresql and redis-server (apt-get)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get -y -q install postgresql redis-server >/dev/null || \
	    { apt-get -q update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get -y -q install postgresql redis-server >/dev/null; }; \
	fi

bench-clients: build $(CLIENT_DEPS) client-servers
	$(PY) benchmarks/clients.py $(BENCH_ARGS)

# asyncpg and redis-py on ferroloop against the real servers
# (tests/test_real_clients.py), which must all be there: a CI stage.
test-clients: build $(CLIENT_DEPS) client-servers
	FERROLOOP_REQUIRE_CLIENTS=1 $(PY) -m pytest tests/test_real_clients.py -rs

bench-scale-timers: build
	$(PY) benchmarks/scale_timers.py

# RSS per idle connection (10,000) and request cost at 10/100/1,000 active
# connections, every loop in a fresh server process (benchmarks/scale_conns.py).
bench-scale-conns: build
	$(LOADGEN)
	$(PY) benchmarks/scale_conns.py

bench-net-selftest: build
	$(LOADGEN)
	$(PY) benchmarks/net_selftest.py

# -- robustness (docs/robustness.md) ---------------------------------------
# A second build with syscall fault injection compiled in (cargo feature
# `faults`), in its own target dir, unpacked into build/faults: put it first
# on PYTHONPATH to use it. `make build` and the wheels never have it.
FAULTS_DIR := build/faults
FAULTS_TARGET := target/faults

build-faults: $(DEPS)
	rm -rf $(FAULTS_TARGET)/wheels $(FAULTS_DIR)
	CARGO_TARGET_DIR=$(FAULTS_TARGET) $(VENV)/bin/maturin build --release -q \
	    --features faults -i $(PY) -o $(FAULTS_TARGET)/wheels
	$(PY) -m zipfile -e $(FAULTS_TARGET)/wheels/*.whl $(FAULTS_DIR)

# The mixed workload under injected faults (several seeds) and the fault
# tests of the pytest suite, against the faults build.
test-faults: build build-faults
	$(PY) -m pytest tests/test_faults_workload.py -p no:cacheprovider

# The mixed workload at a steady rate for SOAK_SECONDS (600 by default; 3600
# for the documented hour), sampling memory, fds and loop queues: CSV + PNG
# into SOAK_OUT; fails if a series trends upward after warm-up.
SOAK_SECONDS ?= 600
SOAK_OUT ?= build/soak
soak: build
	$(PY) tools/robustness/soak.py --seconds $(SOAK_SECONDS) --out $(SOAK_OUT)

# The socket, TLS and subprocess tests under valgrind memcheck (CPython's
# allocator off, its noise suppressed); fails on an invalid read or write
# in a ferroloop frame.
memcheck: build
	tools/robustness/memcheck.sh

# Differential fuzzing (tests/_difffuzz.py): random sequences of loop
# operations on ferroloop and on the stock loop, traces compared. `make test`
# runs a short derandomized version (tests/test_difffuzz.py). FUZZ_OPS is the
# number of operations; it prints operations, sequences and failures.
FUZZ_OPS ?= 1000000
fuzz-diff: build
	$(PY) tools/fuzz/fuzz_diff.py --ops $(FUZZ_OPS)

# cargo-fuzz (libFuzzer; needs the nightly toolchain, installed with rustup
# and `cargo install cargo-fuzz` if absent) on the engine's timer heap, ready
# queue and write queue against reference models (crates/engine/fuzz), each
# for FUZZ_SECONDS. A seeded short run is in `make test-rust` (stable).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := timers ready write_queue
fuzz-engine:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	@rustup run nightly cargo --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
	@cd crates/engine && mkdir -p fuzz/logs && for t in $(FUZZ_TARGETS); do \
	    echo "=== cargo fuzz run $$t ($(FUZZ_SECONDS) s)"; \
	    cargo +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	        >fuzz/logs/$$t.log 2>&1; rc=$$?; \
	    grep -E '^(Done|stat::number_of_executed_units|stat::new_units_added)' fuzz/logs/$$t.log; \
	    [ $$rc = 0 ] || { tail -40 fuzz/logs/$$t.log; exit 1; }; \
	done

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --release -- -D warnings
	CARGO_TARGET_DIR=$(FAULTS_TARGET) cargo clippy --workspace --release --features faults -- -D warnings
	cargo clippy --release --manifest-path benchmarks/loadgen/Cargo.toml -- -D warnings

fmt:
	cargo fmt --all

clean:
	cargo clean
	rm -rf $(VENV)
