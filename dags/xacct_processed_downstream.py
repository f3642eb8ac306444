"""An example downstream DAG: runs each time ``xacct_distributed_map`` processed its source successfully.

Scheduled on the Asset ``xacct-map://processed/xacct_distributed_map``, which the map DAG's sensor
updates only when the Map Run succeeded (a failed run updates nothing, so this DAG does not run).
The triggering event's extra says what was processed: ``source_bucket``, ``source_prefix``,
``source_uri``, ``manifest``, ``object_count``, ``total_bytes``, ``item_counts``, ``failed_items``,
``duration_seconds``, ``execution_arn`` and ``map_run_arn``. Replace the task with your own.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task

from xacct_map.assets import processed_asset

PROCESSED = processed_asset("xacct_distributed_map")

with DAG(
    dag_id="xacct_processed_downstream",
    description="Example: runs after each successful xacct_distributed_map run (Asset-scheduled)",
    schedule=[PROCESSED],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["xacct-map", "example", "assets"],
):

    @task
    def report_processed(triggering_asset_events=None) -> list[dict]:
        """Log and return what the triggering run(s) processed (the events' extras)."""
        processed = [dict(event.extra) for event in (triggering_asset_events or {}).get(PROCESSED, [])]
        for extra in processed:
            print(
                f"Processed {extra.get('source_uri')}: {extra.get('object_count')} objects, "
                f"items {extra.get('item_counts')}, execution {extra.get('execution_arn')}"
            )
        return processed

    report_processed()
