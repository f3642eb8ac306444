"""``s3://bucket/key`` URIs, split and checked, with messages that say what was expected."""

from __future__ import annotations


def split_s3_uri(uri: str, *, what: str = "location", key_required: bool = False) -> tuple[str, str]:
    """``("bucket", "key/or/prefix")`` from ``s3://bucket/key/or/prefix``.

    The key part is returned exactly as written (no decoding: S3 keys may contain ``%`` and ``+``).

    :param what: names the value in the error message (``--dest``, ``source_inventory``...).
    :param key_required: refuse a URI without a key (a manifest destination needs one).
    :raises ValueError: not an ``s3://`` URI, no bucket, or no key when one is required.
    """
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ValueError(f"{what} {uri!r} is not an S3 URI: expected s3://<bucket>/<key or prefix>")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"{what} {uri!r} names no bucket: expected s3://<bucket>/<key or prefix>")
    if key_required and (not key or key.endswith("/")):
        raise ValueError(f"{what} {uri!r} names no object key: expected s3://<bucket>/<key>")
    return bucket, key
