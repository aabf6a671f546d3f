#!/usr/bin/env python3
"""lib/client end to end against the real firnd on loopback.

    client_udp.py FIRND FIRN FIRN_BENCH

1. `firn put --udp` of N lines (-v prints "LINE shardId SEQ" per durable ack):
   exit 0, N acks with N distinct sequence numbers, and reading the stream
   back through the HTTP API finds exactly N records, each at its acked
   sequence number and shard, with the line as data and its line number as
   partition key. A stream that does not exist: exit 1, and the message says
   so and counts the records.
2. `firn-bench --udp --records 20000 --size 100 --sessions 2 --ack-log`:
   exit 0, one summary line with records=20000, an ack log of 20000 lines
   with distinct sequence numbers, and every logged record read back with
   the same shard, key and data CRC32C; nothing else in the stream. Then
   again with --size 3000 (3000 records) and --size 20000 (2000 records):
   every record is FRAGMENTed and reassembled by firnd, and all must be
   acked within the drain time (regression: reassembled records pinned the
   session's 4 reassembly slots until the end of an RX burst, so firnd
   dropped most fragments as reasm_full and the client stalled).
3. The same with `firn-bench --http` (PutRecords through the Kinesis API).
"""

import os
import random
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import client_common as cc  # noqa: E402

SUMMARY = re.compile(rb"^records=(\d+) bytes=(\d+) secs=[\d.]+ rec_per_s=\d+ MBps=[\d.]+ "
                     rb"p50_us=[\d.]+ p99_us=[\d.]+ p999_us=[\d.]+ max_us=[\d.]+ "
                     rb"cpu_us_per_rec=[\d.]+$")


def check_put(d, firn_bin):
    n = 1500
    rnd = random.Random(4)
    lines = [f"line {i + 1} {rnd.getrandbits(64):016x}" + "x" * rnd.randrange(0, 300)
             for i in range(n)]
    cc.create_stream(d, firn_bin, "cput", 3)
    p = cc.run([firn_bin, "-v", "put", "--udp", d.udp, "cput", "-"],
               stdin=("\n".join(lines) + "\n").encode())
    if p.returncode != 0:
        cc.fail(f"firn put --udp exited {p.returncode}: {p.stderr.decode(errors='replace')}", d)
    acks = {}
    for row in p.stdout.splitlines():
        lineno, shard, seq = row.decode().split()
        if lineno in acks:
            cc.fail(f"line {lineno} acked twice", d)
        acks[lineno] = (shard, seq)
    if len(acks) != n:
        cc.fail(f"{len(acks)} acks for {n} lines", d)
    if len({s for _, s in acks.values()}) != n:
        cc.fail("sequence numbers are not distinct", d)
    stored, count = cc.read_all(d, firn_bin, "cput")
    if count != n:
        cc.fail(f"the stream holds {count} records, {n} were put", d)
    for lineno, (shard, seq) in acks.items():
        if seq not in stored:
            cc.fail(f"line {lineno}: acked sequence number {seq} is not in the stream", d)
        s_shard, key, data = stored[seq]
        if s_shard != shard or key != lineno.encode() or data != lines[int(lineno) - 1].encode():
            cc.fail(f"line {lineno}: stored {s_shard} {key!r} {data[:40]!r} differs from the ack",
                    d)
    print(f"ok: firn put --udp: {n} lines acked, read back at their acked sequence numbers")

    p = cc.run([firn_bin, "put", "--udp", d.udp, "no-such-stream", "-"], stdin=b"a\nb\nc\n")
    err = p.stderr.decode(errors="replace")
    if p.returncode != 1 or "3 of 3 records were not durably acked" not in err or \
            "unknown stream" not in err:
        cc.fail(f"put to a missing stream: exit {p.returncode}, stderr: {err}", d)
    print("ok: firn put --udp to a missing stream exits 1: " + err.strip().splitlines()[-1])


