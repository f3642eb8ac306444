"""One manifest build for the operator and ``xacct-map manifest``.

Open the source (a listing or an S3 Inventory report), stream its objects through the filters into
the manifest, and turn a failed AWS call into a message that names what failed. The callers bring
only what differs between them: credentials (Airflow connections or a boto3 profile) and logging.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import groupby
from operator import attrgetter
from typing import cast

from botocore.exceptions import ClientError

from xacct_map.core.errors import TRANSIENT, error_code, explain_assume_role_error, explain_source_error
from xacct_map.core.filters import ObjectFilter
from xacct_map.core.inventory import (
    InventoryError,
    InventoryManifest,
    explain_inventory_error,
    iter_inventory_objects,
)
from xacct_map.core.keylists import iter_key_list, key_list_format, open_key_list
from xacct_map.core.layouts import DEFAULT_MAX_BATCH_BYTES
from xacct_map.core.listing import iter_objects
from xacct_map.core.manifest import DEFAULT_MAX_PART_BYTES, ManifestSummary, SidecarWriteError, write_manifest
from xacct_map.core.s3uri import access_point, is_access_point_alias, split_s3_uri
from xacct_map.core.sources import SourceSpec, collapse
from xacct_map.core.versions import VERSIONS, iter_object_versions

_UPLOAD_CALLS = ("CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload")

#: What a build does when the source (after the filters) holds no object: ``skip`` (no manifest; the
#: caller skips what follows), ``fail``, or ``run`` (an empty manifest, as any other).
ON_EMPTY = ("skip", "fail", "run")
#: What the processor does with an object changed (another ETag or version) or gone since it was listed:
#: ``fail`` its batch, ``skip`` it (reported), or process the ``current`` object (reported). None: the
#: items are not pinned (bare keys, as before; the processor reads whatever is current, reports nothing).
ON_CHANGED = ("fail", "skip", "current")


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
    #: ``"requester"``: the source (and its inventory) is Requester Pays; sent on every source call.
    request_payer: str | None = None
    #: one range ``(start_after, up_to]`` of a listing spread over several tasks (:mod:`xacct_map.core.ranges`)
    start_after: str = ""
    up_to: str | None = None
    sources: tuple[SourceSpec, ...] = ()
    keys_from: str | None = None
    keys_format: str = "auto"
    on_changed: str | None = None
    versions: str | None = None

    def __post_init__(self) -> None:
        if self.on_empty not in ON_EMPTY:
            raise ValueError(f"on_empty must be one of {', '.join(ON_EMPTY)}, not {self.on_empty!r}")
        if self.on_changed is not None and self.on_changed not in ON_CHANGED:
            raise ValueError(f"on_changed must be one of {', '.join(ON_CHANGED)} (or None), not {self.on_changed!r}")
        if self.versions is not None and self.versions not in VERSIONS:
            raise ValueError(f"versions must be one of {', '.join(VERSIONS)} (or None), not {self.versions!r}")
        chosen = [name for name in ("source_inventory", "keys_from") if getattr(self, name)]
        if len(chosen) > 1 or (chosen and len(self.sources) > 1):
            raise ValueError(
                "give one kind of source: a listing (one or more sources), an inventory or a key list, not "
                + " and ".join(chosen + (["several sources"] if len(self.sources) > 1 else []))
            )
        if self.versions == "all" and self.on_changed is None:
            raise ValueError(
                "versions='all' lists every version of a key, which the processor tells apart only by its VersionId: "
                "give on_changed (e.g. 'fail') so each item is pinned to its version, or use versions='latest'"
            )
        if self.on_changed is not None and self.layout != "batched":
            raise ValueError(
                f"on_changed pins each key to its listed version or ETag, which only the batched layout carries "
                f"to the processor, not the {self.layout!r} layout: use layout='batched' or leave on_changed unset"
            )
        if len(self.sources) > 1 and self.object_filter.pattern_base == "relative":
            raise ValueError("pattern_base='relative' needs one source prefix: with several, match the whole key")
        if self.keys_from and _sized_filters(self.object_filter):
            raise ValueError(
                f"a key list carries no sizes or dates: the filters {_sized_filters(self.object_filter)} cannot "
                "apply to keys_from; filter the list itself, or list the bucket instead"
            )

    @property
    def needs_details(self) -> bool:
        """Whether the manifest uses the objects' ETags or dates: the flat layout's items, pinned items,
        a date filter (else the listing leaves them out)."""
        return self.layout == "flat" or self.pinned or self.object_filter.uses_dates

    @property
    def pinned(self) -> bool:
        """Items carry the listed version or ETag (``on_changed`` set)."""
        return self.on_changed is not None


def _sized_filters(object_filter: ObjectFilter) -> list[str]:
    names = ("min_size", "max_size", "modified_after", "modified_before")
    return [name for name in names if getattr(object_filter, name, None) is not None]


@dataclass(frozen=True)
class Source:
    """The objects to write (lazy) and the ``source`` block the manifest's metadata records.

    ``grouped``: ``objects`` is ``(bucket, objects)`` pairs (several sources, a key list)."""

    objects: Iterable
    description: dict
    grouped: bool = False


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
    stats: dict = {}  # filled while listing: recorded in the metadata (engine, requests, seconds)
    if request.versions:
        versioned = iter_object_versions(
            client,
            request.source_bucket,
            request.source_prefix,
            versions=request.versions,
            expected_bucket_owner=request.source_account_id,
            request_payer=request.request_payer,
        )
        stats.update(engine="ListObjectVersions", versions=request.versions)
    objects = (
        _timed(versioned, stats)  # iter_objects times itself
        if request.versions
        else iter_objects(
            client,
            request.source_bucket,
            request.source_prefix,
            expected_bucket_owner=request.source_account_id,
            request_payer=request.request_payer,
            listing_engine=listing_engine,
            credentials=credentials,  # the client's own credentials, refreshed for an assumed role
            verify=verify,
            parallelism=parallelism,
            stats=stats,
            start_after=request.start_after,
            up_to=request.up_to,
            details=request.needs_details,
        )
    )
    description = {
        "type": "listing",
        "bucket": request.source_bucket,
        "prefix": request.source_prefix,
        "account_id": request.source_account_id,
        "region": getattr(getattr(client, "meta", None), "region_name", None),
        "listing": stats,
        **_payer(request),
    }
    return Source(objects, description)


def listed_sources(
    request: ManifestRequest,
    open_source: Callable[[SourceSpec], tuple],
    *,
    listing_engine: str = "auto",
    parallelism: int = 32,
) -> Source:
    """The listing of every source of ``request.sources`` (overlaps collapsed: each key once), one after another.

    :param open_source: ``spec -> (client, credentials, verify)``: the client reads ``spec``'s bucket (its
        role, in its Region); called when that source's turn comes.
    :raises ValueError: one bucket given with different roles, accounts or Regions.
    """
    specs = collapse(list(request.sources))
    entries = [
        {"type": "listing", "bucket": s.bucket, "prefix": s.prefix, "account_id": s.account_id, "region": s.region}
        for s in specs
    ]
    description: dict = {**entries[0], "type": "sources", "prefix": "" if len(specs) > 1 else specs[0].prefix}
    description.update(sources=entries, **_payer(request))

    def groups() -> Iterator:
        for spec, entry in zip(specs, entries, strict=True):
            client, credentials, verify = open_source(spec)
            one = replace(
                request,
                source_bucket=spec.bucket,
                source_prefix=spec.prefix,
                source_account_id=spec.account_id,
                source_region=spec.region,
                sources=(),
            )
            listed = listed_source(
                one,
                client,
                credentials=credentials,
                verify=verify,
                listing_engine=listing_engine,
                parallelism=parallelism,
            )
            entry.update(listed.description, type="listing")
            yield spec.bucket, listed.objects
        description.update(region=entries[0]["region"], account_id=entries[0]["account_id"])

    return Source(groups(), description, grouped=True)


def key_list_source(request: ManifestRequest, reader) -> Source:
    """The keys of ``request.keys_from`` (S3 Batch Operations CSV, JSON Lines or text; an S3 object read
    with ``reader``, or a local file), each once, in list order; a text list's bucket is the source bucket.

    :raises KeyListError: the list cannot be opened (raised while the manifest is written: a bad row).
    """
    location = cast(str, request.keys_from)
    fmt = key_list_format(location, request.keys_format)
    stats: dict = {}
    description = {
        "type": "key_list",
        "bucket": request.source_bucket,
        "prefix": request.source_prefix,
        "account_id": request.source_account_id,
        "region": request.source_region,
        "keys_from": location,
        "format": fmt,
        "sizes": "unknown",
        "key_list": stats,
        **_payer(request),  # the processor's reads of the listed keys
    }
    stream = open_key_list(location, reader)
    keys = iter_key_list(
        stream,
        fmt=fmt,
        default_bucket=request.source_bucket,
        location=location,
        stats=stats,
        versions=request.pinned,  # unpinned, two versions of a key would be the same key twice
    )
    return Source(((bucket, group) for bucket, group in groupby(keys, attrgetter("bucket"))), description, grouped=True)


def _payer(request: ManifestRequest) -> dict:
    """``{"request_payer": "requester"}`` for a Requester Pays source: the processor's reads send it too."""
    return {"request_payer": request.request_payer} if request.request_payer else {}


