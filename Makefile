# Two entry points, both self-contained on a fresh machine:
#   make demo   apply the whole stack to a local AWS emulator, then show a no-op plan
#   make test   every test (formatting, lints, unit and end-to-end tests against moto)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
MOTO := $(VENV)/bin/moto_server

.PHONY: demo test venv bench bench-package bench-processor lint clean-venv

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

# Cold and warm Lambda packaging times and zip sizes.
bench-package: venv
	cargo run --release -p infra --example package_bench

# Processor throughput (raw rows/s) and peak memory on a generated million-row dataset.
bench-processor:
	cargo run --release -p runtime --example processor_bench

clean-venv:
	rm -rf $(VENV)
