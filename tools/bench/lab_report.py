#!/usr/bin/env python3
"""lab_report.py - turn one tools/bench/lab.sh run into tables, JSON and plot data.

lab.sh does the measuring; this file only reads what the runs left behind in
the output directory and does the arithmetic, so the numbers can be
recomputed from the raw files at any time:

    lab_report.py redis TXT JSON HIST SIZE     redis-benchmark's text output ->
                                               firn-bench-shaped JSON + histogram
    lab_report.py stages REPORT RECORDS HZ MHZ OUT_JSON
                                               `perf report --sort comm,dso,sym`
                                               -> cycles per record per stage
    lab_report.py report OUTDIR                runs.tsv + refs.tsv (+ stages.json)
                                               -> lab.json, table.txt, plot data;
                                               prints the tables

Every run JSON has firn-bench's shape: results.{rec_per_s, MBps, records, secs}
and latency_us.{p50, p90, p99, p999, p9999, max}; histogram files are lines
"upper_bound_us count". runs.tsv has one line per run:

    name  system  kind  rep  json  hist  server_cpu_us_per_rec  note

kind is closed (max throughput), fixed (open loop at the common rate) or
ramp (firn-bench --ramp). refs.tsv has "key value" lines (raw references,
machine facts, the lab's parameters).
"""

import json
import math
import os
import re
import sys

# ---- what each system is -------------------------------------------------------------------

SYSTEMS = {
    "firn-socket": ("firn, kernel UDP socket path", "DURABLE ack: O_DIRECT + RWF_DSYNC"),
    "firn-dpdk": ("firn, DPDK net_af_packet path", "DURABLE ack: O_DIRECT + RWF_DSYNC"),
    "firn-http": ("firn, Kinesis HTTP API (PutRecords 500)", "HTTP 200: O_DIRECT + RWF_DSYNC"),
    "redis-always": ("Redis Streams XADD, appendfsync always", "fsync before reply"),
    "redis-everysec": ("Redis Streams XADD, appendfsync everysec", "fsync once a second"),
    "nats": ("NATS JetStream, file store", "page cache; fsync ~every 2 min"),
    "kinesalite": ("kinesalite (PutRecords 500)", "LevelDB, no fsync"),
}
ORDER = ["firn-socket", "firn-dpdk", "firn-http", "redis-always", "redis-everysec", "nats",
         "kinesalite"]
PEERS = ["redis-always", "redis-everysec", "nats", "kinesalite"]


def die(msg):
    print("lab_report: " + msg, file=sys.stderr)
    sys.exit(1)


def median(xs):
    xs = sorted(xs)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def fnum(v, digits=0):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


# ---- redis-benchmark -> firn-bench-shaped JSON -------------------------------------------------

PCT_RE = re.compile(r"^\s*([0-9.]+)% <= ([0-9.]+) milliseconds \(cumulative count (\d+)\)")


def redis_convert(txt, out_json, out_hist, size):
    text = open(txt, errors="replace").read()
    m = re.search(r"throughput summary:\s*([0-9.]+) requests per second", text)
    if not m:
        die(f"{txt}: no 'throughput summary' (redis-benchmark failed?)")
    rps = float(m.group(1))
    # "Latency by percentile distribution" lines: (percentile, ms, cumulative count)
    pts = []
    section = text.split("Latency by percentile distribution:", 1)
    if len(section) == 2:
        for line in section[1].split("Cumulative distribution", 1)[0].splitlines():
            mm = PCT_RE.match(line)
            if mm:
                pts.append((float(mm.group(1)), float(mm.group(2)) * 1000.0, int(mm.group(3))))
    if not pts:
        die(f"{txt}: no latency distribution")
    total = pts[-1][2]

    def pct(p):
        for q, us, _ in pts:
            if q >= p:
                return us
        return pts[-1][1]

    reqs = re.search(r"(\d+) requests completed in ([0-9.]+) seconds", text)
    secs = float(reqs.group(2)) if reqs else (total / rps if rps else 0)
    res = {
        "config": {"mode": "redis-benchmark XADD", "size": size},
        "results": {"records": total, "rec_per_s": rps, "MBps": rps * size / 1e6,
                    "secs": secs, "bytes": total * size},
        "latency_us": {"count": total, "p50": pct(50), "p90": pct(90), "p99": pct(99),
                       "p999": pct(99.9), "p9999": pct(99.99), "max": pts[-1][1]},
        "note": "redis-benchmark measures per pipelined request (-P), from its send",
    }
    json.dump(res, open(out_json, "w"), indent=2)
    with open(out_hist, "w") as f:
        f.write("# redis-benchmark latency distribution: upper bound (us) and count\n")
        prev = 0
        for _, us, c in pts:
            if c > prev:
                f.write(f"{us:.3f} {c - prev}\n")
                prev = c


