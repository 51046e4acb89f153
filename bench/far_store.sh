#!/usr/bin/env bash
# `etcd-dr fetch --at newest` from an S3 store one round trip away, two builds side by side:
#
#   bench/far_store.sh NEW_ETCD_DR OLD_ETCD_DR [DELAY_SECONDS]
#
# etcd 3.5 (no fsync) and moto on loopback; a primary daemon (NEW) captures 40 s of 500 rev/s
# (16 writers, etcd-load) into segments cut every 100 ms; then each build fetches the newest
# revision twice, alternating, through bench/delay_proxy.py, which holds each answer DELAY
# (default 0.02 s) before passing it on: a store tens of milliseconds away, as a remote S3 is.
# Needs .tools/env.sh (scripts/install-test-deps.sh) and target/release/etcd-load.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/.tools/env.sh"
NEW="$1"; OLD="$2"; DELAY="${3:-0.02}"
W=$(mktemp -d /tmp/etcd-dr-far-store.XXXXXX)
LOAD="$REPO/target/release/etcd-load"
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_DEFAULT_REGION=us-east-1
fp() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
EC=$(fp); EP=$(fp); SP=$(fp); HP=$(fp)
etcd --name ra --data-dir $W/etcd --listen-client-urls http://127.0.0.1:$EC --advertise-client-urls http://127.0.0.1:$EC \
  --listen-peer-urls http://127.0.0.1:$EP --initial-advertise-peer-urls http://127.0.0.1:$EP \
  --initial-cluster ra=http://127.0.0.1:$EP --unsafe-no-fsync --log-level warn > $W/etcd.log 2>&1 &
ETCD=$!
"$TESTGROUND_MOTO_SERVER" -H 127.0.0.1 -p $SP > $W/moto.log 2>&1 &
MOTO=$!
trap 'kill $ETCD $MOTO ${PROXY:-} 2>/dev/null || true; rm -rf "$W"' EXIT
sleep 3
S3_ENDPOINT=http://127.0.0.1:$SP python3 "$REPO/bench/s3.py" mkbucket bench
$NEW keygen --signing -o $W/signing.key >/dev/null 2>&1
cat > $W/c.toml <<TOML
cluster = "bench"
[signing]
key_file = "$W/signing.key"
[etcd]
endpoints = ["http://127.0.0.1:$EC"]
[schedule]
interval = "1h"
[log]
level = "warn"
[http]
listen = "127.0.0.1:$HP"
[store]
type = "s3"
bucket = "bench"
endpoint = "http://127.0.0.1:$SP"
path_style = true
prefix = "ra"
[replication]
enabled = true
cut_interval = "100ms"
TOML
$NEW --config $W/c.toml run > $W/daemon.log 2>&1 &
D=$!
sleep 8
$LOAD --endpoint http://127.0.0.1:$EC --rate 500 --seconds 40 --writers 16 --seed 3 --label load > /dev/null
sleep 5
kill -TERM $D; wait $D || true
PP=$(fp)
python3 "$REPO/bench/delay_proxy.py" $PP $SP "$DELAY" &
PROXY=$!
sleep 1
sed "s|endpoint = \"http://127.0.0.1:$SP\"|endpoint = \"http://127.0.0.1:$PP\"|" $W/c.toml > $W/far.toml
grep endpoint $W/far.toml
for run in 1 2; do
  for bin in OLD NEW; do
    b=${!bin}; rm -f $W/out.db
    /usr/bin/time -f "$bin wall %e s cpu %U+%S" $b --config $W/far.toml fetch --at newest --output $W/out.db 2>&1 | tail -2
  done
done
