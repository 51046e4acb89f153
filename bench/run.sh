#!/usr/bin/env bash
# etcd-dr benchmark: etcd-dr against `etcdctl snapshot save` and the shell pipelines operators
# script today, on the same data in the same run, on loopback.
#
#   bench/run.sh                      # 512 MiB database, 3 runs of everything
#   bench/run.sh --size-mib 1024 --only floor,etcd-dr
#   bench/run.sh --size-mib 2048 --runs 2 --only floor,etcd-dr,idle
#   bench/run.sh --only promote       # promote of 512 MiB onto 3 ssh nodes (needs root)
#   bench/run.sh --only replication --size-mib 64   # RPO, capture RSS, replay speed
#
# Options:
#   --size-mib N     database size to fill etcd to (default 512; 1024 and 2048 raise the quota)
#   --runs N         runs of each measurement (default 3)
#   --only LIST      comma-separated groups: floor, pipelines, etcd-dr, restore, idle,
#                    replication, promote (default all; promote only as root, it needs
#                    namespaces and sshd)
#   --work DIR       working directory (default: a new one under /tmp, removed at the end);
#                    an existing DIR with a filled etcd is reused, skipping the fill
#   --keep           keep the working directory
#   --out DIR        where results go (default bench/out/<size>MiB-<UTC time>)
#   --s3s-fs         also run the S3 rows against s3s-fs, a second S3 server (see below)
#
# Environment: BENCH_TOOLS_ENV (default <repo>/.tools/env.sh, installed by
# scripts/install-test-deps.sh when missing), BENCH_ENCRYPTION_TOML (an [encryption]
# section for the encrypted row; by default one with a fresh `etcd-dr keygen` recipient),
# BENCH_S3S_FS (an s3s-fs binary; by default .tools/s3s-fs/bin/s3s-fs, installed with
# `cargo install` from crates.io when missing, about 3 minutes).
#
# The S3 server (moto, the test suite's) runs on the same cores as etcd and the client, which a
# remote S3 endpoint never does: it spends 1.7-2 CPU-seconds to take in 190 MB. With --s3s-fs
# the pipelines and etcd-dr also upload to s3s-fs (Rust, objects as files), to show that this
# cost is the server's work (SigV4 payload hash, MD5, writing), not moto's slowness; each
# ratio compares rows against the same server.
#
# What it reports, per row: min and median wall time, peak RSS (wait4: the largest resident set
# of the command or any of its children; pipeline steps run one after the other), CPU time of
# the command, CPU time etcd and the S3 servers spent meanwhile (read from /proc), and the stored
# size.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$REPO/bench"
SIZE_MIB=512
RUNS=3
ONLY="floor,pipelines,etcd-dr,restore,idle,replication,promote"
WORK=""
KEEP=0
OUT=""
S3S=0
while [ $# -gt 0 ]; do
    case "$1" in
        --size-mib) SIZE_MIB="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        --only) ONLY="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --out) OUT="$2"; shift 2 ;;
        --s3s-fs) S3S=1; shift ;;
        -h|--help) sed -n '2,38p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
want() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
# Only promote: no etcd, no moto, no fill here (the promote benchmark starts its own).
only_promote() { [ "$ONLY" = promote ]; }
log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# ------------------------------------------------------------------ tools
TOOLS_ENV="${BENCH_TOOLS_ENV:-$REPO/.tools/env.sh}"
if [ ! -f "$TOOLS_ENV" ]; then
    log "no $TOOLS_ENV: running scripts/install-test-deps.sh"
    "$REPO/scripts/install-test-deps.sh"
    TOOLS_ENV="$REPO/.tools/env.sh"
