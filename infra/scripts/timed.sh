#!/usr/bin/env bash
# timed.sh STEP CMD...: runs CMD and appends "STEP<TAB>seconds<TAB>exit status" to
# target/make-test-steps.tsv, which `make test-timings` prints.
set -uo pipefail
step="$1"
shift
mkdir -p target
start="$(date +%s%N)"
"$@"
status=$?
end="$(date +%s%N)"
ms=$(( (end - start) / 1000000 ))
printf '%s\t%d.%01d\t%d\n' "$step" $((ms / 1000)) $(((ms % 1000) / 100)) "$status" >> target/make-test-steps.tsv
exit "$status"
