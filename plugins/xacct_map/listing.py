"""List the objects under an S3 prefix, byte-exact, each key exactly once.

The pure core: it takes a boto3 S3 client and plain values, knows nothing of Airflow.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class S3Object:
    """One listed object. ``last_modified`` is the ISO-8601 text S3 sent (not parsed)."""

    key: str
    size: int
    etag: str = ""
    last_modified: str = ""
    storage_class: str = "STANDARD"


class ListingOrderError(RuntimeError):
    """S3 returned keys out of order or twice: the listing cannot be trusted to be exactly-once."""


def iter_objects(
    s3_client,
    bucket: str,
    prefix: str = "",
    *,
    expected_bucket_owner: str | None = None,
) -> Iterator[S3Object]:
    """Yield every object under ``prefix`` in ``bucket`` once, in S3's (UTF-8 binary) key order.

    Keys come back exactly as stored: botocore asks for ``EncodingType=url`` and decodes it, so keys
    with characters XML 1.0 cannot carry survive. Raises :class:`ListingOrderError` if S3 ever
    returns a key that is not strictly greater than the previous one.

    :param s3_client: a boto3 S3 client with credentials that may list ``bucket``.
    :param expected_bucket_owner: account id the bucket must belong to (sent as
        ``ExpectedBucketOwner``; S3 answers 403 if another account owns it).
    """
    kwargs = {"Bucket": bucket, "Prefix": prefix}
    if expected_bucket_owner:
        kwargs["ExpectedBucketOwner"] = expected_bucket_owner
    previous: str | None = None
    for page in s3_client.get_paginator("list_objects_v2").paginate(**kwargs):
        for item in page.get("Contents", ()):
            key = item["Key"]
            # Python compares str by code point, which is the UTF-8 byte order S3 lists in.
            if previous is not None and key <= previous:
                raise ListingOrderError(
                    f"S3 listed {key!r} after {previous!r} in bucket {bucket!r}: keys must be strictly "
                    "ascending; refusing to build a manifest that could miss or repeat objects."
                )
            previous = key
            last_modified = item.get("LastModified", "")
            yield S3Object(
                key=key,
                size=item["Size"],
                etag=item.get("ETag", ""),
                last_modified=last_modified if isinstance(last_modified, str) else last_modified.isoformat(),
                storage_class=item.get("StorageClass", "STANDARD"),
            )
