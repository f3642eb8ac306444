"""``xacct-map manifest``: build a manifest from the command line, without Airflow.

    xacct-map manifest --source s3://their-bucket/exports/ --dest s3://my-inventory/xacct-map/manifests/x.json \\
        --role-arn arn:aws:iam::111111111111:role/xacct-map-lister --suffix .parquet --json

Lists ``--source`` (repeatable: several sources, overlapping prefixes listed once; or reads the S3
Inventory given with ``--inventory``, or the key list ``--keys-from``) as the source account
(``--role-arn``, assumed with the ``--profile``/environment credentials; without it, those
credentials list directly), applies the filters, streams the manifest to ``--dest`` with the
pipeline credentials (``--profile``/environment) and writes ``<dest>.meta.json``. On a terminal a
progress line (keys so far, keys/s) is updated in place on stderr. Errors are one line on stderr
naming the bucket or role and what to do; exit code 1 (2 for invalid options, 3 when there was
nothing to process and no manifest was written: ``--on-empty skip``, the default).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from xacct_map.cli import options
from xacct_map.core.layouts import DEFAULT_MAX_BATCH_BYTES, LAYOUTS, check_batch_budget
from xacct_map.core.manifest import MAX_MANIFEST_PART_BYTES

if TYPE_CHECKING:
    from xacct_map.core.build import ManifestRequest


def register(subparsers) -> None:
    """Add the ``manifest`` subcommand to the ``xacct-map`` parser."""
    parser = subparsers.add_parser(
        "manifest",
        help="list a bucket (or read its S3 Inventory) and write a Distributed Map manifest",
        description=(
            "List s3://bucket/prefix (or read its newest S3 Inventory report) and stream a manifest to "
            "s3://bucket/key through a multipart upload, then write <key>.meta.json describing it."
        ),
    )
    _where_arguments(parser.add_argument_group("source and destination"))
    _shape_arguments(parser.add_argument_group("manifest"))
    _filter_arguments(parser.add_argument_group("filters (each one given must pass)"))
    _aws_arguments(parser.add_argument_group("AWS"))
    _run_arguments(parser)
    parser.set_defaults(func=run)


def _where_arguments(where) -> None:
    where.add_argument(
        "--source",
        required=True,
        action="append",
        type=options.source_or_file(),
        metavar="S3URI",
        help="s3://bucket/prefix to list (with --inventory: the bucket and prefix to keep; with --keys-from: "
        "the bucket of keys the list names without one); the bucket may be an access point ARN "
        "(s3://arn:aws:s3:REGION:ACCOUNT:accesspoint/NAME/prefix) or alias. Repeat for several sources "
        "(overlapping prefixes are listed once), or give file://sources.json: a JSON list of "
        '{"uri", "role_arn", "account_id", "region", "external_id"}, each field but uri optional',
    )
    where.add_argument(
        "--keys-from",
        default=None,
        type=options.key_list_location,
        metavar="LIST",
        help="process exactly the keys of this list instead of listing: s3://bucket/key or a local file; an S3 "
        "Batch Operations CSV (bucket,key[,versionId], keys URL-encoded), JSON Lines "
        '({"bucket", "key", "version_id"}) or text (one key per line)',
    )
    where.add_argument(
        "--keys-format",
        default="auto",
        choices=("auto", "csv", "jsonl", "text"),
        help="format of --keys-from (default: auto, from the suffix: .csv, .jsonl/.ndjson, else text)",
    )
    where.add_argument(
        "--dest",
        required=True,
        type=options.s3_uri(key_required=True),
        metavar="S3URI",
        help="s3://bucket/key of the manifest to write",
    )
    where.add_argument(
        "--inventory",
        default=None,
        type=options.s3_uri(),
        metavar="S3URI",
        help="read this S3 Inventory instead of listing: s3://<destination bucket>/<prefix>/"
        "<source bucket>/<config id> (newest report), a timestamp folder or a manifest.json",
    )


def _shape_arguments(shape) -> None:
    shape.add_argument("--layout", default="batched", choices=LAYOUTS, help="item layout (default: %(default)s)")
    shape.add_argument(
        "--format",
        dest="manifest_format",
        default="json",
        choices=("json", "jsonl", "csv"),
        help="file format (default: %(default)s; csv needs --layout flat)",
    )
    shape.add_argument(
        "--max-keys-per-batch",
        type=options.positive,
        default=100,
        metavar="N",
        help="batched layout: most keys per batch (default: %(default)s)",
    )
    shape.add_argument(
        "--max-bytes-per-batch",
        type=options.positive,
        default=512 * 1024 * 1024,
        metavar="BYTES",
        help="batched layout: most object bytes per batch (default: %(default)s)",
    )
    shape.add_argument(
        "--max-batch-bytes",
        type=int,
        default=DEFAULT_MAX_BATCH_BYTES,
        metavar="BYTES",
        help="most UTF-8 bytes of one child execution's input, batch plus source block "
        "(default: %(default)s = 240 KiB; at most 262144, Step Functions' limit)",
    )
    shape.add_argument(
        "--on-changed",
        default=None,
        choices=("fail", "skip", "current"),
        help="pin each key to the listed version or ETag; the processor reports objects changed or deleted "
        "since and fails its batch (fail), skips them (skip) or reads the current object (current). "
        "Default: not pinned (bare keys; whatever is current is read)",
    )
    shape.add_argument(
        "--versions",
        default=None,
        choices=("latest", "all"),
        help="list a versioned bucket with ListObjectVersions: the current version (latest) or every "
        "version (all) of each key, each with its VersionId (read exactly with --on-changed)",
    )
    shape.add_argument(
        "--manifest-part-bytes",
        type=options.integer(1, MAX_MANIFEST_PART_BYTES),
        default=5 * 10**9,
        metavar="BYTES",
        help="batched layout: write the manifest in parts of about BYTES, one Map Run each "
        "(default: %(default)s = 5 GB; ItemReader reads files of at most 10 GB)",
    )


def _filter_arguments(filters) -> None:
    filters.add_argument(
        "--suffix",
        type=options.non_empty,
        action="append",
        default=[],
        metavar="SUFFIX",
        help="keep keys ending with SUFFIX (repeat for several)",
    )
    filters.add_argument(
        "--pattern",
        type=options.non_empty,
        action="append",
        default=[],
        metavar="GLOB",
        help="keep keys matching this fnmatch pattern; * also matches / (repeat for several)",
    )
    filters.add_argument(
        "--pattern-base",
        default="key",
        choices=("key", "relative"),
        help="match patterns against the whole key or the part after the prefix (default: %(default)s)",
    )
    filters.add_argument(
        "--min-size", type=options.integer(0), default=None, metavar="BYTES", help="keep objects of at least BYTES"
    )
    filters.add_argument(
        "--max-size", type=options.integer(0), default=None, metavar="BYTES", help="keep objects of at most BYTES"
    )
    filters.add_argument(
        "--storage-class",
        type=options.storage_class,
        action="append",
        default=None,
        metavar="CLASS",
        help="keep exactly these storage classes (repeat); default: all but GLACIER and DEEP_ARCHIVE",
    )
    filters.add_argument(
        "--include-archived", action="store_true", help="keep GLACIER and DEEP_ARCHIVE objects too (only if restored)"
    )
    filters.add_argument(
        "--modified-after",
        type=options.aware_datetime,
        default=None,
        metavar="ISO",
        help="keep objects with LastModified >= this (ISO-8601 with a time zone)",
    )
    filters.add_argument(
        "--modified-before",
        type=options.aware_datetime,
        default=None,
        metavar="ISO",
        help="keep objects with LastModified < this (ISO-8601 with a time zone)",
    )


def _aws_arguments(aws) -> None:
    aws.add_argument(
        "--endpoint-url", type=options.endpoint_url, default=None, help="S3/STS endpoint (e.g. a local emulator)"
    )
    aws.add_argument("--profile", default=None, help="AWS profile of the pipeline credentials")
    aws.add_argument(
        "--region", type=options.region, default=None, help="Region of the clients (default: the profile's)"
    )
    aws.add_argument(
        "--source-region", type=options.region, default=None, help="Region of the source bucket (default: discovered)"
    )
    aws.add_argument(
        "--role-arn", type=options.role_arn, default=None, help="role in the source account to assume for listing"
    )
    aws.add_argument("--external-id", default=None, help="ExternalId the role's trust policy requires")
    aws.add_argument(
        "--expected-bucket-owner",
        type=options.account_id,
        default=None,
        metavar="ACCOUNT",
        help="account that must own the source bucket (sent as ExpectedBucketOwner; through an access point, "
        "the bucket's owner)",
    )
    aws.add_argument(
        "--request-payer",
        choices=("requester",),
        default=None,
        help="the source is Requester Pays: send RequestPayer=requester on every source call (this account pays)",
    )
    aws.add_argument(
        "--dest-bucket-owner",
        type=options.account_id,
        default=None,
        metavar="ACCOUNT",
        help="account that must own the destination bucket",
    )


def _run_arguments(parser) -> None:
    parser.add_argument(
        "--parallelism",
        type=options.integer(1, 1024),
        default=32,
        metavar="N",
        help="ListObjectsV2 requests in flight (default %(default)s; 1: botocore's paginator alone)",
    )
    parser.add_argument(
        "--listing-engine",
        choices=["auto", "parallel", "paginator"],
        default="auto",
        help="auto (default): the parallel engine against a real HTTP(S) endpoint, else botocore's "
        "paginator; parallel: fail if the parallel engine cannot run; paginator: no worker processes",
    )
    parser.add_argument(
        "--on-empty",
        choices=["skip", "fail", "run"],
        default="skip",
        help="when nothing is left to process (no objects, or the filters removed all): skip (default: no "
        "manifest, exit code 3), fail (exit code 1) or run (write an empty manifest, exit code 0)",
    )
    parser.add_argument("--json", action="store_true", help="print the manifest metadata as JSON on stdout")
    parser.add_argument("--no-progress", action="store_true", help="no progress line, even on a terminal")
    parser.add_argument(
        "--estimate",
        action="store_true",
        help="also print what a run over this manifest will do and cost at list prices (core/estimate.py); "
        "with --json, on stderr",
    )


class Progress:
    """On a TTY, counts objects passing through and rewrites one status line (``\\r``) at most 4 times a second."""

    def __init__(self, stream, *, enabled: bool, interval: float = 0.25):
        self.stream = stream
        self.enabled = enabled
        self.interval = interval
        self.count = 0
        self.started = time.monotonic()
        self._last = 0.0
        self._shown = False

    def wrap(self, objects: Iterable) -> Iterable:
        """``objects``, counted on their way when the line is shown (else untouched: no cost per key)."""
        return self._counted(objects) if self.enabled else objects

    def _counted(self, objects: Iterable) -> Iterator:
        for obj in objects:
            self.count += 1
            now = time.monotonic()
            if now - self._last >= self.interval:
                self._last = now
                self.show(now)
            yield obj

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        return f"{self.count:,} keys ({self.count / elapsed:,.0f} keys/s)"

    def show(self, now: float | None = None) -> None:
        self.stream.write("\r" + self.line(now) + "\x1b[K")
        self.stream.flush()
        self._shown = True

    def finish(self) -> None:
        if self.enabled:
            self.show()
            self.stream.write("\n")
            self.stream.flush()


def _clients(args):
    """``(pipeline s3, base session)``: the pipeline credentials (``--profile``/environment)."""
    import boto3

    session = boto3.session.Session(profile_name=args.profile, region_name=args.region)
    endpoint = {"endpoint_url": args.endpoint_url} if args.endpoint_url else {}
    return session.client("s3", **endpoint), session


def _source_client(args, session, spec, *, discover_region: bool = True):
    """``(source s3, source session, identity text)`` for one source: its role (or ``--role-arn``), in its
    bucket's Region (its own, ``--source-region``, or found with one HeadBucket)."""
    from xacct_map.core.cross_account import assumed_role_session, bucket_region, role_session_name

    endpoint = {"endpoint_url": args.endpoint_url} if args.endpoint_url else {}
    identity = f"profile {args.profile!r}" if args.profile else "the default credentials"
    source_session = session
    if spec.role_arn:
        source_session = assumed_role_session(
            session.client("sts", **endpoint),
            spec.role_arn,
            session_name=role_session_name("xacct-map-cli"),
            external_id=spec.external_id,
            region_name=spec.region or session.region_name,
        )
        identity = spec.role_arn
    source = source_session.client("s3", region_name=spec.region or session.region_name, **endpoint)
    if discover_region and not spec.region:
        # One HeadBucket finds the bucket's Region (cross-Region sources).
        region = bucket_region(source, spec.bucket, expected_bucket_owner=spec.account_id)
        if region and region != source.meta.region_name:
            source = source_session.client("s3", region_name=region, **endpoint)
    return source, source_session, identity


