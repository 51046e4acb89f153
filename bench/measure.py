#!/usr/bin/env python3
"""Measurement helpers for bench/run.sh (standard library only).

  measure.py run    --results F --label L [--runs N] [--prep CMD] [--size CMD] -- CMD
  measure.py idle   --pid PID [--seconds S]
  measure.py report --results F [--floor LABEL] [--gzip LABEL] [--gzip-s3s LABEL]

`run` times CMD (a bash command line) N times. Before each run it runs PREP (not timed); after
each it runs SIZE, whose stdout is the stored size in bytes. $RUN holds the run number (1..N).
Peak RSS comes from wait4(): the largest resident set of the command or any of its descendants
(the steps of a sequential pipeline never overlap, so that is the pipeline's peak too).
In the report, a row whose label ends in "(s3s-fs)" is compared with the --gzip-s3s row (the
same pipeline against the same server), every other row with the --gzip row.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def bash(cmd, env, capture=False):
    return subprocess.run(["bash", "-c", cmd], env=env, check=True,
                          stdout=subprocess.PIPE if capture else None, text=True)


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15)


def run(args):
    hz = os.sysconf("SC_CLK_TCK")
    watched = [w.split("=", 1) for w in args.watch]  # name=pid
    for n in range(1, args.runs + 1):
        env = dict(os.environ, RUN=str(n))
        if args.prep:
            bash(args.prep, env)
        before = {name: cpu_ticks(pid) for name, pid in watched}
        started = time.monotonic()
        pid = os.spawnvpe(os.P_NOWAIT, "bash", ["bash", "-c", args.cmd], env)
        _, status, usage = os.wait4(pid, 0)
        wall = time.monotonic() - started
        servers = {f"{name}_cpu_s": (cpu_ticks(p) - before[name]) / hz for name, p in watched}
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            sys.exit(f"measure: `{args.label}` run {n} failed with exit code {code}")
        size = None
        if args.size:
            out = bash(args.size, env, capture=True).stdout.strip()
            size = int(out) if out else None
        row = {"label": args.label, "run": n, "wall_s": round(wall, 3),
               "rss_kib": usage.ru_maxrss, "user_s": round(usage.ru_utime, 3),
               "sys_s": round(usage.ru_stime, 3), "stored_bytes": size, **servers}
        print(f"  {args.label} #{n}: {wall:.2f}s, peak RSS {usage.ru_maxrss / 1024:.1f} MiB, "
              f"CPU {usage.ru_utime + usage.ru_stime:.2f}s"
              + "".join(f", {k[:-6]} CPU {v:.2f}s" for k, v in servers.items())
              + (f", stored {size / 2**20:.1f} MiB" if size else ""), file=sys.stderr)
        with open(args.results, "a") as f:
            f.write(json.dumps(row) + "\n")


def proc_sample(pid):
    ticks = cpu_ticks(pid)
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return ticks, rss, hwm


def idle(args):
    hz = os.sysconf("SC_CLK_TCK")
    t0, _, _ = proc_sample(args.pid)
    rss_max = 0
    started = time.monotonic()
    while time.monotonic() - started < args.seconds:
        time.sleep(0.5)
        _, rss, hwm = proc_sample(args.pid)
        rss_max = max(rss_max, rss)
    t1, rss, hwm = proc_sample(args.pid)
    elapsed = time.monotonic() - started
    cpu = (t1 - t0) / hz
    sample = {"seconds": round(elapsed, 1), "cpu_s": cpu,
              "cpu_percent": round(100 * cpu / elapsed, 3),
              "rss_kib": rss, "rss_max_kib": rss_max, "hwm_kib": hwm}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(sample, f)
    print(f"Idle daemon (`etcd-dr run`, sampled for {elapsed:.0f} s after its first snapshot): "
          f"CPU {cpu:.2f} s ({100 * cpu / elapsed:.2f} % of one core), "
          f"RSS {rss / 1024:.1f} MiB (peak while it took the snapshot: {hwm / 1024:.1f} MiB).")


def report(args):
    rows = {}
    order = []
    with open(args.results) as f:
        for line in f:
            row = json.loads(line)
            if row["label"] not in rows:
                order.append(row["label"])
                rows[row["label"]] = []
            rows[row["label"]].append(row)
    medians = {k: statistics.median(r["wall_s"] for r in v) for k, v in rows.items()}
    floor = medians.get(args.floor)
    servers_seen = [name for name in ("etcd", "moto", "s3s")
                    if any(f"{name}_cpu_s" in r for v in rows.values() for r in v)]
    titles = {"etcd": "etcd", "moto": "moto", "s3s": "s3s-fs"}
    print(f"| what | runs | min s | median s | × {args.floor_name} | {args.gzip_name} ÷ this "
          "| peak RSS MiB | CPU s | "
          + "".join(f"{titles[n]} CPU s | " for n in servers_seen) + "stored MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(servers_seen) + "---:|")
    for label in order:
        v = rows[label]
        gz = medians.get(args.gzip_s3s if label.endswith("(s3s-fs)") else args.gzip)
        walls = [r["wall_s"] for r in v]
        med = medians[label]
        sizes = [r["stored_bytes"] for r in v if r["stored_bytes"]]
        cpu = statistics.median(r["user_s"] + r["sys_s"] for r in v)
        print(f"| {label} | {len(v)} | {min(walls):.2f} | {med:.2f} | "
              f"{med / floor:.2f} | " if floor else f"| {label} | {len(v)} | {min(walls):.2f} | {med:.2f} | – | ",
              end="")
        print(f"{gz / med:.2f} | " if gz else "– | ", end="")
        servers = ""
        for name in servers_seen:
            values = [r[f"{name}_cpu_s"] for r in v if f"{name}_cpu_s" in r]
            servers += f"{statistics.median(values):.2f} | " if values else "– | "
        print(f"{max(r['rss_kib'] for r in v) / 1024:.1f} | {cpu:.2f} | {servers}"
              + (f"{statistics.median(sizes) / 2**20:.1f} |" if sizes else "– |"))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run")
    r.add_argument("--results", required=True)
    r.add_argument("--label", required=True)
    r.add_argument("--runs", type=int, default=3)
    r.add_argument("--prep")
    r.add_argument("--size")
    r.add_argument("--watch", action="append", default=[],
                   help="NAME=PID of a server whose CPU time to report per run")
    r.add_argument("cmd")
    i = sub.add_parser("idle")
    i.add_argument("--pid", type=int, required=True)
    i.add_argument("--seconds", type=float, default=20)
    i.add_argument("--json")
    o = sub.add_parser("report")
    o.add_argument("--results", required=True)
    o.add_argument("--floor")
    o.add_argument("--floor-name", default="etcdctl save")
    o.add_argument("--gzip")
    o.add_argument("--gzip-name", default="gzip pipeline")
    o.add_argument("--gzip-s3s", help="the gzip pipeline's row against s3s-fs")
    args = p.parse_args()
    {"run": run, "idle": idle, "report": report}[args.what](args)


if __name__ == "__main__":
    main()
