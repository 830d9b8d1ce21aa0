#!/usr/bin/env bash
# Checks what `make test` and `make demo` need before anything is built, and says what is
# missing in one line each: Python 3 with its venv module (the emulator's venv), objdump (the
# Lambda glibc check), cargo-nextest (installed from crates.io if absent, for `make test`),
# and free disk for the builds.
set -uo pipefail
need_nextest="${1:-}"
problems=0
fail() { echo "error: $*" >&2; problems=$((problems + 1)); }

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
  fail "$python not found: install Python 3 (the local AWS emulator, moto, runs in a venv)"
elif ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  fail "$python has no venv/ensurepip module: install it (Debian: apt-get install python3-venv)"
fi
command -v objdump >/dev/null 2>&1 || fail "objdump not found: install binutils (it checks the Lambda binaries' glibc)"
command -v cargo >/dev/null 2>&1 || fail "cargo not found: install Rust with rustup (rust-toolchain.toml pins the version)"

# A cold build of the workspace and the Lambda handlers takes about 12 GiB.
need_kib=$((12 * 1024 * 1024))
free_kib="$(df -Pk . | awk 'NR == 2 {print $4}')"
if [ -n "$free_kib" ] && [ "$free_kib" -lt "$need_kib" ]; then
  fail "only $((free_kib / 1024 / 1024)) GiB free on $(df -P . | awk 'NR == 2 {print $6}'); the builds need about 12 GiB"
fi

if [ "$need_nextest" = "--nextest" ] && ! cargo nextest --version >/dev/null 2>&1; then
  echo "cargo-nextest not found: installing it from crates.io (cargo install --locked cargo-nextest)" >&2
  cargo install --locked cargo-nextest || fail "could not install cargo-nextest"
fi

[ "$problems" -eq 0 ] || exit 1
