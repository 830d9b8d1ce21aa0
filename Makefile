# Two entry points, both self-contained on a fresh machine:
#   make demo   apply the whole stack to a local AWS emulator, then show a no-op plan
#   make test   every test (formatting, lints, unit and end-to-end tests against moto)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
MOTO := $(VENV)/bin/moto_server

.PHONY: demo test venv bench bench-scale bench-package bench-processor bench-aws-behaviour lint clean-venv fuzz

# A Python venv with the pinned moto (the local AWS emulator).
$(MOTO): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(MOTO)

venv: $(MOTO)

demo: venv
	cargo build --release -p infra
	infra/scripts/with-moto.sh infra/scripts/demo.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

# plans/ must match the stacks (`infra synth` regenerates it).
# No incremental compilation: on a fresh clone it only costs disk (gigabytes of caches that
# a one-off build never reuses), and CI machines can be short of disk.
test: export CARGO_INCREMENTAL := 0
test: venv lint
	cargo run --quiet -p infra -- synth --check
	cargo test --workspace

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