fi
# shellcheck disable=SC1090
. "$TOOLS_ENV"
missing=()
[ -x /usr/bin/time ] || missing+=(time)
command -v zstd >/dev/null || missing+=(zstd)
command -v gzip >/dev/null || missing+=(gzip)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} from apt"
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export ETCDCTL_API=3
S3S_VERSION=0.14.1
S3S_FS="${BENCH_S3S_FS:-$REPO/.tools/s3s-fs/bin/s3s-fs}"
if [ "$S3S" = 1 ] && ! only_promote && [ ! -x "$S3S_FS" ]; then
    log "installing s3s-fs $S3S_VERSION (cargo install, crates.io) into $REPO/.tools/s3s-fs"
    cargo install --quiet --locked --version "$S3S_VERSION" --features binary \
        --root "$REPO/.tools/s3s-fs" s3s-fs
    S3S_FS="$REPO/.tools/s3s-fs/bin/s3s-fs"
fi

log "building etcd-dr and etcd-fill (release)"
# Two invocations: built together, the two packages' features unify into a third variant.
(cd "$REPO" && cargo build --release --quiet -p etcd-dr && cargo build --release --quiet -p etcd-dr-e2e --bin etcd-fill --bin etcd-load)
EDR="$REPO/target/release/etcd-dr"
FILL="$REPO/target/release/etcd-fill"
LOAD="$REPO/target/release/etcd-load"
if want promote; then
    if [ "$(id -u)" != 0 ]; then
        log "promote group skipped: it needs root (namespace nodes, sshd)"
        ONLY="${ONLY//promote/}"
    else
        log "building the promote benchmark (release)"
        PROMOTE_BENCH=$(cd "$REPO" && cargo test --release --quiet -p etcd-dr-e2e --test promote_bench --no-run --message-format=json \
            | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "promote_bench" and m.get("executable"):
        print(m["executable"])')
    fi
fi

# ------------------------------------------------------------------ work dir, processes
if [ -z "$WORK" ]; then
    WORK="$(mktemp -d /tmp/etcd-dr-bench.XXXXXX)"
else
    mkdir -p "$WORK"; WORK="$(cd "$WORK" && pwd)"
fi
OUT="${OUT:-$BENCH/out/${SIZE_MIB}MiB-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ "$KEEP" = 0 ]; then rm -rf "$WORK"; else log "kept $WORK"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CLIENT_PORT=$(free_port); PEER_PORT=$(free_port); S3_PORT=$(free_port); HTTP_PORT=$(free_port)
S3S_PORT=$(free_port)
ETCD_URL="http://127.0.0.1:$CLIENT_PORT"
export S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
S3S_ENDPOINT="http://127.0.0.1:$S3S_PORT"
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_DEFAULT_REGION=us-east-1
BUCKET=bench

if ! only_promote; then
# Quota: room for the data and for etcd's own growth while it is filled.
QUOTA=$(( (SIZE_MIB * 2 + 1024) * 1024 * 1024 ))
log "starting etcd $(etcd --version | awk '/etcd Version/ {print $3}') on $ETCD_URL (quota $((QUOTA / 1048576)) MiB)"
etcd --name bench --data-dir "$WORK/etcd" \
    --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
    --listen-peer-urls "http://127.0.0.1:$PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT" \
    --initial-cluster "bench=http://127.0.0.1:$PEER_PORT" \
    --quota-backend-bytes "$QUOTA" --unsafe-no-fsync --log-level warn \
    > "$WORK/etcd.log" 2>&1 &
PIDS+=($!)
ETCD_PID=$!
log "starting moto_server on $S3_ENDPOINT"
"$TESTGROUND_MOTO_SERVER" -H 127.0.0.1 -p "$S3_PORT" > "$WORK/moto.log" 2>&1 &
PIDS+=($!)
MOTO_PID=$!
S3S_PID=""
if [ "$S3S" = 1 ]; then
    log "starting s3s-fs on $S3S_ENDPOINT"
    mkdir -p "$WORK/s3s-fs"
    "$S3S_FS" --host 127.0.0.1 --port "$S3S_PORT" --access-key "$AWS_ACCESS_KEY_ID" \
        --secret-key "$AWS_SECRET_ACCESS_KEY" "$WORK/s3s-fs" > "$WORK/s3s-fs.log" 2>&1 &
    PIDS+=($!)
    S3S_PID=$!
fi
for _ in $(seq 100); do
    etcdctl --endpoints "$ETCD_URL" endpoint health >/dev/null 2>&1 \
        && curl -sf -o /dev/null "$S3_ENDPOINT" && break
    sleep 0.2
done
etcdctl --endpoints "$ETCD_URL" endpoint health >/dev/null
python3 "$BENCH/s3.py" mkbucket "$BUCKET"
if [ -n "$S3S_PID" ]; then
    for _ in $(seq 50); do curl -s -o /dev/null "$S3S_ENDPOINT" && break; sleep 0.2; done
    S3_ENDPOINT="$S3S_ENDPOINT" python3 "$BENCH/s3.py" mkbucket "$BUCKET"
fi

db_bytes() { etcdctl --endpoints "$ETCD_URL" endpoint status -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["dbSize"])'; }
if [ "$(db_bytes)" -ge $((SIZE_MIB * 1024 * 1024)) ]; then
    log "etcd already holds $(( $(db_bytes) / 1048576 )) MiB: no fill"
else
    log "filling etcd to $SIZE_MIB MiB with Kubernetes-shaped keys"
    start=$(date +%s.%N)
    "$FILL" --endpoint "$ETCD_URL" --target-mib "$SIZE_MIB" | tee "$OUT/fill.txt"
    log "filled in $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s"
fi
DB_BYTES=$(db_bytes)
KEYS=$(etcdctl --endpoints "$ETCD_URL" get /registry --prefix --count-only --write-out=fields | awk '/"Count"/ {print $3}')
log "database: $DB_BYTES bytes, $KEYS keys"

# Manifests are signed (and read back with the same key) as in production.
[ -f "$WORK/signing.key" ] || "$EDR" keygen --signing -o "$WORK/signing.key" >/dev/null 2>&1
write_config() { # file, store section
    cat > "$1" <<TOML
cluster = "bench"
[signing]
key_file = "$WORK/signing.key"
[etcd]
endpoints = ["$ETCD_URL"]
[schedule]
interval = "1h"
[log]
level = "warn"
[http]
listen = "127.0.0.1:$HTTP_PORT"
$2
TOML
}
s3_store() { # endpoint, prefix
    printf '[store]\ntype = "s3"\nbucket = "%s"\nendpoint = "%s"\npath_style = true\nprefix = "%s"\n' \
        "$BUCKET" "$1" "$2"
}
write_config "$WORK/s3.toml" "$(s3_store "$S3_ENDPOINT" etcd-dr)"
write_config "$WORK/s3s.toml" "$(s3_store "$S3S_ENDPOINT" etcd-dr)"
write_config "$WORK/local.toml" "[store]
type = \"local\"
path = \"$WORK/store-local\""
write_config "$WORK/idle.toml" "$(s3_store "$S3_ENDPOINT" idle)"

has_snapshot() { "$EDR" --config "$1" list --json 2>/dev/null | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin) else 1)'; }
# moto keeps every object in temporary files: each row deletes what the previous run stored
# (untimed), so a 2 GiB run needs a few GiB of disk, not tens.
RM='python3 $BENCH/s3.py rm $BUCKET'
M() { python3 "$BENCH/measure.py" run --results "$RESULTS" --runs "$RUNS" \
    --watch "etcd=$ETCD_PID" --watch "moto=$MOTO_PID" ${S3S_PID:+--watch "s3s=$S3S_PID"} "$@"; }
