#!/usr/bin/env bash
# The whole test suite: unit tests, then the end-to-end tests, which run the real reefd
# and reef in private network namespaces (root required; they fail, never skip, without it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --deps
cargo build --workspace --bins
cargo test --workspace --no-fail-fast "$@"