def _timed(objects: Iterable, stats: dict) -> Iterator:
    """Pass ``objects`` on; record the seconds from the first request to the last object in ``stats``."""
    started = time.monotonic()
    yield from objects
    stats["listing_seconds"] = round(time.monotonic() - started, 3)


def inventory_source(request: ManifestRequest, reader, report: InventoryManifest) -> Source:
    """The source as the objects of an S3 Inventory ``report`` under the prefix, read with ``reader``.

    :raises InventoryError: the report describes another bucket than ``source_bucket``.
    """
    bucket = request.source_bucket or report.source_bucket
    # A report names the bucket, never an access point in front of it (which is read through).
    through_access_point = access_point(request.source_bucket) or is_access_point_alias(request.source_bucket)
    if (
        request.source_bucket
        and report.source_bucket
        and report.source_bucket != request.source_bucket
        and not through_access_point
    ):
        raise InventoryError(
            f"inventory {report.uri} is a report of bucket {report.source_bucket!r}, not of the source bucket "
            f"{request.source_bucket!r}: point the inventory at {request.source_bucket!r}'s inventory "
            "configuration, or the source at the bucket it describes."
        )
    counts: dict = {}  # filled while the manifest is written, recorded in its metadata
    objects = iter_inventory_objects(
        reader, report, prefix=request.source_prefix, request_payer=request.request_payer, stats=counts
    )
    description = {
        "type": "inventory",
        "bucket": bucket,
        "prefix": request.source_prefix,
        "account_id": request.source_account_id,
        "region": request.source_region,
        "inventory": {**report.as_dict(), "counts": counts},
        **_payer(request),
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
    objects = source.objects
    if source.grouped and observe:
        objects = ((bucket, observe(group)) for bucket, group in objects)
    elif observe:
        objects = observe(objects)
    refuse_empty = None if request.on_empty == "run" else partial(_refuse_empty, request, source)
    if request.pinned:
        source.description["on_changed"] = request.on_changed
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
        grouped=source.grouped,
        pin=request.pinned,
        before_complete=refuse_empty,
    )


def _refuse_empty(request: ManifestRequest, source: Source) -> None:
    """Raise :class:`EmptySourceError` if the filter kept no object (called by the manifest writer once
    every object went through, so its upload is aborted and no manifest is left)."""
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
    if description.get("sources"):
        where = " and ".join(f"s3://{s['bucket']}/{s.get('prefix') or ''}" for s in description["sources"])
    elif description.get("type") == "key_list":
        where = f"the key list {description.get('keys_from')}"
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
        return explain_inventory_error(
            err, bucket=bucket, key=prefix, identity=identity, request_payer=request.request_payer
        )
    if operation.startswith("ListObjects") or operation == "HeadBucket":
        return explain_source_error(
            err,
            # Several sources: the one whose listing failed (a ListingError names it).
            bucket=getattr(err, "bucket", None) or request.source_bucket,
            prefix=(getattr(err, "prefix", "") or "") if getattr(err, "bucket", None) else request.source_prefix,
            identity=identity,
            owner=request.source_account_id,
            request_payer=request.request_payer,
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
