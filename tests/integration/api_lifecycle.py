#!/usr/bin/env python3
"""Stream lifecycle through boto3 and the AWS CLI: create/describe/list/delete,
waiters, exact hash ranges, ARNs, StreamARN in place of StreamName, retention,
tags, DescribeLimits, ListStreams pagination, /metrics."""

import time

from api_common import (ACCOUNT, REGION, FirndTestCase, main, range_starts)


class Lifecycle(FirndTestCase):

    def test_create_wait_describe_delete(self):
        t0 = time.time()
        self.k.create_stream(StreamName="life", ShardCount=2)
        # The waiter polls every 10 s by default: succeeding within a second
        # means it saw ACTIVE on its first poll.
        self.k.get_waiter("stream_exists").wait(StreamName="life")
        self.assertLess(time.time() - t0, 5)
        d = self.k.describe_stream(StreamName="life")["StreamDescription"]
        self.assertEqual(d["StreamStatus"], "ACTIVE")
        self.assertEqual(d["StreamName"], "life")
        self.assertEqual(d["StreamARN"], f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/life")
        self.assertEqual(d["RetentionPeriodHours"], 24)
        self.assertFalse(d["HasMoreShards"])
        self.assertEqual(len(d["Shards"]), 2)
        self.assertEqual(d["EncryptionType"], "NONE")
        self.assertLess(abs(d["StreamCreationTimestamp"].timestamp() - time.time()), 60)
        s = self.k.describe_stream_summary(StreamName="life")["StreamDescriptionSummary"]
        self.assertEqual(s["OpenShardCount"], 2)
        self.assertEqual(s["StreamStatus"], "ACTIVE")
        self.assertError("ResourceInUseException", self.k.create_stream, StreamName="life",
                         ShardCount=1)
        self.assertIn("life", self.k.list_streams()["StreamNames"])
        t0 = time.time()
        self.k.delete_stream(StreamName="life")
        self.k.get_waiter("stream_not_exists").wait(StreamName="life")
        self.assertLess(time.time() - t0, 5)
        self.assertNotIn("life", self.k.list_streams()["StreamNames"])
        self.assertError("ResourceNotFoundException", self.k.describe_stream, StreamName="life")
        # The name can be reused, and the new stream starts empty.
        self.create("life", 1)
        self.assertEqual(self.read_shard("life", "shardId-000000000000"), [])
        self.k.delete_stream(StreamName="life")

    def test_port_in_use(self):
        # A second daemon on the same API port must fail loudly, not share it.
        import subprocess
        import tempfile
        with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
            p = subprocess.run([self.firnd_path, "--data-dir", tmp, "--api",
                                f"127.0.0.1:{self.d.port}"], capture_output=True, text=True,
                               timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("cannot listen on 127.0.0.1:%d" % self.d.port, p.stderr)
        self.assertEqual(self.k.describe_limits()["ShardLimit"], 10000)

    def test_exact_hash_ranges(self):
        for n in (1, 3, 7):
            name = f"ranges{n}"
            self.create(name, n)
            shards = self.k.list_shards(StreamName=name)["Shards"]
            self.assertEqual(len(shards), n)
            for i, (sh, (start, end)) in enumerate(zip(shards, range_starts(n))):
                self.assertEqual(sh["ShardId"], "shardId-%012d" % i)
                self.assertEqual(int(sh["HashKeyRange"]["StartingHashKey"]), start)
                self.assertEqual(int(sh["HashKeyRange"]["EndingHashKey"]), end)
                self.assertNotIn("ParentShardId", sh)
                self.assertNotIn("EndingSequenceNumber", sh["SequenceNumberRange"])
                self.assertEqual(len(sh["SequenceNumberRange"]["StartingSequenceNumber"]), 39)
            self.assertEqual(int(shards[-1]["HashKeyRange"]["EndingHashKey"]), 2**128 - 1)
            self.k.delete_stream(StreamName=name)

    def test_arn_everywhere(self):
        self.create("arny", 1)
        arn = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/arny"
        d = self.k.describe_stream(StreamARN=arn)["StreamDescription"]
        self.assertEqual(d["StreamName"], "arny")
        self.k.describe_stream_summary(StreamARN=arn)
        r = self.k.put_record(StreamARN=arn, Data=b"x", PartitionKey="k")
        it = self.k.get_shard_iterator(StreamARN=arn, ShardId=r["ShardId"],
                                       ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        recs = self.k.get_records(ShardIterator=it, StreamARN=arn)["Records"]
        self.assertEqual([x["Data"] for x in recs], [b"x"])
        self.k.list_shards(StreamARN=arn)
        self.k.add_tags_to_stream(StreamARN=arn, Tags={"a": "1"})
        self.assertEqual(self.k.list_tags_for_stream(StreamARN=arn)["Tags"],
                         [{"Key": "a", "Value": "1"}])
        self.k.delete_stream(StreamARN=arn)
        self.assertError("ResourceNotFoundException", self.k.describe_stream_summary,
                         StreamARN=arn)

    def test_retention(self):
        self.create("ret", 1)
        self.k.increase_stream_retention_period(StreamName="ret", RetentionPeriodHours=48)
        s = self.k.describe_stream_summary(StreamName="ret")["StreamDescriptionSummary"]
        self.assertEqual(s["RetentionPeriodHours"], 48)
        e = self.assertError("InvalidArgumentException", self.k.increase_stream_retention_period,
                             StreamName="ret", RetentionPeriodHours=36)
        self.assertIn("can not be shorter", str(e))
        self.assertError("InvalidArgumentException", self.k.decrease_stream_retention_period,
                         StreamName="ret", RetentionPeriodHours=72)
        self.assertError("InvalidArgumentException", self.k.decrease_stream_retention_period,
                         StreamName="ret", RetentionPeriodHours=23)
        self.assertError("InvalidArgumentException", self.k.increase_stream_retention_period,
                         StreamName="ret", RetentionPeriodHours=8761)
        self.k.increase_stream_retention_period(StreamName="ret", RetentionPeriodHours=8760)
        self.k.decrease_stream_retention_period(StreamName="ret", RetentionPeriodHours=24)
        s = self.k.describe_stream(StreamName="ret")["StreamDescription"]
        self.assertEqual(s["RetentionPeriodHours"], 24)
        self.assertError("ResourceNotFoundException", self.k.increase_stream_retention_period,
                         StreamName="nope", RetentionPeriodHours=48)
        # The AWS CLI too.
        self.d.aws("increase-stream-retention-period", "--stream-name", "ret",
                   "--retention-period-hours", "100")
        s = self.d.aws("describe-stream-summary", "--stream-name", "ret")
        self.assertEqual(s["StreamDescriptionSummary"]["RetentionPeriodHours"], 100)
        self.k.delete_stream(StreamName="ret")

    def test_tags(self):
        self.k.create_stream(StreamName="tagged", ShardCount=1)
        self.k.add_tags_to_stream(StreamName="tagged", Tags={"b": "2", "a": "1", "c": ""})
        tags = self.k.list_tags_for_stream(StreamName="tagged")
        self.assertEqual(tags["Tags"], [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"},
                                        {"Key": "c", "Value": ""}])
        self.assertFalse(tags["HasMoreTags"])
        # Overwrite, paginate with ExclusiveStartTagKey/Limit.
        self.k.add_tags_to_stream(StreamName="tagged", Tags={"a": "one"})
        p1 = self.k.list_tags_for_stream(StreamName="tagged", Limit=2)
        self.assertEqual([t["Key"] for t in p1["Tags"]], ["a", "b"])
        self.assertEqual(p1["Tags"][0]["Value"], "one")
        self.assertTrue(p1["HasMoreTags"])
        p2 = self.k.list_tags_for_stream(StreamName="tagged", ExclusiveStartTagKey="b")
        self.assertEqual([t["Key"] for t in p2["Tags"]], ["c"])
        self.k.remove_tags_from_stream(StreamName="tagged", TagKeys=["b", "zz"])
        keys = [t["Key"] for t in self.k.list_tags_for_stream(StreamName="tagged")["Tags"]]
        self.assertEqual(keys, ["a", "c"])
        # At most 50 tags per stream.
        self.k.add_tags_to_stream(StreamName="tagged",
                                  Tags={f"k{i:02d}": "v" for i in range(48)})
        self.assertError("LimitExceededException", self.k.add_tags_to_stream,
                         StreamName="tagged", Tags={"x1": "1", "x2": "2", "x3": "3"})
        self.assertError("InvalidArgumentException", self.k.add_tags_to_stream,
                         StreamName="tagged", Tags={"aws:reserved": "1"})
        # Tags given at creation.
        self.k.create_stream(StreamName="tagged2", ShardCount=1, Tags={"team": "ingest"})
        self.assertEqual(self.k.list_tags_for_stream(StreamName="tagged2")["Tags"],
                         [{"Key": "team", "Value": "ingest"}])
        # CLI.
        self.d.aws("add-tags-to-stream", "--stream-name", "tagged2", "--tags", "env=lab")
        out = self.d.aws("list-tags-for-stream", "--stream-name", "tagged2")
        self.assertIn({"Key": "env", "Value": "lab"}, out["Tags"])
        self.k.delete_stream(StreamName="tagged")
        self.k.delete_stream(StreamName="tagged2")

    def test_list_streams_pagination(self):
        names = [f"page-{i:02d}" for i in range(7)]
        for n in names:
            self.k.create_stream(StreamName=n, ShardCount=1)
        r = self.k.list_streams(Limit=3)
        self.assertEqual(r["StreamNames"], names[:3])
        self.assertTrue(r["HasMoreStreams"])
        self.assertEqual([s["StreamName"] for s in r["StreamSummaries"]], names[:3])
        self.assertEqual(r["StreamSummaries"][0]["StreamStatus"], "ACTIVE")
        r2 = self.k.list_streams(Limit=3, NextToken=r["NextToken"])
        self.assertEqual(r2["StreamNames"], names[3:6])
        r3 = self.k.list_streams(ExclusiveStartStreamName="page-05")
        self.assertEqual([n for n in r3["StreamNames"] if n.startswith("page-")], ["page-06"])
        # boto3's paginator and the CLI's auto-paginator walk every page.
        got = []
        for page in self.k.get_paginator("list_streams").paginate(PaginationConfig={"PageSize": 2}):
            got += page["StreamNames"]
        self.assertEqual([n for n in got if n.startswith("page-")], names)
        out = self.d.aws("list-streams", "--page-size", "2")
        self.assertEqual([n for n in out["StreamNames"] if n.startswith("page-")], names)
        out = self.d.aws("list-streams", "--page-size", "2", "--max-items", "3")
        self.assertEqual(len(out["StreamNames"]), 3)
        self.assertIn("NextToken", out)
        out2 = self.d.aws("list-streams", "--page-size", "2", "--starting-token",
                          out["NextToken"])
        self.assertEqual(out["StreamNames"] + out2["StreamNames"],
                         sorted(out["StreamNames"] + out2["StreamNames"]))
        self.assertEqual([n for n in out["StreamNames"] + out2["StreamNames"]
                          if n.startswith("page-")], names)
        self.assertError("InvalidArgumentException", self.k.list_streams, NextToken="bm9wZQ==")
        for n in names:
            self.k.delete_stream(StreamName=n)

    def test_describe_limits(self):
        before = self.k.describe_limits()
        self.k.create_stream(StreamName="lim", ShardCount=5)
        after = self.k.describe_limits()
        self.assertEqual(after["OpenShardCount"], before["OpenShardCount"] + 5)
        self.assertGreaterEqual(after["ShardLimit"], after["OpenShardCount"])
        self.assertError("LimitExceededException", self.k.create_stream, StreamName="toomany",
                         ShardCount=after["ShardLimit"])
        self.k.delete_stream(StreamName="lim")

    def test_metrics(self):
        self.create("metered", 1)
        self.k.put_records(StreamName="metered",
                           Records=[{"Data": b"abcd", "PartitionKey": "k"}] * 3)
        self.read_shard("metered", "shardId-000000000000")
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=10)
        c.request("GET", "/metrics")
        r = c.getresponse()
        text = r.read().decode()
        self.assertEqual(r.status, 200)
        self.assertTrue(r.getheader("Content-Type").startswith("text/plain"))
        lab = '{stream="metered",shard="shardId-000000000000"}'
        self.assertIn(f"firn_shard_incoming_records_total{lab} 3\n", text)
        self.assertIn(f"firn_shard_incoming_bytes_total{lab} 12\n", text)
        self.assertIn(f"firn_shard_outgoing_records_total{lab} 3\n", text)
        self.assertIn(f"firn_shard_iterator_age_milliseconds{lab} 0\n", text)
        self.assertIn("firn_shard_store_bytes" + lab, text)
        self.assertIn('firn_store_commit_latency_seconds_bucket{le="+Inf"}', text)
        self.assertRegex(text, r"\nfirn_store_durable_records_total [1-9][0-9]*\n")
        for name in ("slow_commits", "recovered_cut_bytes", "quarantined_segments",
                     "orphan_streams_removed"):
            self.assertRegex(text, rf"# TYPE firn_store_{name}_total counter\n"
                                   rf"firn_store_{name}_total [0-9]+\n")
        self.assertIn('firn_api_requests_total{op="PutRecords",result="ok"}', text)
        self.k.delete_stream(StreamName="metered")


if __name__ == "__main__":
    main([Lifecycle])
