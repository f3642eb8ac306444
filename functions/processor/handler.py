"""Processor Lambda: read every object of one manifest batch from the source account's bucket.

Deployed as-is (this file is the whole package; boto3 comes with the Lambda Python runtime).
The event is one manifest batch, as the Distributed Map's ItemSelector passes it::

    {"bucket": "src", "keys": ["a", "b"], "bytes": 123, "source": {"account_id": "111111111111", ...}}

or ItemBatcher's shape, ``{"Items": [...], "BatchInput": {...}}``, whose items are either batches or
flat objects (``{"Bucket"/"bucket", "Key"/"key"}``). Each object is streamed (never held whole) and
its SHA-256 is logged; the result counts objects and bytes and carries one checksum over the batch.
Any object that cannot be read raises, so the item fails visibly in the Map Run.

Environment: ``SOURCE_ACCOUNT_ID`` (optional) is sent as ExpectedBucketOwner when the event does
not name the source account; ``CHUNK_SIZE`` sets the read size.
"""

from __future__ import annotations

import hashlib
import json
import os

import boto3

CHUNK_SIZE = int(os.environ.get("CHUNK_SIZE", str(1024 * 1024)))
_clients: dict[str | None, object] = {}


def _s3(region: str | None):
    # One client per Region, kept across warm invocations.
    if region not in _clients:
        _clients[region] = boto3.client("s3", region_name=region) if region else boto3.client("s3")
    return _clients[region]


def _objects(event: dict) -> tuple[list[tuple[str, str]], dict]:
    """``[(bucket, key), ...]`` and the source context, from either event shape."""
    if "Items" in event:
        context = dict(event.get("BatchInput") or {}).get("source") or {}
        pairs: list[tuple[str, str]] = []
        for item in event["Items"]:
            if "keys" in item:
                pairs += [(item["bucket"], k) for k in item["keys"]]
            else:
                pairs.append((item.get("Bucket") or item.get("bucket"), item.get("Key") or item.get("key")))
        return pairs, context
    if "keys" in event and "bucket" in event:
        return [(event["bucket"], k) for k in event["keys"]], event.get("source") or {}
    raise ValueError(f"unrecognised event: expected a manifest batch or ItemBatcher input, got keys {sorted(event)}")


def handler(event: dict, context=None) -> dict:
    pairs, source = _objects(event)
    owner = source.get("account_id") or os.environ.get("SOURCE_ACCOUNT_ID")
    extra = {"ExpectedBucketOwner": owner} if owner else {}
    s3 = _s3(source.get("region"))
    batch = hashlib.sha256()
    total = 0
    for bucket, key in pairs:
        digest = hashlib.sha256()
        size = 0
        try:
            body = s3.get_object(Bucket=bucket, Key=key, **extra)["Body"]
            for chunk in iter(lambda: body.read(CHUNK_SIZE), b""):  # noqa: B023 (called in this iteration)
                digest.update(chunk)
                size += len(chunk)
        except Exception as err:
            raise RuntimeError(f"cannot read s3://{bucket}/{key}: {err}") from err
        total += size
        batch.update(digest.digest())
        print(json.dumps({"bucket": bucket, "key": key, "bytes": size, "sha256": digest.hexdigest()}))
    return {"objects": len(pairs), "bytes": total, "checksum": batch.hexdigest()}
