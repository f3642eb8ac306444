"""Airflow operators: build the cross-account manifest, start the Distributed Map on it.

Thin shells over the pure core (:mod:`xacct_map.core.listing`, :mod:`xacct_map.core.manifest`,
:mod:`xacct_map.core.naming`) and the amazon provider's hooks.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.links.step_function import (
    StateMachineDetailsLink,
    StateMachineExecutionsDetailsLink,
)
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk import BaseOperator
from botocore.exceptions import BotoCoreError, ClientError

from xacct_map.assets import manifest_extra, set_outlet_extra
from xacct_map.core.build import (
    ON_EMPTY,
    EmptySourceError,
    ManifestRequest,
    Source,
    build_manifest,
    explain_build_error,
    inventory_source,
    key_list_source,
    listed_source,
    listed_sources,
)
from xacct_map.core.cross_account import account_of_role, role_session_name
from xacct_map.core.errors import TRANSIENT, error_code
from xacct_map.core.filters import FILTER_ARGUMENTS, ObjectFilter, resolve_listing_mode
from xacct_map.core.inventory import InventoryError, open_inventory
from xacct_map.core.keylists import KeyListError
from xacct_map.core.layouts import DEFAULT_MAX_BATCH_BYTES, check_batch_budget, check_layout, source_block
from xacct_map.core.listing import LISTING_ENGINES, ListingEngineError, ListingUnavailableError, plan_cuts
from xacct_map.core.manifest import (
    DEFAULT_MAX_PART_BYTES,
    MAX_MANIFEST_PART_BYTES,
    ManifestSummary,
    abort_open_uploads,
)
from xacct_map.core.map_run import REDRIVABLE
from xacct_map.core.naming import execution_arn, execution_name, manifest_key
from xacct_map.core.ranges import MAX_RANGES, KeyRange, combine_manifests, key_ranges, range_manifest_key
from xacct_map.core.s3uri import check_source_bucket, is_directory_bucket
from xacct_map.core.sources import SourceSpec, parse_source, source_table
from xacct_map.hooks import DistributedMapHook, source_s3
from xacct_map.links import ManifestObjectLink
from xacct_map.metrics import emit_manifest_metrics
from xacct_map.version_compat import (
    AirflowException,
    AirflowFailException,
    AirflowProviderDeprecationWarning,
    AirflowSkipException,
)

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

_NATIVE_HINT = (
    "templates render text unless the DAG sets render_template_as_native_obj=True "
    "(the bundled DAG does; then {{ params.x }} keeps the param's type)"
)


def require_native(value: Any, kind: type | tuple[type, ...], name: str, *, optional: bool = False) -> Any:
    """``value`` when it has the type the argument takes (``None`` too when ``optional``).

    The shells take native values (ints, bools, lists), as a DAG rendered with
    ``render_template_as_native_obj=True`` passes them; text such as ``"100"`` or ``"True"`` is
    refused with a message rather than guessed at.

    :raises AirflowFailException: the value has another type.
    """
    if value is None and optional:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:  # bool is an int subclass: True is not 1 batch
        ok = False
    else:
        ok = isinstance(value, kinds)
    if not ok:
        expected = " or ".join(k.__name__ for k in kinds) + (" or None" if optional else "")
        raise AirflowFailException(f"{name} must be {expected}, not {type(value).__name__} {value!r}: {_NATIVE_HINT}.")
    return value


# Where the source is and how to reach it: the arguments BuildKeyManifestOperator, PlanKeyRangesOperator
# and PreflightOperator share, all templated. Each still lists them in its own signature and docstring:
# what users read, and what Airflow checks ``partial``/``expand`` arguments against.
SOURCE_ARGUMENTS = (
    "source_bucket",
    "source_prefix",
    "source_aws_conn_id",
    "source_role_arn",
    "source_external_id",
    "source_account_id",
    "source_region",
    "request_payer",
)


class _SourceArguments:
    """The source arguments (:data:`SOURCE_ARGUMENTS`) of an operator that reads the source."""

    source_bucket: str
    source_prefix: str
    source_aws_conn_id: str | None
    source_role_arn: str | None
    source_external_id: str | None
    source_account_id: str | None
    source_region: str | None
    request_payer: str | None

    def _keep_source_arguments(self, arguments: dict[str, Any]) -> None:
        """Store the source arguments of ``arguments`` (the constructor's ``locals()``) unchanged, under
        their own names: they are template fields."""
        for name in SOURCE_ARGUMENTS:
            setattr(self, name, arguments[name])


def _filter_argument(object_filter: ObjectFilter | dict[str, Any] | None, kwargs: dict) -> Any:
    """``object_filter``, or the deprecated filter arguments popped from ``kwargs`` (with a warning)."""
    deprecated = {name: kwargs.pop(name) for name in FILTER_ARGUMENTS if name in kwargs}
    if deprecated:
        if object_filter is not None:
            raise ValueError(
                f"Give the filters in object_filter only, not also as {sorted(deprecated)}: "
                f"move them into object_filter."
            )
        warnings.warn(
            f"The filter arguments {', '.join(f'{k}=' for k in deprecated)} of BuildKeyManifestOperator are "
            f"deprecated: pass object_filter={{{', '.join(f'{k!r}: ...' for k in deprecated)}}} "
            "(or object_filter=ObjectFilter(...)) instead.",
            AirflowProviderDeprecationWarning,
            stacklevel=3,  # the operator's caller
        )
        object_filter = deprecated
    return object_filter


class BuildKeyManifestOperator(_SourceArguments, AwsBaseOperator[S3Hook]):
    """
    List a bucket of another account (or Region) and write a Distributed Map manifest of its keys.

    The source is listed as the source account: either through ``source_aws_conn_id``, an AWS
    connection whose ``role_arn`` extra assumes into the source account, or by assuming
    ``source_role_arn`` with ``aws_conn_id``'s credentials. Or, with ``source_inventory``, the
    bucket is not listed at all: the newest S3 Inventory report of it is read instead
    (:mod:`xacct_map.core.inventory`). The manifest is streamed into ``s3://manifest_bucket/manifest_key``
    of the pipeline account (``aws_conn_id``) through a multipart upload: it exists only once
    complete, and a failure leaves no partial object. Then a metadata sidecar
    ``<manifest_key>.meta.json`` is written with the same summary this task returns.

    Layouts (:mod:`xacct_map.core.layouts`): ``batched`` (default; a JSON array of batches
    ``{"bucket", "keys", "bytes"}``, each closed by ``max_keys_per_batch`` keys or
    ``max_bytes_per_batch`` bytes of objects, for ``asl/distributed_map.asl.json``), ``flat`` (one
    item per object, ``{"Bucket", "Key", "Size", "ETag", "LastModified"}``, as ``json``, ``jsonl``
    or ``csv``, for ``asl/distributed_map_flat.asl.json`` with ItemBatcher) and ``keys`` (bare keys).

    Filters (:mod:`xacct_map.core.filters`): one ``object_filter``, an
    :class:`~xacct_map.core.filters.ObjectFilter` or a dict of its arguments (templated): ``suffixes``,
    ``patterns`` (fnmatch globs on the key, or on the key after ``source_prefix`` with
    ``pattern_base="relative"``), ``min_size``/``max_size`` (bytes, inclusive), ``storage_classes``
    (default: all but GLACIER and DEEP_ARCHIVE, unless ``include_archived``), and a LastModified
    window ``modified_after`` (inclusive) / ``modified_before`` (exclusive), e.g.
    ``object_filter={"suffixes": [".parquet"], "min_size": 1}``. The same names as separate
    keyword arguments still work but are deprecated (AirflowProviderDeprecationWarning).
    ``listing_mode`` ``"incremental"`` keeps only objects modified in the run's data interval;
    ``"auto"`` does that for scheduled and backfill runs and lists everything for manual runs;
    ``"full"`` (default) lists everything.

    Arguments take native values (ints, bools, lists): a DAG that templates them renders with
    ``render_template_as_native_obj=True``, as the bundled DAG does.

    :param source_bucket: bucket to list (in the source account); with ``source_inventory`` it may be
        empty (taken from the inventory) and must otherwise match the inventory's source bucket. An S3
        access point ARN (``arn:aws:s3:REGION:ACCOUNT:accesspoint/NAME``) or alias lists (and the
        processor reads) through the access point; a directory bucket (``name--usw2-az1--x-s3``) is
        listed with botocore's paginator (its listings are unordered).
    :param source_prefix: only keys starting with this prefix.
    :param manifest_bucket: inventory bucket of the pipeline account that receives the manifest.
    :param manifest_key: key of the manifest; default derived from dag_id and run_id, so retries of a
        run overwrite the run's own manifest and nothing else.
    :param source_aws_conn_id: AWS connection for the source account (``role_arn`` extra).
    :param source_role_arn: role in the source account to assume with ``aws_conn_id``'s credentials.
    :param source_external_id: ExternalId for ``source_role_arn``'s trust policy, if it requires one.
    :param source_account_id: account that must own ``source_bucket``, sent as ``ExpectedBucketOwner``;
        defaults to the account of ``source_role_arn``. Through an access point: the account that owns
        the *bucket* (which may differ from the access point's).
    :param request_payer: ``"requester"`` for a Requester Pays source: sent on every source call
        (listing, inventory reads, and, through the execution input, the processor's reads); this
        (the reading) account pays for requests and transfer.
    :param source_region: Region of ``source_bucket`` if it differs from the connection's.
    :param manifest_bucket_owner: account that must own ``manifest_bucket`` (``ExpectedBucketOwner``).
    :param max_keys_per_batch: most keys in one batch (one child execution's work; batched layout).
    :param max_bytes_per_batch: most object bytes in one batch; a bigger object travels alone.
    :param max_batch_bytes: most UTF-8 bytes of one child execution's input (the batch plus the
        execution input's ``source`` block, as Step Functions counts them): default 240 KiB, at most
        256 KiB (Step Functions' limit), at least 4 KiB plus the source block.
    :param manifest_part_bytes: batched layout: the manifest is written in parts of about this many
        bytes (default 5 GB; ItemReader reads files of at most 10 GB), one Map Run each.
    :param layout: ``"batched"``, ``"flat"`` or ``"keys"``.
    :param manifest_format: ``"json"``, ``"jsonl"`` or (flat layout) ``"csv"``.
    :param object_filter: which objects go into the manifest: an
        :class:`~xacct_map.core.filters.ObjectFilter` (used as given) or a dict with any of its
        arguments ``suffixes``, ``patterns``, ``pattern_base``, ``min_size``, ``max_size``,
        ``storage_classes``, ``include_archived``, ``modified_after``, ``modified_before``
        (templated); the LastModified bounds are timezone-aware datetimes or ISO-8601 text with an
        offset. Default: every object but the archived ones.
    :param listing_mode: ``"full"``, ``"incremental"`` or ``"auto"`` (see above).
    :param source_inventory: ``s3://<destination bucket>/<prefix>/<source bucket>/<config id>`` (or a
        timestamp folder, or a manifest.json): read this S3 Inventory instead of listing.
    :param inventory_aws_conn_id: connection that reads the inventory; default ``aws_conn_id``.
    :param write_metadata: write the ``<manifest_key>.meta.json`` sidecar (default True).
    :param listing_parallelism: ListObjectsV2 requests in flight while listing (default 32; more
        pays against higher latency, for ~3-4 MiB more per worker process for every 16 more; 1
        lists with botocore's paginator alone).
    :param listing_engine: ``"auto"`` (default): the parallel listing engine against a real
        HTTP(S) endpoint, botocore's paginator where it cannot run; ``"parallel"``: the parallel
        engine or a failed task saying why; ``"paginator"``: botocore's paginator only, no worker
        processes.
    :param on_empty: what an empty source means (nothing listed, or every object filtered out):
        ``"skip"`` (default): no manifest is written, this task and the tasks after it are skipped,
        the log saying which source and which filters; ``"fail"``: the task fails; ``"run"``: an
        empty manifest is written and the run goes on (a Map Run over zero items).
    :param key_range: one range of a listing spread over several tasks (an entry of
        :class:`PlanKeyRangesOperator`'s list, usually given by ``.expand(key_range=plan.output)``):
        only the keys of ``(start_after, up_to]`` are listed, into the manifest
        ``<manifest_key root>.range-NNNNN.json`` (fixed per run and range: a retry overwrites it).
        An empty range writes an empty manifest; :class:`CombineManifestsOperator` applies
        ``on_empty`` to the whole run. Batched layout, listed sources only. Not templated (keys
        may hold ``{{``). Default None: the whole prefix, as before.
    :param sources: several sources in one manifest: ``s3://bucket/prefix`` strings or dicts
        ``{"uri", "role_arn", "account_id", "region", "external_id"}`` (each field but ``uri`` optional,
        defaulting to the ``source_*`` arguments; a source's own ``role_arn`` gives its ``account_id``).
        ``source_bucket``/``source_prefix``, when given, are one more source. Overlapping prefixes are
        listed once; one bucket must be read one way (the same role, account and Region). Every item
        names its bucket, and the execution input's ``source.sources`` gives each bucket's account and Region.
    :param keys_from: process exactly the keys of this list instead of listing: ``s3://bucket/key`` (read
        with ``aws_conn_id``) or a local file; an S3 Batch Operations CSV (``bucket,key[,versionId]``, keys
        URL-encoded), JSON Lines (``{"bucket", "key", "version_id"}``) or text (one key per line, in
        ``source_bucket``). Streamed; duplicates dropped; a bad row fails naming its line. Sizes are
        unknown (0): batches close by key count and the child-input budget.
    :param keys_format: ``"auto"`` (from the suffix), ``"csv"``, ``"jsonl"`` or ``"text"``.
    :param on_changed: pin every key to the listed version or ETag (batched layout): the processor reads
        exactly that (``VersionId``, or ``IfMatch``) and reports objects changed or deleted since as
        ``changed``/``gone``, then ``"fail"``s their batch, ``"skip"``s them or reads the ``"current"``
        object. Default None: not pinned (bare keys, whatever is current is read, nothing reported).
    :param versions: ``"latest"`` or ``"all"``: list a versioned bucket with ListObjectVersions, each
        object with its VersionId (every version of each key with ``"all"``).
    :param aws_conn_id: AWS connection of the pipeline account (writes the manifest).
    :param region_name: AWS region_name. If not specified then the default boto3 behaviour is used.
    :param verify: Whether or not to verify SSL certificates.
    :param botocore_config: Configuration dictionary (key-values) for botocore client.
    :return: the manifest summary, as in the sidecar (``bucket``, ``key``, ``object_count``,
        ``batch_count``, ``item_count``, ``total_bytes``, ``manifest_bytes``, ``sha256``, ``etag``,
        ``source_bucket``, ``source_prefix``, ``layout``, ``format``, ``source``, ``filters``,
        ``objects_seen``, ``skipped``, ``created_at``, ``xacct_map_version``, ``metadata_key``).
    """

    aws_hook_class = S3Hook
    template_fields: Sequence[str] = aws_template_fields(
        *SOURCE_ARGUMENTS,
        "manifest_bucket",
        "manifest_key",
        "manifest_bucket_owner",
        "max_keys_per_batch",
        "max_bytes_per_batch",
        "max_batch_bytes",
        "manifest_part_bytes",
        "layout",
        "manifest_format",
        "object_filter",
        "listing_mode",
        "source_inventory",
        "inventory_aws_conn_id",
        "listing_parallelism",
        "listing_engine",
        "on_empty",
        "sources",
        "keys_from",
        "keys_format",
        "on_changed",
        "versions",
    )
    template_fields_renderers = {"object_filter": "json", "sources": "json"}
    ui_color = "#c7e9f1"
    operator_extra_links = (ManifestObjectLink(),)

    def __init__(
        self,
        *,
        manifest_bucket: str,
        source_bucket: str = "",
        source_prefix: str = "",
        manifest_key: str | None = None,
        source_aws_conn_id: str | None = None,
        source_role_arn: str | None = None,
        source_external_id: str | None = None,
        source_account_id: str | None = None,
        source_region: str | None = None,
        manifest_bucket_owner: str | None = None,
        max_keys_per_batch: int = 100,
        max_bytes_per_batch: int = 512 * 1024 * 1024,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        manifest_part_bytes: int = DEFAULT_MAX_PART_BYTES,
        layout: str = "batched",
        manifest_format: str = "json",
        object_filter: ObjectFilter | dict[str, Any] | None = None,
        listing_mode: str = "full",
        source_inventory: str | None = None,
        inventory_aws_conn_id: str | None = None,
        write_metadata: bool = True,
        listing_parallelism: int = 32,
        listing_engine: str = "auto",
        on_empty: str = "skip",
        sources: list[str | dict] | None = None,
        keys_from: str | None = None,
        keys_format: str = "auto",
        on_changed: str | None = None,
        versions: str | None = None,
        request_payer: str | None = None,
        key_range: dict | None = None,
        **kwargs,
    ):
        object_filter = _filter_argument(object_filter, kwargs)
        super().__init__(**kwargs)
        self._keep_source_arguments(locals())
        self.manifest_bucket = manifest_bucket
        self.manifest_key = manifest_key
        self.manifest_bucket_owner = manifest_bucket_owner
        self.max_keys_per_batch = max_keys_per_batch
        self.max_bytes_per_batch = max_bytes_per_batch
        self.max_batch_bytes = max_batch_bytes
        self.manifest_part_bytes = manifest_part_bytes
        self.layout = layout
        self.manifest_format = manifest_format
        self.object_filter = object_filter
        self.listing_mode = listing_mode
        self.source_inventory = source_inventory
        self.inventory_aws_conn_id = inventory_aws_conn_id
        self.write_metadata = write_metadata
        self.listing_parallelism = listing_parallelism
        self.listing_engine = listing_engine
        self.on_empty = on_empty
        self.sources, self.keys_from, self.keys_format = sources, keys_from, keys_format
        self.on_changed, self.versions = on_changed, versions
        self._manifest_summary: dict[str, Any] | None = None  # what execute wrote, for OpenLineage
        self.key_range = key_range

    def _validate(self) -> None:
        if not self.source_bucket and not self.source_inventory and not self.sources:
            raise AirflowFailException(
                "source_bucket is empty: name the bucket to list in the source account (or give sources=[...])."
            )
        if not self.manifest_bucket:
            raise AirflowFailException(
                "manifest_bucket is empty: name the pipeline account's inventory bucket that receives the manifest."
            )
        for name in (
            "max_keys_per_batch",
            "max_bytes_per_batch",
            "max_batch_bytes",
            "manifest_part_bytes",
            "listing_parallelism",
        ):
            require_native(getattr(self, name), int, name)
        require_native(self.write_metadata, bool, "write_metadata")
        if self.max_keys_per_batch < 1 or self.max_bytes_per_batch < 1:
            raise AirflowFailException("max_keys_per_batch and max_bytes_per_batch must be at least 1.")
        if not 1 <= self.manifest_part_bytes <= MAX_MANIFEST_PART_BYTES:
            raise AirflowFailException(
                f"manifest_part_bytes must be from 1 to {MAX_MANIFEST_PART_BYTES:,} (ItemReader reads files of at most "
                f"10 GB), not {self.manifest_part_bytes}."
            )
        if self.listing_parallelism < 1:
            raise AirflowFailException(
                f"listing_parallelism must be at least 1 (requests in flight), not {self.listing_parallelism}."
            )
        if self.on_empty not in ON_EMPTY:
            raise AirflowFailException(f"on_empty must be one of {', '.join(ON_EMPTY)}, not {self.on_empty!r}.")
        if self.listing_engine not in LISTING_ENGINES:
            raise AirflowFailException(
                f"listing_engine must be one of {', '.join(LISTING_ENGINES)}, not {self.listing_engine!r}."
            )
        if self.request_payer not in (None, "", "requester"):
            raise AirflowFailException(f"request_payer must be 'requester' or None, not {self.request_payer!r}.")
        try:
            check_layout(self.layout, self.manifest_format)
            check_batch_budget(self.max_batch_bytes)
            if self.source_bucket:
                check_source_bucket(self.source_bucket, what="source_bucket")
        except ValueError as err:
            raise AirflowFailException(f"{err}.") from err
        if self.source_role_arn:
            try:
                role_account = account_of_role(self.source_role_arn)
            except ValueError as err:
                raise AirflowFailException(str(err)) from err
            self.source_account_id = self.source_account_id or role_account

    def _source_specs(self) -> list[SourceSpec]:
        """``source_bucket``/``source_prefix`` (if given) and ``sources``, the operator's role, account and
        Region filling what a source leaves out (a source's own role gives its account by default)."""
        given: list[Any] = [f"s3://{self.source_bucket}/{self.source_prefix}"] if self.source_bucket else []
        given += require_native(self.sources, list, "sources", optional=True) or []
        defaults = {
            "role_arn": self.source_role_arn,
            "account_id": self.source_account_id,
            "region": self.source_region,
            "external_id": self.source_external_id,
        }
        try:
            specs = [parse_source(value, what=f"sources[{i}]") for i, value in enumerate(given)]
            return [
                spec.with_defaults(account_id=account_of_role(spec.role_arn) if spec.role_arn else None).with_defaults(
                    **defaults
                )
                for spec in specs
            ]
        except ValueError as err:
            raise AirflowFailException(str(err)) from err

    def _filter_arguments(self) -> dict[str, Any]:
        """The rendered ``object_filter`` as ObjectFilter's arguments (a fresh filter per run: it counts)."""
        spec = self.object_filter
        if spec is None:
            return {}
        if isinstance(spec, ObjectFilter):
            return {name: getattr(spec, name) for name in FILTER_ARGUMENTS}
        if not isinstance(spec, dict):
            raise AirflowFailException(
                f"object_filter must be an ObjectFilter or a dict of its arguments, not {type(spec).__name__} "
                f"{spec!r}: {_NATIVE_HINT}."
            )
        unknown = sorted(set(spec) - set(FILTER_ARGUMENTS))
        if unknown:
            raise AirflowFailException(f"object_filter: unknown filters {unknown}; the filters are {FILTER_ARGUMENTS}.")
        return dict(spec)

    def _object_filter(self, context: Context) -> ObjectFilter:
        """The filters of this run: the operator's, plus the data interval in incremental mode."""
        arguments = self._filter_arguments()
        try:
            explicit = ObjectFilter(
                modified_after=arguments.pop("modified_after", None),
                modified_before=arguments.pop("modified_before", None),
            )
            mode, after, before = resolve_listing_mode(
                self.listing_mode,
                run_type=run_type_of(context),
                interval_start=context.get("data_interval_start"),
                interval_end=context.get("data_interval_end"),
                modified_after=explicit.modified_after,  # parsed (ISO text accepted) by ObjectFilter
                modified_before=explicit.modified_before,
                previous_success_end=lambda: _previous_success_end(context),
            )
            return ObjectFilter(
                **arguments,
                prefix=self.source_prefix,
                modified_after=after,
                modified_before=before,
                listing_mode=mode,
            )
        except (TypeError, ValueError) as err:
            raise AirflowFailException(str(err)) from err

    def _range(self) -> KeyRange | None:
        """The ``key_range`` to list (None: the whole prefix), checked against the other arguments."""
        if self.key_range is None:
            return None
        try:
            key_range = KeyRange.from_dict(self.key_range)
        except ValueError as err:
            raise AirflowFailException(f"key_range: {err}: pass an entry of PlanKeyRangesOperator's list.") from err
        if not key_range.whole and (
            self.layout != "batched"
            or self.source_inventory
            or is_directory_bucket(self.source_bucket or "")
            or self.sources
            or self.keys_from
            or self.versions
        ):
            raise AirflowFailException(
                f"key_range {key_range.index + 1} of {key_range.count}: a listing spread over several tasks "
                "needs layout='batched' and one listed source (not source_inventory, sources, keys_from or "
                "versions; not a directory bucket, which lists in no order): the flat and keys state machines "
                "read one manifest object. Plan one range (listing_tasks=1) instead."
            )
        return key_range

    def execute(self, context: Context) -> dict[str, Any]:
        self._validate()
        key_range = self._range()
        dag_id, run_id = context["dag"].dag_id, context["run_id"]
        key = self.manifest_key or manifest_key(dag_id, run_id)
        request = self._request(context, key=range_manifest_key(key, key_range) if key_range else key)
        if key_range is not None and not key_range.whole:
            # An empty range is no empty run: CombineManifestsOperator applies on_empty to all of them.
            request = dataclasses.replace(
                request, start_after=key_range.start_after, up_to=key_range.up_to, on_empty="run"
            )
            self.log.info(
                "Key range %d of %d: keys after %r up to %s",
                key_range.index + 1,
                key_range.count,
                key_range.start_after,
                repr(key_range.up_to) if key_range.up_to is not None else "the prefix's end",
            )
        if request.object_filter.listing_mode == "incremental":
            self.log.info(
                "Incremental: only objects with %s <= LastModified < %s",
                request.object_filter.modified_after,
                request.object_filter.modified_before,
            )
        if request.source_inventory:
            identity = f"connection {self.inventory_aws_conn_id or self.aws_conn_id!r}"
            source = self._inventory_source(request, identity)
        elif request.keys_from:
            identity = f"connection {self.aws_conn_id!r}"
            source = self._key_list_source(request)
        elif request.sources:
            identity = f"the roles of {len(request.sources)} sources"
            source = self._listed_sources(request, dag_id)
        else:
            identity = self.source_role_arn or f"connection {self.source_aws_conn_id or self.aws_conn_id!r}"
            source = self._listed_source(request, identity, dag_id)
        summary = self._build(request, source, identity)
        ManifestObjectLink.persist(
            context=context,
            operator=self,
            region_name=self.hook.conn_region_name,
            aws_partition=self.hook.conn_partition,
            bucket=summary.bucket,
            key=summary.key,
        )
        self._log_summary(summary)
        result = summary.as_dict()
        if key_range is not None:
            result["key_range"] = key_range.as_dict()
        self._manifest_summary = result
        emit_manifest_metrics(result, dag_id=dag_id)
        set_outlet_extra(self, context, manifest_extra(result))
        return result

    def get_openlineage_facets_on_complete(self, task_instance) -> OperatorLineage:
        """OpenLineage (with the openlineage provider): input the source prefix, output the manifest."""
        from xacct_map.lineage import manifest_lineage

        return manifest_lineage(
            source_bucket=self.source_bucket, source_prefix=self.source_prefix, manifest=self._manifest_summary
        )

    def _request(self, context: Context, *, key: str) -> ManifestRequest:
        specs = self._source_specs() or [SourceSpec("", self.source_prefix)]  # an inventory may name the bucket
        try:
            return self._request_for(context, key, specs)
        except ValueError as err:
            raise AirflowFailException(f"{err}.") from err

    def _request_for(self, context: Context, key: str, specs: list[SourceSpec]) -> ManifestRequest:
        first = specs[0]
        return ManifestRequest(
            sources=tuple(specs) if len(specs) > 1 else (),
            keys_from=self.keys_from or None,
            keys_format=self.keys_format,
            on_changed=self.on_changed or None,
            versions=self.versions or None,
            source_bucket=first.bucket,
            source_prefix=first.prefix,
            manifest_bucket=self.manifest_bucket,
            manifest_key=key,
            object_filter=self._object_filter(context),
            source_account_id=first.account_id or self.source_account_id or None,
            source_region=first.region or self.source_region or None,
            source_inventory=self.source_inventory or None,
            layout=self.layout,
            manifest_format=self.manifest_format,
            max_keys_per_batch=self.max_keys_per_batch,
            max_bytes_per_batch=self.max_bytes_per_batch,
            max_batch_bytes=self.max_batch_bytes,
            max_part_bytes=self.manifest_part_bytes,
            manifest_bucket_owner=self.manifest_bucket_owner,
            write_metadata=self.write_metadata,
            on_empty=self.on_empty,
            request_payer=self.request_payer or None,
        )

    def on_kill(self) -> None:
        """SIGTERM (Airflow calls this from the signal handler): abort the manifest's multipart upload now,
        rather than leave it open when the process is killed; the build then fails on its next S3 call."""
        if abort_open_uploads():
            self.log.warning("Killed: the manifest's multipart upload was aborted; no manifest was written.")

    def _build(self, request: ManifestRequest, source: Source, identity: str) -> ManifestSummary:
        try:
            return build_manifest(request, source, self.hook.conn)
        except EmptySourceError as err:
            if err.on_empty == "skip":
                self.log.info("Skipped: %s (on_empty='skip'; no manifest, no execution).", err)
                raise AirflowSkipException(f"{err} (on_empty='skip': no manifest written, no execution)") from err
            raise AirflowFailException(f"{err} (on_empty='fail'; on_empty='run' would run it anyway)") from err
        except (InventoryError, ListingEngineError, KeyListError) as err:
            raise AirflowFailException(str(err)) from err
        except ClientError as err:
            raise AirflowException(self._explain(err, request, identity)) from err
        except ListingUnavailableError as err:
            # Retryable (AirflowException, not Fail): the endpoint was unreachable; no manifest was written.
            raise AirflowException(
                f"{err}. Check the network path to S3 for the source Region (endpoint, proxy, VPC endpoint); "
                f"the multipart upload of s3://{request.manifest_bucket}/{request.manifest_key} was aborted, "
                "the task can be retried."
            ) from err

    def _log_summary(self, summary: ManifestSummary) -> None:
        self.log.info(
            "Manifest s3://%s/%s (%s, %s): %d objects, %d batches, %d bytes of objects (manifest %d bytes, sha256 %s)",
            summary.bucket,
            summary.key,
            summary.layout,
            summary.format,
            summary.object_count,
            summary.batch_count,
            summary.total_bytes,
            summary.manifest_bytes,
            summary.sha256,
        )
        skipped = {name: n for name, n in (summary.skipped or {}).items() if n}
        if skipped:
            self.log.info("Skipped by filters (of %d objects seen): %s", summary.objects_seen, skipped)

    def _listed_source(self, request: ManifestRequest, identity: str, dag_id: str) -> Source:
        try:
            source = source_s3(
                self.hook,
                source_aws_conn_id=self.source_aws_conn_id,
                source_role_arn=self.source_role_arn,
                source_external_id=self.source_external_id,
                source_region=self.source_region,
                session_name=role_session_name("xacct-map", dag_id),
                # Without source_region, one HeadBucket finds the bucket's Region (cross-Region sources).
                source_bucket=request.source_bucket,
                expected_bucket_owner=request.source_account_id,
            )
        except ValueError as err:
            raise AirflowFailException(str(err)) from err
        except ClientError as err:
            raise AirflowException(self._explain(err, request, identity)) from err
        self.log.info(
            "Listing s3://%s/%s as %s into s3://%s/%s",
            request.source_bucket,
            request.source_prefix,
            identity,
            request.manifest_bucket,
            request.manifest_key,
        )
        return listed_source(
            request,
            source.client,
            credentials=source.credentials,
            verify=source.verify,
            listing_engine=self.listing_engine,
            parallelism=self.listing_parallelism,
        )

    def _listed_sources(self, request: ManifestRequest, dag_id: str) -> Source:
        """Every source, each with its own role, account and Region (overlapping prefixes listed once)."""

        def open_source(spec: SourceSpec) -> tuple:
            try:
                source = source_s3(
                    self.hook,
                    source_aws_conn_id=None if spec.role_arn else self.source_aws_conn_id,
                    source_role_arn=spec.role_arn,
                    source_external_id=spec.external_id,
                    source_region=spec.region,
                    session_name=role_session_name("xacct-map", dag_id),
                    source_bucket=spec.bucket,
                    expected_bucket_owner=spec.account_id,
                )
            except ValueError as err:
                raise AirflowFailException(f"{spec.uri}: {err}") from err
            self.log.info("Listing %s as %s", spec.uri, spec.role_arn or "the source connection")
            return source.client, source.credentials, source.verify

        try:
            return listed_sources(
                request, open_source, listing_engine=self.listing_engine, parallelism=self.listing_parallelism
            )
        except ValueError as err:
            raise AirflowFailException(str(err)) from err

    def _key_list_source(self, request: ManifestRequest) -> Source:
        """The key list ``keys_from``: an S3 object read with the pipeline connection, or a local file."""
        try:
            source = key_list_source(request, self.hook.conn)
        except KeyListError as err:
            raise AirflowFailException(str(err)) from err
        self.log.info(
            "Reading the key list %s (%s) into s3://%s/%s",
            request.keys_from,
            source.description["format"],
            request.manifest_bucket,
            request.manifest_key,
        )
        return source

    def _inventory_source(self, request: ManifestRequest, identity: str) -> Source:
        uri = cast(str, request.source_inventory)  # called only when it is set
        conn_id = self.inventory_aws_conn_id or self.aws_conn_id
        reader = self.hook.conn if conn_id == self.aws_conn_id else S3Hook(aws_conn_id=conn_id).get_conn()
        try:
            report = open_inventory(reader, uri, request_payer=request.request_payer)
            source = inventory_source(request, reader, report)
        except InventoryError as err:
            raise AirflowFailException(str(err)) from err
        except ValueError as err:
            raise AirflowFailException(f"source_inventory: {err}") from err
        except ClientError as err:
            raise AirflowException(self._explain(err, request, identity, reading_inventory=True)) from err
        self.log.info(
            "Reading inventory %s (%s, %d data files, created %s) as %s for s3://%s/%s, into s3://%s/%s",
            report.uri,
            report.file_format,
            len(report.files),
            report.creation_timestamp,
            identity,
            source.description["bucket"],
            request.source_prefix,
            request.manifest_bucket,
            request.manifest_key,
        )
        return source

    def _explain(self, err: ClientError, request: ManifestRequest, identity: str, **kwargs: Any) -> str:
        return explain_build_error(err, request, identity=identity, role_arn=self.source_role_arn, **kwargs)


def _previous_success_end(context: Context) -> datetime | None:
    """``data_interval_end`` of the DAG's previous successful run, if the context can tell."""
    try:
        value = context.get("prev_data_interval_end_success")
        return value if isinstance(value, datetime) else None  # unwraps Airflow's lazy proxy; None if none
    except Exception:  # noqa: BLE001 - outside a supervised task run there is no previous run to ask
        return None


def run_type_of(context: Context) -> str:
    """``manual``, ``scheduled``, ``backfill``, ... of the running DAG run (from the run id if need be)."""
    run_type = getattr(context.get("dag_run"), "run_type", None)
    return str(getattr(run_type, "value", run_type) or str(context.get("run_id", "")).partition("__")[0])


def manifest_reference(manifest: dict) -> dict:
    """The execution input's ``manifest`` block: ``{"bucket", "key"}``, plus ``parts`` (their keys) and
    ``part_count`` when the manifest came in several parts (the state machine runs one Map Run each)."""
    reference = {"bucket": manifest["bucket"], "key": manifest["key"]}
    parts = manifest.get("parts") or []
    if len(parts) > 1:
        reference.update(parts=[part["key"] for part in parts], part_count=len(parts))
    return reference


def build_execution_input(
    manifest: dict,
    *,
    source_account_id: str | None = None,
    source_region: str | None = None,
    run: dict | None = None,
    extra: dict | None = None,
) -> dict:
    """The execution input contract: ``{"manifest": {bucket, key}, "source": {...}, ...extra}``.

    The source's account id and Region default to what the manifest recorded (its ``source``), so a
    Region discovered while listing reaches the processor without being configured twice. A manifest
    in several parts adds ``parts`` and ``part_count`` (:func:`manifest_reference`).
    """
    missing = [k for k in ("bucket", "key", "source_bucket") if not manifest.get(k)]
    if missing:
        raise ValueError(
            f"manifest is missing {missing}: pass the XCom of BuildKeyManifestOperator "
            "(e.g. manifest=build_manifest.output)"
        )
    recorded = manifest.get("source") or {}
    body = dict(extra or {})
    body.update(
        manifest=manifest_reference(manifest),
        source=source_block(
            manifest["source_bucket"],
            manifest.get("source_prefix", ""),
            source_account_id or recorded.get("account_id"),
            source_region or recorded.get("region"),
            recorded.get("request_payer"),  # a Requester Pays source: the processor's reads send it
            sources=source_table(recorded["sources"]) if recorded.get("sources") else None,
            on_changed=recorded.get("on_changed"),
        ),
    )
    if run:
        body["run"] = run
    return body


class StartDistributedMapOperator(AwsBaseOperator[DistributedMapHook]):
    """
    Start the Distributed Map state machine on a manifest, exactly once per DAG run.

    The execution name is derived from dag_id and run_id (or given as ``name``), so a retried or
    re-run task finds the run's execution instead of starting a second one. Step Functions returns
    the running execution for the same name and input; for an execution of that name that already
    exists otherwise, ``on_existing`` decides:

    * ``"attach"`` (default): attach to it when its input is the same (this run's manifest);
    * ``"redrive"``: like attach, but an execution that ended FAILED, TIMED_OUT or ABORTED is
      redriven (RedriveExecution): only the items that did not succeed run again;
    * ``"fail"``: fail the task.

    An execution of that name with a *different* input always fails the task with an explanation.

    :param state_machine_arn: ARN of the Distributed Map state machine.
    :param manifest: the manifest summary pushed by :class:`BuildKeyManifestOperator`.
    :param source_account_id: account that owns the source bucket (passed to the processor as
        ``ExpectedBucketOwner``).
    :param source_region: Region of the source bucket, when it differs.
    :param execution_input: extra keys merged into the execution input.
    :param name: execution name; default derived from dag_id and run_id.
    :param on_existing: ``"attach"``, ``"redrive"`` or ``"fail"`` (see above).
    :param dry_run: start nothing: log the execution that would start and skip this task (and, by the
        default trigger rule, the sensor after it). The manifest built upstream stays for inspection.
    :param aws_conn_id: AWS connection of the pipeline account.
    :param region_name: AWS region_name. If not specified then the default boto3 behaviour is used.
    :param verify: Whether or not to verify SSL certificates.
    :param botocore_config: Configuration dictionary (key-values) for botocore client.
    :return: the execution ARN.
    """

    ON_EXISTING = ("attach", "redrive", "fail")
    aws_hook_class = DistributedMapHook
    template_fields: Sequence[str] = aws_template_fields(
        "state_machine_arn",
        "manifest",
        "source_account_id",
        "source_region",
        "execution_input",
        "name",
        "on_existing",
        "dry_run",
    )
    template_fields_renderers = {"execution_input": "json", "manifest": "json"}
    ui_color = "#f9c915"
    operator_extra_links = (StateMachineDetailsLink(), StateMachineExecutionsDetailsLink())

    def __init__(
        self,
        *,
        state_machine_arn: str,
        manifest: dict | Any,
        source_account_id: str | None = None,
        source_region: str | None = None,
        execution_input: dict | None = None,
        name: str | None = None,
        on_existing: str = "attach",
        dry_run: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.dry_run = dry_run  # type: ignore[method-assign,assignment]  # shadows BaseOperator.dry_run()
        self.state_machine_arn = state_machine_arn
        self.manifest = manifest
        self.source_account_id = source_account_id
        self.source_region = source_region
        self.execution_input = execution_input
        self.name = name
        self.on_existing = on_existing
        self._execution_arn: str | None = None  # the execution started or attached to, for OpenLineage

    def execute(self, context: Context) -> str:
        if self.on_existing not in self.ON_EXISTING:
            raise AirflowFailException(f"on_existing={self.on_existing!r}: choose one of {self.ON_EXISTING}.")
        dag_id, run_id = context["dag"].dag_id, context["run_id"]
        name = self.name or execution_name(dag_id, run_id)
        try:
            arn = execution_arn(self.state_machine_arn, name)
            body = build_execution_input(
                self.manifest if isinstance(self.manifest, dict) else {},
                source_account_id=self.source_account_id or None,
                source_region=self.source_region or None,
                run={"dag_id": dag_id, "run_id": run_id},
                extra=self.execution_input,
            )
        except ValueError as err:
            raise AirflowFailException(str(err)) from err
        problem = self.hook.start_problem(
            self.state_machine_arn, self.manifest if isinstance(self.manifest, dict) else {}, body
        )
        if problem:  # would fail part-way on AWS: fail now, before anything is spent
            raise AirflowFailException(problem)
        # Canonical JSON: a retry sends byte-identical input, which Step Functions treats as the same start.
        payload = json.dumps(body, sort_keys=True, separators=(",", ":"))
        if require_native(self.dry_run, bool, "dry_run"):
            self.log.info("Dry run: would start %s as %s with input %s", self.state_machine_arn, arn, payload)
            self._log_estimate()
            raise AirflowSkipException(
                f"dry run: manifest s3://{body['manifest']['bucket']}/{body['manifest']['key']} "
                "built, no execution started"
            )
        StateMachineDetailsLink.persist(
            context=context,
            operator=self,
            region_name=self.hook.conn_region_name,
            aws_partition=self.hook.conn_partition,
            state_machine_arn=self.state_machine_arn,
        )
        try:
            arn, started = self.hook.start_named_execution(self.state_machine_arn, name, payload)
        except self.hook.conn.exceptions.StateMachineDoesNotExist as err:
            raise AirflowFailException(
                f"State machine {self.state_machine_arn} does not exist in this account/Region "
                f"(connection {self.aws_conn_id!r}). Deploy it or fix state_machine_arn."
            ) from err
        except ClientError as err:
            again = (
                f" Step Functions kept answering {error_code(err)} after the retries: retry the task."
                if error_code(err) in TRANSIENT
                else ""
            )
            raise AirflowException(
                f"StartExecution of {self.state_machine_arn} failed: {error_code(err)}: "
                f"{err.response['Error'].get('Message')}.{again}"
            ) from err
        except BotoCoreError as err:
            # No answer: the execution may have started. Its name is this run's, so a retry finds it.
            raise AirflowException(
                f"StartExecution of {self.state_machine_arn} got no answer ({err}): execution {arn} may have "
                "started. Retry the task: the retry attaches to that execution instead of starting a second one."
            ) from err
        if started:
            self.log.info("Started execution %s", arn)
        else:
            self._handle_existing(arn, payload)
        StateMachineExecutionsDetailsLink.persist(
            context=context,
            operator=self,
            region_name=self.hook.conn_region_name,
            aws_partition=self.hook.conn_partition,
            execution_arn=arn,
        )
        self._execution_arn = arn
        return arn

    def get_openlineage_facets_on_complete(self, task_instance) -> OperatorLineage:
        """OpenLineage (with the openlineage provider): input the manifest; the state machine as a job
        facet (``xacctMap_stateMachine``), the execution ARN as the run's ``externalQuery`` facet."""
        from xacct_map.lineage import start_lineage

        return start_lineage(
            manifest=self.manifest if isinstance(self.manifest, dict) else None,
            state_machine_arn=self.state_machine_arn,
            execution_arn=self._execution_arn,
        )

    def _log_estimate(self) -> None:
        """Dry run (issue 13): what the run would do and cost at the pipeline Region's list prices."""
        from xacct_map.core.estimate import estimate_manifest, format_estimate

        if isinstance(self.manifest, dict) and "object_count" in self.manifest:
            region = self.hook.conn_region_name
            self.log.info("Dry run %s", format_estimate(estimate_manifest(self.manifest, region=region)))

    def _handle_existing(self, arn: str, payload: str) -> None:
        existing = self.hook.describe_execution(arn)
        if json.loads(existing.get("input") or "null") != json.loads(payload):
            raise AirflowFailException(
                f"Execution {arn} already exists with a different input (manifest "
                f"{json.loads(existing.get('input') or '{}').get('manifest')}). Execution names are unique per "
                "state machine for 90 days: it belongs to another run or another manifest. Pass a new `name` "
                "to start a separate execution."
            )
        status = existing["status"]
        if self.on_existing == "fail":
            raise AirflowFailException(
                f"Execution {arn} of this run already exists ({status}) and on_existing='fail'. Use "
                "on_existing='attach' to wait for it or 'redrive' to re-run its failed items."
            )
        if self.on_existing == "redrive" and status in REDRIVABLE:
            self._redrive(arn, status)
            return
        self.log.info(
            "Execution %s already exists for this run with the same input (status %s): attaching to it, "
            "not starting a second one.",
            arn,
            status,
        )

    def _redrive(self, arn: str, status: str) -> None:
        try:
            self.hook.redrive_execution(arn)
        except ClientError as err:
            raise AirflowFailException(
                f"RedriveExecution of {arn} ({status}) failed: {error_code(err)}: "
                f"{err.response['Error'].get('Message')}. Executions can be redriven within 14 days of their "
                "start; otherwise pass a new `name`."
            ) from err
        self.log.info("Redriving execution %s (was %s): only items that did not succeed run again.", arn, status)


class PreflightOperator(_SourceArguments, AwsBaseOperator[AwsGenericHook]):
    """
    Check, before anything runs, that the cross-account setup works (:mod:`xacct_map.setup.preflight`).

    With the pipeline connection's credentials and real, side-effect-free calls: the lister role can
    be assumed, ListObjectsV2 (MaxKeys=1) on the source prefix works, the processor role can read one
    object, the inventory bucket accepts a write (a multipart upload created and aborted), and the
    state machine exists and runs as the role the policies name. When a check fails the task fails
    (AirflowFailException, no retries: it is a setup problem) with the report, which names the AWS error and the exact
    policy statement that fixes it.

    The lister role is ``source_role_arn``, or the ``role_arn`` extra (and ``assume_role_kwargs``'
    ExternalId) of ``source_aws_conn_id``; it is assumed with ``aws_conn_id``'s credentials, as the
    source connection does when both hold the same credentials (the DAG's setup).

    :param source_bucket: the bucket holding the data (source account).
    :param source_account_id: 12-digit account that must own ``source_bucket``.
    :param manifest_bucket: the pipeline account's inventory bucket.
    :param state_machine_arn: the Distributed Map state machine.
    :param source_prefix: the prefix the DAG lists.
    :param source_aws_conn_id: the source connection whose ``role_arn`` extra names the lister role.
    :param source_role_arn: the lister role (instead of ``source_aws_conn_id``).
    :param source_external_id: ExternalId for the lister role's trust policy.
    :param processor_role_arn: the processor Lambda's role (default ``xacct-map-processor`` of the
        state machine's account; its trust normally names Lambda alone, then that check is skipped).
    :param state_machine_role: the role (name or ARN) the state machine must run as.
    :param source_region: the source bucket's Region (default: discovered).
    :param request_payer: ``"requester"`` for a Requester Pays source (sent on the source checks).
    :param run_when: ``"manual"`` (default: manual runs only, so a scheduled run costs no extra
        calls), ``"always"`` or ``"never"``.
    :param aws_conn_id: AWS connection of the pipeline account.
    :param region_name: AWS region_name. If not specified then the default boto3 behaviour is used.
    :param verify: Whether or not to verify SSL certificates.
    :param botocore_config: Configuration dictionary (key-values) for botocore client.
    :return: the report (``ok``, ``caller_arn``, ``checks``), or None when not run.
    """

    RUN_WHEN = ("manual", "always", "never")
    source_account_id: str  # required here
    aws_hook_class = AwsGenericHook
    template_fields: Sequence[str] = aws_template_fields(
        *SOURCE_ARGUMENTS,
        "manifest_bucket",
        "state_machine_arn",
        "processor_role_arn",
        "state_machine_role",
        "run_when",
    )
    ui_color = "#d5f5e3"

    def __init__(
        self,
        *,
        source_bucket: str,
        source_account_id: str,
        manifest_bucket: str,
        state_machine_arn: str,
        source_prefix: str = "",
        source_aws_conn_id: str | None = None,
        source_role_arn: str | None = None,
        source_external_id: str | None = None,
        processor_role_arn: str | None = None,
        state_machine_role: str = "xacct-map-state-machine",
        source_region: str | None = None,
        run_when: str = "manual",
        request_payer: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._keep_source_arguments(locals())
        self.manifest_bucket = manifest_bucket
        self.state_machine_arn = state_machine_arn
        self.processor_role_arn = processor_role_arn
        self.state_machine_role = state_machine_role
        self.run_when = run_when

    def execute(self, context: Context) -> dict | None:
        from xacct_map.setup.preflight import PreflightConfig, run_preflight_with_hook

        if self.run_when not in self.RUN_WHEN:
            raise AirflowFailException(f"run_when={self.run_when!r}: choose one of {self.RUN_WHEN}.")
        run_type = run_type_of(context)
        if self.run_when == "never" or (self.run_when == "manual" and run_type != "manual"):
            self.log.info("Preflight not run (run_when=%r, %s run)", self.run_when, run_type)
            return None
        missing = [
            name
            for name in ("source_bucket", "source_account_id", "manifest_bucket", "state_machine_arn")
            if not getattr(self, name)
        ]
        if missing:
            raise AirflowFailException(f"Preflight needs {missing}: set the DAG params or their Variables.")
        role_arn, external_id = self.source_role_arn or None, self.source_external_id or None
        if not role_arn and self.source_aws_conn_id:
            source = AwsGenericHook(aws_conn_id=self.source_aws_conn_id).conn_config
            role_arn = source.role_arn
            external_id = external_id or (source.assume_role_kwargs or {}).get("ExternalId")
        config = PreflightConfig(
            source_bucket=self.source_bucket,
            source_account=self.source_account_id,
            prefix=self.source_prefix,
            inventory_bucket=self.manifest_bucket,
            state_machine_arn=self.state_machine_arn,
            lister_role_arn=role_arn,
            external_id=external_id,
            processor_role_arn=self.processor_role_arn,
            state_machine_role=self.state_machine_role,
            source_region=self.source_region or None,
            request_payer=self.request_payer or None,
        )
        report = run_preflight_with_hook(self.hook, config)  # the pipeline Region: the state machine ARN's
        if not report.ok:
            raise AirflowFailException(report.format())
        self.log.info("%s", report.format())
        return report.as_dict()


class PlanKeyRangesOperator(_SourceArguments, AwsBaseOperator[S3Hook]):
    """
    Cut a listing into key ranges, one per mapped :class:`BuildKeyManifestOperator` task.

    Lists the first page of ``s3://source_bucket/source_prefix`` as the source account (the same
    connection arguments as :class:`BuildKeyManifestOperator`) and picks ``listing_tasks - 1`` cut
    keys (:func:`xacct_map.core.listing.plan_cuts`: by count when the prefix fits in one page, else
    where the key space's first keys and its end, found with ``MaxKeys=1`` probes, say it splits
    evenly). The ranges ``("", c1], (c1, c2], ..., (cN, end]`` hold every key exactly once whatever
    the cuts are; the cuts only decide the balance. Fewer ranges come back when a prefix has fewer
    keys than tasks. ``listing_tasks=1`` or ``source_inventory`` set: one range, no AWS call.

    Use: ``BuildKeyManifestOperator.partial(...).expand(key_range=plan.output)``, then
    :class:`CombineManifestsOperator` over the mapped task's output.

    :param source_bucket: bucket to list (in the source account).
    :param source_prefix: only keys starting with this prefix.
    :param listing_tasks: how many ranges (mapped listing tasks) to plan, 1 to 1,000.
    :param source_aws_conn_id: AWS connection for the source account (``role_arn`` extra).
    :param source_role_arn: role in the source account to assume with ``aws_conn_id``'s credentials.
    :param source_external_id: ExternalId for ``source_role_arn``'s trust policy.
    :param source_account_id: account that must own ``source_bucket`` (``ExpectedBucketOwner``).
    :param source_region: Region of ``source_bucket`` if it differs from the connection's.
    :param source_inventory: an S3 Inventory source (read by one task: one range is planned).
    :param request_payer: ``"requester"`` for a Requester Pays source (sent on the planning calls).
    :param aws_conn_id: AWS connection of the pipeline account.
    :param region_name: AWS region_name. If not specified then the default boto3 behaviour is used.
    :param verify: Whether or not to verify SSL certificates.
    :param botocore_config: Configuration dictionary (key-values) for botocore client.
    :return: the ranges, each ``{"index", "count", "start_after", "up_to"}`` (``up_to`` None: the end).
    """

    aws_hook_class = S3Hook
    template_fields: Sequence[str] = aws_template_fields(*SOURCE_ARGUMENTS, "listing_tasks", "source_inventory")
    ui_color = "#c7e9f1"

    def __init__(
        self,
        *,
        source_bucket: str,
        source_prefix: str = "",
        listing_tasks: int = 1,
        source_aws_conn_id: str | None = None,
        source_role_arn: str | None = None,
        source_external_id: str | None = None,
        source_account_id: str | None = None,
        source_region: str | None = None,
        source_inventory: str | None = None,
        request_payer: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._keep_source_arguments(locals())
        self.listing_tasks = listing_tasks
        self.source_inventory = source_inventory

    def execute(self, context: Context) -> list[dict]:
        tasks = require_native(self.listing_tasks, int, "listing_tasks")
        if not 1 <= tasks <= MAX_RANGES:
            raise AirflowFailException(f"listing_tasks must be from 1 to {MAX_RANGES}, not {tasks}.")
        if tasks == 1 or self.source_inventory:
            if tasks > 1:
                self.log.info("source_inventory is read by one task: one key range, not %d", tasks)
            return [r.as_dict() for r in key_ranges([])]
        if not self.source_bucket:
            raise AirflowFailException("source_bucket is empty: name the bucket to list in the source account.")
        try:
            owner = self.source_account_id or (account_of_role(self.source_role_arn) if self.source_role_arn else None)
            source = source_s3(
                self.hook,
                source_aws_conn_id=self.source_aws_conn_id,
                source_role_arn=self.source_role_arn,
                source_external_id=self.source_external_id,
                source_region=self.source_region,
                session_name=role_session_name("xacct-map", context["dag"].dag_id),
                source_bucket=self.source_bucket,
                expected_bucket_owner=owner or None,
            )
            cuts = plan_cuts(
                source.client,
                self.source_bucket,
                self.source_prefix,
                tasks,
                expected_bucket_owner=owner,
                request_payer=self.request_payer or None,
            )
        except ValueError as err:
            raise AirflowFailException(str(err)) from err
        except ClientError as err:
            raise AirflowException(
                f"Planning the listing of s3://{self.source_bucket}/{self.source_prefix} failed: {error_code(err)}: "
                f"{err.response['Error'].get('Message')}. The build task would fail the same way: check the "
                "source role's s3:ListBucket on the bucket (run the preflight)."
            ) from err
        ranges = key_ranges(cuts)
        self.log.info(
            "s3://%s/%s: %d key ranges for %d listing tasks, cut at %s",
            self.source_bucket,
            self.source_prefix,
            len(ranges),
            tasks,
            cuts,
        )
        return [r.as_dict() for r in ranges]


class CombineManifestsOperator(BaseOperator):
    """
    Join the range manifests of a listing spread over several tasks into one manifest in parts.

    Takes the mapped :class:`BuildKeyManifestOperator`'s output (each summary with its ``key_range``),
    checks that the ranges cover the key space exactly once, and returns one summary whose
    ``parts`` are every range's non-empty parts in key order (:func:`xacct_map.core.ranges.combine_manifests`):
    what :class:`StartDistributedMapOperator` takes as ``manifest``; one execution processes all the
    parts. No AWS call.

    :param manifests: the range manifests' summaries (``build_manifest.output`` of the mapped task).
    :param on_empty: when no range holds an object: ``"skip"`` (default; this task and the ones
        after it are skipped), ``"fail"``, or ``"run"`` (one empty part goes on).
    :return: the combined manifest summary.
    """

    template_fields: Sequence[str] = ("manifests", "on_empty")
    ui_color = "#c7e9f1"

    def __init__(self, *, manifests: Any, on_empty: str = "skip", **kwargs):
        super().__init__(**kwargs)
        self.manifests = manifests
        self.on_empty = on_empty

    def execute(self, context: Context) -> dict[str, Any]:
        if self.on_empty not in ON_EMPTY:
            raise AirflowFailException(f"on_empty must be one of {', '.join(ON_EMPTY)}, not {self.on_empty!r}.")
        summaries = [m for m in (self.manifests or []) if m is not None]
        try:
            combined = combine_manifests(summaries, on_empty=self.on_empty)
        except EmptySourceError as err:
            if err.on_empty == "skip":
                raise AirflowSkipException(f"{err} (on_empty='skip': no execution)") from err
            raise AirflowFailException(f"{err} (on_empty='fail'; on_empty='run' would run it anyway)") from err
        except (KeyError, ValueError) as err:
            raise AirflowFailException(f"Cannot combine the range manifests: {err}.") from err
        self.log.info(
            "%d objects in %d batches from %d key ranges, %d manifest parts: %s",
            combined["object_count"],
            combined["batch_count"],
            len(summaries),
            combined["part_count"],
            [(r["index"] + 1, r["objects"]) for r in combined["key_ranges"]],
        )
        return combined
