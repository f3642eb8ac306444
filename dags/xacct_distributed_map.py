"""Process every object of a bucket in another AWS account with a Step Functions Distributed Map.

build_manifest >> start_map_run >> wait_for_map_run

Configure with DAG params (the trigger form) or, for scheduled runs, Airflow Variables
(``xacct_map_source_bucket``, ``xacct_map_source_prefix``, ``xacct_map_source_account_id``,
``xacct_map_inventory_bucket``, ``xacct_map_state_machine_arn``); a param left empty falls back to
its Variable. Connections: ``xacct_map_pipeline`` (pipeline account) and ``xacct_map_source`` (an
AWS connection whose ``role_arn`` extra assumes the lister role in the source account).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from xacct_map.operators import BuildKeyManifestOperator, StartDistributedMapOperator
from xacct_map.sensors import DistributedMapSensor


def _setting(name: str) -> str:
    """A param left empty falls back to the Variable ``xacct_map_<name>`` (read at run time, not parse time)."""
    return f"{{{{ params.{name} or var.value.get('xacct_map_{name}', '') }}}}"


with DAG(
    dag_id="xacct_distributed_map",
    description="List a bucket of another AWS account and process every object with a Distributed Map",
    schedule=os.environ.get("XACCT_MAP_SCHEDULE", "@daily"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["xacct-map", "aws", "step-functions"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    params={
        "source_bucket": Param("", type="string", title="Source bucket",
                               description="Bucket in the source account to list. Empty: Variable xacct_map_source_bucket."),
        "source_prefix": Param("", type="string", title="Source prefix",
                               description="Only keys starting with this prefix. Empty: Variable xacct_map_source_prefix."),
        "source_account_id": Param("", type="string", title="Source account id", pattern="^([0-9]{12})?$",
                                   description="12-digit account that must own the source bucket (ExpectedBucketOwner)."),
        "inventory_bucket": Param("", type="string", title="Inventory bucket",
                                  description="Pipeline account bucket that receives the manifest."),
        "state_machine_arn": Param("", type="string", title="State machine ARN",
                                   description="The Distributed Map state machine to start."),
        "max_keys_per_batch": Param(100, type="integer", minimum=1, maximum=10000, title="Keys per batch",
                                    description="Most objects one child execution processes."),
        "max_bytes_per_batch": Param(512 * 1024 * 1024, type="integer", minimum=1, title="Bytes per batch",
                                     description="Most object bytes one child execution processes."),
        "max_failed_items": Param(0, type="integer", minimum=0, title="Tolerated failed batches",
                                  description="Failed Map Run items (batches) tolerated before the run fails."),
        "on_existing": Param("redrive", type="string", enum=["redrive", "attach", "fail"], title="If this run's execution exists",
                             description="redrive: attach to a running/succeeded execution, redrive a failed one "
                                         "(only failed items run again); attach: always attach; fail: fail the task."),
    },
) as dag:
    build_manifest = BuildKeyManifestOperator(
        task_id="build_manifest",
        aws_conn_id="xacct_map_pipeline",
        source_aws_conn_id="xacct_map_source",
        source_bucket=_setting("source_bucket"),
        source_prefix=_setting("source_prefix"),
        source_account_id=_setting("source_account_id"),
        manifest_bucket="{{ params.inventory_bucket or var.value.get('xacct_map_inventory_bucket', '') }}",
        max_keys_per_batch="{{ params.max_keys_per_batch }}",
        max_bytes_per_batch="{{ params.max_bytes_per_batch }}",
    )
    start_map_run = StartDistributedMapOperator(
        task_id="start_map_run",
        aws_conn_id="xacct_map_pipeline",
        state_machine_arn=_setting("state_machine_arn"),
        manifest=build_manifest.output,
        source_account_id=_setting("source_account_id"),
        on_existing="{{ params.on_existing }}",
    )
    wait_for_map_run = DistributedMapSensor(
        task_id="wait_for_map_run",
        aws_conn_id="xacct_map_pipeline",
        execution_arn=start_map_run.output,
        max_failed_items="{{ params.max_failed_items }}",
        poke_interval=float(os.environ.get("XACCT_MAP_POKE_INTERVAL", "30")),
        timeout=timedelta(hours=int(os.environ.get("XACCT_MAP_TIMEOUT_HOURS", "24"))).total_seconds(),
        deferrable=True,  # the triggerer waits; no worker slot is held while the Map Run works
    )
    build_manifest >> start_map_run >> wait_for_map_run