# ---- perf report -> cycles per record per stage ---------------------------------------------------

# (stage, thread regex, dso regex, symbol regex); first match wins, per sample line.
STAGE_RULES = [
    ("route (key hash, shard lookup)", r"firn-rx", r".", r"MD5|md5|firn_hash_key|route|shard_get"),
    ("RX decrypt + verify (AES-GCM)", r"firn-rx", r"libcrypto", r"."),
    ("RX decrypt + verify (AES-GCM)", r"firn-rx", r".", r"aes|gcm|EVP_|ossl_|CRYPTO_"),
    ("ack (build, seal, send)", r"firn-rx", r".",
     r"durable|enc_ack|_ack|sendmsg|sendmmsg|ip_output|ip_finish|xmit|udp_send|loopback|"
     r"dev_queue|ip_make_skb|__ip_append|udp_push|ip_send|neigh"),
    ("append to shard buffer (copy)", r"firn-rx", r".",
     r"firn_store_append|record_pack|memmove|memcpy|dirty_mark|batch_flush|wait_commit"),
    ("RX receive (syscalls, kernel UDP / af_packet)", r"firn-rx", r"kernel|vdso",
     r"recv|rcv|skb|copy_to_iter|copy_from|udp|iovec|sock|fdget|syscall|check_object|"
     r"virt_addr|slab|ip_|packet|tpacket|page|irq|softirq"),
    ("RX receive (syscalls, kernel UDP / af_packet)", r"firn-rx", r"net_af_packet|librte", r"."),
    ("wakeups + scheduling", r".", r".",
     r"finish_task_switch|schedule|futex|spin_unlock|try_to_wake|pthread_cond|"
     r"__lll|nanosleep|epoll|poll|select"),
    ("RX parse, session, dedupe, credit", r"firn-rx", r".", r"."),
    ("compress (ISA-L deflate)", r"firn-wr", r"libisal", r"deflate|huff|heap|hufftables|icf|"
     r"isal_|encode|gen_|build_"),
    ("checksum (CRC32C)", r"firn-wr", r".", r"crc"),
    ("encrypt (AES-GCM)", r"firn-wr", r"libcrypto", r"."),
    ("encrypt (AES-GCM)", r"firn-wr", r".", r"aes|gcm|EVP_"),
    ("write (io_uring, block layer)", r"firn-wr|iou-|firn-roll|kworker", r"kernel",
     r"."),
    ("write (io_uring, block layer)", r"firn-wr|firn-roll", r"liburing", r"."),
    ("block pack + seal (other writer work)", r"firn-wr", r".", r"."),
    ("write (io_uring, block layer)", r"iou-|firn-roll", r".", r"."),
    ("HTTP API and other threads", r".", r".", r"."),
]
STAGE_ORDER = [
    "RX receive (syscalls, kernel UDP / af_packet)",
    "RX decrypt + verify (AES-GCM)",
    "RX parse, session, dedupe, credit",
    "route (key hash, shard lookup)",
    "append to shard buffer (copy)",
    "block pack + seal (other writer work)",
    "compress (ISA-L deflate)",
    "encrypt (AES-GCM)",
    "checksum (CRC32C)",
    "write (io_uring, block layer)",
    "ack (build, seal, send)",
    "wakeups + scheduling",
    "HTTP API and other threads",
]
LINE_RE = re.compile(r"^\s*([0-9.]+)%\s+(\d+)\s+(\S+)\s+(\S+)\s+\[(.)\]\s+(.*)$")


