#!/usr/bin/env bash
# The main job, against the moto server scripts/with-moto.sh started: apply the whole stack to
# the local environment (one line per resource), plan again and show that nothing is left to
# change, then run the pipeline: the collector against a local sample LinkedIn API and the
# processor, both through run-local with the deployed functions' own configuration, and read
# the processed Parquet back.
set -euo pipefail
bin="${BIN:-target/debug}"
infra="$bin/infra"
# run-local, sample-linkedin and pipeline-report (the Makefile says where they are built).
helpers="${HELPERS:-$bin}"
python=".venv/bin/python"

echo "== infra apply --env local --auto-approve --compact"
"$infra" apply --env local --auto-approve --compact

echo
echo "== infra plan --env local --detailed-exitcode"
status=0
"$infra" plan --env local --detailed-exitcode || status=$?
if [ "$status" -ne 0 ]; then
  echo "error: the plan after apply is not a no-op (exit $status)" >&2
  exit 1
fi

echo
echo "== the pipeline: collector and processor through run-local, sample LinkedIn API"
log="$(mktemp -t sample-linkedin.XXXXXX.log)"
"$helpers/sample-linkedin" --port 0 >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 50); do
  grep -q "listening on" "$log" && break
  sleep 0.1
done
api="$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$log" | head -1)"
[ -n "$api" ] || { echo "error: the sample LinkedIn API did not start:" >&2; cat "$log" >&2; exit 1; }
echo "sample LinkedIn API on $api"

# An OAuth token for the sample account, stored the way an operator does (never printed).
printf '%s' '{"client_id":"demo-client","client_secret":"demo-secret","access_token":"demo-access-token","refresh_token":"demo-refresh-token","access_token_expires_at":"2099-01-01T00:00:00Z","refresh_token_expires_at":"2099-01-01T00:00:00Z"}' \
  | "$infra" secret set --env local linkedin-oauth

# Each handler runs with its deployed function's environment, read back from the emulator.
function_env() {
  "$python" - "$1" <<'PY'
import os, shlex, sys, boto3
client = boto3.client("lambda", region_name=os.environ["AWS_REGION"])
config = client.get_function_configuration(FunctionName=sys.argv[1])
for key, value in sorted(config.get("Environment", {}).get("Variables", {}).items()):
    print(f"export {key}={shlex.quote(value)}")
PY
}

# One line of a handler's JSON summary (stdin): its numbers, and how many objects it wrote.
summary() {
  "$python" -c '
import json, sys
s = json.load(sys.stdin)
parts = [k.replace("_", " ") + ": " + str(v) for k, v in s.items() if isinstance(v, (int, float, str)) and k != "run_id"]
print("  " + ", ".join(parts) + "; " + str(len(s.get("objects", []))) + " objects written")
'
}

# run_handler FUNCTION HANDLER [VAR=VALUE...]: run-local HANDLER with FUNCTION's deployed
# environment (and the overrides); its summary in one line, or its log if it fails.
run_handler() {
  local function="$1" handler="$2"
  shift 2
  local out err environment
  environment="$(function_env "$function")"
  out="$(mktemp)"
  err="$(mktemp)"
  if ! (
    eval "$environment"
    for assignment in "$@"; do export "${assignment?}"; done
    "$helpers/run-local" "$handler" >"$out" 2>"$err"
  ); then
    echo "error: run-local $handler failed:" >&2
    cat "$err" >&2
    exit 1
  fi
  summary <"$out"
  rm -f "$out" "$err"
}

echo
echo "-- run-local collector (LINKEDIN_API_BASE_URL=$api)"
run_handler linkedin-ads-local-collector collector "LINKEDIN_API_BASE_URL=$api"
echo "-- run-local processor"
run_handler linkedin-ads-local-processor processor

echo
report_env="$(function_env linkedin-ads-local-processor)"
(
  eval "$report_env"
  "$helpers/pipeline-report" --top 5
)
