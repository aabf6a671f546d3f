"""Shared helpers for the Kinesis API integration tests (tests/integration/api_*.py).

Each test program starts the real firnd on a free loopback port with a fresh
data directory under /var/tmp (the store uses O_DIRECT, which tmpfs refuses),
drives it with unmodified boto3 and AWS CLI clients, and stops it (starting,
stopping and killing firnd is shared with the client tests: firnd_launch.py).
Programs exit 0 (pass), 1 (fail) or 77 (skip: firnd not built, boto3 or aws
missing).

    python3 api_lifecycle.py /path/to/firnd [/path/to/firn]

Raw requests (bad JSON, bad signatures, huge bodies) are signed with
botocore's own SigV4Auth and sent with http.client, so what is being tested
is the server's handling, not a client's politeness.
"""

import datetime
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import unittest

from firnd_launch import SKIP, FirndProcess, free_port, http_ready

ACCESS_KEY = "FIRNDEMOACCESSKEY"
SECRET_KEY = "firn-demo-secret-change-me"
REGION = "us-east-1"
ACCOUNT = "000000000000"

try:
    import boto3
    import botocore
    import botocore.auth
    import botocore.awsrequest
    import botocore.config
    import botocore.credentials
    import botocore.exceptions
except ImportError:  # pragma: no cover - environment check
    boto3 = None


def range_starts(n):
    """Exact Kinesis hash ranges of n equal shards: [(start, end)]."""
    step = 2**128 // n
    out = []
    for i in range(n):
        end = step * (i + 1) - 1 if i + 1 < n else 2**128 - 1
        out.append((step * i, end))
    return out


def md5_hash_key(key):
    if isinstance(key, str):
        key = key.encode("utf-8")
    return int(hashlib.md5(key).hexdigest(), 16)


def check_environment(firnd):
    """Exit 77 with a reason when the test cannot run here."""
    if boto3 is None:
        print("SKIP: boto3 is not installed (pip install boto3 or apt install python3-boto3)")
        sys.exit(SKIP)
    if not firnd or not os.access(firnd, os.X_OK):
        print(f"SKIP: firnd not built at {firnd!r}")
        sys.exit(SKIP)
    if shutil.which("aws") is None:
        print("SKIP: the AWS CLI is not installed (pip install awscli or apt install awscli)")
        sys.exit(SKIP)


class Firnd(FirndProcess):
    """One firnd with its own data dir and API port, ready once GET /metrics
    answers 200 (starting, stopping and killing it: firnd_launch.py)."""

    def __init__(self, firnd, conf=None, env=None, data_dir=None, port=None):
        super().__init__(firnd, data_dir=data_dir, prefix="firn-api-it-", env=env)
        self.conf = conf or {}
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def start(self, timeout=20):
        args = ["--data-dir", self.data_dir, "--api", f"127.0.0.1:{self.port}",
                "--listen", f"127.0.0.1:{free_port()}"]
        if self.conf:
            path = os.path.join(self.data_dir, "test.conf")
            with open(path, "w") as f:
                for k, v in self.conf.items():
                    f.write(f"{k} = {v}\n")
            args += ["--config", path]
        return self.launch(args, lambda: http_ready(self.port), timeout)

    # ---- clients ----------------------------------------------------------

    def client(self, retries=3, key=ACCESS_KEY, secret=SECRET_KEY, region=REGION):
        cfg = botocore.config.Config(retries={"max_attempts": retries, "mode": "standard"},
                                     connect_timeout=5, read_timeout=60)
        return boto3.client("kinesis", endpoint_url=self.endpoint, region_name=region,
                            aws_access_key_id=key, aws_secret_access_key=secret, config=cfg)

    def aws_env(self):
        env = dict(os.environ)
        env.update({"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                    "AWS_DEFAULT_REGION": REGION, "AWS_PAGER": "",
                    "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"})
        return env

    def aws(self, *args, check=True):
        """Run the real AWS CLI; returns parsed JSON output (or None)."""
        cmd = ["aws", "--endpoint-url", self.endpoint, "--output", "json", "kinesis"] + list(args)
        p = subprocess.run(cmd, env=self.aws_env(), capture_output=True, text=True, timeout=120)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr}")
        if not check:
            return p
        return json.loads(p.stdout) if p.stdout.strip() else None

    def raw(self, target, body, headers=None, sign=True, secret=SECRET_KEY, key=ACCESS_KEY,
            when=None, method="POST", path="/"):
        """Send one request by hand. Returns (status, headers, parsed-or-raw body)."""
        if isinstance(body, str):
            body = body.encode()
        hdrs = {"Content-Type": "application/x-amz-json-1.1"}
        if target is not None:
            hdrs["X-Amz-Target"] = target if "." in target else "Kinesis_20131202." + target
        hdrs.update(headers or {})
        if sign:
            req = botocore.awsrequest.AWSRequest(method=method, url=self.endpoint + path,
                                                 data=body, headers=hdrs)
            creds = botocore.credentials.Credentials(key, secret)
            auth = botocore.auth.SigV4Auth(creds, "kinesis", REGION)
            if when is not None:
                from unittest import mock
                with mock.patch("botocore.auth.get_current_datetime", return_value=when):
                    auth.add_auth(req)
            else:
                auth.add_auth(req)
            hdrs = dict(req.headers.items())
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        c.request(method, path, body=body, headers=hdrs)
        r = c.getresponse()
        data = r.read()
        c.close()
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = data
        return r.status, dict(r.getheaders()), parsed


def error_code(exc):
    return exc.response["Error"]["Code"]


class FirndTestCase(unittest.TestCase):
    """One firnd per test class (started in setUpClass)."""

    firnd_path = None
    firn_path = None
    conf = None
    env = None

    @classmethod
    def setUpClass(cls):
        cls.d = Firnd(cls.firnd_path, conf=cls.conf, env=cls.env).start()
        cls.k = cls.d.client()

    @classmethod
    def tearDownClass(cls):
        rc, log = cls.d.shutdown()
        if rc != 0:
            raise AssertionError(f"firnd exited {rc} on SIGTERM:\n{log}")

    def assertError(self, code, fn, *args, **kwargs):
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            fn(*args, **kwargs)
        self.assertEqual(error_code(cm.exception), code, cm.exception.response)
        return cm.exception

    def create(self, name, shards=1):
        self.k.create_stream(StreamName=name, ShardCount=shards)
        self.k.get_waiter("stream_exists").wait(StreamName=name,
                                                WaiterConfig={"Delay": 1, "MaxAttempts": 10})
        return name

    def read_shard(self, stream, shard_id, it_type="TRIM_HORIZON", **kw):
        """All records of a shard from a starting point until caught up."""
        it = self.k.get_shard_iterator(StreamName=stream, ShardId=shard_id,
                                       ShardIteratorType=it_type, **kw)["ShardIterator"]
        out = []
        while it:
            r = self.k.get_records(ShardIterator=it, Limit=10000)
            out += r["Records"]
            it = r.get("NextShardIterator")
            if not r["Records"] and r["MillisBehindLatest"] == 0:
                break
        return out


def main(cls_list):
    """Entry point: argv[1] firnd, argv[2] firn (optional)."""
    firnd = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("FIRND")
    firn = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("FIRN")
    check_environment(firnd)
    for c in cls_list:
        c.firnd_path = firnd
        c.firn_path = firn
    suite = unittest.TestSuite()
    loader = unittest.TestLoader()
    for c in cls_list:
        suite.addTests(loader.loadTestsFromTestCase(c))
    res = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    sys.exit(0 if res.wasSuccessful() else 1)


def utc(ts):
    return datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc).replace(tzinfo=None)
