# Two entry points, both self-contained on a fresh machine:
#   make demo   apply the whole stack to a local AWS emulator, then show a no-op plan
#   make test   every test (formatting, lints, unit and end-to-end tests against moto)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
MOTO := $(VENV)/bin/moto_server

.PHONY: demo demo-build demo-lambda-build test test-timings test-crash test-packaging-cold preflight venv bench bench-scale bench-package bench-processor bench-aws-behaviour lint clean-venv fuzz

# A Python venv with the pinned moto (the local AWS emulator).
$(MOTO): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(MOTO)

venv: $(MOTO)

# `infra` from a debug build (the demo needs no optimized `infra`, whose release build takes
# three times as long), and the runtime's binaries for Lambda: the handlers, packaged by the
# apply, and on x86_64 Linux (Lambda's platform) the demo's helpers too, which run here as they
# are (elsewhere the debug build makes them for this machine). The debug build starts at once,
# beside the venv; the Lambda build needs the venv's zig and runs at the lowest CPU priority,
# on what the debug build leaves idle and then alone. Measured from cold: side by side at
# equal priority the two took 870 s (the whole demo 1,803 s of CPU); alone, 418 s (774 s of
# CPU) and 376 s (719 s of CPU), 794 s one after the other.
ifeq ($(shell uname -sm),Linux x86_64)
DEMO_HELPERS := $(or $(INFRA_LAMBDA_BUILD_DIR),target/lambda/build)/x86_64-unknown-linux-gnu/lambda
else
DEMO_HELPERS := target/debug
DEMO_DEBUG_HELPERS := --bin run-local --bin sample-linkedin --bin pipeline-report
endif

demo:
	@infra/scripts/preflight.sh
	@$(MAKE) --no-print-directory -j2 demo-build demo-lambda-build
	HELPERS=$(DEMO_HELPERS) infra/scripts/with-moto.sh infra/scripts/demo.sh

demo-build:
	cargo build --workspace --bin infra $(DEMO_DEBUG_HELPERS)

demo-lambda-build: venv
	nice -n 19 infra/scripts/warm-lambda-build.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

# Every step is timed (`make test-timings` prints where the time went). The tests are built
# once (`cargo test --workspace`'s feature set, which nextest reuses), and that build is also
# the lint: clippy-driver compiles the workspace's crates (infra/scripts/clippy-rustc.sh, as
# cargo's RUSTC_WORKSPACE_WRAPPER, warnings denied), so the dependencies are not compiled a
# second time in check mode as `cargo clippy` would (`make lint` still runs that). `synth
# --check` runs the `infra` binary that build made, so plans/ must match the stacks without a
# build of its own; cargo-nextest then runs the test binaries side by side
# (.config/nextest.toml), the first end-to-end test to package building the Lambda handlers
# while the others wait or run. (Compiling the handlers alongside the build was measured
# slower on 2 cores; so was installing the venv beside it: 48 s alone, but 82 s more of build
# beside it.) No incremental compilation: on a fresh clone it only costs disk (gigabytes of
# caches that a one-off build never reuses), and CI machines can be short of disk.
TIMED := infra/scripts/timed.sh
test: export CARGO_INCREMENTAL := 0
test: export RUSTC_WORKSPACE_WRAPPER := $(CURDIR)/infra/scripts/clippy-rustc.sh
test:
	@rm -f target/make-test-steps.tsv
	@$(TIMED) preflight infra/scripts/preflight.sh --nextest
	@$(TIMED) venv $(MAKE) --no-print-directory venv
	@$(TIMED) fmt cargo fmt --all -- --check
	@$(TIMED) build+lint cargo test --workspace --no-run
	@$(TIMED) synth-check target/debug/infra synth --check
	@$(TIMED) tests cargo nextest run --workspace
	@$(TIMED) doctests cargo test --workspace --doc
	@python3 infra/scripts/test_timings.py

# Where the time of the last `make test` went: per step, and per test binary.
test-timings:
	@python3 infra/scripts/test_timings.py

# The crash trials with forty random kills of apply and of destroy (make test runs eight).
test-crash: venv
	CRASH_TRIALS=40 cargo nextest run --workspace -E 'test(killed_at_random_points)'

# The packaging check with a cold build in a copy of the workspace (as on another machine).
test-packaging-cold: venv
	cargo test --workspace --test packaging -- --ignored

# Wall time and AWS calls of a no-op plan of the local stack (see README).
bench: venv
	cargo run --release -p infra --example noop_plan_bench

# A synthetic stack of N = 100, 300 and 1,000 resources: apply, no-op plan (time, calls per
# resource, peak memory) against moto's own ceiling, destroy (see README). SIZES overrides.
SIZES ?= 100 300 1000
bench-scale: venv
	cargo run --release -p infra --example scale_bench -- $(SIZES)

# What AWS's behaviours (the test harness's AWS-behaviour layer, every rule, 8 s windows) add to
# an apply from nothing, against the same apply on bare moto.
bench-aws-behaviour: venv
	cargo test --workspace --test aws_behaviour -- --ignored --nocapture bench_

# Cold and warm Lambda packaging times and zip sizes.
bench-package: venv
	cargo run --release -p infra --example package_bench

# Processor throughput (raw rows/s) and peak memory on a generated million-row dataset.
bench-processor:
	cargo run --release -p runtime --example processor_bench

# Each fuzz target for FUZZ_SECONDS, new inputs in fuzz/new/<target> (the committed corpus
# is read, not written). cargo-fuzz needs nightly flags: RUSTC_BOOTSTRAP allows them on stable.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS := env_file plan_file state_file
fuzz:
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p new/$$t && \
		RUSTC_BOOTSTRAP=1 cargo fuzz run -s none $$t new/$$t corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done

clean-venv:
	rm -rf $(VENV)
