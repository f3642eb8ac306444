"""Metrics of a run, through Airflow's ``Stats`` (StatsD, Datadog or OpenTelemetry: what ``[metrics]`` configures).

Names (Airflow's ``statsd_prefix``, default ``airflow``, is put before them by Airflow):

* ``xacct_map.keys_listed`` (counter): objects the manifest task read from the source (before filters);
* ``xacct_map.listing_keys_per_second`` (gauge): the listing's rate (listed sources only, not inventories);
* ``xacct_map.manifest_bytes`` (gauge): bytes of the manifest written (all parts);
* ``xacct_map.items_succeeded`` / ``xacct_map.items_failed`` (counters): the Map Run's items at its end
  (failed counts failed, timed-out and aborted items);
* ``xacct_map.map_run_duration`` (timer): the execution's start to stop.

Tags: ``dag_id`` on all; ``state_machine`` (the state machine's name) on the Map Run's; ``source_bucket``
on the manifest's. Plain StatsD has no tags: Airflow sends them with ``statsd_influxdb_enabled`` or
``statsd_datadog_enabled``, and OpenTelemetry always.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from xacct_map.version_compat import Stats

log = logging.getLogger(__name__)

PREFIX = "xacct_map"


def manifest_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The manifest task's metrics, from its summary (the XCom): name -> value."""
    metrics: dict[str, float] = {"manifest_bytes": int(summary.get("manifest_bytes") or 0)}
    seen = summary.get("objects_seen")
    metrics["keys_listed"] = int(summary.get("object_count") or 0) if seen is None else int(seen)
    source = summary.get("source") or {}
    seconds = (source.get("listing") or {}).get("listing_seconds")
    if source.get("type") == "listing" and seconds:
        metrics["listing_keys_per_second"] = round(metrics["keys_listed"] / seconds, 1)
    return metrics


def emit_manifest_metrics(summary: dict[str, Any], *, dag_id: str) -> None:
    """Send the manifest task's metrics; never fails the task (a metrics backend is not the job)."""
    tags = {"dag_id": dag_id, "source_bucket": summary.get("source_bucket") or ""}
    try:
        values = manifest_metrics(summary)
        Stats.incr(f"{PREFIX}.keys_listed", int(values["keys_listed"]), tags=tags)
        Stats.gauge(f"{PREFIX}.manifest_bytes", values["manifest_bytes"], tags=tags)
        if "listing_keys_per_second" in values:
            Stats.gauge(f"{PREFIX}.listing_keys_per_second", values["listing_keys_per_second"], tags=tags)
    except Exception:  # noqa: BLE001 - a broken metrics setup is logged, the task's result stands
        log.warning("Could not send the xacct_map manifest metrics", exc_info=True)


def emit_map_run_metrics(snapshot: dict[str, Any], *, dag_id: str) -> None:
    """Send the finished Map Run's metrics (``snapshot``: :meth:`MapRunSnapshot.as_dict`), whatever its verdict."""
    counts = snapshot.get("item_counts") or {}
    tags = {"dag_id": dag_id, "state_machine": state_machine_name(snapshot.get("execution_arn") or "")}
    try:
        failed = sum(int(counts.get(k, 0) or 0) for k in ("failed", "timedOut", "aborted"))
        Stats.incr(f"{PREFIX}.items_succeeded", int(counts.get("succeeded", 0) or 0), tags=tags)
        Stats.incr(f"{PREFIX}.items_failed", failed, tags=tags)
        if snapshot.get("duration_seconds") is not None:
            Stats.timing(f"{PREFIX}.map_run_duration", timedelta(seconds=snapshot["duration_seconds"]), tags=tags)
    except Exception:  # noqa: BLE001 - as above
        log.warning("Could not send the xacct_map Map Run metrics", exc_info=True)


def state_machine_name(execution_arn: str) -> str:
    """``arn:<partition>:states:<region>:<account>:execution:<state machine>:<name>`` -> the state machine."""
    parts = execution_arn.split(":")
    return parts[6] if len(parts) >= 8 and parts[5] == "execution" else "unknown"
