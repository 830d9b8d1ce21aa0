#!/usr/bin/env bash
# Compiles the Lambda handlers' dependencies (the runtime library, for Lambda's target, in the
# handlers' build folder and with their flags) while the rest of `make demo` builds, so that
# packaging later compiles only the handlers' own binaries. The target and flags must be the
# packager's exactly (infra/core/src/package.rs; a unit test there compares them), or cargo
# would compile everything again.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
LAMBDA_TARGET="x86_64-unknown-linux-gnu.2.34"
PROFILE="lambda"
RUSTFLAGS_TEMPLATE="--remap-path-prefix={build_dir}=/target --remap-path-prefix={cargo_home}=/cargo -C strip=symbols"

build_dir="${INFRA_LAMBDA_BUILD_DIR:-$root/target/lambda/build}"
mkdir -p "$build_dir"
build_dir="$(cd "$build_dir" && pwd -P)"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
flags="${RUSTFLAGS_TEMPLATE//\{build_dir\}/$build_dir}"
flags="${flags//\{cargo_home\}/$cargo_home}"

cd "$root"
PATH="$root/.venv/bin:$PATH" RUSTFLAGS="$flags" \
  "$root/.venv/bin/cargo-zigbuild" zigbuild --profile "$PROFILE" --locked --target "$LAMBDA_TARGET" \
  -p runtime --lib --target-dir "$build_dir"
