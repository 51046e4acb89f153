#!/usr/bin/env bash
# The continuous replication rows of bench/run.sh (group `replication`); run by it, with its
# environment (EDR, LOAD, W, OUT, RUNS, ETCD_URL, ETCD_PID, HTTP_PORT, etcd on PATH).
#
#   1. etcd alone: one-put transactions against an etcd started as replay's throw-away etcd
#      (no fsync, no auto-compaction), 10,000 of them, 1, 16 and 64 at once: the ceiling of any replay that
#      sends one transaction per revision.
#   2. `etcd-dr run` with [replication] enabled (config $1: local store): 1 KiB writes at 100
#      and then 500 rev/s for 20 s each (etcd-load, 16 writers, paced), the lag sampled from
#      /metrics every 100 ms, the daemon's CPU and peak RSS per phase; then a burst of 20,000
#      writes as fast as 64 writers go (the daemon's peak RSS while it catches up).
#   3. stored bytes per event; `etcd-dr fetch --at newest` (every revision of the generation
#      replayed), RUNS times with each replay engine (`backend`: the base's backend file
#      extended directly; `etcd`: a throw-away etcd): wall, CPU, revisions/s.
# Writes $OUT/replication.jsonl and $OUT/replication.md.
set -euo pipefail
CONFIG="$1"
REPL="$OUT/replication.jsonl"
: > "$REPL"
log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# CPU time the hypervisor gave to others while this VM wanted it (/proc/stat "steal", in
# seconds): on a shared host it is what makes two runs of the same code differ.
steal_now() { awk '/^cpu / { print $9 / 100 }' /proc/stat; }
# Adds {"steal_seconds": …} since $1 to the last row of $REPL.
add_steal() {
    python3 - "$REPL" "$1" "$(steal_now)" <<'PY'
import json, sys
path, before, after = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
lines = open(path).read().splitlines()
row = json.loads(lines[-1]); row["steal_seconds"] = round(after - before, 2)
lines[-1] = json.dumps(row)
open(path, "w").write("\n".join(lines) + "\n")
PY
}
OWN=()
trap 'for p in "${OWN[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

# ---- 1. etcd alone
CEIL_C=$(free_port); CEIL_P=$(free_port)
CEIL_URL="http://127.0.0.1:$CEIL_C"
etcd --name ceiling --data-dir "$W/ceiling" \
    --listen-client-urls "$CEIL_URL" --advertise-client-urls "$CEIL_URL" \
    --listen-peer-urls "http://127.0.0.1:$CEIL_P" --initial-advertise-peer-urls "http://127.0.0.1:$CEIL_P" \
    --initial-cluster "ceiling=http://127.0.0.1:$CEIL_P" \
    --unsafe-no-fsync --max-txn-ops=1000000 --max-request-bytes=1073741824 \
    --quota-backend-bytes=8589934592 --auto-compaction-retention=0 --log-level warn \
    > "$W/ceiling.log" 2>&1 &
CEIL_PID=$!
OWN+=("$CEIL_PID")
for _ in $(seq 100); do etcdctl --endpoints "$CEIL_URL" endpoint health >/dev/null 2>&1 && break; sleep 0.2; done
for writers in 1 16 64; do
    log "etcd alone: 10,000 one-put transactions, $writers at once"
    before=$(steal_now)
    "$LOAD" --endpoint "$CEIL_URL" --rate 0 --count 10000 --writers "$writers" --txn \
        --label "etcd alone, $writers at once" --process "etcd=$CEIL_PID" >> "$REPL"
    add_steal "$before"
done
kill "$CEIL_PID"; wait "$CEIL_PID" 2>/dev/null || true
rm -rf "$W/ceiling"

# ---- 2. capture: RPO and RSS
status() { curl -sf "http://127.0.0.1:$HTTP_PORT/v1/status"; }
replication_field() { # field → value of .replication.field ("" when absent)
    status | python3 -c 'import json,sys
r = (json.load(sys.stdin).get("replication") or {}).get(sys.argv[1])
print("" if r is None else r)' "$1" 2>/dev/null || true
}
"$EDR" --config "$CONFIG" run > "$W/repl-daemon.log" 2>&1 &
DAEMON=$!
OWN+=("$DAEMON")
log "etcd-dr run (pid $DAEMON): waiting for the capture (a full snapshot starts the generation)"
for _ in $(seq 600); do
    [ -n "$(replication_field complete_as_of)" ] && break
    sleep 0.5
