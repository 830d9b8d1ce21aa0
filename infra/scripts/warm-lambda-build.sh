#!/usr/bin/env bash
# Compiles every binary of the runtime for Lambda, in the handlers' build folder and with their
# flags, while the rest of `make demo` builds: packaging then finds the handlers built and only
# zips them, and on x86_64 Linux the demo runs its helpers (run-local, sample-linkedin,
# pipeline-report) from here. The target and flags must be the packager's exactly
# (infra/core/src/package.rs; a unit test there compares them), or cargo would compile
# everything again.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd -P)"
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

# The folder is the packager's too: take its turn (its lock), and claim the folder as it does.
# Cargo tells whether a workspace crate is built by its files' times, so after another checkout
# built here (tests package copies of this one), its binaries would pass for this checkout's:
# unless the folder is marked as this checkout's, the workspace crates' artifacts go first.
exec 9>"$build_dir/.infra-package.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
marker="$build_dir/.infra-last-workspace"
if [ "$(cat "$marker" 2>/dev/null)" != "$root" ]; then
  members="$(cargo metadata --no-deps --format-version 1 --locked \
    | python3 -c 'import json, sys; print(" ".join("-p " + p["name"] for p in json.load(sys.stdin)["packages"]))')"
  # shellcheck disable=SC2086 # one word per -p and name
  cargo clean --quiet --profile "$PROFILE" --target "${LAMBDA_TARGET%.*.*}" --target-dir "$build_dir" $members
fi

PATH="$root/.venv/bin:$PATH" RUSTFLAGS="$flags" \
  "$root/.venv/bin/cargo-zigbuild" zigbuild --profile "$PROFILE" --locked --target "$LAMBDA_TARGET" \
  -p runtime --bins --target-dir "$build_dir"
printf '%s' "$root" >"$marker"
