"""Read a whole stream back through firnd's Kinesis API with unmodified boto3.

    python3 ingest_api_read.py ENDPOINT STREAM OUT

Writes one line per record, "shard counter sha256(data)", in the same form
as `ingest_client verify --dump`, so the test can compare what the UDP path
stored (read from the store files) with what a Kinesis consumer gets.
Every shard is read from TRIM_HORIZON until GetRecords returns nothing and
says it is at the tip. Exits 77 when boto3 is missing, 1 on an API error.
"""

import hashlib
import sys

try:
    import boto3
    import botocore.config
except ImportError:
    print("SKIP: boto3 is not installed")
    sys.exit(77)


def main():
    endpoint, stream, out = sys.argv[1], sys.argv[2], sys.argv[3]
    k = boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="FIRNDEMOACCESSKEY",
        aws_secret_access_key="firn-demo-secret-change-me",
        config=botocore.config.Config(retries={"max_attempts": 2}, read_timeout=60),
    )
    shards = k.list_shards(StreamName=stream)["Shards"]
    lines = []
    for sh in shards:
        idx = int(sh["ShardId"].split("-")[1])
        it = k.get_shard_iterator(
            StreamName=stream, ShardId=sh["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while it:
            r = k.get_records(ShardIterator=it, Limit=1000)
            for rec in r["Records"]:
                seq = int(rec["SequenceNumber"])
                counter = seq - 2**127 - idx * 2**64
                lines.append(f"{idx} {counter} {hashlib.sha256(rec['Data']).hexdigest()}")
            it = r.get("NextShardIterator")
            if not r["Records"] and r.get("MillisBehindLatest", 0) == 0:
                break
    with open(out, "w") as f:
        f.write("\n".join(lines) + ("\n" if lines else ""))
    print(f"api: {len(lines)} records from {len(shards)} shards")


if __name__ == "__main__":
    main()