done
[ -n "$(replication_field complete_as_of)" ] || { log "the capture did not start: see $W/repl-daemon.log"; exit 1; }
sleep 3
METRICS="http://127.0.0.1:$HTTP_PORT/metrics"
seed=1
for rate in 100 500; do
    log "capture: $rate rev/s of 1 KiB values for 20 s"
    seed=$((seed + 1))
    before=$(steal_now)
    "$LOAD" --endpoint "$ETCD_URL" --rate "$rate" --seconds 20 --writers 16 --seed "$seed" \
        --label "capture at $rate/s" --metrics "$METRICS" \
        --process "etcd-dr=$DAEMON" --process "etcd=$ETCD_PID" >> "$REPL"
    add_steal "$before"
done
log "capture: a burst of 20,000 writes, 64 writers, unpaced"
before=$(steal_now)
"$LOAD" --endpoint "$ETCD_URL" --rate 0 --count 20000 --writers 64 --seed 9 \
    --label "capture, burst" --metrics "$METRICS" \
    --process "etcd-dr=$DAEMON" --process "etcd=$ETCD_PID" >> "$REPL"
add_steal "$before"
last=$(etcdctl --endpoints "$ETCD_URL" endpoint status -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])')
caught_up=""
for _ in $(seq 600); do
    stored=$(replication_field stored_revision)
    if [ -n "$stored" ] && [ "$stored" -ge "$last" ]; then caught_up=1; break; fi
    sleep 0.2
