#!/usr/bin/env bash
# `make test` builds the tests with this as cargo's RUSTC_WORKSPACE_WRAPPER: each workspace crate
# is compiled by clippy-driver (rustc plus clippy's lints) with warnings denied, so the one
# build that makes the tests also lints them, as `cargo clippy --workspace --all-targets --
# -D warnings` would, without compiling every dependency a second time in check mode.
# Dependencies are compiled by plain rustc; cargo keeps the wrapper's artifacts apart from
# those of a build without it (the wrapper is part of their file names' hash).
# cargo calls it as `clippy-rustc.sh /path/to/rustc ARGS...`; clippy-driver takes the same.
# bash, not sh: dash drops environment variables whose names are not identifiers, such as
# CARGO_BIN_EXE_run-local, which integration tests read with env!().
exec clippy-driver "$@" -D warnings
