#!/usr/bin/env python3
"""net_udp_client.py - the producer side of the DPDK veth tests (runs in the netns).

  echo HOST PORT --count N [--max-size B]     send N datagrams of many sizes in
                                              windows of 16; every echo must come
                                              back byte for byte (exit 1 if not)
  noecho HOST PORT SIZE                       one datagram that must NOT be echoed
                                              (e.g. larger than the link MTU: the
                                              kernel fragments it, the port drops
                                              fragments)
  garbage IFACE DST_IP PORT                   raw frames the port must drop and count
  sendto HOST PORT MY_IP MY_PORT              ask the port to send HELLO to MY_IP:MY_PORT
                                              (an address it never heard from) and
                                              wait for it
Every wait has a timeout; exit 0 pass, 1 fail.
"""
import os
import random
import socket
import struct
import subprocess
import sys
import time

SIZES_JUMBO = [1, 8, 64, 100, 512, 1000, 1400, 1472, 1473, 2000, 4000, 8000, 8900, 8972]


def payload(seq, size):
    rnd = random.Random(seq * 7919 + size)
    body = bytes(rnd.getrandbits(8) for _ in range(max(0, size - 4)))
    return (struct.pack("!I", seq) + body)[:size] if size >= 4 else bytes([seq & 0xFF]) * size


def cmd_echo(host, port, count, max_size):
    sizes = [s for s in SIZES_JUMBO if s <= max_size]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.connect((host, port))
    s.settimeout(2.0)
    seq, ok, biggest = 0, 0, 0
    while seq < count:
        window = {}
        for i in range(min(16, count - seq)):
            size = sizes[(seq + i) % len(sizes)]
            data = payload(seq + i, size)
            window[(seq + i, size)] = data
            s.send(data)
        pending = dict(window)
        deadline = time.monotonic() + 3.0
        while pending and time.monotonic() < deadline:
            try:
                got = s.recv(65536)
            except socket.timeout:
                break
            key = None
            for k, v in pending.items():
                if v == got:
                    key = k
                    break
            if key is None:
                print(f"FAIL: echo of {len(got)} bytes matches nothing sent")
                return 1
            del pending[key]
            ok += 1
            biggest = max(biggest, len(got))
        if pending:
            print(f"FAIL: no echo for {sorted(pending)[:5]} (of {len(pending)} missing)")
            return 1
        seq += len(window)
    print(f"ok: {ok} datagrams echoed byte for byte, largest {biggest}")
    return 0


def cmd_noecho(host, port, size):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))
    s.settimeout(1.0)
    s.send(payload(424242, size))
    try:
        got = s.recv(65536)
        print(f"FAIL: {size}-byte datagram was echoed ({len(got)} bytes)")
        return 1
    except socket.timeout:
        print(f"ok: {size}-byte datagram not echoed")
        return 0


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total) & 0xFFFF


def ipv4(src, dst, proto, body, ttl=64, frag=0x4000, total=None, bad_cksum=False):
    tl = total if total is not None else 20 + len(body)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, tl, 0x1234, frag, ttl, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    c = checksum(hdr)
    if bad_cksum:
        c ^= 0x5555
    return hdr[:10] + struct.pack("!H", c) + hdr[12:] + body


def udp(sport, dport, data, length=None):
    return struct.pack("!HHHH", sport, dport, length if length is not None else 8 + len(data), 0) + data


def neighbour_mac(ip, iface):
    out = subprocess.run(["ip", "neigh", "show", ip, "dev", iface], capture_output=True,
                         text=True).stdout.split()
    return bytes.fromhex(out[out.index("lladdr") + 1].replace(":", "")) if "lladdr" in out else None


def cmd_garbage(iface, dst_ip, port):
    dmac = neighbour_mac(dst_ip, iface)
    if dmac is None:
        print(f"FAIL: no neighbour entry for {dst_ip} on {iface} (ping it first)")
        return 1
    with open(f"/sys/class/net/{iface}/address") as f:
        smac = bytes.fromhex(f.read().strip().replace(":", ""))
    src_ip = socket.inet_ntoa(socket.inet_aton(dst_ip)[:3] + b"\x01")
    eth = lambda etype: dmac + smac + struct.pack("!H", etype)
    good_udp = udp(40000, port, b"x" * 32)
    frames = {
        # not ours
        "ethertype 0x88b5": eth(0x88B5) + os.urandom(60),
        "ipv6": eth(0x86DD) + os.urandom(60),
        "udp wrong port": eth(0x0800) + ipv4(src_ip, dst_ip, 17, udp(40000, port + 1, b"y" * 16)),
        "udp wrong dst ip": eth(0x0800) + ipv4(src_ip, "198.18.0.77", 17, good_udp),
        "igmp": eth(0x0800) + ipv4(src_ip, dst_ip, 2, os.urandom(8)),
        # bad
        "bad ip checksum": eth(0x0800) + ipv4(src_ip, dst_ip, 17, good_udp, bad_cksum=True),
        "ip total > frame": eth(0x0800) + ipv4(src_ip, dst_ip, 17, good_udp, total=1400),
        "udp length > ip": eth(0x0800) + ipv4(src_ip, dst_ip, 17, udp(40000, port, b"z" * 16, 200)),
        "ip version 5": eth(0x0800) + bytes([0x55]) + ipv4(src_ip, dst_ip, 17, good_udp)[1:],
        "random after ipv4 type": eth(0x0800) + os.urandom(9),
        # fragments (MF set; then an offset-only tail)
        "fragment head": eth(0x0800) + ipv4(src_ip, dst_ip, 17, good_udp, frag=0x2000),
        "fragment tail": eth(0x0800) + ipv4(src_ip, dst_ip, 17, b"t" * 16, frag=0x0003),
    }
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    for name, f in frames.items():
        for _ in range(2):
            s.send(f)
    # a few thousand random frames at the port's MAC too
    for _ in range(2000):
        s.send(eth(random.choice([0x0800, 0x0806, 0x1234])) + os.urandom(random.randint(0, 200)))
    print(f"ok: sent {2 * len(frames)} crafted and 2000 random frames")
    return 0


def cmd_sendto(host, port, my_ip, my_port):
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.bind((my_ip, my_port))
    r.settimeout(5.0)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(f"SENDTO {my_ip} {my_port}".encode(), (host, port))
    try:
        data, src = r.recvfrom(100)
    except socket.timeout:
        print(f"FAIL: no HELLO at {my_ip}:{my_port} within 5 s")
        return 1
    if data != b"HELLO" or src != (host.split("/")[0], port):
        print(f"FAIL: got {data!r} from {src}")
        return 1
    print(f"ok: HELLO from {src} to an address the port had to ARP for")
    return 0


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "echo":
        count, max_size = 200, 8972
        host, port = args[0], int(args[1])
        rest = args[2:]
        while rest:
            if rest[0] == "--count":
                count = int(rest[1])
            elif rest[0] == "--max-size":
                max_size = int(rest[1])
            rest = rest[2:]
        return cmd_echo(host, port, count, max_size)
    if cmd == "noecho":
        return cmd_noecho(args[0], int(args[1]), int(args[2]))
    if cmd == "garbage":
        return cmd_garbage(args[0], args[1], int(args[2]))
    if cmd == "sendto":
        return cmd_sendto(args[0], int(args[1]), args[2], int(args[3]))
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