def stages(report, records, hz, mhz, out_json):
    rules = [(s, re.compile(t), re.compile(d), re.compile(y, re.I)) for s, t, d, y in STAGE_RULES]
    per = {}
    total = 0
    top = []
    for line in open(report, errors="replace"):
        m = LINE_RE.match(line)
        if not m:
            continue
        samples = int(m.group(2))
        comm, dso, sym = m.group(3), m.group(4), m.group(6).strip()
        total += samples
        top.append({"share": float(m.group(1)), "thread": comm, "dso": dso, "symbol": sym})
        for stage, rt, rd, ry in rules:
            if rt.search(comm) and rd.search(dso) and ry.search(sym):
                per[stage] = per.get(stage, 0) + samples
                break
    if total == 0 or records <= 0:
        die(f"{report}: no samples, or no records")
    top = sorted(top, key=lambda t: -t["share"])[:25]
    cyc_per_sample = mhz * 1e6 / hz  # cpu-clock: one sample per 1/hz s of CPU time
    out = {"records": records, "samples": total, "sample_hz": hz, "cpu_mhz": mhz,
           "cycles_per_record_total": total * cyc_per_sample / records, "stages": [],
           "top_symbols": top}
    for s in STAGE_ORDER:
        n = per.get(s, 0)
        out["stages"].append({"stage": s, "samples": n, "share": n / total,
                              "cycles_per_record": n * cyc_per_sample / records})
    json.dump(out, open(out_json, "w"), indent=2)


# ---- the report ------------------------------------------------------------------------------

def load_runs(outdir):
    runs = []
    path = os.path.join(outdir, "runs.tsv")
    if not os.path.exists(path):
        return runs
    for line in open(path):
        f = line.rstrip("\n").split("\t")
        if len(f) < 8 or line.startswith("#"):
            continue
        name, system, kind, rep, js, hist, cpu, note = f[:8]
        r = {"name": name, "system": system, "kind": kind, "rep": int(rep or 0),
             "json": js, "hist": hist, "note": note,
             "server_cpu_us_per_rec": float(cpu) if cpu not in ("", "-") else None}
        if js and js != "-" and os.path.exists(os.path.join(outdir, js)):
            d = json.load(open(os.path.join(outdir, js)))
            r["data"] = d
            res, lat = d.get("results", {}), d.get("latency_us", {})
            r.update(rec_per_s=res.get("rec_per_s"), MBps=res.get("MBps"),
                     records=res.get("records"), p50=lat.get("p50"), p99=lat.get("p99"),
                     p999=lat.get("p999"), max=lat.get("max"))
        runs.append(r)
    return runs


NUM_RE = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


def load_refs(outdir):
    refs = {}
    path = os.path.join(outdir, "refs.tsv")
    if os.path.exists(path):
        for line in open(path):
            f = line.rstrip("\n").split("\t", 1)
            if len(f) == 2:
                # plain decimals only: a commit id like 48367e0 is not 48367.0
                refs[f[0]] = float(f[1]) if NUM_RE.match(f[1]) else f[1]
    return refs


