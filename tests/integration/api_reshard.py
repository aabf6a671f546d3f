#!/usr/bin/env python3
"""Resharding through boto3 and the AWS CLI: SplitShard, MergeShards and
UpdateShardCount end states, ChildShards at a closed shard's end, lineage,
ListShards filters, and DescribeStream/ListShards pagination through the
CLI's auto-paginator."""

import time

from api_common import FirndTestCase, main, md5_hash_key, range_starts


def sid(i):
    return "shardId-%012d" % i


def rng(sh):
    return int(sh["HashKeyRange"]["StartingHashKey"]), int(sh["HashKeyRange"]["EndingHashKey"])


class Reshard(FirndTestCase):

    def drain(self, stream, shard):
        """Read a closed shard to its end; returns (records, child shards)."""
        it = self.k.get_shard_iterator(StreamName=stream, ShardId=shard,
                                       ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        recs = []
        for _ in range(100):
            r = self.k.get_records(ShardIterator=it)
            recs += r["Records"]
            if "NextShardIterator" not in r or r["NextShardIterator"] is None:
                return recs, r.get("ChildShards")
            it = r["NextShardIterator"]
        raise AssertionError(f"{shard} never ended")

    def test_split(self):
        self.create("split", 1)
        before = self.k.put_records(StreamName="split", Records=[
            {"Data": f"p{i}".encode(), "PartitionKey": f"k{i}"} for i in range(20)])["Records"]
        mid = 2**127
        self.k.split_shard(StreamName="split", ShardToSplit=sid(0), NewStartingHashKey=str(mid))
        d = self.k.describe_stream(StreamName="split")["StreamDescription"]
        self.assertEqual(d["StreamStatus"], "ACTIVE")
        shards = {s["ShardId"]: s for s in d["Shards"]}
        self.assertEqual(sorted(shards), [sid(0), sid(1), sid(2)])
        parent = shards[sid(0)]
        self.assertEqual(parent["SequenceNumberRange"]["EndingSequenceNumber"],
                         before[-1]["SequenceNumber"])
        self.assertEqual(rng(shards[sid(1)]), (0, mid - 1))
        self.assertEqual(rng(shards[sid(2)]), (mid, 2**128 - 1))
        for c in (sid(1), sid(2)):
            self.assertEqual(shards[c]["ParentShardId"], sid(0))
            self.assertNotIn("AdjacentParentShardId", shards[c])
            self.assertNotIn("EndingSequenceNumber", shards[c]["SequenceNumberRange"])
        # New records go to the children, by key.
        after = self.k.put_records(StreamName="split", Records=[
            {"Data": f"c{i}".encode(), "PartitionKey": f"k{i}"} for i in range(20)])["Records"]
        for i, r in enumerate(after):
            want = sid(1) if md5_hash_key(f"k{i}") < mid else sid(2)
            self.assertEqual(r["ShardId"], want)
            self.assertGreater(int(r["SequenceNumber"]), int(before[-1]["SequenceNumber"]))
        # The parent drains to its last record, then names its children.
        recs, children = self.drain("split", sid(0))
        self.assertEqual([r["SequenceNumber"] for r in recs],
                         [r["SequenceNumber"] for r in before])
        self.assertEqual(sorted(c["ShardId"] for c in children), [sid(1), sid(2)])
        for c in children:
            self.assertEqual(c["ParentShards"], [sid(0)])
            self.assertEqual(rng(c), rng(shards[c["ShardId"]]))
        # LATEST on the closed parent ends at once.
        it = self.k.get_shard_iterator(StreamName="split", ShardId=sid(0),
                                       ShardIteratorType="LATEST")["ShardIterator"]
        r = self.k.get_records(ShardIterator=it)
        self.assertEqual(r["Records"], [])
        self.assertIsNone(r.get("NextShardIterator"))
        self.assertEqual(len(r["ChildShards"]), 2)
        # Errors: closed shard, key outside the range, unknown shard.
        self.assertError("ResourceInUseException", self.k.split_shard, StreamName="split",
                         ShardToSplit=sid(0), NewStartingHashKey="5")
        self.assertError("InvalidArgumentException", self.k.split_shard, StreamName="split",
                         ShardToSplit=sid(1), NewStartingHashKey=str(mid))
        self.assertError("InvalidArgumentException", self.k.split_shard, StreamName="split",
                         ShardToSplit=sid(1), NewStartingHashKey="0")
        self.assertError("ResourceNotFoundException", self.k.split_shard, StreamName="split",
                         ShardToSplit=sid(9), NewStartingHashKey="5")
        self.k.delete_stream(StreamName="split")

    def test_split_empty_parent(self):
        self.create("split0", 2)
        self.k.split_shard(StreamName="split0", ShardToSplit=sid(1),
                           NewStartingHashKey=str(3 * 2**126))
        recs, children = self.drain("split0", sid(1))
        self.assertEqual(recs, [])
        self.assertEqual(sorted(c["ShardId"] for c in children), [sid(2), sid(3)])
        self.k.delete_stream(StreamName="split0")

    def test_merge(self):
        self.create("merge", 3)
        r0 = self.k.put_record(StreamName="merge", Data=b"a", PartitionKey="x",
                               ExplicitHashKey="0")
        r1 = self.k.put_record(StreamName="merge", Data=b"b", PartitionKey="x",
                               ExplicitHashKey=str(range_starts(3)[1][0]))
        self.assertError("InvalidArgumentException", self.k.merge_shards, StreamName="merge",
                         ShardToMerge=sid(0), AdjacentShardToMerge=sid(2))
        self.k.merge_shards(StreamName="merge", ShardToMerge=sid(0), AdjacentShardToMerge=sid(1))
        shards = {s["ShardId"]: s for s in self.k.list_shards(StreamName="merge")["Shards"]}
        child = shards[sid(3)]
        self.assertEqual(child["ParentShardId"], sid(0))
        self.assertEqual(child["AdjacentParentShardId"], sid(1))
        self.assertEqual(rng(child), (0, range_starts(3)[1][1]))
        for p, r in ((sid(0), r0), (sid(1), r1)):
            self.assertEqual(shards[p]["SequenceNumberRange"]["EndingSequenceNumber"],
                             r["SequenceNumber"])
            recs, children = self.drain("merge", p)
            self.assertEqual(len(recs), 1)
            self.assertEqual(children, [{"ShardId": sid(3), "ParentShards": [sid(0), sid(1)],
                                         "HashKeyRange": child["HashKeyRange"]}])
        self.assertError("ResourceInUseException", self.k.merge_shards, StreamName="merge",
                         ShardToMerge=sid(0), AdjacentShardToMerge=sid(1))
        # Either order of an adjacent pair merges.
        self.k.merge_shards(StreamName="merge", ShardToMerge=sid(2), AdjacentShardToMerge=sid(3))
        open_ = [s for s in self.k.list_shards(StreamName="merge")["Shards"]
                 if "EndingSequenceNumber" not in s["SequenceNumberRange"]]
        self.assertEqual(len(open_), 1)
        self.assertEqual(rng(open_[0]), (0, 2**128 - 1))
        r = self.k.put_record(StreamName="merge", Data=b"z", PartitionKey="any")
        self.assertEqual(r["ShardId"], open_[0]["ShardId"])
        self.k.delete_stream(StreamName="merge")

    def test_update_shard_count(self):
        self.create("usc", 2)
        self.k.put_records(StreamName="usc", Records=[
            {"Data": b"x", "PartitionKey": f"k{i}"} for i in range(50)])
        r = self.k.update_shard_count(StreamName="usc", TargetShardCount=4,
                                      ScalingType="UNIFORM_SCALING")
        self.assertEqual((r["CurrentShardCount"], r["TargetShardCount"]), (2, 4))
        self.assertEqual(r["StreamName"], "usc")
        s = self.k.describe_stream_summary(StreamName="usc")["StreamDescriptionSummary"]
        self.assertEqual(s["OpenShardCount"], 4)
        self.assertEqual(s["StreamStatus"], "ACTIVE")
        shards = self.k.list_shards(StreamName="usc")["Shards"]
        open_ = [x for x in shards if "EndingSequenceNumber" not in x["SequenceNumberRange"]]
        self.assertEqual([rng(x) for x in open_], range_starts(4))
        for x in open_:
            self.assertIn(x["ParentShardId"], (sid(0), sid(1)))
        # Draining the old shards leads to the new ones.
        seen = set()
        for old in (sid(0), sid(1)):
            _, children = self.drain("usc", old)
            seen |= {c["ShardId"] for c in children}
        self.assertEqual(seen, {x["ShardId"] for x in open_})
        # At most double, at least half.
        self.assertError("LimitExceededException", self.k.update_shard_count, StreamName="usc",
                         TargetShardCount=9, ScalingType="UNIFORM_SCALING")
        self.assertError("LimitExceededException", self.k.update_shard_count, StreamName="usc",
                         TargetShardCount=1, ScalingType="UNIFORM_SCALING")
        self.d.aws("update-shard-count", "--stream-name", "usc", "--target-shard-count", "3",
                   "--scaling-type", "UNIFORM_SCALING")
        open_ = [x for x in self.k.list_shards(StreamName="usc",
                                               ShardFilter={"Type": "AT_LATEST"})["Shards"]]
        self.assertEqual([rng(x) for x in open_], range_starts(3))
        self.k.delete_stream(StreamName="usc")

    def test_list_shards_filters(self):
        self.create("filt", 2)
        t_before = time.time()
        time.sleep(1.1)
        self.k.split_shard(StreamName="filt", ShardToSplit=sid(0), NewStartingHashKey=str(2**126))
        time.sleep(1.1)
        t_after = time.time()

        def ids(**kw):
            return [s["ShardId"] for s in self.k.list_shards(StreamName="filt", **kw)["Shards"]]

        self.assertEqual(ids(), [sid(0), sid(1), sid(2), sid(3)])
        self.assertEqual(ids(ShardFilter={"Type": "AT_LATEST"}), [sid(1), sid(2), sid(3)])
        self.assertEqual(ids(ShardFilter={"Type": "AT_TRIM_HORIZON"}), [sid(0), sid(1)])
        self.assertEqual(ids(ShardFilter={"Type": "FROM_TRIM_HORIZON"}),
                         [sid(0), sid(1), sid(2), sid(3)])
        self.assertEqual(ids(ShardFilter={"Type": "AT_TIMESTAMP", "Timestamp": t_before}),
                         [sid(0), sid(1)])
        self.assertEqual(ids(ShardFilter={"Type": "AT_TIMESTAMP", "Timestamp": t_after}),
                         [sid(1), sid(2), sid(3)])
        self.assertEqual(ids(ShardFilter={"Type": "FROM_TIMESTAMP", "Timestamp": t_after}),
                         [sid(1), sid(2), sid(3)])
        self.assertEqual(ids(ShardFilter={"Type": "FROM_TIMESTAMP", "Timestamp": t_before}),
                         [sid(0), sid(1), sid(2), sid(3)])
        self.assertEqual(ids(ShardFilter={"Type": "AFTER_SHARD_ID", "ShardId": sid(1)}),
                         [sid(2), sid(3)])
        self.assertEqual(ids(ExclusiveStartShardId=sid(2)), [sid(3)])
        self.assertError("InvalidArgumentException", self.k.list_shards, StreamName="filt",
                         ShardFilter={"Type": "AT_TIMESTAMP"})
        self.assertError("InvalidArgumentException", self.k.list_shards, StreamName="filt",
                         ShardFilter={"Type": "AFTER_SHARD_ID"})
        self.assertError("ResourceNotFoundException", self.k.list_shards, StreamName="nope")
        self.k.delete_stream(StreamName="filt")

    def test_pagination_through_paginators(self):
        self.create("pages", 7)
        for i in range(3):
            self.k.split_shard(StreamName="pages", ShardToSplit=sid(i),
                               NewStartingHashKey=str(range_starts(7)[i][0] + 1000))
        every = [sid(i) for i in range(13)]
        # ListShards by hand: NextToken alone continues.
        p1 = self.k.list_shards(StreamName="pages", MaxResults=5)
        self.assertEqual([s["ShardId"] for s in p1["Shards"]], every[:5])
        p2 = self.k.list_shards(NextToken=p1["NextToken"], MaxResults=5)
        self.assertEqual([s["ShardId"] for s in p2["Shards"]], every[5:10])
        self.assertError("InvalidArgumentException", self.k.list_shards, StreamName="other",
                         NextToken=p1["NextToken"])
        # boto3 paginators.
        got = [s["ShardId"] for page in self.k.get_paginator("list_shards").paginate(
            StreamName="pages", PaginationConfig={"PageSize": 2}) for s in page["Shards"]]
        self.assertEqual(got, every)
        got = [s["ShardId"] for page in self.k.get_paginator("describe_stream").paginate(
            StreamName="pages", PaginationConfig={"PageSize": 3})
            for s in page["StreamDescription"]["Shards"]]
        self.assertEqual(got, every)
        # The AWS CLI's auto-paginator, with --page-size and --max-items.
        out = self.d.aws("list-shards", "--stream-name", "pages", "--page-size", "2")
        self.assertEqual([s["ShardId"] for s in out["Shards"]], every)
        out = self.d.aws("describe-stream", "--stream-name", "pages", "--page-size", "4")
        self.assertEqual([s["ShardId"] for s in out["StreamDescription"]["Shards"]], every)
        self.assertEqual(out["StreamDescription"]["StreamName"], "pages")
        out = self.d.aws("list-shards", "--stream-name", "pages", "--page-size", "3",
                         "--max-items", "4")
        self.assertEqual([s["ShardId"] for s in out["Shards"]], every[:4])
        rest = self.d.aws("list-shards", "--stream-name", "pages", "--page-size", "3",
                          "--starting-token", out["NextToken"])
        self.assertEqual([s["ShardId"] for s in rest["Shards"]], every[4:])
        out = self.d.aws("describe-stream", "--stream-name", "pages", "--max-items", "5")
        self.assertEqual([s["ShardId"] for s in out["StreamDescription"]["Shards"]],
                         every[:5])
        out = self.d.aws("list-shards", "--stream-name", "pages", "--shard-filter",
                         "Type=AT_LATEST", "--page-size", "2")
        self.assertEqual(len(out["Shards"]), 10)
        self.k.delete_stream(StreamName="pages")


if __name__ == "__main__":
    main([Reshard])
