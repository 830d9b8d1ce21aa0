#!/usr/bin/env bash
# The main job, against the moto server scripts/with-moto.sh started: apply the whole stack
# to the local environment, then plan again and show that nothing is left to change.
set -euo pipefail
infra="${INFRA:-target/release/infra}"

echo "== infra apply --env local --auto-approve"
"$infra" apply --env local --auto-approve

echo
echo "== infra plan --env local --detailed-exitcode --stats"
status=0
"$infra" --stats plan --env local --detailed-exitcode || status=$?
if [ "$status" -ne 0 ]; then
  echo "error: the plan after apply is not a no-op (exit $status)" >&2
  exit 1
fi

echo
echo "== infra drift --env local"
"$infra" drift --env local