def _sources(args: argparse.Namespace) -> list:
    """Every ``--source`` as a :class:`~xacct_map.core.sources.SourceSpec`, the run-wide options filling
    what a source leaves out (ValueError naming the source if one is bad)."""
    from xacct_map.core.sources import read_sources_argument

    defaults = {
        "role_arn": args.role_arn,
        "account_id": args.expected_bucket_owner,
        "region": args.source_region,
        "external_id": args.external_id,
    }
    return [spec.with_defaults(**defaults) for text in args.source for spec in read_sources_argument(text)]


def _request(args: argparse.Namespace) -> ManifestRequest:
    """The build the options ask for (ValueError naming the option if one is bad)."""
    from xacct_map.core.build import ManifestRequest
    from xacct_map.core.layouts import check_layout
    from xacct_map.core.s3uri import split_s3_uri

    specs = _sources(args)
    if len(specs) > 1 and (args.inventory or args.keys_from):
        raise ValueError("--inventory and --keys-from take one --source (the bucket they describe), not several")
    first = specs[0]
    source_bucket, source_prefix = first.bucket, first.prefix
    dest_bucket, dest_key = split_s3_uri(args.dest, what="--dest", key_required=True)
    check_layout(args.layout, args.manifest_format)
    check_batch_budget(args.max_batch_bytes)
    if args.inventory:
        split_s3_uri(args.inventory, what="--inventory")
    if args.parallelism < 1:
        raise ValueError(f"--parallelism must be at least 1 (requests in flight), not {args.parallelism}")
    return ManifestRequest(
        source_bucket=source_bucket,
        source_prefix=source_prefix,
        manifest_bucket=dest_bucket,
        manifest_key=dest_key,
        object_filter=_object_filter(args, source_prefix),
        source_account_id=first.account_id,
        source_region=first.region,
        source_inventory=args.inventory,
        sources=tuple(specs) if len(specs) > 1 else (),
        keys_from=args.keys_from,
        keys_format=args.keys_format,
        on_changed=args.on_changed,
        versions=args.versions,
        layout=args.layout,
        manifest_format=args.manifest_format,
        max_keys_per_batch=args.max_keys_per_batch,
        max_bytes_per_batch=args.max_bytes_per_batch,
        max_batch_bytes=args.max_batch_bytes,
        max_part_bytes=args.manifest_part_bytes,
        manifest_bucket_owner=args.dest_bucket_owner,
        on_empty=args.on_empty,
        request_payer=args.request_payer,
    )


