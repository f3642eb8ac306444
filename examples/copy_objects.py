"""Example processor: copy every object into a bucket of the pipeline account, keys preserved.

A server-side copy (CopyObject; UploadPartCopy above 5 GiB): the bytes never pass through the Lambda.
``ExpectedSourceBucketOwner`` (the source account) and ``ExpectedBucketOwner`` (the pipeline account)
protect both sides against a bucket name owned by someone else.

Configure with the function's environment (``--processor-env NAME=VALUE``):

* ``DEST_BUCKET`` (required): the destination bucket, in the pipeline account and the Lambda's Region;
* ``DEST_PREFIX`` (optional): prepended to every key (default: none, keys preserved as they are);
* ``DEST_ACCOUNT_ID`` (optional): the destination's owner (default: the Lambda's own account).

The processor role needs ``s3:PutObject`` on ``arn:aws:s3:::DEST_BUCKET/DEST_PREFIX*`` besides what
``xacct-map deploy`` grants (add it to the role, or to the destination's bucket policy), and the
source bucket policy already grants ``s3:GetObject``, which CopyObject needs on the source.

Try it locally::

    xacct-map demo --processor examples/copy_objects.py:process \\
        --processor-env DEST_BUCKET=xacct-map-demo-inventory --processor-env DEST_PREFIX=copies/
"""

from __future__ import annotations

import os
from functools import cache

from xacct_map.processor import S3Object, s3_client

PART_SIZE = 1024**3  # 1 GiB parts for objects over CopyObject's 5 GiB limit
MAX_SINGLE_COPY = 5 * 1024**3


@cache
def _destination() -> tuple[str, str, str]:
    bucket = os.environ.get("DEST_BUCKET")
    if not bucket:
        raise RuntimeError("DEST_BUCKET is not set: deploy with --processor-env DEST_BUCKET=<bucket>")
    account = os.environ.get("DEST_ACCOUNT_ID")
    if not account:  # the Lambda's own account, asked once per sandbox
        import boto3

        account = boto3.client("sts").get_caller_identity()["Account"]
    return bucket, os.environ.get("DEST_PREFIX", ""), account


def process(obj: S3Object) -> dict:
    """Copy ``obj`` to ``DEST_BUCKET/DEST_PREFIX<key>``; return where it went and its ETag."""
    bucket, prefix, account = _destination()
    target = s3_client(os.environ.get("AWS_REGION"))  # the destination is in the Lambda's Region
    # A pinned item (on_changed) copies exactly the listed version, or the listed ETag's content.
    pin = obj.pin
    source = {"Bucket": obj.bucket, "Key": obj.key, **({"VersionId": pin["VersionId"]} if "VersionId" in pin else {})}
    owners = {"ExpectedBucketOwner": account}
    if "IfMatch" in pin:
        owners["CopySourceIfMatch"] = pin["IfMatch"]
    if obj.context.account_of(obj.bucket):  # several sources: each bucket's own account
        owners["ExpectedSourceBucketOwner"] = obj.context.account_of(obj.bucket)
    key = prefix + obj.key
    if obj.size <= MAX_SINGLE_COPY:
        etag = target.copy_object(Bucket=bucket, Key=key, CopySource=source, **owners)["CopyObjectResult"]["ETag"]
    else:
        etag = _multipart_copy(target, bucket, key, source, obj.size, owners)
    return {"copied_to": f"s3://{bucket}/{key}", "etag": etag, "size": obj.size}


def _multipart_copy(s3, bucket: str, key: str, source: dict, size: int, owners: dict) -> str:
    dest_owner = {"ExpectedBucketOwner": owners["ExpectedBucketOwner"]}
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, **dest_owner)["UploadId"]
    try:
        parts = []
        for number, start in enumerate(range(0, size, PART_SIZE), start=1):
            end = min(start + PART_SIZE, size) - 1
            part = s3.upload_part_copy(
                Bucket=bucket,
                Key=key,
                UploadId=upload,
                PartNumber=number,
                CopySource=source,
                CopySourceRange=f"bytes={start}-{end}",
                **owners,
            )
            parts.append({"PartNumber": number, "ETag": part["CopyPartResult"]["ETag"]})
        done = s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}, **dest_owner
        )
        return done["ETag"]
    except Exception:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, **dest_owner)
        raise