def pick_median(runs):
    """Medians over the repetitions, each column on its own: rec/s, MB/s, every
    percentile, server CPU. The histogram (for the CDF) is the median-rec/s run's."""
    ok = [r for r in runs if r.get("rec_per_s")]
    if not ok:
        return None
    ok.sort(key=lambda r: r["rec_per_s"])
    m = dict(ok[(len(ok) - 1) // 2])
    for k in ("rec_per_s", "MBps", "p50", "p99", "p999", "max"):
        vals = [r[k] for r in ok if r.get(k) is not None]
        m[k] = median(vals) if vals else None
    m["reps"] = len(ok)
    m["rec_per_s_runs"] = [round(r["rec_per_s"]) for r in ok]
    cpus = [r["server_cpu_us_per_rec"] for r in ok if r["server_cpu_us_per_rec"] is not None]
    m["server_cpu_us_per_rec"] = median(cpus)
    return m


def table(headers, rows):
    w = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
         for i, h in enumerate(headers)]
    out = ["| " + " | ".join(str(h).ljust(w[i]) for i, h in enumerate(headers)) + " |",
           "|" + "|".join("-" * (x + 2) for x in w) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c).ljust(w[i]) for i, c in enumerate(r)) + " |")
    return "\n".join(out)


def report(outdir):
    runs = load_runs(outdir)
    refs = load_refs(outdir)
    skipped = {}
    for r in runs:
        if r["kind"] == "skipped":
            skipped[r["system"]] = r["note"]
    closed, fixed, ramps = {}, {}, {}
    for s in ORDER:
        closed[s] = pick_median([r for r in runs if r["system"] == s and r["kind"] == "closed"])
        fixed[s] = pick_median([r for r in runs if r["system"] == s and r["kind"] == "fixed"])
        rr = [r for r in runs if r["system"] == s and r["kind"] == "ramp" and "data" in r]
        if rr:
            ramps[s] = rr[0]
    firn = closed.get("firn-socket")
    firn_rps = firn["rec_per_s"] if firn else None
    lines = []
    summary = {"systems": {}, "fixed_rate": {}, "raw": {}, "ratios": {}, "knee": {},
               "skipped": skipped}

    # 1. max throughput, closed loop
    rows = []
    for s in ORDER:
        label, dur = SYSTEMS[s]
        c = closed.get(s)
        if c is None:
            if s in skipped:
                rows.append([label, dur, "skipped: " + skipped[s], "", "", "", "", "", ""])
            continue
        firn_ref = firn_rps if s in PEERS else None
        rows.append([label, dur, fnum(c["rec_per_s"]), fnum(c["MBps"], 2), fnum(c["p50"], 0),
                     fnum(c["p99"], 0), fnum(c["p999"], 0),
                     fnum(c["server_cpu_us_per_rec"], 2),
                     fnum(ratio(firn_ref, c["rec_per_s"]), 1) if firn_ref else ""])
        summary["systems"][s] = {
            "label": label, "durability": dur, "rec_per_s": c["rec_per_s"], "MBps": c["MBps"],
            "p50_us": c["p50"], "p99_us": c["p99"], "p999_us": c["p999"],
            "server_cpu_us_per_rec": c["server_cpu_us_per_rec"], "reps": c["reps"],
            "rec_per_s_runs": c["rec_per_s_runs"], "note": c["note"]}
        if s in PEERS and firn_rps:
            summary["ratios"]["firn_socket_over_" + s.replace("-", "_")] = ratio(
                firn_rps, c["rec_per_s"])
    http, kin = closed.get("firn-http"), closed.get("kinesalite")
    if http and kin:
        summary["ratios"]["firn_http_over_kinesalite"] = ratio(http["rec_per_s"],
                                                               kin["rec_per_s"])
    lines.append("Max throughput, closed loop, 100 B records (median of %s runs; latency is "
                 "to the durable ack / reply, at each client's window)"
                 % fnum(refs.get("reps"), 0))
    lines.append(table(["system", "durability", "records/s", "MB/s", "p50 us", "p99 us",
                        "p99.9 us", "server CPU us/rec", "firn-socket / this"], rows))

    # 2. latency at a common offered rate
    rows = []
    rate = refs.get("fixed_rate")
    ff = fixed.get("firn-socket")
    for s in ORDER:
        f = fixed.get(s)
        if f is None:
            continue
        rows.append([SYSTEMS[s][0], fnum(f["rec_per_s"]), fnum(f["p50"], 0), fnum(f["p99"], 0),
                     fnum(f["p999"], 0),
                     fnum(ratio(ff["p99"], f["p99"]), 2) if ff and s != "firn-socket" else ""])
        summary["fixed_rate"][s] = {"offered": rate, "rec_per_s": f["rec_per_s"],
                                    "p50_us": f["p50"], "p99_us": f["p99"], "p999_us": f["p999"]}
        if ff and s in PEERS:
            summary["ratios"]["firn_socket_p99_over_" + s.replace("-", "_") + "_p99"] = ratio(
                ff["p99"], f["p99"])
    if rows:
        lines.append("")
        lines.append("Ack latency at a common offered rate of %s records/s (open loop, latency "
                     "from each record's due time)" % fnum(rate))
        lines.append(table(["system", "acked/s", "p50 us", "p99 us", "p99.9 us",
                            "firn-socket p99 / this p99"], rows))

    # 3. raw references and firn/raw
    rows = []

    def raw_row(name, ref_key, firn_val, firn_what, unit="MB/s"):
        ref = refs.get(ref_key)
        if ref is None or isinstance(ref, str):
            rows.append([name, refs.get(ref_key + "_skipped", "not measured"), "", "", ""])
            return
        rows.append([name, fnum(ref, 1) + " " + unit, firn_what,
                     fnum(firn_val, 1) if firn_val is not None else "-",
                     fnum(ratio(firn_val, ref), 3) if firn_val is not None else "-"])
        summary["raw"][ref_key] = ref
        if firn_val is not None:
            summary["ratios"]["firn_over_" + ref_key] = ratio(firn_val, ref)

    fs = closed.get("firn-socket")
    fd = closed.get("firn-dpdk")
    raw_row("disk: fio O_DIRECT io_uring seq write 128 KiB qd 8", "fio_MBps",
            fs["MBps"] if fs else None, "firn-socket record MB/s")
    raw_row("packet path: dpdk-testpmd rx-only, same veth + netns, 1472 B datagrams",
            "testpmd_MBps", fd["MBps"] if fd else None, "firn-dpdk record MB/s")
    cpu = fs["server_cpu_us_per_rec"] if fs else None
    per_core = (100.0 / cpu) if cpu else None  # MB/s of 100 B records per firnd core
    for key, name in (("deflate_rand_MBps", "ISA-L deflate level 1, random data"),
                      ("deflate_log_MBps", "ISA-L deflate level 1, log lines"),
                      ("aes256gcm_MBps", "OpenSSL AES-256-GCM encrypt"),
                      ("crc32c_MBps", "ISA-L CRC32C"),
                      ("ec_3p2_MBps", "ISA-L erasure code 3+2")):
        raw_row("CPU: " + name + ", 1 core", key, per_core, "firnd MB/s per core")
    if refs.get("testpmd_pps") is not None and fd:
        summary["raw"]["testpmd_pps"] = refs["testpmd_pps"]
    lines.append("")
    lines.append("Raw references, same run, same machine")
    lines.append(table(["reference", "raw", "firn measure", "firn", "firn / raw"], rows))

    # 4. knee
    rows = []
    for s, r in ramps.items():
        d = r["data"]
        k = d.get("knee", {})
        steps = d.get("ramp", [])
        best = max((st["rec_per_s"] for st in steps), default=None)
        rows.append([SYSTEMS[s][0], fnum(k.get("rate")) if k.get("found") else "none",
                     fnum(k.get("p99_bound_us")), fnum(best), len(steps)])
        summary["knee"][s] = {"knee_rate": k.get("rate") if k.get("found") else None,
                              "p99_bound_us": k.get("p99_bound_us"), "max_acked": best,
                              "steps": [{"offered": st["offered_rate"],
                                         "acked": st["rec_per_s"],
                                         "p50_us": st["latency_us"]["p50"],
                                         "p99_us": st["latency_us"]["p99"],
                                         "p999_us": st["latency_us"]["p999"],
                                         "kept_up": st["kept_up"]} for st in steps]}
    if rows:
        lines.append("")
        lines.append("Knee (firn-bench --ramp: highest offered rate that kept up with p99 "
                     "under the bound)")
        lines.append(table(["system", "knee records/s", "p99 bound us", "max acked records/s",
                            "steps"], rows))

    # 5. stages
    sj = os.path.join(outdir, "stages.json")
    if os.path.exists(sj):
        st = json.load(open(sj))
        summary["stages"] = st
        rows = [[x["stage"], fnum(x["cycles_per_record"], 0), f"{100 * x['share']:.1f}%"]
                for x in st["stages"] if x["samples"] > 0]
        rows.append(["total firnd CPU", fnum(st["cycles_per_record_total"], 0), "100%"])
        lines.append("")
        lines.append("firnd per-stage cost, socket path, closed loop (perf cpu-clock samples "
                     "at %d Hz x %.0f MHz / %s records)"
                     % (st["sample_hz"], st["cpu_mhz"], fnum(st["records"])))
        lines.append(table(["stage", "cycles/record", "share"], rows))

    text = "\n".join(lines)
    summary["machine"] = {k[8:]: v for k, v in refs.items() if k.startswith("machine_")}
    summary["lab"] = {k: v for k, v in refs.items() if not k.startswith("machine_")}
    summary["runs"] = [{k: v for k, v in r.items() if k != "data"} for r in runs]
    json.dump(summary, open(os.path.join(outdir, "lab.json"), "w"), indent=2, sort_keys=True)
    open(os.path.join(outdir, "table.txt"), "w").write(text + "\n")
    write_plot_data(outdir, closed, ramps, runs)
    print(text)


