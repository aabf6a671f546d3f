"""Shared helpers for the lib/client integration tests (tests/integration/client).

They run the real firnd on loopback (HTTP API and UDP data port on free
ports, data under /var/tmp because the store uses O_DIRECT), drive it with
`firn put --udp` and `firn-bench`, and read everything back through the
Kinesis API with `firn get --format json`, so the check goes through the
store and not through anything the producer remembers.

Skips (exit 77) only when a binary is missing or when firnd has no UDP data
port: it is detected honestly, by looking for a UDP socket bound on the
--listen port in /proc/net/udp once firnd says it is ready.
"""

import base64
import json
import os
import re
import subprocess
import sys
import time

# firnd_launch.py lives one directory up, in tests/integration, shared with the
# API tests. Put that directory on the path here rather than in meson's env, so
# the import works the same from meson (run from the build dir) and by hand.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from firnd_launch import SKIP, FirndProcess, free_port, pidfile_ready  # noqa: E402


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(SKIP)


def fail(why, firnd=None):
    print(f"FAIL: {why}")
    if firnd is not None:
        print("--- firnd log (tail)")
        print(firnd.tail())
    sys.exit(1)


# CRC32C (Castagnoli), the convention of doc/format.md: CRC32C("123456789") = 0xE3069283.
_CRC_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data):
    c = 0xFFFFFFFF
    t = _CRC_TABLE
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def udp_bound(port):
    """Is some socket bound to UDP port `port` (IPv4 or IPv6)?"""
    for path in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    local = line.split()[1]
                    if int(local.rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            pass
    return False


class Firnd(FirndProcess):
    """One firnd on free loopback ports (HTTP API and UDP data port) with its
    own data dir, ready once it has written its --pidfile (starting, stopping
    and killing it: ../firnd_launch.py)."""

    tail_lines = 30
    # A test that failed only wants firnd gone: SIGKILL, not SIGTERM and wait.
    graceful_cleanup = False

    def __init__(self, firnd, data_dir=None):
        super().__init__(firnd, data_dir=data_dir, prefix="firn-client-it-")
        self.api_port = free_port()
        self.udp_port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.api_port}"
        self.udp = f"127.0.0.1:{self.udp_port}"

    def start(self, timeout=30):
        pid = os.path.join(self.data_dir, "pid")
        if os.path.exists(pid):
            os.unlink(pid)
        return self.launch(
            ["--data-dir", os.path.join(self.data_dir, "data"), "--api",
             f"127.0.0.1:{self.api_port}", "--listen", self.udp, "--net", "socket",
             "--pidfile", pid, "--log-level", "info"],
            lambda: pidfile_ready(pid), timeout)


def setup(argv, need_bench=False):
    """Check the binaries, start firnd, and skip honestly if it has no UDP port."""
    if len(argv) < 3:
        print(f"usage: {argv[0]} FIRND FIRN [FIRN_BENCH]")
        sys.exit(2)
    firnd, firn = argv[1], argv[2]
    bench = argv[3] if len(argv) > 3 else None
    for name, path in (("firnd", firnd), ("firn", firn)) + ((("firn-bench", bench),)
                                                             if need_bench else ()):
        if not path or not os.access(path, os.X_OK):
            skip(f"{name} is not built ({path})")
    helptext = subprocess.run([firnd, "--help"], capture_output=True, text=True).stdout
    if "--listen" not in helptext:
        skip("firnd --help has no --listen: this firnd has no UDP data port")
    d = Firnd(firnd)
    try:
        d.start()
    except RuntimeError as e:
        d.cleanup()
        fail(str(e))
    if not udp_bound(d.udp_port):
        log = d.tail()
        d.cleanup()
        skip(f"firnd is up but nothing is bound on its --listen UDP port {d.udp_port}: this "
             f"build of firnd does not open the UDP data port (no UDP ingest).\n{log}")
    return d, firn, bench


def main(checks, need_bench=False):
    """Entry point of a client test: argv is FIRND FIRN [FIRN_BENCH]. Starts
    firnd (setup()), runs checks(d, firn, bench), which exits through fail()
    on the first failed check, then SIGTERM must stop firnd with exit 0.
    firnd is killed and its data dir removed however the test ends."""
    d, firn_bin, bench = setup(sys.argv, need_bench=need_bench)
    try:
        checks(d, firn_bin, bench)
        rc = d.stop()
        if rc != 0:
            fail(f"firnd exited {rc} on SIGTERM", d)
    finally:
        d.cleanup()
    print("PASS")


def run(args, stdin=None, timeout=300, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(args, input=stdin, capture_output=True, timeout=timeout, env=e)


def firn(d, firn_bin, *args, stdin=None, check=True, timeout=300):
    p = run([firn_bin, "--endpoint", d.endpoint, *args], stdin=stdin, timeout=timeout)
    if check and p.returncode != 0:
        fail(f"firn {' '.join(args)} exited {p.returncode}: {p.stderr.decode(errors='replace')}",
             d)
    return p


def create_stream(d, firn_bin, name, shards):
    firn(d, firn_bin, "stream", "create", name, "--shards", str(shards))
    deadline = time.time() + 30
    while time.time() < deadline:
        p = firn(d, firn_bin, "stream", "describe", name, check=False)
        if p.returncode == 0 and re.search(rb"status\s+ACTIVE", p.stdout):
            return
        time.sleep(0.1)
    fail(f"stream {name} did not become ACTIVE", d)


def read_all(d, firn_bin, stream):
    """Every record of the stream: {sequence number: (shard, key bytes, data bytes)}, and the
    count of records read (to catch a record stored twice under two sequence numbers)."""
    p = firn(d, firn_bin, "get", stream, "--format", "json", timeout=600)
    out = {}
    n = 0
    for line in p.stdout.splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        n += 1
        seq = r["SequenceNumber"]
        if seq in out:
            fail(f"sequence number {seq} read twice", d)
        out[seq] = (r["ShardId"], r["PartitionKey"].encode(), base64.b64decode(r["Data"]))
    return out, n
