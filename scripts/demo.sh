#!/usr/bin/env bash
# Try etcd-dr on this machine: a throw-away etcd (written to all along), a primary daemon
# shipping its snapshots into a local directory (the embedded default store) and a secondary
# daemon watching the same directory, verifying and pre-staging each snapshot and reporting
# the replication lag. Then their status, the lag metric, a snapshot asked for over the API and
# the plan of an in-place restore (--dry-run: nothing changes). No Kubernetes needed.
#
#   scripts/demo.sh              # builds etcd-dr (release) first; leaves everything running
#   scripts/demo.sh --stop       # the same, then stops everything
#   scripts/demo.sh --down       # stops a demo left running
#   TESTGROUND_ETCD_DR_BIN=path scripts/demo.sh
#
# Needs the tools of scripts/install-test-deps.sh (installed on first use; needs root), curl
# and python3. Everything lives under ./demo (or $DEMO_DIR).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MODE=keep-running
case "${1:-}" in
    "") ;;
    --stop) MODE=stop ;;
    --down) MODE=down ;;
    *) echo "usage: scripts/demo.sh [--stop | --down]" >&2; exit 2 ;;
esac

DEMO="${DEMO_DIR:-$PWD/demo}"
mkdir -p "$DEMO"
DEMO="$(cd "$DEMO" && pwd)"
PIDS="$DEMO/pids"

# Stops what a previous run of this demo left running (its pids only).
stop_demo() {
    [ -f "$PIDS" ] || return 0
    local pid
    # Reversed: the daemons and the writer before etcd.
    for pid in $(tac "$PIDS"); do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $(cat "$PIDS"); do
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    done
    rm -f "$PIDS"
}
if [ "$MODE" = down ]; then
    stop_demo
    echo "== demo stopped"
    exit 0
fi
stop_demo

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

rm -rf "$DEMO/etcd" "$DEMO/store" "$DEMO/primary" "$DEMO/secondary"
mkdir -p "$DEMO/primary" "$DEMO/secondary"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
CLIENT_URL="http://127.0.0.1:$(free_port)"
PEER_URL="http://127.0.0.1:$(free_port)"
PRIMARY="127.0.0.1:$(free_port)"
SECONDARY="127.0.0.1:$(free_port)"
# kubeadm names etcd members after their host; the restore plan checks it.
HOST="$(hostname -s)"

# Background processes: started in their own session so that they outlive this script with
# the default mode, and recorded so that --stop/--down end exactly them.
start_bg() {
    local log=$1
    shift
    setsid "$@" >"$log" 2>&1 </dev/null &
    echo $! >>"$PIDS"
}
if [ "$MODE" = stop ]; then
    trap stop_demo EXIT
else
    trap 'status=$?; [ $status -eq 0 ] || stop_demo' EXIT
fi

# The etcd static pod manifest kubeadm would write for it: what the restore plan reads.
cat >"$DEMO/etcd.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=$CLIENT_URL
    - --data-dir=$DEMO/etcd
    - --initial-advertise-peer-urls=$PEER_URL
    - --initial-cluster=$HOST=$PEER_URL
    - --initial-cluster-state=new
    - --listen-client-urls=$CLIENT_URL
    - --listen-peer-urls=$PEER_URL
    - --name=$HOST
    image: registry.k8s.io/etcd:3.5.16-0
    name: etcd
  volumes:
  - hostPath:
      path: $DEMO/etcd
      type: DirectoryOrCreate
    name: etcd-data
YAML
# shellcheck disable=SC2046
start_bg "$DEMO/etcd.log" "$TESTGROUND_ETCD35_BIN_DIR/etcd" \
    $(sed -n 's/^    - \(--.*\)/\1/p' "$DEMO/etcd.yaml") --logger zap --log-level warn
ETCDCTL=("$TESTGROUND_ETCD35_BIN_DIR/etcdctl" --endpoints "$CLIENT_URL")
for _ in $(seq 1 100); do
    "${ETCDCTL[@]}" endpoint health >/dev/null 2>&1 && break
    sleep 0.1
done
echo "== etcd member $HOST at $CLIENT_URL (data in $DEMO/etcd)"
for ns in default kube-system team-a; do
    for i in $(seq 1 20); do
        printf 'k8s\0demo pod %s/%s' "$ns" "$i" | "${ETCDCTL[@]}" put "/registry/pods/$ns/pod-$i" >/dev/null
    done
done
# The cluster keeps changing while the daemons run: a config map rewritten twice a second,
# for an hour at most.
start_bg "$DEMO/writer.log" bash -c '
    for i in $(seq 1 7200); do
        "$@" put /registry/configmaps/default/demo-heartbeat "beat $i" >/dev/null || exit 0
        sleep 0.5
    done' writer "${ETCDCTL[@]}"

# The key that signs every manifest (readers refuse unsigned snapshots): the primary signs with
# it (and trusts its own key), the secondary trusts its public key.
if [ ! -f "$DEMO/signing.key" ]; then
    "$BIN" keygen --signing -o "$DEMO/signing.key" 2>/dev/null >"$DEMO/signing.pub"
fi
SIGNING_PUB="$(cat "$DEMO/signing.pub")"

TOKEN_FILE="$DEMO/api-token"
python3 -c 'import secrets; print(secrets.token_hex(32))' >"$TOKEN_FILE"
chmod 0600 "$TOKEN_FILE"
TOKEN="$(cat "$TOKEN_FILE")"

cat >"$DEMO/primary.toml" <<TOML
# Written by scripts/demo.sh. See config/primary.toml for every key.
role = "primary"
cluster = "demo"

[signing]
key_file = "$DEMO/signing.key"

[etcd]
endpoints = ["$CLIENT_URL"]