# The same against s3s-fs: S3_ENDPOINT (what s3.py talks to) points there for the command.
M_S3S() { S3_ENDPOINT="$S3S_ENDPOINT" M "$@"; }
RM_S3S='S3_ENDPOINT=$S3S_ENDPOINT python3 $BENCH/s3.py rm $BUCKET'
export S3S_ENDPOINT
export W="$WORK" ETCD_URL EDR BENCH BUCKET LOAD OUT RUNS HTTP_PORT ETCD_PID
fsize='stat -c %s'
json_stored='python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[\"stored\"][\"size\"])"'

fi # not only promote

# ------------------------------------------------------------------ 1. the floor
if want floor; then
    log "1. etcdctl snapshot save (the floor)"
    M --label "etcdctl snapshot save → local file" --prep 'rm -f $W/save.db' \
        --size "$fsize \$W/save.db" \
        'etcdctl --endpoints $ETCD_URL snapshot save $W/save.db >/dev/null 2>>$W/etcdctl.log'
    rm -f "$WORK/save.db"
fi

# ------------------------------------------------------------------ 2. shell pipelines
if want pipelines; then
    log "2. shell pipelines: save → compress → boto3 multipart upload"
    # RUNNER (M or M_S3S), label suffix, RM command, the server's name.
    pipeline_rows() {
        "$1" --label "save → gzip -1 → boto3 multipart upload$2" --prep "rm -f \$W/p.db \$W/p.db.gz; $3 gzip/" \
            --size "$fsize \$W/p.db.gz" \
            'etcdctl --endpoints $ETCD_URL snapshot save $W/p.db >/dev/null 2>>$W/etcdctl.log &&
             gzip -1 -c $W/p.db > $W/p.db.gz &&
             python3 $BENCH/s3.py upload $W/p.db.gz $BUCKET gzip/$RUN/etcd.db.gz'
        "$1" --label "save → zstd -3 -T0 → boto3 multipart upload$2" --prep "rm -f \$W/p.db \$W/p.db.zst; $3 zstd/" \
            --size "$fsize \$W/p.db.zst" \
            'etcdctl --endpoints $ETCD_URL snapshot save $W/p.db >/dev/null 2>>$W/etcdctl.log &&
             zstd -q -3 -T0 $W/p.db -o $W/p.db.zst &&
             python3 $BENCH/s3.py upload $W/p.db.zst $BUCKET zstd/$RUN/etcd.db.zst'
        # The S3 server's share: the same client uploading a file of the compressed size.
        "$1" --label "($4 alone: boto3 upload of the .zst)" --prep "$3 alone/" --size "$fsize \$W/p.db.zst" \
            'python3 $BENCH/s3.py upload $W/p.db.zst $BUCKET alone/$RUN/etcd.db.zst'
        bash -c "$3 zstd/ && $3 alone/"
    }
    pipeline_rows M "" "$RM" moto
    # moto's gzip/ objects stay: the restore rows download them.
    if [ -n "$S3S_PID" ]; then
        pipeline_rows M_S3S " (s3s-fs)" "$RM_S3S" s3s-fs
        bash -c "$RM_S3S gzip/"
    fi
    rm -f "$WORK/p.db" "$WORK/p.db.gz" "$WORK/p.db.zst"
