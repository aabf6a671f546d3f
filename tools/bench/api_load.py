#!/usr/bin/env python3
"""Closed-loop PutRecords load against a Kinesis-compatible endpoint.

    api_load.py --endpoint http://127.0.0.1:4567 --stream bench --clients 8 \\
                --records 500 --size 100 --seconds 10

N client processes (not threads: the GIL would make the client the
bottleneck), each with one keep-alive HTTP/1.1 connection, send PutRecords of
--records records of --size random bytes with random partition keys, signed
with SigV4 per request exactly as botocore signs (the signing key is derived
once per day-scope, the body hash and signature per request). A record counts
only when the reply is 200 and its entry has a SequenceNumber; failed entries
(throttling) are not retried and not counted. Prints one JSON line:

    {"records_per_s": ..., "requests": ..., "failed_records": ..., "errors": ...,
     "p50_ms": ..., "p99_ms": ..., "seconds": ...}
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import http.client
import json
import multiprocessing
import os
import random
import re
import sys
import time
import urllib.parse


FAILED_RE = re.compile(rb'"FailedRecordCount":\s*(\d+)')


def signing_key(secret, date, region):
    k = ("AWS4" + secret).encode()
    for m in (date, region, "kinesis", "aws4_request"):
        k = hmac.new(k, m.encode(), hashlib.sha256).digest()
    return k


def signed_headers(host, body, target, akid, secret, region, key_cache):
    now = datetime.datetime.now(datetime.timezone.utc)
    amz = now.strftime("%Y%m%dT%H%M%SZ")
    date = amz[:8]
    if key_cache.get("date") != date:
        key_cache["date"] = date
        key_cache["key"] = signing_key(secret, date, region)
    ctype = "application/x-amz-json-1.1"
    canon = "\n".join([
        "POST", "/", "",
        f"content-type:{ctype}\nhost:{host}\nx-amz-date:{amz}\nx-amz-target:{target}\n",
        "content-type;host;x-amz-date;x-amz-target",
        hashlib.sha256(body).hexdigest()])
    scope = f"{date}/{region}/kinesis/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz, scope,
                     hashlib.sha256(canon.encode()).hexdigest()])
    sig = hmac.new(key_cache["key"], sts.encode(), hashlib.sha256).hexdigest()
    return {
        "Content-Type": ctype, "Host": host, "X-Amz-Date": amz, "X-Amz-Target": target,
        "Authorization": f"AWS4-HMAC-SHA256 Credential={akid}/{scope}, "
                         f"SignedHeaders=content-type;host;x-amz-date;x-amz-target, "
                         f"Signature={sig}",
    }


def worker(args, idx, deadline, warm_until, q):
    u = urllib.parse.urlsplit(args.endpoint)
    rnd = random.Random(idx * 7919 + 1)
    bodies = []
    for _ in range(8):
        recs = [{"Data": base64.b64encode(rnd.randbytes(args.size)).decode(),
                 "PartitionKey": "%016x" % rnd.getrandbits(64)} for _ in range(args.records)]
        bodies.append(json.dumps({"StreamName": args.stream, "Records": recs}).encode())
    conn = None
    cache = {}
    ok = failed = errors = reqs = 0
    lat = []
    target = "Kinesis_20131202.PutRecords"
    i = 0
    while time.time() < deadline:
        body = bodies[i % len(bodies)]
        i += 1
        hdrs = signed_headers(u.netloc, body, target, args.access_key, args.secret_key,
                              args.region, cache)
        t0 = time.time()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
            conn.request("POST", "/", body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            conn = None
            time.sleep(0.01)
            continue
        t1 = time.time()
        if t0 < warm_until:
            continue
        reqs += 1
        lat.append(t1 - t0)
        if r.status != 200:
            errors += 1
            continue
        # The count leads the reply; parsing all 500 entries would make the
        # client, not the server, the bottleneck.
        m = FAILED_RE.search(data, 0, 256)
        f = int(m.group(1)) if m else json.loads(data).get("FailedRecordCount", 0)
        ok += args.records - f
        failed += f
    q.put((ok, failed, errors, reqs, lat))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--stream", required=True)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--records", type=int, default=500)
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--warmup", type=float, default=1)
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--access-key", default=os.environ.get("AWS_ACCESS_KEY_ID",
                                                          "FIRNDEMOACCESSKEY"))
    p.add_argument("--secret-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY",
                                                          "firn-demo-secret-change-me"))
    args = p.parse_args()
    start = time.time() + 0.5
    warm_until = start + args.warmup
    deadline = warm_until + args.seconds
    q = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=worker, args=(args, i, deadline, warm_until, q))
             for i in range(args.clients)]
    for pr in procs:
        pr.start()
    res = [q.get(timeout=args.seconds + args.warmup + 120) for _ in procs]
    for pr in procs:
        pr.join()
    ok = sum(r[0] for r in res)
    lat = sorted(x for r in res for x in r[4])
    out = {
        "records_per_s": round(ok / args.seconds, 1),
        "requests": sum(r[3] for r in res),
        "failed_records": sum(r[1] for r in res),
        "errors": sum(r[2] for r in res),
        "p50_ms": round(lat[len(lat) // 2] * 1000, 2) if lat else None,
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 2) if lat else None,
        "seconds": args.seconds,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
