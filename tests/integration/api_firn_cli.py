#!/usr/bin/env python3
"""The firn CLI against a real firnd: stream create/list/describe/split/merge/
retention/reshard/delete, put --http (lines, --blob, --key), get (every start
point, --shard, --limit, --format json, across a split), and where the endpoint
and credentials come from (flags, FIRN_ENDPOINT, AWS_* and FIRN_* variables,
a config file). Results are cross-checked with boto3."""

import base64
import json
import os
import subprocess
import sys
import tempfile
import time

from api_common import SKIP, FirndTestCase, main


class FirnCli(FirndTestCase):

    def firn(self, *args, stdin=None, env=None, check=True, endpoint=True):
        e = {k: v for k, v in os.environ.items()
             if not k.startswith(("AWS_", "FIRN_"))}
        e["HOME"] = tempfile.gettempdir()
        e.update(env or {})
        cmd = [self.firn_path] + (["--endpoint", self.d.endpoint] if endpoint else []) + list(args)
        p = subprocess.run(cmd, input=stdin, capture_output=True, env=e, timeout=120)
        if check and p.returncode != 0:
            raise AssertionError(f"{cmd} -> {p.returncode}: {p.stderr.decode()}")
        return p

    def test_stream_admin(self):
        out = self.firn("stream", "create", "cli1", "--shards", "3").stdout.decode()
        self.assertIn("created stream cli1 with 3 shards", out)
        self.assertIn("cli1", self.firn("stream", "list").stdout.decode().split())
        d = self.firn("stream", "describe", "cli1").stdout.decode()
        self.assertIn("status      ACTIVE", d)
        self.assertIn("arn:aws:kinesis:us-east-1:000000000000:stream/cli1", d)
        self.assertIn("shards      3 open, 0 closed", d)
        # Split at mid-range by default.
        self.firn("stream", "split", "cli1", "shardId-000000000000")
        shards = {s["ShardId"]: s for s in self.k.list_shards(StreamName="cli1")["Shards"]}
        end0 = int(shards["shardId-000000000000"]["HashKeyRange"]["EndingHashKey"])
        self.assertEqual(int(shards["shardId-000000000004"]["HashKeyRange"]["StartingHashKey"]),
                         end0 // 2 + 1)
        self.firn("stream", "split", "cli1", "shardId-000000000001", "--at",
                  str(int(shards["shardId-000000000001"]["HashKeyRange"]["StartingHashKey"]) + 1))
        self.firn("stream", "merge", "cli1", "shardId-000000000003", "shardId-000000000004")
        d = self.firn("stream", "describe", "cli1").stdout.decode()
        self.assertIn("shards      4 open, 4 closed", d)
        self.assertIn("parent shardId-000000000003+shardId-000000000004", d)
        out = self.firn("stream", "retention", "cli1", "72").stdout.decode()
        self.assertIn("24 -> 72 hours", out)
        self.firn("stream", "retention", "cli1", "30")
        s = self.k.describe_stream_summary(StreamName="cli1")["StreamDescriptionSummary"]
        self.assertEqual(s["RetentionPeriodHours"], 30)
        out = self.firn("stream", "reshard", "cli1", "6").stdout.decode()
        self.assertIn("4 -> 6 open shards", out)
        self.assertEqual(self.k.describe_stream_summary(StreamName="cli1")[
            "StreamDescriptionSummary"]["OpenShardCount"], 6)
        self.firn("stream", "delete", "cli1")
        self.assertNotIn("cli1", self.k.list_streams()["StreamNames"])
        # Errors are the service's, with a non-zero exit.
        p = self.firn("stream", "describe", "cli1", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("ResourceNotFoundException", p.stderr.decode())
        p = self.firn("stream", "create", "bad name", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("ValidationException", p.stderr.decode())
        p = self.firn("stream", "frobnicate", check=False)
        self.assertEqual(p.returncode, 2)

    def test_put_and_get(self):
        self.k.create_stream(StreamName="cli2", ShardCount=3)
        lines = [f"line {i} ✓" for i in range(1200)]
        p = self.firn("put", "--http", "cli2", "-v", "-", stdin=("\n".join(lines) + "\n").encode())
        out = p.stdout.decode().splitlines()
        self.assertEqual(len(out), 1200)
        self.assertIn("put 1200 records to cli2", p.stderr.decode())
        # Cross-check with boto3: every line is in the shard the CLI printed, in order.
        by_shard = {}
        for line, o in zip(lines, out):
            shard, seq = o.split()
            by_shard.setdefault(shard, []).append((seq, line.encode()))
        for shard, want in by_shard.items():
            got = [(r["SequenceNumber"], r["Data"]) for r in self.read_shard("cli2", shard)]
            self.assertEqual(got, want)
        self.assertGreater(len(by_shard), 1)  # line numbers spread over shards
        # get: all shards, raw lines; the set is the same.
        got = self.firn("get", "cli2").stdout.decode().splitlines()
        self.assertEqual(sorted(got), sorted(lines))
        # --limit, --format json, --shard.
        js = [json.loads(x) for x in
              self.firn("get", "cli2", "--limit", "5", "--format", "json").stdout.splitlines()]
        self.assertEqual(len(js), 5)
        for j in js:
            self.assertEqual(len(j["SequenceNumber"]), 39)
            self.assertIn(base64.b64decode(j["Data"]).decode(), lines)
        sh = sorted(by_shard)[0]
        got = self.firn("get", "cli2", "--shard", sh).stdout.decode().splitlines()
        self.assertEqual(got, [d.decode() for _, d in by_shard[sh]])
        # --from latest sees nothing old; --from at-timestamp sees what came after.
        self.assertEqual(self.firn("get", "cli2", "--from", "latest").stdout, b"")
        t = int(time.time()) + 1
        time.sleep(t - time.time() + 0.05)
        self.firn("put", "--http", "cli2", "--key", "fixed", stdin=b"new1\nnew2\n")
        got = self.firn("get", "cli2", "--from", "at-timestamp", str(t)).stdout.decode()
        self.assertEqual(got.splitlines(), ["new1", "new2"])
        iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
        got = self.firn("get", "cli2", "--from", "at-timestamp", iso).stdout.decode()
        self.assertEqual(got.splitlines(), ["new1", "new2"])
        # --blob: the whole input is one record, bytes exactly.
        blob = bytes(range(256)) * 100 + b"\n\n"
        p = self.firn("put", "--http", "cli2", "--blob", "--key", "b", "-v", stdin=blob)
        shard, seq = p.stdout.decode().split()
        it = self.k.get_shard_iterator(StreamName="cli2", ShardId=shard,
                                       ShardIteratorType="AT_SEQUENCE_NUMBER",
                                       StartingSequenceNumber=seq)["ShardIterator"]
        self.assertEqual(self.k.get_records(ShardIterator=it, Limit=1)["Records"][0]["Data"],
                         blob)
        # A file argument.
        with tempfile.NamedTemporaryFile("w", delete=False) as f:
            f.write("from-file\n")
        try:
            self.firn("put", "--http", "cli2", f.name)
        finally:
            os.unlink(f.name)
        self.assertIn(b"from-file", self.firn("get", "cli2").stdout.splitlines())
        self.k.delete_stream(StreamName="cli2")

    def test_get_follows_children(self):
        self.k.create_stream(StreamName="cli3", ShardCount=1)
        self.firn("put", "--http", "cli3", "--key", "k", stdin=b"before1\nbefore2\n")
        self.firn("stream", "split", "cli3", "shardId-000000000000")
        self.firn("put", "--http", "cli3", "--key", "k", stdin=b"after1\nafter2\n")
        got = self.firn("get", "cli3").stdout.decode().splitlines()
        # One key: its order survives the split (parent drained before the child).
        self.assertEqual(got, ["before1", "before2", "after1", "after2"])
        self.firn("stream", "merge", "cli3", "shardId-000000000001", "shardId-000000000002")
        self.firn("put", "--http", "cli3", "--key", "k", stdin=b"merged\n")
        got = self.firn("get", "cli3").stdout.decode().splitlines()
        self.assertEqual(got, ["before1", "before2", "after1", "after2", "merged"])
        self.k.delete_stream(StreamName="cli3")

    def test_endpoint_and_credentials(self):
        self.k.create_stream(StreamName="cli4", ShardCount=1)
        # FIRN_ENDPOINT instead of --endpoint.
        p = self.firn("stream", "list", endpoint=False, env={"FIRN_ENDPOINT": self.d.endpoint})
        self.assertIn("cli4", p.stdout.decode().split())
        # Wrong credentials from AWS_* are refused by the server...
        p = self.firn("stream", "list", check=False,
                      env={"AWS_ACCESS_KEY_ID": "FIRNDEMOACCESSKEY",
                           "AWS_SECRET_ACCESS_KEY": "nope"})
        self.assertEqual(p.returncode, 1)
        self.assertIn("InvalidSignatureException", p.stderr.decode())
        p = self.firn("stream", "list", check=False,
                      env={"AWS_ACCESS_KEY_ID": "SOMEONE", "AWS_SECRET_ACCESS_KEY": "x"})
        self.assertIn("UnrecognizedClientException", p.stderr.decode())
        # ...right ones work, and FIRN_* wins over AWS_*.
        p = self.firn("stream", "list", env={"AWS_ACCESS_KEY_ID": "SOMEONE",
                                             "AWS_SECRET_ACCESS_KEY": "x",
                                             "FIRN_ACCESS_KEY_ID": "FIRNDEMOACCESSKEY",
                                             "FIRN_SECRET_ACCESS_KEY":
                                                 "firn-demo-secret-change-me"})
        self.assertIn("cli4", p.stdout.decode().split())
        # Flags win over the environment.
        p = self.firn("--secret-key", "firn-demo-secret-change-me", "stream", "list",
                      env={"AWS_SECRET_ACCESS_KEY": "nope"})
        self.assertIn("cli4", p.stdout.decode().split())
        # A config file (firnd.conf style keys work).
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            f.write(f"# test\napi = 127.0.0.1:{self.d.port}\naccess_key_id = FIRNDEMOACCESSKEY\n"
                    "secret_access_key = \"firn-demo-secret-change-me\"\nwriters = 2\n")
        try:
            p = self.firn("--config", f.name, "stream", "list", endpoint=False)
            self.assertIn("cli4", p.stdout.decode().split())
        finally:
            os.unlink(f.name)
        # Nothing listening: a clear transport error.
        p = self.firn("--endpoint", "http://127.0.0.1:1", "stream", "list", endpoint=False,
                      check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("127.0.0.1:1", p.stderr.decode())
        self.k.delete_stream(StreamName="cli4")


if __name__ == "__main__":
    if len(sys.argv) < 3 or not os.access(sys.argv[2], os.X_OK):
        print("SKIP: firn CLI path not given or not built")
        sys.exit(SKIP)
    main([FirnCli])
