#!/usr/bin/env python3
"""The "standard S3 client" side of the benchmark: what an operator's script does with boto3.

  s3.py mkbucket BUCKET
  s3.py upload FILE BUCKET KEY        # multipart, 8 MiB parts, 4 threads (like `aws s3 cp`)
  s3.py download BUCKET KEY FILE
  s3.py size BUCKET PREFIX            # total bytes of the objects under PREFIX
  s3.py rm BUCKET PREFIX              # delete the objects under PREFIX (moto keeps them on disk)

Endpoint and credentials come from S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.
"""
import os
import sys

import boto3
from boto3.s3.transfer import TransferConfig

MIB = 1024 * 1024
# The aws CLI's defaults: 8 MiB parts, 10 requests in flight.
TRANSFER = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB,
                          max_concurrency=10)


def client():
    return boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1")


def main():
    what, *args = sys.argv[1:]
    s3 = client()
    if what == "mkbucket":
        s3.create_bucket(Bucket=args[0])
    elif what == "upload":
        s3.upload_file(args[0], args[1], args[2], Config=TRANSFER)
    elif what == "download":
        s3.download_file(args[0], args[1], args[2], Config=TRANSFER)
    elif what == "size":
        total = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=args[0], Prefix=args[1]):
            total += sum(o["Size"] for o in page.get("Contents", []))
        print(total)
    elif what == "rm":
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=args[0], Prefix=args[1]):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=args[0], Delete={"Objects": keys})
    else:
        sys.exit(f"unknown command {what}")


if __name__ == "__main__":
    main()
