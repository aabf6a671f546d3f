#!/usr/bin/env python3
"""A producer rides out an appliance crash (doc/protocol.md §8.3).

    client_crash.py FIRND FIRN FIRN_BENCH

firn-bench offers 16000 records over UDP at 4000 records/s with --ack-log.
After 1.5 s firnd is killed with SIGKILL and started again on the same data
directory and ports. The producer notices (RESET or silence), handshakes
again as the same producer and resends what had no DURABLE ack yet. At the
end firn-bench must exit 0 with every record acked, and the stream must hold
each acked record exactly once, at the sequence number in the ack log, with
the same data: nothing lost, nothing stored twice.
"""

import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import client_common as cc  # noqa: E402


def checks(d, firn_bin, bench):
    n = 16000
    cc.create_stream(d, firn_bin, "crash", 4)
    log = os.path.join(d.data_dir, "ack.log")
    js = os.path.join(d.data_dir, "bench.json")
    proc = subprocess.Popen([bench, "--udp", d.udp, "--stream", "crash", "--records", str(n),
                             "--size", "200", "--sessions", "2", "--rate", "4000",
                             "--ack-log", log, "--json", js, "--drain", "90"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.5)
    if proc.poll() is not None:
        cc.fail(f"firn-bench ended before the crash: {proc.communicate()}", d)
    d.kill9()
    print("ok: firnd killed with SIGKILL under load")
    time.sleep(0.5)
    d.start()
    print("ok: firnd restarted on the same data directory and ports")
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        cc.fail(f"firn-bench did not finish: {err.decode(errors='replace')}", d)
    if proc.returncode != 0:
        cc.fail(f"firn-bench exited {proc.returncode}: {out!r} "
                f"{err.decode(errors='replace')}", d)
    m = re.match(rb"records=(\d+) ", out)
    if m is None or int(m.group(1)) != n:
        cc.fail(f"firn-bench: {out!r}, want records={n}", d)
    print(f"ok: firn-bench: {out.decode().strip()}")
    with open(js) as f:
        res = json.load(f)["results"]
    if res["reconnects"] < 2:
        cc.fail(f"the producer's 2 sessions handshook again {res['reconnects']} times; each "
                f"should have noticed the crash", d)
    print(f"ok: both sessions handshook again ({res['reconnects']} reconnects, "
          f"{res['resent_pieces']} pieces resent)")
    with open(log) as f:
        rows = [r.split() for r in f.read().splitlines()]
    if len(rows) != n or len({r[2] for r in rows}) != n:
        cc.fail(f"ack log: {len(rows)} lines, {len({r[2] for r in rows})} distinct "
                f"sequence numbers, want {n}", d)
    stored, count = cc.read_all(d, firn_bin, "crash")
    if count != n:
        cc.fail(f"the stream holds {count} records after the crash, {n} were acked once "
                f"each (lost or stored twice)", d)
    for key, shard, seq, crc in rows:
        got = stored.get(seq)
        if got is None or got[0] != shard or got[1] != key.encode() or \
                cc.crc32c(got[2]) != int(crc, 16):
            cc.fail(f"acked {seq} ({key}, {shard}, {crc}) is not in the stream as acked: "
                    f"{got and (got[0], got[1], '%08x' % cc.crc32c(got[2]))}", d)
    print(f"ok: all {n} acked records present exactly once at their acked sequence numbers")


if __name__ == "__main__":
    cc.main(checks, need_bench=True)
