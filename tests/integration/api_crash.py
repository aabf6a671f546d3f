#!/usr/bin/env python3
"""Crash: boto3 writers put records in a loop, firnd is killed with SIGKILL (or
stopped with SIGTERM, which must exit 0) in the middle, restarted on the same
data directory, and every record that got a 200 must read back with the same
sequence number, shard, key and data. Sequence numbers after the restart
continue above the acknowledged ones. Two rounds each. And the data a crash in
DeleteStream leaves behind is removed at the next start."""

import json
import os
import shutil
import threading
import time
import unittest

from api_common import Firnd, main

import botocore.exceptions


class Crash(unittest.TestCase):
    firnd_path = None
    firn_path = None

    def test_kill9_keeps_every_acked_record(self):
        self.run_rounds(kill9=True)

    def test_sigterm_under_load_exits_clean(self):
        # SIGTERM while writers are busy: requests in flight get their answer,
        # firnd exits 0, and again every acknowledged record is there.
        self.run_rounds(kill9=False)

    def test_iterators_and_tokens_survive_a_restart(self):
        # Their HMAC key is derived from the KEK (doc/api.md), so a consumer's
        # iterator and a ListStreams NextToken taken before a restart still
        # work after it, where they read the same records.
        d = Firnd(self.firnd_path).start()
        try:
            k = d.client()
            for name in ("iter-a", "iter-b", "iter-c"):
                k.create_stream(StreamName=name, ShardCount=1)
            for i in range(5):
                k.put_record(StreamName="iter-a", Data=b"r%d" % i, PartitionKey="p")
            sid = k.list_shards(StreamName="iter-a")["Shards"][0]["ShardId"]
            it = k.get_shard_iterator(StreamName="iter-a", ShardId=sid,
                                      ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            first = k.get_records(ShardIterator=it, Limit=2)
            self.assertEqual([r["Data"] for r in first["Records"]], [b"r0", b"r1"])
            page = k.list_streams(Limit=1)
            self.assertTrue(page["HasMoreStreams"])
            self.assertEqual(d.stop(), 0, d.tail())
            d.start()
            k = d.client()
            rest = k.get_records(ShardIterator=first["NextShardIterator"])
            self.assertEqual([r["Data"] for r in rest["Records"]], [b"r2", b"r3", b"r4"])
            again = k.get_records(ShardIterator=it)     # the very first one too
            self.assertEqual(len(again["Records"]), 5)
            nxt = k.list_streams(NextToken=page["NextToken"])
            self.assertEqual(nxt["StreamNames"], ["iter-b", "iter-c"])
        finally:
            rc, log = d.shutdown()
        self.assertEqual(rc, 0, log)

    def test_orphan_data_of_an_interrupted_delete_is_removed_at_start(self):
        # DeleteStream changes the catalog, then drops the data; a crash in
        # between leaves the stream's directory behind. We make that state
        # from two real runs: save stream "gone"'s directory, DeleteStream it
        # (catalog and data both go), and put the directory back. Stream
        # "half" is left as a crash right after DeleteStream's first step
        # leaves it: marked DELETING in the catalog (the one field firnd itself
        # would have written). At the next start firnd finishes both: their
        # data is removed with one line each, while "keep", resharded so it
        # has closed parent shards, reads back whole and takes new records.
        d = Firnd(self.firnd_path).start()
        streams = os.path.join(d.data_dir, "streams")
        catalog = os.path.join(d.data_dir, "catalog", "catalog.json")
        saved = os.path.join(d.data_dir, "saved-gone")

        def ids():
            with open(catalog) as f:
                return {s["name"]: s["id"] for s in json.load(f)["streams"]}

        def put(k, name, n, tag):
            out = []
            for i in range(n):
                key, data = f"{tag}-{i}", (b"%s-%d-" % (tag.encode(), i)) * (1 + i % 50)
                r = k.put_record(StreamName=name, Data=data, PartitionKey=key)
                out.append((r["SequenceNumber"], r["ShardId"], key, data))
            return out

        def read_all(k, name):
            got = {}
            for sh in k.list_shards(StreamName=name)["Shards"]:
                it = k.get_shard_iterator(StreamName=name, ShardId=sh["ShardId"],
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
                while it:
                    r = k.get_records(ShardIterator=it)
                    for rec in r["Records"]:
                        got[rec["SequenceNumber"]] = (sh["ShardId"], rec["PartitionKey"],
                                                      rec["Data"])
                    it = r.get("NextShardIterator")
                    if not r["Records"] and r["MillisBehindLatest"] == 0:
                        break
            return got

        try:
            k = d.client()
            for name, n in (("keep", 2), ("gone", 3), ("half", 2)):
                k.create_stream(StreamName=name, ShardCount=n)
            kept = put(k, "keep", 60, "k1")
            k.update_shard_count(StreamName="keep", TargetShardCount=3,
                                 ScalingType="UNIFORM_SCALING")
            kept += put(k, "keep", 60, "k2")
            put(k, "gone", 200, "g")
            put(k, "half", 100, "h")
            sid = ids()
            gone_dir = os.path.join(streams, str(sid["gone"]))
            half_dir = os.path.join(streams, str(sid["half"]))
            self.assertEqual(d.stop(), 0, d.tail())
            shutil.copytree(gone_dir, saved, symlinks=True)

            d.start()
            d.client().delete_stream(StreamName="gone")
            self.assertFalse(os.path.exists(gone_dir), "DeleteStream left the data")
            self.assertEqual(d.stop(), 0, d.tail())
            os.rename(saved, gone_dir)                  # the crash's leftover
            with open(catalog) as f:
                cat = json.load(f)
            for s in cat["streams"]:
                if s["name"] == "half":
                    s["status"] = "DELETING"
            with open(catalog, "w") as f:
                json.dump(cat, f)
            os.mkdir(os.path.join(streams, "lost+found"))   # not ours: left alone
            self.assertTrue(os.path.isdir(gone_dir))

            log_start = os.path.getsize(d.log_path)
            d.start()
            with open(d.log_path, "rb") as f:
                f.seek(log_start)
                log = f.read().decode("utf-8", "replace")
            for name, n in (("gone", 3), ("half", 2)):
                line = [ln for ln in log.splitlines()
                        if f"removed orphan data of stream id {sid[name]}:" in ln]
                self.assertEqual(len(line), 1, log)
                self.assertIn(f"MiB, {n} shards (a DeleteStream interrupted by a crash)",
                              line[0])
                self.assertIn("INFO", line[0])
                print(line[0])
            self.assertIn("stream 'half' (id %d) was being deleted" % sid["half"], log)
            self.assertNotIn("quarantined", log)     # the leftover was whole, not damage
            self.assertRegex(log, r"WARN .*streams/lost\+found: not a stream id: left alone")
            self.assertFalse(os.path.exists(gone_dir), "orphan data still there")
            self.assertFalse(os.path.exists(half_dir), "DELETING stream's data still there")
            self.assertTrue(os.path.isdir(os.path.join(streams, "lost+found")))
            self.assertTrue(os.path.isdir(os.path.join(streams, str(sid["keep"]))))

            k = d.client()
            self.assertEqual(sorted(k.list_streams()["StreamNames"]), ["keep"])
            got = read_all(k, "keep")
            self.assertEqual(len(got), len(kept))
            for seq, shard, key, data in kept:
                self.assertEqual(got[seq], (shard, key, data), seq)
            more = put(k, "keep", 10, "k3")
            self.assertEqual(len(read_all(k, "keep")), len(kept) + len(more))
            # The name is free again and the new stream starts empty, with a new id.
            k.create_stream(StreamName="gone", ShardCount=3)
            self.assertNotEqual(ids()["gone"], sid["gone"])
            self.assertEqual(read_all(k, "gone"), {})

            # Nothing left to do at the next start.
            self.assertEqual(d.stop(), 0, d.tail())
            log_start = os.path.getsize(d.log_path)
            d.start()
            with open(d.log_path, "rb") as f:
                f.seek(log_start)
                log = f.read().decode("utf-8", "replace")
            self.assertNotIn("removed orphan data", log)
            self.assertEqual(len(read_all(d.client(), "keep")), len(kept) + len(more))
        finally:
            rc, log = d.shutdown()
        self.assertEqual(rc, 0, log)

    def run_rounds(self, kill9):
        d = Firnd(self.firnd_path).start()
        acked = {}          # seq -> (shard, key, data)
        lock = threading.Lock()
        try:
            k = d.client()
            k.create_stream(StreamName="crash", ShardCount=4)
            for rnd in range(2):
                stop = threading.Event()

                def writer(n):
                    c = d.client(retries=1)
                    i = 0
                    while not stop.is_set():
                        i += 1
                        batch = [(f"w{n}-{rnd}-{i}-{j}", os.urandom(1 + (i * 7 + j) % 300))
                                 for j in range(1 + i % 20)]
                        try:
                            if i % 3 == 0:
                                key, data = batch[0]
                                r = c.put_record(StreamName="crash", Data=data,
                                                 PartitionKey=key)
                                with lock:
                                    acked[r["SequenceNumber"]] = (r["ShardId"], key, data)
                                continue
                            r = c.put_records(StreamName="crash", Records=[
                                {"Data": data, "PartitionKey": key} for key, data in batch])
                            with lock:
                                for (key, data), res in zip(batch, r["Records"]):
                                    if "SequenceNumber" in res:
                                        acked[res["SequenceNumber"]] = (res["ShardId"], key,
                                                                        data)
                        except (botocore.exceptions.BotoCoreError,
                                botocore.exceptions.ClientError, OSError):
                            # Failures around the kill are expected; those records
                            # were not acknowledged and are not checked.
                            time.sleep(0.01)

                threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
                for t in threads:
                    t.start()
                time.sleep(2.0)
                with lock:
                    n_before = len(acked)
                if kill9:
                    d.kill9()       # no flush, no goodbye
                else:
                    self.assertEqual(d.stop(), 0, d.tail())
                stop.set()
                for t in threads:
                    t.join(60)
                self.assertGreater(n_before, 50, "the writers made no progress before the kill")
                d.start()
                k = d.client()
                got = {}
                for sh in k.list_shards(StreamName="crash")["Shards"]:
                    it = k.get_shard_iterator(StreamName="crash", ShardId=sh["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
                    last = -1
                    while it:
                        r = k.get_records(ShardIterator=it)
                        for rec in r["Records"]:
                            seq = int(rec["SequenceNumber"])
                            self.assertGreater(seq, last)   # strictly increasing per shard
                            last = seq
                            got[rec["SequenceNumber"]] = (sh["ShardId"], rec["PartitionKey"],
                                                          rec["Data"])
                        it = r.get("NextShardIterator")
                        if not r["Records"] and r["MillisBehindLatest"] == 0:
                            break
                missing = [s for s in acked if s not in got]
                self.assertEqual(missing, [], f"{len(missing)} acknowledged records lost")
                for seq, want in acked.items():
                    self.assertEqual(got[seq], want, seq)
                # New numbers continue above everything acknowledged in that shard.
                for i in range(8):
                    r = k.put_record(StreamName="crash", Data=b"after", PartitionKey=f"a{i}")
                    top = max((int(s) for s, v in got.items() if v[0] == r["ShardId"]),
                              default=0)
                    self.assertGreater(int(r["SequenceNumber"]), top)
                    acked[r["SequenceNumber"]] = (r["ShardId"], f"a{i}", b"after")
                print(f"round {rnd}: {len(acked)} acknowledged records so far, all read "
                      f"back with their numbers and data")
        finally:
            rc, log = d.shutdown()
        self.assertEqual(rc, 0, log)


if __name__ == "__main__":
    main([Crash])
