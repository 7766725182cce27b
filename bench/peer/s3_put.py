"""The S3 server's ceiling as a user's own script would reach it: boto3, with its default
transfer settings, sends the bytes of intake's S3 cases straight to the server. Prints JSON:
one 1 GiB object (boto3's managed multipart upload) and 1 MiB objects, 16 PUTs at a time.

Usage: s3_put.py ENDPOINT KEY SECRET BUCKET ONE_MIB_OBJECTS ONE_GIB_BYTES
"""
import concurrent.futures
import io
import json
import os
import sys
import time

import boto3
from botocore.config import Config

MIB = 1024 * 1024

endpoint, key, secret, bucket, count, big = sys.argv[1:7]
client = boto3.client(
    "s3",
    endpoint_url=endpoint,
    aws_access_key_id=key,
    aws_secret_access_key=secret,
    region_name="us-east-1",
    # Checksums only where S3 asks for them, as the S3-compatible servers this runs against expect.
    config=Config(
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        max_pool_connections=16,
    ),
)

data = os.urandom(int(big))
started = time.perf_counter()
client.upload_fileobj(io.BytesIO(data), bucket, "ceiling/boto3-big")
one_gib = len(data) / MIB / (time.perf_counter() - started)

small = os.urandom(MIB)
count = int(count)


def put(i: int) -> None:
    client.put_object(Bucket=bucket, Key=f"ceiling/boto3-small-{i}", Body=small)


started = time.perf_counter()
with concurrent.futures.ThreadPoolExecutor(16) as pool:
    list(pool.map(put, range(count)))
one_mib = count / (time.perf_counter() - started)

print(json.dumps({"one_gib_mib_s": one_gib, "one_mib_c16_mib_s": one_mib}))
