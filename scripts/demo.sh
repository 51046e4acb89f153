#!/usr/bin/env bash
# Try etcd-dr on this machine: start a throw-away etcd, take a real snapshot into a local
# directory (the embedded default store), list it and verify it.
#
#   scripts/demo.sh              # builds etcd-dr (release) first
#   TESTGROUND_ETCD_DR_BIN=path scripts/demo.sh
#
# Needs the tools of scripts/install-test-deps.sh (installed on first use; needs root).
# Everything lives under ./demo (or $DEMO_DIR); etcd is stopped when the script ends.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ ! -f .tools/env.sh ] && [ -z "${TESTGROUND_TOOLS:-}" ]; then
    scripts/install-test-deps.sh
fi
# shellcheck source=/dev/null
. "${TESTGROUND_TOOLS:-$PWD/.tools}/env.sh"

BIN="${TESTGROUND_ETCD_DR_BIN:-}"
if [ -z "$BIN" ]; then
    cargo build --release --locked -p etcd-dr
    BIN="$PWD/target/release/etcd-dr"
fi

DEMO="${DEMO_DIR:-$PWD/demo}"
mkdir -p "$DEMO"
DEMO="$(cd "$DEMO" && pwd)"
rm -rf "$DEMO/etcd"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
CLIENT_PORT=$(free_port)
PEER_PORT=$(free_port)
ENDPOINT="http://127.0.0.1:$CLIENT_PORT"

"$TESTGROUND_ETCD35_BIN_DIR/etcd" --name demo --data-dir "$DEMO/etcd" \
    --listen-client-urls "$ENDPOINT" --advertise-client-urls "$ENDPOINT" \
    --listen-peer-urls "http://127.0.0.1:$PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT" \
    --initial-cluster "demo=http://127.0.0.1:$PEER_PORT" \
    --logger zap --log-level warn >"$DEMO/etcd.log" 2>&1 &
ETCD_PID=$!
trap 'kill $ETCD_PID 2>/dev/null || true; wait $ETCD_PID 2>/dev/null || true' EXIT

ETCDCTL=("$TESTGROUND_ETCD35_BIN_DIR/etcdctl" --endpoints "$ENDPOINT")
for _ in $(seq 1 100); do
    "${ETCDCTL[@]}" endpoint health >/dev/null 2>&1 && break
    sleep 0.1
done
echo "== etcd running at $ENDPOINT (data in $DEMO/etcd)"
for ns in default kube-system team-a; do
    for i in $(seq 1 20); do
        printf 'k8s\0demo pod %s/%s' "$ns" "$i" | "${ETCDCTL[@]}" put "/registry/pods/$ns/pod-$i" >/dev/null
    done
done

# The key that signs every manifest (readers refuse unsigned snapshots); this demo reads its
# own snapshots, so its own key is the one trusted.
[ -f "$DEMO/signing.key" ] || "$BIN" keygen --signing -o "$DEMO/signing.key" >/dev/null 2>&1

cat >"$DEMO/etcd-dr.toml" <<TOML
# Written by scripts/demo.sh. See config/primary.toml for every key.
cluster = "demo"

[signing]
key_file = "$DEMO/signing.key"

[etcd]
endpoints = ["$ENDPOINT"]

[store]
type = "local"
path = "$DEMO/store"
TOML

echo "== etcd-dr snapshot"
"$BIN" --config "$DEMO/etcd-dr.toml" snapshot --label "demo"
echo "== etcd-dr list"
"$BIN" --config "$DEMO/etcd-dr.toml" list
echo "== etcd-dr verify latest"
"$BIN" --config "$DEMO/etcd-dr.toml" verify latest
echo "== the store: $DEMO/store"
find "$DEMO/store" -type f | sort