#: Exit code of a run that found nothing to process and wrote no manifest (``--on-empty skip``).
EXIT_SKIPPED = 3


def _fail(message: str, code: int = 1) -> int:
    print(f"xacct-map manifest: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    """Build the manifest; print a summary (or the metadata JSON with ``--json``)."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    from xacct_map.core.build import EmptySourceError, explain_build_error
    from xacct_map.core.inventory import InventoryError
    from xacct_map.core.keylists import KeyListError
    from xacct_map.core.listing import ListingOrderError

    try:
        request = _request(args)
    except ValueError as err:
        return _fail(str(err), 2)
    progress = Progress(sys.stderr, enabled=sys.stderr.isatty() and not args.no_progress)
    state: dict[str, Any] = {"identity": "the default credentials", "reading_inventory": False}
    try:
        summary = _build(args, request, progress, state)
    except EmptySourceError as err:
        if err.on_empty == "skip":
            return _fail(f"skipped, {err}; no manifest written (--on-empty run writes an empty one)", EXIT_SKIPPED)
        return _fail(f"{err}; no manifest written (--on-empty run writes an empty one)")
    except (InventoryError, ListingOrderError, KeyListError) as err:
        return _fail(str(err))
    except ClientError as err:
        return _fail(explain_build_error(err, request, role_arn=state.pop("role_arn", args.role_arn), **state))
    except NoCredentialsError:
        return _fail("no AWS credentials found: pass --profile, or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY.")
    except (BotoCoreError, ConnectionError) as err:
        return _fail(f"{type(err).__name__}: {err}")
    except ValueError as err:
        return _fail(str(err), 2)
    print(json.dumps(summary.as_dict(), sort_keys=True) if args.json else _describe(summary))
    if args.estimate:
        _print_estimate(args, summary)
    return 0


def _build(args: argparse.Namespace, request: ManifestRequest, progress: Progress, state: dict):
    """Open the source, then write the manifest; ``state`` says how far it got, for the error message."""
    from xacct_map.core.build import build_manifest, inventory_source, key_list_source, listed_source, listed_sources
    from xacct_map.core.inventory import open_inventory

    try:
        pipeline, session = _clients(args)
        if request.sources:

            def open_source(spec):
                client, credentials, state["identity"] = _source_client(args, session, spec)
                state["role_arn"] = spec.role_arn
                return client, credentials, None

            source = listed_sources(
                request, open_source, listing_engine=args.listing_engine, parallelism=args.parallelism
            )
        else:
            first = _sources(args)[0]
            discover = not (request.source_inventory or request.keys_from)
            source_client, source_session, state["identity"] = _source_client(
                args, session, first, discover_region=discover
            )
            if request.source_inventory:
                state["reading_inventory"] = True
                report = open_inventory(pipeline, request.source_inventory, request_payer=request.request_payer)
                source = inventory_source(request, pipeline, report)
                state["reading_inventory"] = False
            elif request.keys_from:
                source = key_list_source(request, pipeline)
            else:
                source = listed_source(
                    request,
                    source_client,
                    credentials=source_session,
                    listing_engine=args.listing_engine,
                    parallelism=args.parallelism,
                )
        return build_manifest(request, source, pipeline, observe=progress.wrap)
    finally:
        progress.finish()  # ends the progress line before any message


def _object_filter(args: argparse.Namespace, source_prefix: str):
    """The :class:`~xacct_map.core.filters.ObjectFilter` of the filter options (ValueError if one is bad)."""
    from xacct_map.core.filters import ObjectFilter

    return ObjectFilter(
        suffixes=tuple(args.suffix),
        patterns=tuple(args.pattern),
        pattern_base=args.pattern_base,
        prefix=source_prefix,
        min_size=args.min_size,
        max_size=args.max_size,
        storage_classes=tuple(args.storage_class) if args.storage_class else None,
        include_archived=args.include_archived,
        modified_after=args.modified_after,
        modified_before=args.modified_before,
        listing_mode="full",
    )


def _describe(summary) -> str:
    """The human summary: where the manifest is, what it holds, what the filters skipped."""
    skipped = {k: v for k, v in (summary.skipped or {}).items() if v}
    return (
        f"manifest s3://{summary.bucket}/{summary.key} ({summary.layout}, {summary.format}): "
        f"{summary.object_count} objects, {summary.total_bytes} bytes"
        + (
            f", {summary.batch_count} batches (largest child input {summary.largest_item_bytes} bytes)"
            if summary.layout == "batched"
            else ""
        )
        + (f"; skipped {skipped} of {summary.objects_seen} seen" if skipped else "")
        + (f", in {summary.part_count} parts" if (summary.part_count or 1) > 1 else "")
        + f"\nmetadata s3://{summary.bucket}/{summary.metadata_key} sha256 {summary.sha256}"
    )


def _print_estimate(args: argparse.Namespace, summary) -> None:
    """``--estimate``: what a run over the manifest will do and cost at the pipeline Region's list prices
    (on stderr with ``--json``, so stdout stays one JSON object)."""
    import boto3

    from xacct_map.core.estimate import estimate_manifest, format_estimate

    region = boto3.session.Session(profile_name=args.profile, region_name=args.region).region_name
    text = format_estimate(estimate_manifest(summary.as_dict(), region=region))
    print(text, file=sys.stderr if args.json else sys.stdout)
