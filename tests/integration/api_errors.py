#!/usr/bin/env python3
"""Every error type of the API, bad signatures, oversized bodies, malformed JSON,
slow clients, per-shard throttling, and the lab switch that turns SigV4
verification off. Requests a well-behaved SDK would refuse to send are built by
hand (signed with botocore's SigV4Auth, sent with http.client or a raw socket)."""

import datetime
import json
import socket
import threading
import time

from api_common import (ACCESS_KEY, SECRET_KEY, FirndTestCase, error_code, main)

import botocore.exceptions


CHUNKED_HEAD = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-amz-json-1.1\r\n"
                b"X-Amz-Target: Kinesis_20131202.PutRecords\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def recv_reply(s):
    got = b""
    s.settimeout(20)
    try:
        while True:
            more = s.recv(65536)
            if not more:
                break
            got += more
            head, sep, body = got.partition(b"\r\n\r\n")
            if sep:
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        if len(body) >= int(line.split(b":")[1]):
                            return got
    except OSError:
        pass
    return got


class Errors(FirndTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.k.create_stream(StreamName="err", ShardCount=2)

    def raw_error(self, status, etype, target, body, **kw):
        st, hdrs, data = self.d.raw(target, body, **kw)
        self.assertEqual(st, status, data)
        self.assertEqual(data["__type"], etype, data)
        self.assertIsInstance(data["message"], str)
        self.assertTrue(hdrs.get("x-amzn-RequestId"), hdrs)
        self.assertEqual(hdrs.get("Content-Type"), "application/x-amz-json-1.1")
        return data["message"]

    def test_success_headers(self):
        st, hdrs, data = self.d.raw("DescribeStreamSummary", '{"StreamName":"err"}')
        self.assertEqual(st, 200)
        self.assertEqual(hdrs["Content-Type"], "application/x-amz-json-1.1")
        ids = {self.d.raw("DescribeLimits", "{}")[1]["x-amzn-RequestId"] for _ in range(5)}
        self.assertEqual(len(ids), 5)
        st, hdrs, _ = self.d.raw("DescribeLimits", "{}",
                                 headers={"Content-Type": "application/x-amz-json-1.0"})
        self.assertEqual(hdrs["Content-Type"], "application/x-amz-json-1.0")

    def test_serialization(self):
        self.raw_error(400, "SerializationException", "CreateStream", '{"StreamName": "x"')
        self.raw_error(400, "SerializationException", "CreateStream", "not json at all")
        self.raw_error(400, "SerializationException", "CreateStream", "[]")
        self.raw_error(400, "SerializationException", "CreateStream",
                       '{"StreamName":"x","ShardCount":"two"}')
        self.raw_error(400, "SerializationException", "PutRecord",
                       '{"StreamName":"err","PartitionKey":"k","Data":"!!not base64!!"}')
        self.raw_error(400, "SerializationException", "PutRecord",
                       b'{"StreamName":"err","PartitionKey":"\xff\xfe","Data":""}')

    def test_validation(self):
        m = self.raw_error(400, "ValidationException", "CreateStream",
                           '{"StreamName":"bad name!","ShardCount":0}')
        self.assertTrue(m.startswith("2 validation errors detected: "), m)
        self.assertIn("Value 'bad name!' at 'streamName' failed to satisfy constraint", m)
        self.raw_error(400, "ValidationException", "GetRecords",
                       '{"ShardIterator":"x","Limit":0}')
        self.raw_error(400, "ValidationException", "GetRecords",
                       '{"ShardIterator":"x","Limit":10001}')
        self.raw_error(400, "ValidationException", "DescribeStream",
                       '{"StreamName":"' + "s" * 129 + '"}')
        self.raw_error(400, "ValidationException", "PutRecords",
                       json.dumps({"StreamName": "err", "Records": [
                           {"Data": "", "PartitionKey": "k"}] * 501}))
        self.raw_error(400, "ValidationException", "PutRecord",
                       json.dumps({"StreamName": "err", "Data": "", "PartitionKey": "k" * 257}))
        # boto3 checks some of this itself; the server must not depend on it.
        e = self.assertError("ValidationException", self.k.put_record, StreamName="err",
                             Data=b"x" * (1024 * 1024 + 1), PartitionKey="k")
        self.assertIn("1048576", str(e))

    def test_unknown_operation(self):
        self.raw_error(400, "UnknownOperationException", "ListStreamConsumers", "{}")
        self.raw_error(400, "UnknownOperationException", "DynamoDB_20120810.ListTables", "{}")
        self.raw_error(400, "UnknownOperationException", None, "{}")
        st, _, data = self.d.raw("ListStreams", "{}", method="GET", path="/", sign=False)
        self.assertEqual(st, 400)
        self.assertEqual(data["__type"], "UnknownOperationException")

    def test_modelled_errors(self):
        self.assertError("ResourceNotFoundException", self.k.put_record, StreamName="none",
                         Data=b"x", PartitionKey="k")
        e = self.assertError("ResourceNotFoundException", self.k.describe_stream,
                             StreamName="none")
        self.assertIn("Stream none under account 000000000000 not found.", str(e))
        self.assertError("ResourceInUseException", self.k.create_stream, StreamName="err",
                         ShardCount=1)
        self.assertError("InvalidArgumentException", self.k.put_record, StreamName="err",
                         Data=b"x", PartitionKey="k",
                         ExplicitHashKey=str(2**128))
        self.assertError("InvalidArgumentException", self.k.put_records, StreamName="err",
                         Records=[{"Data": b"x" * (1024 * 1024), "PartitionKey": "k"}] * 5 +
                         [{"Data": b"y", "PartitionKey": "k"}])
        self.assertError("LimitExceededException", self.k.create_stream, StreamName="huge",
                         ShardCount=100000)
        self.assertError("InvalidArgumentException", self.k.get_records, ShardIterator="AAAA")

    def test_authentication(self):
        m = self.raw_error(400, "MissingAuthenticationTokenException", "ListStreams", "{}",
                           sign=False)
        self.assertEqual(m, "Missing Authentication Token")
        self.raw_error(400, "IncompleteSignatureException", "ListStreams", "{}", sign=False,
                       headers={"Authorization": "AWS4-HMAC-SHA256 Credential=x",
                                "X-Amz-Date": "20240101T000000Z"})
        self.raw_error(400, "IncompleteSignatureException", "ListStreams", "{}", sign=False,
                       headers={"Authorization": "Basic dXNlcjpwYXNz"})
        # Wrong secret: the signature does not match.
        bad = self.d.client(retries=1, secret="wrong-secret")
        e = self.assertError("InvalidSignatureException", bad.list_streams)
        self.assertIn("signature we calculated does not match", str(e))
        # Unknown access key.
        bad = self.d.client(retries=1, key="AKIDUNKNOWN")
        self.assertError("UnrecognizedClientException", bad.list_streams)
        # Clock skew over 5 minutes, both ways.
        old = datetime.datetime.utcnow() - datetime.timedelta(minutes=20)
        m = self.raw_error(400, "InvalidSignatureException", "ListStreams", "{}", when=old)
        self.assertIn("Signature expired", m)
        new = datetime.datetime.utcnow() + datetime.timedelta(minutes=20)
        m = self.raw_error(400, "InvalidSignatureException", "ListStreams", "{}", when=new)
        self.assertIn("not yet current", m)
        # Within the window is fine.
        ok = datetime.datetime.utcnow() - datetime.timedelta(minutes=3)
        self.assertEqual(self.d.raw("ListStreams", "{}", when=ok)[0], 200)
        # A body changed after signing.
        st, hdrs, data = self.d.raw("ListStreams", "{}")
        self.assertEqual(st, 200)
        import botocore.auth
        import botocore.awsrequest
        import botocore.credentials
        req = botocore.awsrequest.AWSRequest(
            method="POST", url=self.d.endpoint + "/", data=b'{"Limit":1}',
            headers={"Content-Type": "application/x-amz-json-1.1",
                     "X-Amz-Target": "Kinesis_20131202.ListStreams"})
        botocore.auth.SigV4Auth(botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY),
                                "kinesis", "us-east-1").add_auth(req)
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=10)
        c.request("POST", "/", body=b'{"Limit":2}', headers=dict(req.headers.items()))
        r = c.getresponse()
        self.assertEqual(r.status, 400)
        self.assertEqual(json.loads(r.read())["__type"], "InvalidSignatureException")
        # The region of the credential scope goes into ARNs.
        eu = self.d.client(region="eu-west-3")
        d = eu.describe_stream_summary(StreamName="err")["StreamDescriptionSummary"]
        self.assertEqual(d["StreamARN"], "arn:aws:kinesis:eu-west-3:000000000000:stream/err")

    def test_oversized_bodies(self):
        # Declared too large: 413 before the body is sent.
        s = socket.create_connection(("127.0.0.1", self.d.port), timeout=10)
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-amz-json-1.1\r\n"
                  b"X-Amz-Target: Kinesis_20131202.PutRecords\r\n"
                  b"Content-Length: 1073741824\r\n\r\n")
        reply = s.recv(65536).decode("latin-1")
        s.close()
        self.assertTrue(reply.startswith("HTTP/1.1 413"), reply[:200])
        self.assertIn("RequestEntityTooLargeException", reply)
        # Chunked, with no length: storing stops at the limit, the rest is dropped
        # unbuffered and the 413 comes when the body ends.
        rss0 = rss_kib(self.d.proc.pid)
        s = socket.create_connection(("127.0.0.1", self.d.port), timeout=30)
        s.sendall(CHUNKED_HEAD)
        chunk = b"x" * (1 << 20)
        for _ in range(12):
            s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        s.sendall(b"0\r\n\r\n")
        got = recv_reply(s)
        s.close()
        self.assertTrue(got.startswith(b"HTTP/1.1 413"), got[:200])
        self.assertIn(b"RequestEntityTooLargeException", got)
        # One that never ends is cut off, after a bounded amount, never buffered.
        s = socket.create_connection(("127.0.0.1", self.d.port), timeout=30)
        s.sendall(CHUNKED_HEAD)
        sent = 0
        with self.assertRaises(OSError):
            for _ in range(1024):
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += 1
        s.close()
        self.assertLess(sent, 64)
        self.assertLess(rss_kib(self.d.proc.pid) - rss0, 64 * 1024)
        # Just under the limit is a normal request (5 MiB of data in PutRecords).
        r = self.k.put_records(StreamName="err", Records=[
            {"Data": b"z" * (1024 * 1024 - 16), "PartitionKey": "k"}] * 5)
        self.assertEqual(r["FailedRecordCount"], 0)
        # The daemon still serves.
        self.assertEqual(self.d.raw("ListStreams", "{}")[0], 200)

    def test_slow_clients_do_not_stall_others(self):
        socks = []
        # Stalled in the headers, and stalled in the middle of a body.
        for i in range(50):
            s = socket.create_connection(("127.0.0.1", self.d.port), timeout=60)
            if i % 2:
                s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Ta")
            else:
                s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"a\":")
            socks.append(s)
        t0 = time.time()
        for i in range(20):
            self.k.put_record(StreamName="err", Data=b"%d" % i, PartitionKey="k")
        self.assertLess(time.time() - t0, 10)
        # Concurrent writers all complete while the slow ones hang.
        errs = []

        def writer(n):
            try:
                c = self.d.client()
                for i in range(20):
                    c.put_records(StreamName="err", Records=[
                        {"Data": b"c", "PartitionKey": f"{n}-{i}"}] * 10)
            except Exception as e:  # noqa: BLE001
                errs.append(e)

        ts = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        self.assertEqual(errs, [])
        # A stalled connection is dropped by the server's idle timeout (30 s).
        socks[0].settimeout(45)
        t0 = time.time()
        try:
            data = socks[0].recv(100)
        except ConnectionResetError:
            data = b""
        self.assertEqual(data, b"")
        self.assertLess(time.time() - t0, 45)
        for s in socks:
            s.close()


