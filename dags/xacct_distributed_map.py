"""Process every object of a bucket in another AWS account with a Step Functions Distributed Map.

preflight >> build_manifest >> start_map_run >> wait_for_map_run

``preflight`` checks the cross-account setup with real, side-effect-free calls (by default in
manual runs only: param ``preflight``); param ``dry_run`` builds the manifest and skips the rest.

Configure with DAG params (the trigger form) or, for scheduled runs, Airflow Variables
(``xacct_map_source_bucket``, ``xacct_map_source_prefix``, ``xacct_map_source_account_id``,
``xacct_map_inventory_bucket``, ``xacct_map_state_machine_arn``, ``xacct_map_request_payer``); a param
left empty falls back to its Variable. The source bucket may be an access point (ARN or alias); a
Requester Pays source needs ``request_payer`` = ``requester``. The Variable
``xacct_map_pipeline_account_id``, when set, must own the inventory bucket (ExpectedBucketOwner on
the manifest writes). Connections: ``xacct_map_pipeline`` (pipeline
account) and ``xacct_map_source`` (an AWS connection whose ``role_arn`` extra assumes the lister role
in the source account).

Listing mode (param ``listing_mode``): ``auto`` (default) lists incrementally for scheduled runs,
keeping only objects whose LastModified falls in the run's data interval
(``data_interval_start <= LastModified < data_interval_end``; the window opens earlier, at the end of
the last successful run's interval, when runs in between failed or never ran), and everything for
manual runs;
``full`` and ``incremental`` force one or the other. Filters (suffixes, glob patterns, size,
storage class, LastModified window), the manifest layout/format and an S3 Inventory source are
params too (passed together as the build task's ``object_filter``); the manifest's metadata sidecar
(``<manifest>.meta.json``) records what was applied.

Templates render native objects (``render_template_as_native_obj=True``): the operators get the
params' ints, bools and lists, never their text.

Assets (:mod:`xacct_map.assets`): ``build_manifest`` updates ``s3://<inventory bucket>/xacct-map/manifests/
xacct_distributed_map`` (when ``XACCT_MAP_INVENTORY_BUCKET`` or ``AIRFLOW_VAR_XACCT_MAP_INVENTORY_BUCKET``
is set where the DAG is parsed) and, when the Map Run succeeded, ``wait_for_map_run`` updates
``xacct-map://processed/<dag_id>`` with the source bucket, prefix and counts in the event's extra:
``dags/xacct_processed_downstream.py`` is scheduled on ``xacct-map://processed/xacct_distributed_map``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param
from airflow.timetables.interval import CronDataIntervalTimetable

from xacct_map.assets import manifest_asset, processed_asset
from xacct_map.core.filters import STORAGE_CLASSES
from xacct_map.core.layouts import DEFAULT_MAX_BATCH_BYTES, MAX_CHILD_INPUT_BYTES, MIN_MAX_BATCH_BYTES
from xacct_map.core.manifest import DEFAULT_MAX_PART_BYTES, MAX_MANIFEST_PART_BYTES
from xacct_map.core.ranges import MAX_RANGES
from xacct_map.operators import (
    BuildKeyManifestOperator,
    CombineManifestsOperator,
    PlanKeyRangesOperator,
    PreflightOperator,
    StartDistributedMapOperator,
)
from xacct_map.sensors import DistributedMapSensor

# Templates render native objects (render_template_as_native_obj=True below): {{ params.x }} passes
# the param's int, bool or list as is. Native rendering also evaluates *text* as a Python literal, so
# free text goes through ``| repr``: a 12-digit account id or a bucket named "2026" stays a string.


# Trigger-form checks: a bucket name (or empty), an ISO-8601 date-time with a time zone (or empty).
_BUCKET = "^([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])?$"
# a bucket (or an access point alias, or a directory bucket), or a regional access point's ARN
_SOURCE = (
    "^([a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
    "|arn:aws(-cn|-us-gov)?:s3:[a-z0-9-]+:[0-9]{12}:accesspoint/[a-z0-9][a-z0-9-]{1,48}[a-z0-9])?$"
)
_AWARE_ISO = "^([0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?(Z|[+-][0-9]{2}:?[0-9]{2}))?$"


def _text(expression: str) -> str:
    """A template of text that stays text under native rendering (``| repr``, evaluated back to the str)."""
    return f"{{{{ ({expression}) | repr }}}}"


def _setting(name: str) -> str:
    """A param left empty falls back to the Variable ``xacct_map_<name>`` (read at run time, not parse time)."""
    return _text(f"params.{name} or var.value.get('xacct_map_{name}', '')")


#: The trigger form of both DAGs (the ranges DAG adds ``listing_tasks``).
PARAMS = {
    "source_bucket": Param(
        None,
        type=["null", "string"],
        title="Source bucket",
        pattern=_SOURCE,
        description="Bucket in the source account to list, or an access point (ARN or alias) of it. "
        "Empty: Variable xacct_map_source_bucket.",
    ),
    "request_payer": Param(
        None,
        type=["null", "string"],
        enum=[None, "requester"],
        title="Request payer",
        description="requester: the source is Requester Pays and this pipeline pays for the requests "
        "and transfer. Empty: Variable xacct_map_request_payer.",
    ),
    "source_prefix": Param(
        None,
        type=["null", "string"],
        title="Source prefix",
        description="Only keys starting with this prefix. Empty: Variable xacct_map_source_prefix.",
    ),
    "source_account_id": Param(
        None,
        type=["null", "string"],
        title="Source account id",
        pattern="^([0-9]{12})?$",
        description="12-digit account that must own the source bucket (ExpectedBucketOwner).",
    ),
    "inventory_bucket": Param(
        None,
        type=["null", "string"],
        title="Inventory bucket",
        pattern=_BUCKET,
        description="Pipeline account bucket that receives the manifest.",
    ),
    "state_machine_arn": Param(
        None,
        type=["null", "string"],
        title="State machine ARN",
        pattern="^(arn:aws[a-z-]*:states:[a-z0-9-]+:[0-9]{12}:stateMachine:[^:\\s]{1,80})?$",
        description="The Distributed Map state machine to start.",
    ),
    "max_keys_per_batch": Param(
        100,
        type="integer",
        minimum=1,
        maximum=10000,
        title="Keys per batch",
        description="Most objects one child execution processes.",
    ),
    "max_bytes_per_batch": Param(
        512 * 1024 * 1024,
        type="integer",
        minimum=1,
        title="Bytes per batch",
        description="Most object bytes one child execution processes.",
    ),
    "max_failed_items": Param(
        0,
        type="integer",
        minimum=0,
        title="Tolerated failed batches",
        description="Failed Map Run items (batches) tolerated before the run fails.",
    ),
    "listing_mode": Param(
        "auto",
        type="string",
        enum=["auto", "full", "incremental"],
        title="Listing mode",
        description="auto: scheduled runs take only objects modified in their data interval "
        "(start inclusive, end exclusive), manual runs take everything; full: "
        "everything; incremental: only the data interval.",
    ),
    "suffixes": Param(
        [],
        type="array",
        items={"type": "string", "minLength": 1},
        title="Key suffixes",
        description="Keep only keys ending with one of these (e.g. .parquet). Empty: any key.",
    ),
    "patterns": Param(
        [],
        type="array",
        items={"type": "string", "minLength": 1},
        title="Key glob patterns",
        description="Keep only keys matching one of these fnmatch patterns (* also matches /). Empty: any key.",
    ),
    "pattern_base": Param(
        "key",
        type="string",
        enum=["key", "relative"],
        title="Patterns match",
        description="key: the whole key; relative: the part of the key after the source prefix.",
    ),
    "min_size": Param(
        None,
        type=["null", "integer"],
        minimum=0,
        title="Minimum object size (bytes)",
        description="Skip objects smaller than this. Empty: no minimum.",
    ),
    "max_size": Param(
        None,
        type=["null", "integer"],
        minimum=0,
        title="Maximum object size (bytes)",
        description="Skip objects larger than this. Empty: no maximum.",
    ),
    "storage_classes": Param(
        [],
        type="array",
        items={"type": "string", "enum": list(STORAGE_CLASSES)},
        title="Storage classes",
        description="Keep exactly these storage classes (e.g. STANDARD, STANDARD_IA). Empty: "
        "all but GLACIER and DEEP_ARCHIVE, which need a restore before reading.",
    ),
    "include_archived": Param(
        False,
        type="boolean",
        title="Include GLACIER / DEEP_ARCHIVE",
        description="Keep archived objects too (only when they have been restored).",
    ),
    "modified_after": Param(
        None,
        type=["null", "string"],
        title="Modified at or after",
        pattern=_AWARE_ISO,
        description="ISO-8601 with a time zone, e.g. 2026-11-01T00:00:00+00:00 (inclusive). "
        "Empty: no lower bound. Intersected with the data interval when incremental.",
    ),
    "modified_before": Param(
        None,
        type=["null", "string"],
        title="Modified before",
        pattern=_AWARE_ISO,
        description="ISO-8601 with a time zone (exclusive). Empty: no upper bound.",
    ),
    "layout": Param(
        "batched",
        type="string",
        enum=["batched", "flat", "keys"],
        title="Manifest layout",
        description="batched: items are batches of keys (asl/distributed_map.asl.json, default); "
        "flat: one item per object, for asl/distributed_map_flat.asl.json (ItemBatcher); "
        "keys: bare keys. The state machine must be deployed for the layout.",
    ),
    "manifest_format": Param(
        "json",
        type="string",
        enum=["json", "jsonl", "csv"],
        title="Manifest format",
        description="json (any layout), jsonl (any layout), csv (flat layout only).",
    ),
    "source_inventory": Param(
        None,
        type=["null", "string"],
        title="S3 Inventory source",
        pattern="^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.*)?$",
        description="s3://<inventory destination bucket>/<prefix>/<source bucket>/<config id>: "
        "read the newest S3 Inventory report instead of listing the bucket. "
        "Empty: list the bucket.",
    ),
    "more_sources": Param(
        [],
        type="array",
        items={"type": "string", "pattern": "^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.*$"},
        title="More sources",
        description="More s3://bucket/prefix to list into the same manifest, read with the same "
        "connection (overlapping prefixes are listed once). Empty: only the source bucket and prefix.",
    ),
    "keys_from": Param(
        None,
        type=["null", "string"],
        title="Key list",
        description="Process exactly the keys of this list instead of listing: s3://bucket/key (read with "
        "the pipeline connection) of an S3 Batch Operations CSV, JSON Lines or text (one key per line). "
        "Empty: list the bucket.",
    ),
    "on_changed": Param(
        None,
        type=["null", "string"],
        enum=[None, "fail", "skip", "current"],
        title="Objects changed since the listing",
        description="Pin each key to its listed ETag (or VersionId): fail: fail its batch; skip: do not "
        "process it; current: process the current object. Each reported as changed/gone. Empty: not pinned.",
    ),
    "preflight": Param(
        "manual",
        type="string",
        enum=["manual", "always", "never"],
        title="Preflight checks",
        description="Check roles, bucket access and the state machine first (real calls, no side "
        "effects): manual: in manual runs only; always; never.",
    ),
    "dry_run": Param(
        False,
        type="boolean",
        title="Dry run",
        description="Build the manifest (and its .meta.json sidecar) and stop: no execution starts.",
    ),
    "on_empty": Param(
        "skip",
        type="string",
        enum=["skip", "fail", "run"],
        title="If there is nothing to process",
        description="When the source holds no objects (or the filters remove all): skip: no manifest, "
        "no execution, the run's tasks are skipped with the reason in the build_manifest log; fail: fail "
        "the run; run: start an execution over an empty manifest.",
    ),
    "on_existing": Param(
        "redrive",
        type="string",
        enum=["redrive", "attach", "fail"],
        title="If this run's execution exists",
        description="redrive: attach to a running/succeeded execution, redrive a failed one "
        "(only failed items run again); attach: always attach; fail: fail the task.",
    ),
    "max_batch_bytes": Param(
        DEFAULT_MAX_BATCH_BYTES,
        type="integer",
        minimum=MIN_MAX_BATCH_BYTES,
        maximum=MAX_CHILD_INPUT_BYTES,
        title="Child input bytes per batch",
        description="Most UTF-8 bytes of one child execution's input (the batch plus the source block): "
        "default 240 KiB, at most 262,144 (Step Functions' 256 KiB).",
    ),
    "manifest_part_bytes": Param(
        DEFAULT_MAX_PART_BYTES,
        type="integer",
        minimum=1,
        maximum=MAX_MANIFEST_PART_BYTES,
        title="Manifest part bytes",
        description="Batched layout: the manifest is written in parts of about this many bytes, one Map Run "
        "each (default 5 GB; ItemReader reads files of at most 10 GB).",
    ),
    "max_poke_interval": Param(
        600,
        type="number",
        minimum=1,
        maximum=86400,
        title="Longest wait between looks (s)",
        description="The sensor looks at the Map Run less often while much of it remains, up to this many "
        "seconds (never below its poke interval).",
    ),
}


def _dag(dag_id: str, description: str, schedule, params: dict) -> DAG:
    return DAG(
        dag_id=dag_id,
        description=description,
        schedule=schedule,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        tags=["xacct-map", "aws", "step-functions"],
        default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
        render_template_as_native_obj=True,
        user_defined_filters={"repr": repr},
        params=params,
    )


# What the preflight checks is what build_manifest uses: the same connections, bucket and prefix.
SOURCE_AND_INVENTORY = dict(
    aws_conn_id="xacct_map_pipeline",
    source_aws_conn_id="xacct_map_source",
    source_bucket=_setting("source_bucket"),
    source_prefix=_setting("source_prefix"),
    source_account_id=_setting("source_account_id"),
    manifest_bucket=_setting("inventory_bucket"),
    request_payer=_setting("request_payer"),
)
BUILD_ARGUMENTS = dict(
    **SOURCE_AND_INVENTORY,
    manifest_bucket_owner=_text("var.value.get('xacct_map_pipeline_account_id', '')"),
    max_keys_per_batch="{{ params.max_keys_per_batch }}",
    max_bytes_per_batch="{{ params.max_bytes_per_batch }}",
    max_batch_bytes="{{ params.max_batch_bytes }}",
    manifest_part_bytes="{{ params.manifest_part_bytes }}",
    listing_mode="{{ params.listing_mode }}",
    object_filter={
        "suffixes": "{{ params.suffixes }}",
        "patterns": "{{ params.patterns }}",
        "pattern_base": "{{ params.pattern_base }}",
        "min_size": "{{ params.min_size }}",
        "max_size": "{{ params.max_size }}",
        "storage_classes": "{{ params.storage_classes }}",
        "include_archived": "{{ params.include_archived }}",
        "modified_after": _text("params.modified_after or ''"),  # ISO-8601 text
        "modified_before": _text("params.modified_before or ''"),
    },
    layout="{{ params.layout }}",
    manifest_format="{{ params.manifest_format }}",
    source_inventory=_text("params.source_inventory or ''"),
    on_empty="{{ params.on_empty }}",
    sources="{{ params.more_sources }}",
    keys_from=_text("params.keys_from or ''"),
    on_changed=_text("params.on_changed or ''"),
)


def _preflight() -> PreflightOperator:
    return PreflightOperator(
        task_id="preflight",
        **SOURCE_AND_INVENTORY,
        state_machine_arn=_setting("state_machine_arn"),
        state_machine_role=_text("var.value.get('xacct_map_state_machine_role', 'xacct-map-state-machine')"),
        run_when="{{ params.preflight }}",
    )


def _start_and_wait(manifest, dag_id: str) -> tuple[StartDistributedMapOperator, DistributedMapSensor]:
    start_map_run = StartDistributedMapOperator(
        task_id="start_map_run",
        aws_conn_id="xacct_map_pipeline",
        state_machine_arn=_setting("state_machine_arn"),
        manifest=manifest,
        source_account_id=_setting("source_account_id"),
        on_existing="{{ params.on_existing }}",
        dry_run="{{ params.dry_run }}",
    )
    wait_for_map_run = DistributedMapSensor(
        task_id="wait_for_map_run",
        aws_conn_id="xacct_map_pipeline",
        execution_arn=start_map_run.output,
        max_failed_items="{{ params.max_failed_items }}",
        poke_interval=float(os.environ.get("XACCT_MAP_POKE_INTERVAL", "30")),
        max_poke_interval="{{ params.max_poke_interval }}",
        timeout=timedelta(hours=int(os.environ.get("XACCT_MAP_TIMEOUT_HOURS", "24"))).total_seconds(),
        deferrable=True,  # the triggerer waits; no worker slot is held while the Map Run works
        manifest=manifest,  # the processed Asset event's extra: source bucket and prefix
        outlets=[processed_asset(dag_id)],  # an event only when the Map Run succeeded
    )
    start_map_run >> wait_for_map_run
    return start_map_run, wait_for_map_run


with _dag(
    "xacct_distributed_map",
    "List a bucket of another AWS account and process every object with a Distributed Map",
    # Data intervals that span the period (Airflow 3's cron default, CronTriggerTimetable, gives each
    # run a zero-length interval, and an incremental listing of it would take nothing).
    CronDataIntervalTimetable(os.environ.get("XACCT_MAP_SCHEDULE", "@daily"), timezone="UTC"),
    PARAMS,
) as dag:
    preflight = _preflight()
    # Fixed at parse time (Asset URIs cannot be templated): see xacct_map.assets.
    manifests = manifest_asset(dag.dag_id)
    build_manifest = BuildKeyManifestOperator(
        task_id="build_manifest", outlets=[manifests] if manifests else [], **BUILD_ARGUMENTS
    )
    start_map_run, wait_for_map_run = _start_and_wait(build_manifest.output, dag.dag_id)
    preflight >> build_manifest >> start_map_run


# The same pipeline with the listing spread over mapped tasks (README "A listing over many tasks").
# A DAG of its own, so that the DAG above keeps its plain build_manifest task (its task instance,
# XCom and REST paths, which a mapped task would change to build_manifest[0]).
with _dag(
    "xacct_distributed_map_ranges",
    "xacct_distributed_map with the listing spread over mapped tasks, one per key range",
    # Manual by default: enable a schedule for it *or* for xacct_distributed_map, never both.
    CronDataIntervalTimetable(os.environ["XACCT_MAP_RANGES_SCHEDULE"], timezone="UTC")
    if os.environ.get("XACCT_MAP_RANGES_SCHEDULE")
    else None,
    {
        **PARAMS,
        "listing_tasks": Param(
            8,
            type="integer",
            minimum=1,
            maximum=MAX_RANGES,
            title="Listing tasks",
            description="Mapped build_manifest tasks, one per key range (each lists its range and writes its "
            "own manifest part; ~300k keys/s each). Fewer when the prefix holds fewer keys.",
        ),
    },
) as ranges_dag:
    ranges_preflight = _preflight()
    plan_listing = PlanKeyRangesOperator(
        task_id="plan_listing",
        **{k: v for k, v in SOURCE_AND_INVENTORY.items() if k != "manifest_bucket"},
        # several sources or a key list: one range (a split needs one listed prefix)
        listing_tasks="{{ 1 if params.more_sources or params.keys_from else params.listing_tasks }}",
        source_inventory=_text("params.source_inventory or ''"),
    )
    # Expanded over the plan's ranges: build_manifest[0..N-1], each its own range and manifest.
    build_ranges = BuildKeyManifestOperator.partial(task_id="build_manifest", **BUILD_ARGUMENTS).expand(
        key_range=plan_listing.output
    )
    combine_manifest = CombineManifestsOperator(
        task_id="combine_manifest", manifests=build_ranges.output, on_empty="{{ params.on_empty }}"
    )
    ranges_start, _ranges_wait = _start_and_wait(combine_manifest.output, ranges_dag.dag_id)
    ranges_preflight >> plan_listing >> build_ranges >> combine_manifest >> ranges_start
