#!/usr/bin/env bash
# Crash-safety torture (issue 6), long form: random operations against a real reefd, which
# is kill -9'ed KILLS times (default 300), most of them mid-operation, restarted, and
# checked against every invariant (tests/integration/src/invariants.rs) after each restart.
# Everything runs in a private network namespace (root required).
#
#   scripts/torture.sh [KILLS]
#
# Environment: REEF_TORTURE_SEED (replay a seed), REEF_TORTURE_MAX_SECS (stop early),
# REEF_TORTURE_PRECHECK=1 (also check before each kill), REEF_TORTURE_STOP_ON_VIOLATION=1,
# REEF_TORTURE_VERBOSE=1 (print every operation), REEF_KEEP_TEST_DIR=1 (keep reefd.log and
# the state). The full operation log lands in target/torture/torture-<seed>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -gt 1 ] || { [ $# -eq 1 ] && ! [[ $1 =~ ^[0-9]+$ ]]; }; then
    echo "usage: $0 [KILLS]" >&2
    exit 2
fi
export REEF_TORTURE_KILLS="${1:-${REEF_TORTURE_KILLS:-300}}"
cargo build --workspace --bins
exec cargo test -p reef-integration --test torture -- --nocapture --test-threads=1 torture_kill9