done
[ -n "$caught_up" ] || { log "the capture did not store revision $last: see $W/repl-daemon.log"; exit 1; }
python3 -c 'import json,sys
hwm = [l for l in open(f"/proc/{sys.argv[1]}/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"label": "daemon after the burst", "peak_rss_kib_lifetime": int(hwm)}))' "$DAEMON" >> "$REPL"
kill -TERM "$DAEMON"; wait "$DAEMON" 2>/dev/null || true

# ---- 3. stored bytes, replay
python3 - "$W/store-repl" >> "$REPL" <<'PY'
import json, os, re, sys
revisions = size = segments = 0
for root, _, files in os.walk(sys.argv[1]):
    for name in files:
        m = re.match(r"(\d+)-(\d+)\.seg\.zst", name)
        if m:
            segments += 1
            revisions += int(m.group(2)) - int(m.group(1)) + 1
            size += os.path.getsize(os.path.join(root, name))
print(json.dumps({"label": "stored", "segments": segments, "revisions": revisions, "bytes": size}))
PY
for run in $(seq "$RUNS"); do
  for engine in backend etcd; do
    log "replay: etcd-dr fetch --at newest --replay-with $engine (run $run of $RUNS)"
    rm -f "$W/replayed.db"
    before=$(steal_now)
    /usr/bin/time -f 'TIME %e %U %S %M' -o "$W/fetch.time" \
        "$EDR" --config "$CONFIG" fetch --at newest --output "$W/replayed.db" --replay-with "$engine" > "$W/fetch.out" 2>"$W/fetch.err"
    python3 - "$W/fetch.out" "$W/fetch.time" "$engine" >> "$REPL" <<'PY'
import json, re, sys
out = open(sys.argv[1]).read()
wall, user, system, rss = open(sys.argv[2]).read().split("TIME ")[1].split()
m = re.search(r"(\d+) revisions replayed from (\d+) segment\(s\).* in ([\d.]+) s by the (\w+) engine; CPU meanwhile: (?:etcd-dr )?([\d.]+) s(?:, throw-away etcd ([\d.]+) s; (\d+) transactions sent again)?(?:; copying the base took ([\d.]+) s)?", out)
revisions, segments, seconds, engine, own, etcd, resent, base_copy = m.groups()
assert engine == sys.argv[3], out
print(json.dumps({"label": "replay", "engine": engine, "revisions": int(revisions), "segments": int(segments),
    "replay_seconds": float(seconds), "replay_cpu_etcd_dr": float(own), "replay_cpu_etcd": float(etcd or 0), "resent": int(resent or 0), "base_copy_seconds": float(base_copy or 0),
    "fetch_wall": float(wall), "fetch_cpu": float(user) + float(system), "fetch_peak_rss_kib": int(rss)}))
PY
    add_steal "$before"
  done
done
rm -f "$W/replayed.db"

# ---- report
python3 - "$REPL" > "$OUT/replication.md" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def mib(kib): return f"{kib / 1024:.1f} MiB"
print("### Continuous replication\n")
print("| etcd alone: one-put transactions | rate | wall | etcd CPU | CPU stolen by the host meanwhile |")
print("|---|---:|---:|---:|---:|")
for r in rows:
    if r["label"].startswith("etcd alone"):
        p = r["processes"]["etcd"]
        print(f"| {r['label']} ({r['writes']}) | {r['rate_reached']:.0f}/s | {r['seconds']:.2f} s | {p['cpu_seconds']:.2f} s | {r.get('steal_seconds', 0):.2f} s |")
print()
print("| capture (etcd-dr run, local store) | rate reached | RPO p50 / p99 / max | etcd-dr CPU | etcd-dr peak RSS | etcd CPU | CPU stolen meanwhile |")
print("|---|---:|---:|---:|---:|---:|---:|")
for r in rows:
    if r["label"].startswith("capture"):
        d, e = r["processes"]["etcd-dr"], r["processes"]["etcd"]
        lag = "/".join(f"{r[k]:.2f}" for k in ("lag_p50_seconds", "lag_p99_seconds", "lag_max_seconds")) + " s"
        print(f"| {r['label']}: {r['writes']} writes in {r['seconds']:.1f} s | {r['rate_reached']:.0f}/s | {lag} | {d['cpu_seconds']:.2f} s | {mib(d['peak_rss_kib'])}{'' if d['peak_reset_at_start'] else ' (since start)'} | {e['cpu_seconds']:.2f} s | {r.get('steal_seconds', 0):.2f} s |")
    if r["label"] == "daemon after the burst":
        print(f"| daemon's peak RSS since its start | | | | {mib(r['peak_rss_kib_lifetime'])} | | |")
print()
for r in rows:
    if r["label"] == "stored":
        print(f"Stored: {r['segments']} segments, {r['revisions']} revisions (one event each), {r['bytes']} bytes, {r['bytes'] / max(r['revisions'], 1):.1f} bytes/event.\n")
replays = [r for r in rows if r["label"] == "replay"]
if replays:
    print("| replay: `etcd-dr fetch --at newest` | engine | revisions | replay (base copy) | rev/s | CPU in replay: etcd-dr / throw-away etcd | sent again | fetch wall | fetch CPU | fetch peak RSS | CPU stolen meanwhile |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for i, r in enumerate(replays, 1):
        copy = f" ({r['base_copy_seconds']:.2f} s)" if r["engine"] == "backend" else ""
        print(f"| {i} | {r['engine']} | {r['revisions']} | {r['replay_seconds']:.2f} s{copy} | {r['revisions'] / r['replay_seconds']:.0f} | {r['replay_cpu_etcd_dr']:.2f} s / {r['replay_cpu_etcd']:.2f} s | {r['resent']} | {r['fetch_wall']:.2f} s | {r['fetch_cpu']:.2f} s | {mib(r['fetch_peak_rss_kib'])} | {r.get('steal_seconds', 0):.2f} s |")
    for engine in ("backend", "etcd"):
        rates = [r["revisions"] / r["replay_seconds"] for r in replays if r["engine"] == engine]
        if rates:
            print(f"\nReplay median, {engine} engine: {statistics.median(rates):.0f} revisions/s.")
    print("\n`backend`: the replay time includes copying the base snapshot's backend into the new file and")
    print("writing its SHA-256; `etcd`: the replay time is the transactions only (etcdutl restore, etcd")
    print("start and the closing snapshot are in the fetch wall).")
PY
cat "$OUT/replication.md"
