"""Reshard a stream through firnd's Kinesis API while ingest_reshard.sh's
producers send, and check afterwards where their acked records landed.

    python3 ingest_reshard.py ENDPOINT STREAM EVENTS split SHARD
    python3 ingest_reshard.py ENDPOINT STREAM EVENTS merge SHARD ADJACENT
    python3 ingest_reshard.py ENDPOINT STREAM EVENTS scale TARGET
    python3 ingest_reshard.py ENDPOINT STREAM EVENTS check ACKLOG:T0:RATE...

split cuts shard SHARD (an index) at the midpoint of its hash range, merge
joins two adjacent open shards, scale is UpdateShardCount (UNIFORM_SCALING).
Each appends one line to EVENTS: "name wall_time_after_it_returned
first_new_index" (the children have indexes >= first_new_index: indexes
only grow) and prints the open layout.

check reads the stream's shards (ListShards: open and closed, with hash
ranges and lineage) and each producer's ack log ("seq shard counter"; the
producer started at wall time T0 or later and paced new records at RATE
per second, so record seq was first sent no earlier than T0 + (seq-1)/RATE)
and checks, for every acked record:
  - its shard exists and its hash range holds MD5 of the record's key
    ("key-SEQ", ingest_client's default): the route was right on whatever
    layout was current;
  - a record first sent after a reshard returned is not in a shard that
    reshard or an earlier one closed (the parents of their children):
    nothing was appended to a sealed parent after the API said it was
    closed;
and that every reshard has acks of every producer both in its parents and
in its children, so each one happened with all of them mid-stream.
Exit 0 ok, 1 failure, 77 when boto3 is missing.
"""

import hashlib
import sys
import time

try:
    import boto3
    import botocore.config
except ImportError:
    print("SKIP: boto3 is not installed")
    sys.exit(77)

MARGIN_S = 0.1  # clock slack between the shell's start time and the producer's


def client(endpoint):
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="FIRNDEMOACCESSKEY",
        aws_secret_access_key="firn-demo-secret-change-me",
        # one attempt: a retried split would fail on the shard the first closed
        config=botocore.config.Config(retries={"max_attempts": 1}, read_timeout=60),
    )


def shards(k, stream):
    out, token = [], None
    while True:
        r = k.list_shards(NextToken=token) if token else k.list_shards(StreamName=stream)
        out += r["Shards"]
        token = r.get("NextToken")
        if not token:
            return out


def index(shard_id):
    return int(shard_id.split("-")[1])


def shard_id(i):
    return f"shardId-{i:012d}"


def is_open(sh):
    return "EndingSequenceNumber" not in sh["SequenceNumberRange"]


def reshard(k, stream, events, op, args):
    before = shards(k, stream)
    first_new = max(index(s["ShardId"]) for s in before) + 1
    t = time.monotonic()
    if op == "split":
        sh = next(s for s in before if index(s["ShardId"]) == int(args[0]))
        lo = int(sh["HashKeyRange"]["StartingHashKey"])
        hi = int(sh["HashKeyRange"]["EndingHashKey"])
        k.split_shard(StreamName=stream, ShardToSplit=sh["ShardId"],
                      NewStartingHashKey=str((lo + hi + 1) // 2))
    elif op == "merge":
        k.merge_shards(StreamName=stream, ShardToMerge=shard_id(int(args[0])),
                       AdjacentShardToMerge=shard_id(int(args[1])))
    elif op == "scale":
        k.update_shard_count(StreamName=stream, TargetShardCount=int(args[0]),
                             ScalingType="UNIFORM_SCALING")
    else:
        sys.exit(f"unknown operation {op}")
    took = time.monotonic() - t
    done = time.time()
    with open(events, "a") as f:
        f.write(f"{op} {done:.6f} {first_new}\n")
    after = shards(k, stream)
    layout = [index(s["ShardId"]) for s in after if is_open(s)]
    print(f"{op} {' '.join(args)}: {took * 1000:.0f} ms, open shards now {layout}")
    if not any(index(s["ShardId"]) >= first_new for s in after):
        sys.exit(f"{op}: no new shard after it returned")


def check(k, stream, events, producers):
    layout = {index(s["ShardId"]): s for s in shards(k, stream)}
    evs = []
    with open(events) as f:
        for line in f:
            name, when, first_new = line.split()
            evs.append((name, float(when), int(first_new)))
    bad = 0
    # each reshard's children (indexes first_new up to the next one's) and their parents
    kids, parents = [], []
    for i, (_, _, first_new) in enumerate(evs):
        end = evs[i + 1][2] if i + 1 < len(evs) else max(layout) + 1
        kids.append(set(range(first_new, end)))
        parents.append({index(layout[c][p]) for c in kids[-1] if c in layout
                        for p in ("ParentShardId", "AdjacentParentShardId") if p in layout[c]})
    # the shards closed once each reshard returned: its parents and the earlier ones'
    closed_by = [set().union(*parents[: i + 1]) for i in range(len(evs))]
    for spec in producers:
        per_ev = [[0, 0] for _ in evs]  # this producer's acks in its parents, in its children
        path, t0, rate = spec.rsplit(":", 2)
        t0, rate = float(t0), float(rate)
        n = 0
        with open(path) as f:
            for line in f:
                seq, sh, _counter = (int(x) for x in line.split())
                n += 1
                s = layout.get(sh)
                if s is None:
                    print(f"{path}: seq {seq} acked in shard {sh}, which the stream never had")
                    bad += 1
                    continue
                h = int.from_bytes(hashlib.md5(f"key-{seq}".encode()).digest(), "big")
                lo = int(s["HashKeyRange"]["StartingHashKey"])
                hi = int(s["HashKeyRange"]["EndingHashKey"])
                if not lo <= h <= hi:
                    bad += 1
                    if bad <= 20:
                        print(f"{path}: seq {seq} in shard {sh} [{lo}, {hi}], "
                              f"its key hashes to {h}")
                first_sent = t0 + (seq - 1) / rate
                for i, (name, when, _) in enumerate(evs):
                    if sh in parents[i]:
                        per_ev[i][0] += 1
                    elif sh in kids[i]:
                        per_ev[i][1] += 1
                    if first_sent > when + MARGIN_S and sh in closed_by[i]:
                        bad += 1
                        if bad <= 20:
                            print(f"{path}: seq {seq}, first sent {first_sent - when:.3f} s "
                                  f"after {name} returned, is in shard {sh}, closed by then")
        print(f"{path}: {n} acks checked")
        for (name, _, _), par, kid, (old, new) in zip(evs, parents, kids, per_ev):
            print(f"  {name}: {old} acks in its parents {sorted(par)}, {new} in its "
                  f"children {sorted(kid)}")
            if old == 0 or new == 0:
                print(f"  {name} did not happen with this producer's records on both sides")
                bad += 1
    closed = sorted(i for i, s in layout.items() if not is_open(s))
    opened = sorted(i for i, s in layout.items() if is_open(s))
    print(f"layout: closed {closed}, open {opened}")
    if bad:
        sys.exit(f"{bad} problems")


def main():
    endpoint, stream, events, op = sys.argv[1:5]
    k = client(endpoint)
    if op == "check":
        check(k, stream, events, sys.argv[5:])
    else:
        reshard(k, stream, events, op, sys.argv[5:])


if __name__ == "__main__":
    main()
