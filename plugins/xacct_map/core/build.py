"""One manifest build for the operator and ``xacct-map manifest``.

Open the source (a listing or an S3 Inventory report), stream its objects through the filters into
the manifest, and turn a failed AWS call into a message that names what failed. The callers bring
only what differs between them: credentials (Airflow connections or a boto3 profile) and logging.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from xacct_map.core.errors import TRANSIENT, error_code, explain_assume_role_error, explain_source_error
from xacct_map.core.filters import ObjectFilter
from xacct_map.core.inventory import (
    InventoryError,
    InventoryManifest,
    explain_inventory_error,
    iter_inventory_objects,
)
from xacct_map.core.layouts import DEFAULT_MAX_BATCH_BYTES
from xacct_map.core.listing import iter_objects
from xacct_map.core.manifest import DEFAULT_MAX_PART_BYTES, ManifestSummary, SidecarWriteError, write_manifest
from xacct_map.core.s3uri import split_s3_uri

_UPLOAD_CALLS = ("CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload")

#: What a build does when the source (after the filters) holds no object: ``skip`` (no manifest; the
#: caller skips what follows), ``fail``, or ``run`` (an empty manifest, as any other).
ON_EMPTY = ("skip", "fail", "run")


class EmptySourceError(ValueError):
    """The source holds no object to process; no manifest was written. ``on_empty`` says what it means."""

    def __init__(self, message: str, *, on_empty: str, counts: dict):
        super().__init__(message)
        self.on_empty = on_empty
        self.counts = counts


@dataclass(frozen=True)
class ManifestRequest:
    """What to read and where to write it: every value already checked and typed."""

    source_bucket: str
    source_prefix: str
    manifest_bucket: str
    manifest_key: str
    object_filter: ObjectFilter = field(default_factory=ObjectFilter)
    source_account_id: str | None = None
    source_region: str | None = None
    source_inventory: str | None = None
    layout: str = "batched"
    manifest_format: str = "json"
    max_keys_per_batch: int = 100
    max_bytes_per_batch: int = 512 * 1024 * 1024
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    max_part_bytes: int = DEFAULT_MAX_PART_BYTES
    manifest_bucket_owner: str | None = None
    write_metadata: bool = True
    on_empty: str = "run"

    def __post_init__(self) -> None:
        if self.on_empty not in ON_EMPTY:
            raise ValueError(f"on_empty must be one of {', '.join(ON_EMPTY)}, not {self.on_empty!r}")


@dataclass(frozen=True)
class Source:
    """The objects to write (lazy) and the ``source`` block the manifest's metadata records."""

    objects: Iterable
    description: dict


def listed_source(
    request: ManifestRequest,
    client,
    *,
    credentials=None,
    verify: bool | str | None = None,
    listing_engine: str = "auto",
    parallelism: int = 32,
) -> Source:
    """The source as a listing of ``s3://source_bucket/source_prefix`` with ``client`` (the source account's)."""
    stats: dict = {}  # filled while listing: recorded in the metadata (engine, requests, retries, seconds, keys/s)
    objects = iter_objects(
        client,
        request.source_bucket,
        request.source_prefix,
        expected_bucket_owner=request.source_account_id,
        listing_engine=listing_engine,
        credentials=credentials,  # the client's own credentials, refreshed for an assumed role
        verify=verify,
        parallelism=parallelism,
        stats=stats,
    )
    description = {
        "type": "listing",
        "bucket": request.source_bucket,
        "prefix": request.source_prefix,
        "account_id": request.source_account_id,
        "region": getattr(getattr(client, "meta", None), "region_name", None),
        "listing": stats,
    }
    return Source(objects, description)


def inventory_source(request: ManifestRequest, reader, report: InventoryManifest) -> Source:
    """The source as the objects of an S3 Inventory ``report`` under the prefix, read with ``reader``.

    :raises InventoryError: the report describes another bucket than ``source_bucket``.
    """
    bucket = request.source_bucket or report.source_bucket
    if request.source_bucket and report.source_bucket and report.source_bucket != request.source_bucket:
        raise InventoryError(
            f"inventory {report.uri} is a report of bucket {report.source_bucket!r}, not of the source bucket "
            f"{request.source_bucket!r}: point the inventory at {request.source_bucket!r}'s inventory "
            "configuration, or the source at the bucket it describes."
        )
    counts: dict = {}  # filled while the manifest is written, recorded in its metadata
    objects = iter_inventory_objects(reader, report, prefix=request.source_prefix, stats=counts)
    description = {
        "type": "inventory",
        "bucket": bucket,
        "prefix": request.source_prefix,
        "account_id": request.source_account_id,
        "region": request.source_region,
        "inventory": {**report.as_dict(), "counts": counts},
    }
    return Source(objects, description)


