#!/usr/bin/env bash
# Build and test the workspace against the tools installed by scripts/install-test-deps.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ENV_SH="${TESTGROUND_TOOLS:-$PWD/.tools}/env.sh"
if [ ! -f "$ENV_SH" ]; then
    echo "test.sh: $ENV_SH not found; run scripts/install-test-deps.sh first" >&2
    exit 1
fi
# shellcheck source=/dev/null
. "$ENV_SH"

step() { printf '\n==== %s\n' "$*"; }

step "environment"
env | grep -E '^(TESTGROUND_|PROTOC=|PROTOC_INCLUDE=)' | sort

step "cargo build --workspace --all-targets --locked"
cargo build --workspace --all-targets --locked

step "cargo test --workspace --locked -- --test-threads=2"
# Keep this the last command: CI reads cargo test's closing summary lines.
cargo test --workspace --locked -- --test-threads=2
