"""Airflow Assets of a run: the manifests it writes and the source prefix it processed.

An Asset's URI is fixed when the DAG file is parsed, while the buckets and the prefix come from
params or Variables at run time. So:

* the manifests are ``s3://<inventory bucket>/xacct-map/manifests/<dag_id>`` (:func:`manifest_asset`),
  the bucket read at parse time from the environment (``XACCT_MAP_INVENTORY_BUCKET``, or the
  Variable ``xacct_map_inventory_bucket`` defined as ``AIRFLOW_VAR_XACCT_MAP_INVENTORY_BUCKET``), never
  from the metadata database; each event's extra names the exact manifest written;
* "processed" is ``xacct-map://processed/<dag_id>`` (:func:`processed_asset`), one Asset per DAG: a
  downstream DAG schedules on it whatever bucket or prefix a run took, and its event's extra says
  which (``source_bucket``, ``source_prefix``) with the run's counts.

The tasks fill the extras of whichever Assets they declare as outlets (:func:`set_outlet_extra`);
Airflow records the events only when the task succeeds.
"""

from __future__ import annotations

import os
from typing import Any

from xacct_map.version_compat import Asset

PROCESSED_SCHEME = "xacct-map"
MANIFEST_PREFIX = "xacct-map/manifests"  # core.naming.manifest_key's default prefix


def processed_asset(dag_id: str) -> Asset:
    """``xacct-map://processed/<dag_id>``: an event each time a run of ``dag_id`` processed its source."""
    return Asset(f"{PROCESSED_SCHEME}://processed/{dag_id}")


def manifest_asset(dag_id: str, bucket: str | None = None) -> Asset | None:
    """``s3://<bucket>/xacct-map/manifests/<dag_id>`` (the prefix), ``bucket`` by default from the environment at
    parse time (None when it is not set there: the DAG then declares no manifest Asset)."""
    env = os.environ
    bucket = bucket or env.get("XACCT_MAP_INVENTORY_BUCKET") or env.get("AIRFLOW_VAR_XACCT_MAP_INVENTORY_BUCKET")
    return Asset(f"s3://{bucket}/{MANIFEST_PREFIX}/{dag_id}") if bucket else None


def manifest_extra(summary: dict[str, Any]) -> dict[str, Any]:
    """The manifest Asset event's extra: which manifest, of what."""
    keys = ("bucket", "key", "object_count", "item_count", "total_bytes", "manifest_bytes", "source_bucket")
    return {k: summary.get(k) for k in keys} | {"source_prefix": summary.get("source_prefix", "")}


def processed_extra(snapshot: dict[str, Any], manifest: dict[str, Any] | None) -> dict[str, Any]:
    """The processed Asset event's extra: the source processed, the manifest and the Map Run's counts."""
    manifest = manifest or {}
    extra = {
        "source_bucket": manifest.get("source_bucket"),
        "source_prefix": manifest.get("source_prefix", ""),
        "source_uri": f"s3://{manifest['source_bucket']}/{manifest.get('source_prefix', '')}"
        if manifest.get("source_bucket")
        else None,
        "manifest": f"s3://{manifest['bucket']}/{manifest['key']}" if manifest.get("bucket") else None,
        "object_count": manifest.get("object_count"),
        "total_bytes": manifest.get("total_bytes"),
    }
    keys = ("execution_arn", "map_run_arn", "status", "item_counts", "failed_items", "duration_seconds")
    return extra | {k: snapshot.get(k) for k in keys}


def set_outlet_extra(task: Any, context: Any, extra: dict[str, Any]) -> None:
    """Put ``extra`` on the events of ``task``'s Asset outlets (recorded if the task succeeds)."""
    assets = [outlet for outlet in getattr(task, "outlets", None) or [] if isinstance(outlet, Asset)]
    events = context.get("outlet_events") if assets else None
    if events is None:
        return
    for asset in assets:
        events[asset].extra = dict(extra)
