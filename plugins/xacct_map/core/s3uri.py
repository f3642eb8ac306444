"""``s3://bucket/key`` URIs, split and checked, with messages that say what was expected.

The "bucket" of a source may also be an S3 access point: its ARN
(``s3://arn:aws:s3:REGION:ACCOUNT:accesspoint/NAME/prefix``; boto3 takes the ARN as ``Bucket``) or
its alias (``NAME-xxxx-s3alias``, used like a bucket name). Directory buckets (S3 Express One
Zone, ``name--usw2-az1--x-s3``) are recognised by name: they list in no particular order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PARTITIONS = "aws|aws-cn|aws-us-gov"
# arn:aws:s3:us-east-1:111111111111:accesspoint/name (names: 3-50 lowercase letters, digits, hyphens)
_ACCESS_POINT_ARN = re.compile(
    rf"^arn:(?P<partition>{_PARTITIONS}):s3:(?P<region>[a-z0-9-]+):(?P<account>\d{{12}}):accesspoint[/:]"
    r"(?P<name>[a-z0-9][a-z0-9-]{1,48}[a-z0-9])$"
)
_ANY_ARN = re.compile(r"^arn:[^:/]*:[^:/]*:[^:/]*:[^:/]*:[^/]*")
# An alias: the name's first part, a random suffix, "-s3alias" (or "--op-s3" for Outposts, refused).
_ALIAS = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}-s3alias$")
# A directory bucket: base name, "--", the zone id (usw2-az1, use1-az4, or a Local Zone id), "--x-s3".
_DIRECTORY_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]*--[a-z0-9-]+--x-s3$")


@dataclass(frozen=True)
class AccessPoint:
    """An access point ARN's parts; ``arn`` is what boto3 takes as ``Bucket``."""

    arn: str
    partition: str
    region: str
    account: str
    name: str

    @property
    def host_prefix(self) -> str:
        """``NAME-ACCOUNT``: the first label of the access point's endpoint host."""
        return f"{self.name}-{self.account}"


def access_point(bucket: str) -> AccessPoint | None:
    """The access point a source "bucket" names by ARN, or None for a bucket name (or an alias)."""
    match = _ACCESS_POINT_ARN.match(bucket or "")
    if match is None:
        return None
    return AccessPoint(bucket.replace(":accesspoint:", ":accesspoint/"), **match.groupdict())


def is_access_point_alias(bucket: str) -> bool:
    return bool(_ALIAS.match(bucket or ""))


def is_directory_bucket(bucket: str) -> bool:
    """A directory bucket (S3 Express One Zone): unordered listings, no ``StartAfter``."""
    return bool(_DIRECTORY_BUCKET.match(bucket or ""))


def check_source_bucket(bucket: str, *, what: str = "source") -> str:
    """``bucket`` if it names a bucket, an access point alias or an S3 access point ARN.

    :raises ValueError: a Multi-Region Access Point, an Object Lambda or Outposts access point, or
        another ARN: named, with what to use instead.
    """
    if not bucket.startswith("arn:"):
        return bucket
    if access_point(bucket) is not None:
        return bucket
    if ":s3-object-lambda:" in bucket:
        kind = "an Object Lambda access point"
    elif bucket.endswith(".mrap") or re.match(rf"^arn:({_PARTITIONS}):s3::\d{{12}}:accesspoint/", bucket):
        kind = "a Multi-Region Access Point"
    elif ":s3-outposts:" in bucket:
        kind = "an S3 on Outposts access point"
    else:
        raise ValueError(
            f"{what} {bucket!r} is not an S3 access point ARN: expected "
            "arn:aws:s3:<region>:<account id>:accesspoint/<name> (or a bucket name, or an access point alias)"
        )
    raise ValueError(
        f"{what} {bucket!r} is {kind}, which xacct-map does not support as a source: list the bucket "
        "itself, or a regional access point (arn:aws:s3:<region>:<account id>:accesspoint/<name>) of it."
    )


def split_s3_uri(uri: str, *, what: str = "location", key_required: bool = False) -> tuple[str, str]:
    """``("bucket", "key/or/prefix")`` from ``s3://bucket/key/or/prefix``.

    The key part is returned exactly as written (no decoding: S3 keys may contain ``%`` and ``+``).
    ``s3://arn:aws:s3:REGION:ACCOUNT:accesspoint/NAME/prefix`` gives the access point ARN as the
    bucket (what boto3 takes as ``Bucket``); other ARNs are refused by :func:`check_source_bucket`.

    :param what: names the value in the error message (``--dest``, ``source_inventory``...).
    :param key_required: refuse a URI without a key (a manifest destination needs one).
    :raises ValueError: not an ``s3://`` URI, no bucket, or no key when one is required.
    """
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ValueError(f"{what} {uri!r} is not an S3 URI: expected s3://<bucket>/<key or prefix>")
    rest = uri[len("s3://") :]
    if rest.startswith("arn:"):
        found = _ANY_ARN.match(rest)
        head = found.group(0) if found else rest
        # the resource part is "accesspoint/NAME": the key starts after the name
        _, slash, tail = rest[len(head) :].partition("/")
        if head.endswith(":accesspoint") and slash:
            name, _, key = tail.partition("/")
            bucket = check_source_bucket(f"{head}/{name}", what=what)
        else:  # no access point: where its name ends is unknown, so the message names all of it
            check_source_bucket(rest, what=what)
            bucket, key = rest, ""  # only "arn:...:accesspoint:NAME" (colon form, no prefix) gets here
    else:
        bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"{what} {uri!r} names no bucket: expected s3://<bucket>/<key or prefix>")
    if key_required and (not key or key.endswith("/")):
        raise ValueError(f"{what} {uri!r} names no object key: expected s3://<bucket>/<key>")
    return bucket, key