class Throttled(FirndTestCase):
    conf = {"throttle": "true"}

    def test_per_shard_limits(self):
        self.create("thr", 1)
        # 2 MiB in one call to one shard: the first MiB passes, the rest is refused
        # per record, and refused entries carry only ErrorCode and ErrorMessage.
        r = self.k.put_records(StreamName="thr", Records=[
            {"Data": b"t" * 4096, "PartitionKey": f"k{i}"} for i in range(500)])
        self.assertGreater(r["FailedRecordCount"], 0)
        self.assertLess(r["FailedRecordCount"], 500)
        failed = [x for x in r["Records"] if "ErrorCode" in x]
        self.assertEqual(len(failed), r["FailedRecordCount"])
        for x in failed:
            self.assertEqual(x["ErrorCode"], "ProvisionedThroughputExceededException")
            self.assertEqual(set(x), {"ErrorCode", "ErrorMessage"})
            self.assertIn("Rate exceeded for shard shardId-000000000000", x["ErrorMessage"])
        ok = [x for x in r["Records"] if "SequenceNumber" in x]
        self.assertLessEqual(len(ok) * 4096, 1024 * 1024)
        # PutRecord gets the error type botocore retries on. Each ~1 MiB record
        # empties the byte bucket, which refills at 1 MiB/s: back-to-back, one of
        # a few must be refused (on a loaded machine a call may take long enough
        # for one refill, not for several).
        noretry = self.d.client(retries=1)
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            for _ in range(5):
                noretry.put_record(StreamName="thr", Data=b"m" * (1000 * 1024),
                                   PartitionKey="k")
        self.assertEqual(error_code(cm.exception), "ProvisionedThroughputExceededException")
        # After a second the bucket has refilled; the SDK's retries get through.
        time.sleep(1.2)
        self.k.put_record(StreamName="thr", Data=b"x", PartitionKey="k")
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=10)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        line = [x for x in text.splitlines()
                if x.startswith('firn_shard_throttled_records_total{stream="thr"')][0]
        self.assertGreaterEqual(int(line.split()[-1]), r["FailedRecordCount"])


class Unverified(FirndTestCase):
    # A lab may switch verification off; the default is on (every other class).
    conf = {"sigv4_verify": "false"}

    def test_unsigned_requests_accepted(self):
        st, _, data = self.d.raw("CreateStream", '{"StreamName":"lab","ShardCount":1}',
                                 sign=False)
        self.assertEqual(st, 200, data)
        st, _, data = self.d.raw("ListStreams", "{}", sign=False)
        self.assertEqual(data["StreamNames"], ["lab"])
        # A client with any credentials works too.
        c = self.d.client(key="anything", secret="whatever")
        self.assertEqual(c.list_streams()["StreamNames"], ["lab"])


if __name__ == "__main__":
    main([Errors, Throttled, Unverified])
