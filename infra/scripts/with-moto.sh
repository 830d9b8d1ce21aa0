#!/usr/bin/env bash
# Runs a command against a private moto server: starts .venv/bin/moto_server on a loopback
# port, points the AWS SDK at it with dummy credentials, runs "$@", then stops the
# server it started (also on failure or Ctrl-C).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
moto="${MOTO_SERVER:-$root/.venv/bin/moto_server}"
[ -x "$moto" ] || { echo "error: $moto not found; run \`make venv\`" >&2; exit 1; }

# moto binds a port the kernel picks and logs it: no window in which another program can take
# a port chosen here first.
log="$(mktemp -t moto.XXXXXX.log)"
"$moto" -H 127.0.0.1 -p 0 >"$log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"; }
trap cleanup EXIT INT TERM

port=""
for _ in $(seq 1 150); do
  [ -n "$port" ] || port="$(sed -n 's|.*Running on http://127\.0\.0\.1:\([0-9][0-9]*\).*|\1|p' "$log" | head -1)"
  if [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/moto-api/" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then echo "error: moto exited:" >&2; cat "$log" >&2; exit 1; fi
  sleep 0.2
done
[ -n "$port" ] && curl -sf "http://127.0.0.1:$port/moto-api/" >/dev/null || { echo "error: moto did not start" >&2; cat "$log" >&2; exit 1; }

export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
echo "moto server on $AWS_ENDPOINT_URL (pid $pid)" >&2
"$@"