def check_bench(d, firn_bin, bench, mode, size=100, n=None):
    """firn-bench --ack-log against firnd, then every acked record read back.

    A size over one datagram (> ~1400 bytes) makes every record travel as
    FRAGMENTs: that is the regression run for reassembled records holding
    their few per-session slots until the end of an RX burst (every later
    fragment dropped as reasm_full, the client stalled on durable timeouts).
    """
    stream = ("cbench" if mode == "udp" else "chttp") + ("" if size == 100 else f"{size}")
    if n is None:
        n = 20000 if mode == "udp" else 5000
    log = os.path.join(d.data_dir, f"ack-{mode}-{size}.log")
    js = os.path.join(d.data_dir, f"bench-{mode}-{size}.json")
    cc.create_stream(d, firn_bin, stream, 4)
    target = ["--udp", d.udp] if mode == "udp" else ["--http", d.endpoint]
    p = cc.run([bench, *target, "--stream", stream, "--records", str(n), "--size", str(size),
                "--sessions", "2", "--ack-log", log, "--json", js, "--drain", "60"], timeout=600)
    out = p.stdout.strip().splitlines()
    if p.returncode != 0 or len(out) != 1 or not SUMMARY.match(out[0]):
        cc.fail(f"firn-bench --{mode}: exit {p.returncode}, stdout {p.stdout!r}, "
                f"stderr {p.stderr.decode(errors='replace')}", d)
    m = SUMMARY.match(out[0])
    if int(m.group(1)) != n or int(m.group(2)) != n * size:
        cc.fail(f"firn-bench --{mode}: {out[0]!r}, want records={n}", d)
    with open(log) as f:
        rows = [r.split() for r in f.read().splitlines()]
    if len(rows) != n:
        cc.fail(f"ack log has {len(rows)} lines, want {n}", d)
    seqs = {r[2] for r in rows}
    if len(seqs) != n:
        cc.fail(f"ack log has {len(seqs)} distinct sequence numbers, want {n}", d)
    stored, count = cc.read_all(d, firn_bin, stream)
    if count != n:
        cc.fail(f"the stream holds {count} records, {n} were acked", d)
    for key, shard, seq, crc in rows:
        if not re.fullmatch(r"shardId-\d{12}", shard) or not re.fullmatch(r"\d{39}", seq) or \
                not re.fullmatch(r"[0-9a-f]{8}", crc):
            cc.fail(f"bad ack log line: {key} {shard} {seq} {crc}", d)
        got = stored.get(seq)
        if got is None:
            cc.fail(f"acked {seq} ({key}) is not in the stream", d)
        if got[0] != shard or got[1] != key.encode() or cc.crc32c(got[2]) != int(crc, 16):
            cc.fail(f"{seq}: stored ({got[0]}, {got[1]!r}, crc {cc.crc32c(got[2]):08x}) differs "
                    f"from the ack log ({shard}, {key}, {crc})", d)
    print(f"ok: firn-bench --{mode} --size {size}: {out[0].decode()}")
    print(f"ok: {n} acked records of {size} bytes read back with matching shard, key and CRC32C")


def check_metrics(d):
    """GET /metrics carries the UDP pipeline's counters, and they add up."""
    import urllib.request
    text = urllib.request.urlopen(d.endpoint + "/metrics", timeout=10).read().decode()
    vals = {}
    for line in text.splitlines():
        if line.startswith("firn_ingest_"):
            name, _, v = line.partition(" ")
            vals[name] = int(v)
    for name in ("firn_ingest_records_acked_total", "firn_ingest_rx_datagrams_total",
                 "firn_ingest_sessions_opened_total", "firn_ingest_waiting"):
        if name not in vals:
            cc.fail(f"/metrics lacks {name}", d)
    # 1500 lines from firn put + 20000 records from firn-bench went over UDP.
    if vals["firn_ingest_records_acked_total"] < 21500:
        cc.fail(f"firn_ingest_records_acked_total={vals['firn_ingest_records_acked_total']}, "
                "want >= 21500", d)
    if vals["firn_ingest_waiting"] != 0:
        cc.fail(f"firn_ingest_waiting={vals['firn_ingest_waiting']} after all acks", d)
    print(f"ok: /metrics ingest counters (acked={vals['firn_ingest_records_acked_total']})")


def checks(d, firn_bin, bench):
    check_put(d, firn_bin)
    check_bench(d, firn_bin, bench, "udp")
    # Records of 2+ and 15+ datagrams: every one is reassembled by firnd.
    check_bench(d, firn_bin, bench, "udp", size=3000, n=3000)
    check_bench(d, firn_bin, bench, "udp", size=20000, n=2000)
    check_bench(d, firn_bin, bench, "http")
    check_metrics(d)


if __name__ == "__main__":
    cc.main(checks, need_bench=True)