[store]
type = "local"
path = "$DEMO/store"

[schedule]
interval = "20s"
jitter = "0s"

[http]
listen = "$PRIMARY"
token_file = "$TOKEN_FILE"

[bundle]
enabled = false

# This machine is the cluster's one control-plane node, reached without ssh. Only --dry-run
# restores are meant here: the stop command refuses, so a real restore stops before any change.
[nodes]
control_plane = ["$HOST"]
[nodes.access]
type = "local"

[promote]
etcd_manifest = "$DEMO/etcd.yaml"
kubernetes_dir = "$DEMO/kubernetes"
etcdutl = "$TESTGROUND_ETCD35_BIN_DIR/etcdutl"
work_dir = "$DEMO/primary/restore-work"
require_service_account_keys = false
stop_control_plane = [["sh", "-c", "echo 'the demo only plans restores (--dry-run)' >&2; exit 1"]]
[promote.etcd]
endpoints = ["$CLIENT_URL"]
TOML

cat >"$DEMO/secondary.toml" <<TOML
# Written by scripts/demo.sh. See config/secondary.toml for every key.
role = "secondary"
cluster = "demo"

[signing]
trusted_keys = ["$SIGNING_PUB"]

[store]
type = "local"
path = "$DEMO/store"

[secondary]
poll_interval = "2s"
expected_interval = "20s"
verify = true
prestage_dir = "$DEMO/secondary/prestage"

[http]
listen = "$SECONDARY"
token_file = "$TOKEN_FILE"
TOML

start_bg "$DEMO/primary.log" "$BIN" --config "$DEMO/primary.toml" run
start_bg "$DEMO/secondary.log" "$BIN" --config "$DEMO/secondary.toml" run
echo "== primary daemon on http://$PRIMARY (log $DEMO/primary.log)"
echo "== secondary daemon on http://$SECONDARY (log $DEMO/secondary.log)"

# What /v1/status says that matters here (the whole document: curl the URL).
status_summary() {
    python3 -c '
import json, sys
s = json.load(sys.stdin)
def snap(key):
    v = s.get(key) or {}
    return v.get("id", "none")
print("  role            %s (cluster %s)" % (s["role"], s["cluster"]))
print("  store           %s, reachable %s" % (s["store"]["description"], s["store"].get("reachable")))
print("  schedule        %s" % ((s.get("schedule") or {}).get("description", "-")))
print("  last snapshot   %s" % snap("last_snapshot"))
print("  newest verified %s" % snap("newest_verified"))
if "replication_lag_seconds" in s:
    print("  lag             %.1f s" % s["replication_lag_seconds"])
sec = s.get("secondary")
if sec:
    staged = (sec.get("prestaged") or {}).get("id", "none")
    print("  verified        %s snapshot(s), pre-staged %s" % (sec.get("verified_count"), staged))
'
}
wait_for() {
    local url=$1 condition=$2
    for _ in $(seq 1 300); do
        if curl -fsS "$url/v1/status" 2>/dev/null | python3 -c "import json,sys; s=json.load(sys.stdin); sys.exit(0 if ($condition) else 1)" 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    echo "demo: $url did not get there ($condition); see $DEMO/*.log" >&2
    exit 1
}
wait_for "http://$PRIMARY" 's.get("last_snapshot")'
wait_for "http://$SECONDARY" '(s.get("secondary") or {}).get("prestaged")'

echo
echo "== curl http://$PRIMARY/v1/status"
curl -fsS "http://$PRIMARY/v1/status" | status_summary
echo "== curl http://$SECONDARY/v1/status"
curl -fsS "http://$SECONDARY/v1/status" | status_summary
echo "== curl http://$SECONDARY/metrics | grep etcd_dr_replication_lag_seconds"
curl -fsS "http://$SECONDARY/metrics" | grep '^etcd_dr_replication_lag_seconds'
echo "== curl -X POST -H 'Authorization: Bearer …' http://$PRIMARY/v1/snapshots"
# 409 while a scheduled snapshot runs: ask again.
for _ in $(seq 1 20); do
    ACCEPTED="$(curl -fsS -X POST -H "Authorization: Bearer $TOKEN" "http://$PRIMARY/v1/snapshots" 2>/dev/null)" && break
    sleep 0.5
done
echo "${ACCEPTED:?the primary did not accept a snapshot request}"
ID="$(python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])' <<<"$ACCEPTED")"
wait_for "http://$PRIMARY" "(s.get('last_snapshot') or {}).get('id') == '$ID'"
# The commands' own info logs would interleave with their output here.
echo "== etcd-dr list"
RUST_LOG=warn "$BIN" --config "$DEMO/primary.toml" list
echo "== etcd-dr restore --dry-run (in place, onto this machine's etcd: the plan only)"
RUST_LOG=warn "$BIN" --config "$DEMO/primary.toml" restore --dry-run

if [ "$MODE" = stop ]; then
    echo "== stopping the demo"
    exit 0
fi
cat <<EOF

== running: etcd, the primary and the secondary daemon, a writer (pids in $PIDS). Try:
  curl -s http://$PRIMARY/v1/status | jq .
  curl -s http://$SECONDARY/v1/status | jq .
  curl -s http://$SECONDARY/metrics | grep ^etcd_dr_
  curl -s -X POST -H "Authorization: Bearer \$(cat $TOKEN_FILE)" http://$PRIMARY/v1/snapshots
  $BIN --config $DEMO/primary.toml verify latest
  $BIN --config $DEMO/secondary.toml fetch latest --output /tmp/demo.db
Stop everything with: ${DEMO_DIR:+DEMO_DIR=$DEMO }scripts/demo.sh --down
EOF
