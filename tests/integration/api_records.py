#!/usr/bin/env python3
"""Writing and reading records with boto3 and the AWS CLI: routing by MD5 and
ExplicitHashKey, per-shard order inside one PutRecords, every iterator type and
its edge cases, binary/empty/unicode data, GetRecords limits, iterator expiry."""

import base64
import datetime
import os
import time

from api_common import (FirndTestCase, main, md5_hash_key, range_starts)


def shard_of(hash_key, n):
    for i, (s, e) in enumerate(range_starts(n)):
        if s <= hash_key <= e:
            return "shardId-%012d" % i
    raise AssertionError("no shard")


def seq_counter(seq):
    return int(seq) & (2**64 - 1)


def seq_shard(seq):
    return (int(seq) >> 64) & (2**63 - 1)


def next_second():
    """Sleep into the next whole second and return it (epoch seconds)."""
    t = int(time.time()) + 1
    time.sleep(t - time.time() + 0.05)
    return t


class Records(FirndTestCase):

    def test_routing_md5_and_explicit_hash_key(self):
        self.create("route", 7)
        keys = [f"key-{i}" for i in range(60)] + ["é", "日本", "x" * 256]
        for key in keys:
            r = self.k.put_record(StreamName="route", Data=b"d", PartitionKey=key)
            self.assertEqual(r["ShardId"], shard_of(md5_hash_key(key), 7), key)
            self.assertEqual(len(r["SequenceNumber"]), 39)
            self.assertEqual(seq_shard(r["SequenceNumber"]), int(r["ShardId"][-12:]))
        # ExplicitHashKey overrides the key's MD5, at the exact range edges.
        for i, (s, e) in enumerate(range_starts(7)):
            for h in (s, e):
                r = self.k.put_record(StreamName="route", Data=b"e", PartitionKey="same",
                                      ExplicitHashKey=str(h))
                self.assertEqual(r["ShardId"], "shardId-%012d" % i)
        entries = [{"Data": b"p", "PartitionKey": "same", "ExplicitHashKey": str(s)}
                   for s, _ in range_starts(7)]
        res = self.k.put_records(StreamName="route", Records=entries)
        self.assertEqual(res["FailedRecordCount"], 0)
        self.assertEqual([r["ShardId"] for r in res["Records"]],
                         ["shardId-%012d" % i for i in range(7)])
        self.k.delete_stream(StreamName="route")

    def test_put_records_order_and_results(self):
        self.create("order", 3)
        entries = [{"Data": f"{i}".encode(), "PartitionKey": f"k{i % 5}"} for i in range(500)]
        res = self.k.put_records(StreamName="order", Records=entries)
        self.assertEqual(res["FailedRecordCount"], 0)
        self.assertEqual(len(res["Records"]), 500)
        self.assertEqual(res["EncryptionType"], "NONE")
        last = {}
        for i, r in enumerate(res["Records"]):
            # Results are in request order, routed by key.
            self.assertEqual(r["ShardId"], shard_of(md5_hash_key(f"k{i % 5}"), 3))
            seq = int(r["SequenceNumber"])
            # Strictly increasing within a shard in request order.
            self.assertGreater(seq, last.get(r["ShardId"], -1))
            last[r["ShardId"]] = seq
        # Reading a shard returns its records in the same order, same numbers.
        for shard in sorted(last):
            recs = self.read_shard("order", shard)
            want = [(r["SequenceNumber"], entries[i]["Data"]) for i, r in
                    enumerate(res["Records"]) if r["ShardId"] == shard]
            self.assertEqual([(x["SequenceNumber"], x["Data"]) for x in recs], want)
        # A later PutRecord to the same key sorts after, and SequenceNumberForOrdering is taken.
        r = self.k.put_record(StreamName="order", Data=b"late", PartitionKey="k0",
                              SequenceNumberForOrdering=res["Records"][0]["SequenceNumber"])
        self.assertGreater(int(r["SequenceNumber"]), int(res["Records"][495]["SequenceNumber"]))
        self.k.delete_stream(StreamName="order")

    def test_data_round_trip(self):
        self.create("bytes", 2)
        payloads = [b"", b"\x00", bytes(range(256)), b"\xff" * 1000, "ünïcødé ✓ 日本".encode(),
                    os.urandom(64 * 1024), os.urandom(1024 * 1024)]
        keys = ["a", "ключ", "🔑", "k" * 256, " spaces ", "a/b\\c\"d"]
        sent = []
        for i, p in enumerate(payloads):
            key = keys[i % len(keys)]
            r = self.k.put_record(StreamName="bytes", Data=p, PartitionKey=key)
            sent.append((r["SequenceNumber"], r["ShardId"], p, key))
        res = self.k.put_records(StreamName="bytes", Records=[
            {"Data": p, "PartitionKey": keys[i % len(keys)]} for i, p in enumerate(payloads[:5])])
        for i, r in enumerate(res["Records"]):
            sent.append((r["SequenceNumber"], r["ShardId"], payloads[i], keys[i % len(keys)]))
        got = {}
        for shard in ("shardId-000000000000", "shardId-000000000001"):
            for rec in self.read_shard("bytes", shard):
                got[rec["SequenceNumber"]] = (shard, rec["Data"], rec["PartitionKey"])
                ts = rec["ApproximateArrivalTimestamp"]
                self.assertIsInstance(ts, datetime.datetime)
                self.assertLess(abs(ts.timestamp() - time.time()), 120)
        self.assertEqual(len(got), len(sent))
        for seq, shard, data, key in sent:
            self.assertEqual(got[seq], (shard, data, key))
        # The CLI sees the same bytes (base64 in its JSON output).
        it = self.d.aws("get-shard-iterator", "--stream-name", "bytes", "--shard-id",
                        sent[2][1], "--shard-iterator-type", "AT_SEQUENCE_NUMBER",
                        "--starting-sequence-number", sent[2][0])["ShardIterator"]
        out = self.d.aws("get-records", "--shard-iterator", it, "--limit", "1")
        self.assertEqual(base64.b64decode(out["Records"][0]["Data"]), sent[2][2])
        self.k.delete_stream(StreamName="bytes")

    def test_iterator_types(self):
        self.create("iters", 1)
        sh = "shardId-000000000000"
        # An empty shard: every start point reads nothing but gives a fresh iterator.
        it = self.k.get_shard_iterator(StreamName="iters", ShardId=sh,
                                       ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        r = self.k.get_records(ShardIterator=it)
        self.assertEqual(r["Records"], [])
        self.assertEqual(r["MillisBehindLatest"], 0)
        self.assertTrue(r["NextShardIterator"])
        self.assertNotEqual(r["NextShardIterator"], it)
        latest0 = self.k.get_shard_iterator(StreamName="iters", ShardId=sh,
                                            ShardIteratorType="LATEST")["ShardIterator"]
        first = self.k.put_records(StreamName="iters", Records=[
            {"Data": f"a{i}".encode(), "PartitionKey": "k"} for i in range(10)])["Records"]
        # boto3 sends timestamps in whole seconds: put a second boundary between
        # the batches and ask for that boundary.
        t_mid = next_second()
        second = self.k.put_records(StreamName="iters", Records=[
            {"Data": f"b{i}".encode(), "PartitionKey": "k"} for i in range(5)])["Records"]
        seqs = [r["SequenceNumber"] for r in first + second]
        data = [f"a{i}".encode() for i in range(10)] + [f"b{i}".encode() for i in range(5)]

        def read(**kw):
            return [(x["SequenceNumber"], x["Data"]) for x in self.read_shard("iters", sh, **kw)]

        self.assertEqual(read(), list(zip(seqs, data)))
        self.assertEqual(read(it_type="AT_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[3]),
                         list(zip(seqs, data))[3:])
        self.assertEqual(read(it_type="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[3]),
                         list(zip(seqs, data))[4:])
        self.assertEqual(read(it_type="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[-1]),
                         [])
        self.assertEqual(read(it_type="AT_TIMESTAMP", Timestamp=t_mid),
                         list(zip(seqs, data))[10:])
        self.assertEqual(read(it_type="AT_TIMESTAMP", Timestamp=t_mid - 3600),
                         list(zip(seqs, data)))
        # LATEST taken before the writes sees all of them; taken now, none.
        r = self.k.get_records(ShardIterator=latest0)
        self.assertEqual([x["Data"] for x in r["Records"]], data)
        self.assertEqual(read(it_type="LATEST"), [])
        latest = self.k.get_shard_iterator(StreamName="iters", ShardId=sh,
                                           ShardIteratorType="LATEST")["ShardIterator"]
        new = self.k.put_record(StreamName="iters", Data=b"after", PartitionKey="k")
        r = self.k.get_records(ShardIterator=latest)
        self.assertEqual([(x["SequenceNumber"], x["Data"]) for x in r["Records"]],
                         [(new["SequenceNumber"], b"after")])
        # AT_TIMESTAMP after every record waits for new ones, then finds them.
        it = self.k.get_shard_iterator(StreamName="iters", ShardId=sh,
                                       ShardIteratorType="AT_TIMESTAMP",
                                       Timestamp=next_second())["ShardIterator"]
        r = self.k.get_records(ShardIterator=it)
        self.assertEqual(r["Records"], [])
        self.k.put_record(StreamName="iters", Data=b"later", PartitionKey="k")
        r = self.k.get_records(ShardIterator=r["NextShardIterator"])
        self.assertEqual([x["Data"] for x in r["Records"]], [b"later"])
        # Limit and paging: a fresh iterator each call, continuing exactly.
        it = self.k.get_shard_iterator(StreamName="iters", ShardId=sh,
                                       ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        got = []
        while True:
            r = self.k.get_records(ShardIterator=it, Limit=4)
            self.assertLessEqual(len(r["Records"]), 4)
            if r["Records"]:
                self.assertGreaterEqual(r["MillisBehindLatest"], 0)
            got += [x["Data"] for x in r["Records"]]
            it = r["NextShardIterator"]
            if not r["Records"]:
                break
        self.assertEqual(got, data + [b"after", b"later"])
        self.k.delete_stream(StreamName="iters")

    def test_iterator_errors(self):
        self.create("iterr", 2)
        a = self.k.put_record(StreamName="iterr", Data=b"x", PartitionKey="k",
                              ExplicitHashKey="0")
        self.assertEqual(a["ShardId"], "shardId-000000000000")
        e = self.assertError("InvalidArgumentException", self.k.get_shard_iterator,
                             StreamName="iterr", ShardId="shardId-000000000001",
                             ShardIteratorType="AT_SEQUENCE_NUMBER",
                             StartingSequenceNumber=a["SequenceNumber"])
        self.assertIn("shardId-000000000000", str(e))
        self.assertError("InvalidArgumentException", self.k.get_shard_iterator,
                         StreamName="iterr", ShardId="shardId-000000000000",
                         ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber="12345")
        self.assertError("InvalidArgumentException", self.k.get_shard_iterator,
                         StreamName="iterr", ShardId="shardId-000000000000",
                         ShardIteratorType="AFTER_SEQUENCE_NUMBER")
        self.assertError("InvalidArgumentException", self.k.get_shard_iterator,
                         StreamName="iterr", ShardId="shardId-000000000000",
                         ShardIteratorType="AT_TIMESTAMP")
        self.assertError("InvalidArgumentException", self.k.get_shard_iterator,
                         StreamName="iterr", ShardId="shardId-000000000000",
                         ShardIteratorType="AT_TIMESTAMP", Timestamp=time.time() + 3600)
        # A number beyond the shard's last record was never given out.
        future = str(int(a["SequenceNumber"]) + 10)
        self.assertError("InvalidArgumentException", self.k.get_shard_iterator,
                         StreamName="iterr", ShardId="shardId-000000000000",
                         ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=future)
        self.assertError("ResourceNotFoundException", self.k.get_shard_iterator,
                         StreamName="iterr", ShardId="shardId-000000000009",
                         ShardIteratorType="LATEST")
        self.assertError("ResourceNotFoundException", self.k.get_shard_iterator,
                         StreamName="nope", ShardId="shardId-000000000000",
                         ShardIteratorType="LATEST")
        self.assertError("ValidationException", self.k.get_shard_iterator, StreamName="iterr",
                         ShardId="shardId-000000000000", ShardIteratorType="SOMEWHERE")
        # Garbage and tampered iterators.
        it = self.k.get_shard_iterator(StreamName="iterr", ShardId="shardId-000000000000",
                                       ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        self.assertError("InvalidArgumentException", self.k.get_records, ShardIterator="garbage")
        raw = bytearray(base64.b64decode(it))
        raw[12] ^= 1
        self.assertError("InvalidArgumentException", self.k.get_records,
                         ShardIterator=base64.b64encode(bytes(raw)).decode())
        # An iterator of a deleted stream does not read a new stream of the same name.
        self.k.delete_stream(StreamName="iterr")
        self.create("iterr", 2)
        self.k.put_record(StreamName="iterr", Data=b"new", PartitionKey="k",
                          ExplicitHashKey="0")
        self.assertError("ResourceNotFoundException", self.k.get_records, ShardIterator=it)
        self.k.delete_stream(StreamName="iterr")

    def test_get_records_caps(self):
        self.create("caps", 1)
        big = os.urandom(1024 * 1024)
        for _ in range(3):
            self.k.put_records(StreamName="caps",
                               Records=[{"Data": big, "PartitionKey": "k"}] * 4)
        it = self.k.get_shard_iterator(StreamName="caps", ShardId="shardId-000000000000",
                                       ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        r = self.k.get_records(ShardIterator=it)
        n1 = len(r["Records"])
        # 12 MiB written, at most 10 MiB returned in one call, never zero.
        self.assertTrue(1 <= n1 <= 10, n1)
        self.assertGreater(r["MillisBehindLatest"], -1)
        r2 = self.k.get_records(ShardIterator=r["NextShardIterator"])
        self.assertEqual(n1 + len(r2["Records"]), 12)
        self.assertTrue(all(x["Data"] == big for x in r["Records"] + r2["Records"]))
        # 10000 small records come back in one call at the default limit.
        for _ in range(20):
            self.k.put_records(StreamName="caps",
                               Records=[{"Data": b"s", "PartitionKey": "k"}] * 500)
        r3 = self.k.get_records(ShardIterator=r2["NextShardIterator"])
        self.assertEqual(len(r3["Records"]), 10000)
        self.k.delete_stream(StreamName="caps")


class Expiry(FirndTestCase):
    # Iterators and NextTokens live 5 minutes; the test knob shortens that.
    env = {"FIRN_API_ITERATOR_TTL_MS": "1500"}

    def test_expired_iterator_and_token(self):
        self.create("exp", 3)
        it = self.k.get_shard_iterator(StreamName="exp", ShardId="shardId-000000000000",
                                       ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        fresh = self.k.get_records(ShardIterator=it)["NextShardIterator"]
        tok = self.k.list_shards(StreamName="exp", MaxResults=1)["NextToken"]
        time.sleep(2)
        e = self.assertError("ExpiredIteratorException", self.k.get_records, ShardIterator=it)
        self.assertIn("Iterator expired", str(e))
        self.assertError("ExpiredIteratorException", self.k.get_records, ShardIterator=fresh)
        self.assertError("ExpiredNextTokenException", self.k.list_shards, NextToken=tok)


if __name__ == "__main__":
    main([Records, Expiry])