fi

# ------------------------------------------------------------------ 3. etcd-dr snapshot
if want etcd-dr; then
    log "3. etcd-dr snapshot"
    M --label "etcd-dr snapshot → S3" --prep "$RM etcd-dr/" --size "$json_stored \$W/edr-s3.json" \
        '$EDR --config $W/s3.toml snapshot --json > $W/edr-s3.json'
    if [ -n "$S3S_PID" ]; then
        M_S3S --label "etcd-dr snapshot → S3 (s3s-fs)" --prep "$RM_S3S etcd-dr/" --size "$json_stored \$W/edr-s3s.json" \
            '$EDR --config $W/s3s.toml snapshot --json > $W/edr-s3s.json'
    fi
    M --label "etcd-dr snapshot → local dir" --prep 'rm -rf $W/store-local' \
        --size "$json_stored \$W/edr-local.json" \
        '$EDR --config $W/local.toml snapshot --json > $W/edr-local.json'
    rm -rf "$WORK/store-local"
    # --- encryption -------------------------------------------------------------------
    # age encryption: a fresh key pair from `etcd-dr keygen`, or the section given in
    # BENCH_ENCRYPTION_TOML. The row runs only when this etcd-dr accepts the section
    # (check-config); otherwise it is skipped and the table says so.
    rm -f "$WORK/age-identity.txt"
    if [ -z "${BENCH_ENCRYPTION_TOML:-}" ] \
        && recipient=$("$EDR" keygen -o "$WORK/age-identity.txt" 2>/dev/null); then
        BENCH_ENCRYPTION_TOML="[encryption]
