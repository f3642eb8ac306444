"""A versioned bucket's objects through ListObjectVersions: each listed with its VersionId.

``versions="latest"`` keeps the current version of each key (a key whose current version is a delete
marker is not listed: it is deleted); ``"all"`` keeps every version (not the delete markers), so a key
may appear several times, once per version. The VersionId goes into the manifest and the processor
reads exactly that version. botocore's paginator pages through (key, version) markers, so each
version comes once; this listing has no parallel engine (ListObjectVersions takes no StartAfter).
"""

from __future__ import annotations

from collections.abc import Iterator

from xacct_map.core.keylists import ListedKey
from xacct_map.core.listing import call_params
from xacct_map.core.timestamps import s3_timestamp

VERSIONS = ("latest", "all")


def iter_object_versions(
    client,
    bucket: str,
    prefix: str = "",
    *,
    versions: str = "latest",
    expected_bucket_owner: str | None = None,
    request_payer: str | None = None,
) -> Iterator[ListedKey]:
    """Every version (``all``) or current version (``latest``) under ``prefix``, with its VersionId.

    :raises ValueError: ``versions`` is not ``latest`` or ``all``, or a bucket or ``request_payer``
        :func:`~xacct_map.core.listing.call_params` refuses.
    :raises botocore.exceptions.ClientError: S3 refused the listing (``ListObjectVersions``).
    """
    if versions not in VERSIONS:
        raise ValueError(f"versions must be one of {', '.join(VERSIONS)}, not {versions!r}")
    owner = call_params(bucket, prefix, expected_bucket_owner, request_payer)
    pages = client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix, **owner)
    for page in pages:
        for version in page.get("Versions", ()):
            if versions == "latest" and not version.get("IsLatest"):
                continue
            yield ListedKey(
                version["Key"],
                bucket,
                version_id=version.get("VersionId"),
                size=int(version.get("Size", 0)),
                etag=version.get("ETag", ""),
                last_modified=s3_timestamp(version.get("LastModified")),
                storage_class=version.get("StorageClass", "STANDARD"),
            )
