#!/usr/bin/env bash
# A bounded soak of etcd-dr against real parts, not run in CI: a primary daemon ships a
# three-member etcd (written to all along) into S3 (moto behind a fault proxy) every 10 s and on
# API triggers while random faults hit it — etcd leader kills, a member that answers nothing,
# the store answering 503 or its connections cut, SIGTERM and SIGKILL of the daemon, a CLI
# snapshot racing the daemon's trigger — then an audit: every committed snapshot verifies, `verify latest`
# passes, no acknowledged snapshot is missing, no producer lease is left, pending multipart
# uploads are no more than the faults that can leak one (SIGKILL, a failed abort) and none is
# into a committed object. Prints the counts.
#
#   scripts/soak.sh            # 10 minutes of faults, then the audit (a few minutes more)
#   scripts/soak.sh 2h         # any humantime duration: 90s, 30m, 2h
#
# Needs the tools of scripts/install-test-deps.sh. The test is tests/tests/soak.rs (ignored by
# default, so `cargo test` and CI never run it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION="${1:-10m}"
case "$DURATION" in
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *[0-9]*) ;;
    *) echo "usage: scripts/soak.sh [DURATION]   (e.g. 10m, 2h)" >&2; exit 2 ;;
esac

ENV_SH="${TESTGROUND_TOOLS:-$PWD/.tools}/env.sh"
if [ ! -f "$ENV_SH" ]; then
    echo "soak.sh: $ENV_SH not found; run scripts/install-test-deps.sh first" >&2
    exit 1
fi
# shellcheck source=/dev/null
. "$ENV_SH"

cargo build -p etcd-dr
SOAK_DURATION="$DURATION" exec cargo test -p etcd-dr-e2e --test soak -- --ignored --nocapture