recipients = [\"$recipient\"]"
    fi
    if [ -n "${BENCH_ENCRYPTION_TOML:-}" ]; then
        # Its own prefix: the restore rows fetch the newest plain snapshot.
        sed 's/^prefix = "etcd-dr"$/prefix = "etcd-dr-age"/' "$WORK/s3.toml" > "$WORK/s3-age.toml"
        printf '\n%s\n' "$BENCH_ENCRYPTION_TOML" >> "$WORK/s3-age.toml"
        if "$EDR" --config "$WORK/s3-age.toml" check-config >/dev/null 2>&1; then
            M --label "etcd-dr snapshot → S3, age-encrypted" --prep "$RM etcd-dr-age/" --size "$json_stored \$W/edr-age.json" \
                '$EDR --config $W/s3-age.toml snapshot --json > $W/edr-age.json'
        else
            log "encryption slot skipped: this etcd-dr does not accept BENCH_ENCRYPTION_TOML"
            echo "encryption: skipped (not supported by this build)" >> "$OUT/notes.txt"
        fi
    else
        log "encryption row skipped: no etcd-dr keygen and BENCH_ENCRYPTION_TOML not set"
        echo "encryption: skipped (this etcd-dr has no keygen; BENCH_ENCRYPTION_TOML not set)" >> "$OUT/notes.txt"
    fi
fi

# ------------------------------------------------------------------ 4. restore side
if want restore; then
    log "4. restore side"
    RESULTS="$OUT/restore.jsonl"
    : > "$RESULTS"
    if ! python3 "$BENCH/s3.py" size "$BUCKET" gzip/1/ | grep -qv '^0$'; then
        etcdctl --endpoints "$ETCD_URL" snapshot save "$WORK/p.db" >/dev/null 2>>"$WORK/etcdctl.log"
        gzip -1 -c "$WORK/p.db" > "$WORK/p.db.gz"
        python3 "$BENCH/s3.py" upload "$WORK/p.db.gz" "$BUCKET" gzip/1/etcd.db.gz
        rm -f "$WORK/p.db" "$WORK/p.db.gz"
    fi
    if ! has_snapshot "$WORK/s3.toml"; then
        "$EDR" --config "$WORK/s3.toml" snapshot >/dev/null
    fi
    restore='etcdutl snapshot restore $W/r.db --data-dir $W/restored >/dev/null 2>&1'
    M --label "etcd-dr fetch + etcdutl snapshot restore" --prep 'rm -rf $W/r.db $W/restored' \
        "\$EDR --config \$W/s3.toml fetch latest --output \$W/r.db >/dev/null && $restore"
    M --label "(etcd-dr fetch alone)" --prep 'rm -rf $W/r.db' \
        '$EDR --config $W/s3.toml fetch latest --output $W/r.db >/dev/null'
    M --label "boto3 download + gunzip + etcdutl snapshot restore" \
        --prep 'rm -rf $W/r.db $W/r.db.gz $W/restored' \
        "python3 \$BENCH/s3.py download \$BUCKET gzip/1/etcd.db.gz \$W/r.db.gz && gunzip \$W/r.db.gz && $restore"
    M --label "(etcdutl snapshot restore alone)" --prep 'rm -rf $W/restored' "$restore"
    rm -rf "$WORK/r.db" "$WORK/restored"
fi

# ------------------------------------------------------------------ 5. idle daemon
IDLE_LINE=""
if want idle; then
    log "5. idle daemon: etcd-dr run (interval 1h): first snapshot, then 20 s idle"
    "$EDR" --config "$WORK/idle.toml" run > "$WORK/idle.log" 2>&1 &
    DAEMON_PID=$!
    PIDS+=($DAEMON_PID)
    for _ in $(seq 600); do
        has_snapshot "$WORK/idle.toml" && break
        sleep 0.5
    done
    sleep 2
    IDLE_LINE=$(python3 "$BENCH/measure.py" idle --pid "$DAEMON_PID" --seconds 20 --json "$OUT/idle.json")
    kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true
fi

# ------------------------------------------------------------------ 6. continuous replication
if want replication; then
    log "6. continuous replication: etcd alone, RPO at 100 and 500 rev/s, a burst, replay"
    write_config "$WORK/repl.toml" "[store]
type = \"local\"
path = \"$WORK/store-repl\"
[replication]
enabled = true"
    "$BENCH/replication.sh" "$WORK/repl.toml"
fi

# ------------------------------------------------------------------ 7. promote
if want promote; then
    log "7. promote of ${SIZE_MIB} MiB onto 3 namespace nodes over ssh (its own etcd, fill, snapshot)"
    # Nothing else of the benchmark runs meanwhile; the idle daemon and rows above are done.
    (cd "$REPO" && BENCH_PROMOTE_MIB="$SIZE_MIB" BENCH_PROMOTE_OUT="$OUT/promote.md" TMPDIR="$WORK" \
        "$PROMOTE_BENCH" --ignored --nocapture --test-threads 1 promote_of_a_big_snapshot) \
        > "$OUT/promote.log" 2>&1 \
        || { log "promote benchmark failed: see $OUT/promote.log"; echo "promote: failed (see promote.log)" >> "$OUT/notes.txt"; }
fi

# ------------------------------------------------------------------ report
{
    echo "## ${SIZE_MIB} MiB database ($(date -u +%Y-%m-%dT%H:%MZ))"
    echo
    echo "- machine: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM; load before start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- etcd $(etcd --version | awk '/etcd Version/ {print $3}'), etcd-dr $(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- crates Cargo.toml Cargo.lock || echo '+dirty'), moto $(python3 -c 'import moto; print(moto.__version__)')${S3S_PID:+, s3s-fs $S3S_VERSION}, boto3 $(python3 -c 'import boto3; print(boto3.__version__)'), $(gzip --version | head -1), zstd $(zstd --version | grep -o 'v[0-9.]*' | head -1)"
    if ! only_promote; then
    echo "- database: $DB_BYTES bytes ($((DB_BYTES / 1048576)) MiB), $KEYS keys; runs per row: $RUNS"
    echo
    echo "### Snapshot side"
    echo
    python3 "$BENCH/measure.py" report --results "$OUT/results.jsonl" \
        --floor "etcdctl snapshot save → local file" \
        --gzip "save → gzip -1 → boto3 multipart upload" \
        --gzip-s3s "save → gzip -1 → boto3 multipart upload (s3s-fs)"
    fi
    if [ -s "$OUT/restore.jsonl" ]; then
        echo
        echo "### Restore side"
        echo
        python3 "$BENCH/measure.py" report --results "$OUT/restore.jsonl" \
            --floor "(etcdutl snapshot restore alone)" --floor-name "etcdutl restore alone" \
            --gzip "boto3 download + gunzip + etcdutl snapshot restore" --gzip-name "shell restore"
    fi
    [ -n "$IDLE_LINE" ] && { echo; echo "$IDLE_LINE"; }
    [ -s "$OUT/replication.md" ] && { echo; cat "$OUT/replication.md"; }
    [ -s "$OUT/promote.md" ] && { echo; sed 's/^## /### /' "$OUT/promote.md"; }
    [ -f "$OUT/notes.txt" ] && { echo; sed 's/^/- /' "$OUT/notes.txt"; }
} > "$OUT/table.md"
cat "$OUT/table.md"
log "results in $OUT"