def write_plot_data(outdir, closed, ramps, runs):
    pd = os.path.join(outdir, "plot")
    os.makedirs(pd, exist_ok=True)
    for s, r in ramps.items():
        with open(os.path.join(pd, f"ramp-{s}.dat"), "w") as f:
            f.write("# offered_rec_s acked_rec_s p50_us p99_us p999_us\n")
            for st in r["data"].get("ramp", []):
                lat = st["latency_us"]
                f.write(f"{st['offered_rate']:.0f} {st['rec_per_s']:.0f} {lat['p50']:.1f} "
                        f"{lat['p99']:.1f} {lat['p999']:.1f}\n")
    # latency CDF per system, from the median closed-loop run's histogram
    for s, c in closed.items():
        if c is None or not c.get("hist") or c["hist"] == "-":
            continue
        path = os.path.join(outdir, c["hist"])
        if not os.path.exists(path):
            continue
        pts = []
        for line in open(path):
            if line.startswith("#"):
                continue
            a = line.split()
            if len(a) == 2:
                pts.append((float(a[0]), int(a[1])))
        tot = sum(n for _, n in pts)
        if tot == 0:
            continue
        with open(os.path.join(pd, f"cdf-{s}.dat"), "w") as f:
            f.write("# latency_us cumulative_fraction\n")
            acc = 0
            for us, n in pts:
                acc += n
                f.write(f"{us:.3f} {acc / tot:.6f}\n")
    with open(os.path.join(pd, "bars.dat"), "w") as f:
        f.write("# system rec_per_s label\n")
        for s in ORDER:
            c = closed.get(s)
            if c is not None and c.get("rec_per_s"):
                f.write(f"{s} {c['rec_per_s']:.0f}\n")


def main():
    if len(sys.argv) < 2:
        die(__doc__)
    cmd = sys.argv[1]
    if cmd == "redis" and len(sys.argv) == 6:
        redis_convert(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    elif cmd == "stages" and len(sys.argv) == 7:
        stages(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]),
               sys.argv[6])
    elif cmd == "report" and len(sys.argv) == 3:
        report(sys.argv[2])
    else:
        die("usage: see the top of this file")


if __name__ == "__main__":
    main()