def build_manifest(
    request: ManifestRequest,
    source: Source,
    pipeline_client,
    *,
    observe: Callable[[Iterable], Iterable] | None = None,
) -> ManifestSummary:
    """Stream ``source`` through the request's filters into the manifest and its metadata sidecar.

    :param pipeline_client: the pipeline account's S3 client (writes the manifest).
    :param observe: wraps the object stream on its way (e.g. a progress counter).
    :raises EmptySourceError: nothing passed the filters and ``on_empty`` is not ``run``; the upload
        was aborted, no manifest exists.
    """
    objects = observe(source.objects) if observe else source.objects
    if request.on_empty != "run":
        objects = _refuse_empty(objects, request, source)
    return write_manifest(
        objects,
        pipeline_client,
        bucket=request.manifest_bucket,
        key=request.manifest_key,
        source_bucket=source.description["bucket"],
        source_prefix=request.source_prefix,
        layout=request.layout,
        manifest_format=request.manifest_format,
        max_keys_per_batch=request.max_keys_per_batch,
        max_bytes_per_batch=request.max_bytes_per_batch,
        max_batch_bytes=request.max_batch_bytes,
        max_part_bytes=request.max_part_bytes,
        expected_bucket_owner=request.manifest_bucket_owner,
        object_filter=request.object_filter,
        source=source.description,
        write_metadata=request.write_metadata,
    )


def _refuse_empty(objects: Iterable, request: ManifestRequest, source: Source) -> Iterator:
    """Pass ``objects`` on; at their end, raise :class:`EmptySourceError` if the filter kept none.

    Raised from inside the manifest writer, so its upload is aborted and no manifest is left.
    """
    yield from objects
    object_filter = request.object_filter
    if object_filter.kept == 0:
        raise EmptySourceError(
            empty_source_reason(source.description, object_filter.counts(), object_filter.as_dict()),
            on_empty=request.on_empty,
            counts=object_filter.counts(),
        )


def empty_source_reason(description: dict, counts: dict, filters: dict) -> str:
    """Why there is nothing to process: an empty source, or the filters that removed every object."""
    where = f"s3://{description['bucket']}/{description.get('prefix') or ''}"
    if description.get("type") == "inventory":
        where += f" (inventory {description.get('inventory', {}).get('uri', '')})"
    if not counts["seen"]:
        return f"nothing to process: {where} holds no objects"
    skipped = {name: n for name, n in counts["skipped"].items() if n}
    active = {name: value for name, value in filters.items() if value not in (None, [], False, "key", "full")}
    return (
        f"nothing to process: the filters removed all {counts['seen']:,} objects of {where} "
        f"(skipped by {skipped}; filters {active})"
    )


def explain_build_error(
    err: ClientError,
    request: ManifestRequest,
    *,
    identity: str,
    role_arn: str | None = None,
    reading_inventory: bool = False,
) -> str:
    """What failed in a build (the role, the inventory, the source listing or the manifest upload), and what to do.

    :param identity: who read the source (a role ARN, a connection or a profile), for the message.
    :param reading_inventory: the error came while the inventory report was being opened.
    """
    operation = err.operation_name or ""
    if operation == "AssumeRole":
        return explain_assume_role_error(err, role_arn=role_arn or identity)
    if request.source_inventory and (reading_inventory or operation in ("GetObject", "HeadObject")):
        bucket, prefix = split_s3_uri(request.source_inventory)
        return explain_inventory_error(err, bucket=bucket, key=prefix, identity=identity)
    if operation.startswith("ListObjects") or operation == "HeadBucket":
        return explain_source_error(
            err,
            bucket=request.source_bucket,
            prefix=request.source_prefix,
            identity=identity,
            owner=request.source_account_id,
        )
    return _explain_write_error(err, request, operation)


def _explain_write_error(err: ClientError, request: ManifestRequest, operation: str) -> str:
    bucket, key = request.manifest_bucket, request.manifest_key
    code = error_code(err)
    hint = {
        "NoSuchBucket": f" Destination bucket {bucket!r} does not exist: create it, or fix the manifest bucket.",
        "AccessDenied": f" The pipeline identity needs s3:PutObject and s3:AbortMultipartUpload on "
        f"arn:aws:s3:::{bucket}/{key}*.",
    }.get(code, "")
    if code in TRANSIENT:
        hint = f" S3 answered {code} on every retry (throttling or a failure of its own)."
    if operation in _UPLOAD_CALLS:
        outcome = " Nothing was left behind (the upload was aborted)"
    elif operation == "PutObject" and not isinstance(err, SidecarWriteError):
        outcome = " Nothing was left behind (the manifest is written whole or not at all)"
    elif operation == "PutObject":
        outcome = (
            f" The metadata sidecar {key}.meta.json could not be written, so the completed manifest was deleted "
            "again: the run's key holds both or neither"
        )
    else:
        outcome = " No manifest was written"
    retry = "; the task can be retried." if code in TRANSIENT or code in ("NoSuchUpload", "") else "."
    return f"Writing manifest s3://{bucket}/{key} failed during {operation}: {code}.{hint}{outcome}{retry}"
