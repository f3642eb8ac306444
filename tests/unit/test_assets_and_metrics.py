"""What the tasks put on their Asset events and send as metrics, from the summaries they hold (the
real scheduler and a StatsD listener: tests/system/test_assets_and_metrics_scheduler.py)."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from types import SimpleNamespace

import pytest

from xacct_map import metrics
from xacct_map.assets import manifest_asset, manifest_extra, processed_asset, processed_extra, set_outlet_extra
from xacct_map.version_compat import Asset

EXECUTION = "arn:aws:states:eu-west-1:123456789012:execution:xacct-map-distributed-map:run-1"
SUMMARY = {
    "bucket": "inventory",
    "key": "xacct-map/manifests/d/r/manifest.json",
    "object_count": 90,
    "objects_seen": 120,
    "item_count": 1,
    "total_bytes": 4096,
    "manifest_bytes": 777,
    "source_bucket": "source",
    "source_prefix": "data/",
    "source": {"type": "listing", "listing": {"listing_seconds": 0.5}},
}
SNAPSHOT = {
    "execution_arn": EXECUTION,
    "map_run_arn": "arn:aws:states:eu-west-1:123456789012:mapRun:m/1",
    "status": "SUCCEEDED",
    "item_counts": {"succeeded": 9, "failed": 1, "timedOut": 1, "aborted": 0, "total": 11},
    "failed_items": 2,
    "duration_seconds": 12.5,
}


class OutletEvents:
    """Stands in for the context's ``outlet_events`` (keyed by Asset, which is unhashable on Airflow 3.0)."""

    def __init__(self):
        self.by_uri: defaultdict = defaultdict(lambda: SimpleNamespace(extra={}))

    def __getitem__(self, asset):
        return self.by_uri[asset.uri]


class Recorder:
    """Stands in for Airflow's Stats: records (kind, name, value, tags)."""

    def __init__(self):
        self.sent: list[tuple] = []

    def incr(self, stat, count=1, rate=1, *, tags=None):
        self.sent.append(("incr", stat, count, tags))

    def gauge(self, stat, value, rate=1, delta=False, *, tags=None):
        self.sent.append(("gauge", stat, value, tags))

    def timing(self, stat, dt, *, tags=None):
        self.sent.append(("timing", stat, dt, tags))


def test_the_manifest_metrics_count_what_was_listed_and_how_fast(monkeypatch):
    stats = Recorder()
    monkeypatch.setattr(metrics, "Stats", stats)
    metrics.emit_manifest_metrics(SUMMARY, dag_id="d")
    tags = {"dag_id": "d", "source_bucket": "source"}
    assert stats.sent == [
        ("incr", "xacct_map.keys_listed", 120, tags),  # listed, before the filters kept 90
        ("gauge", "xacct_map.manifest_bytes", 777, tags),
        ("gauge", "xacct_map.listing_keys_per_second", 240.0, tags),
    ]
    inventory = dict(SUMMARY, source={"type": "inventory"})
    assert "listing_keys_per_second" not in metrics.manifest_metrics(inventory)


def test_the_map_run_metrics_are_tagged_by_dag_and_state_machine(monkeypatch):
    stats = Recorder()
    monkeypatch.setattr(metrics, "Stats", stats)
    metrics.emit_map_run_metrics(SNAPSHOT, dag_id="d")
    tags = {"dag_id": "d", "state_machine": "xacct-map-distributed-map"}
    assert stats.sent == [
        ("incr", "xacct_map.items_succeeded", 9, tags),
        ("incr", "xacct_map.items_failed", 2, tags),  # failed, timed out and aborted
        ("timing", "xacct_map.map_run_duration", timedelta(seconds=12.5), tags),
    ]


def test_a_broken_metrics_backend_never_fails_the_task(monkeypatch, caplog):
    monkeypatch.setattr(metrics, "Stats", SimpleNamespace(incr=lambda *a, **k: 1 / 0))
    metrics.emit_map_run_metrics(SNAPSHOT, dag_id="d")
    metrics.emit_manifest_metrics(SUMMARY, dag_id="d")
    assert "Could not send the xacct_map" in caplog.text


@pytest.mark.parametrize(
    ("arn", "name"),
    [(EXECUTION, "xacct-map-distributed-map"), ("arn:aws:states:r:1:stateMachine:sm", "unknown"), ("", "unknown")],
)
def test_the_state_machine_tag_comes_from_the_execution_arn(arn, name):
    assert metrics.state_machine_name(arn) == name


def test_asset_uris_are_fixed_per_dag_and_the_manifests_bucket_comes_from_the_environment(monkeypatch):
    assert processed_asset("d") == Asset("xacct-map://processed/d")
    monkeypatch.delenv("XACCT_MAP_INVENTORY_BUCKET", raising=False)
    monkeypatch.delenv("AIRFLOW_VAR_XACCT_MAP_INVENTORY_BUCKET", raising=False)
    assert manifest_asset("d") is None
    monkeypatch.setenv("AIRFLOW_VAR_XACCT_MAP_INVENTORY_BUCKET", "from-variable")
    assert manifest_asset("d").uri == "s3://from-variable/xacct-map/manifests/d"
    monkeypatch.setenv("XACCT_MAP_INVENTORY_BUCKET", "explicit")
    assert manifest_asset("d").uri == "s3://explicit/xacct-map/manifests/d"


def test_the_events_extras_say_what_was_processed_and_only_asset_outlets_get_them():
    processed = processed_extra(SNAPSHOT, SUMMARY)
    assert processed["source_uri"] == "s3://source/data/" and processed["source_prefix"] == "data/"
    assert processed["manifest"] == "s3://inventory/xacct-map/manifests/d/r/manifest.json"
    assert processed["item_counts"]["succeeded"] == 9 and processed["failed_items"] == 2
    assert processed["object_count"] == 90 and processed["execution_arn"] == EXECUTION
    assert manifest_extra(SUMMARY)["key"] == SUMMARY["key"]

    events = OutletEvents()
    asset = processed_asset("d")
    task = SimpleNamespace(outlets=[asset, "not-an-asset"])
    set_outlet_extra(task, {"outlet_events": events}, processed)
    assert list(events.by_uri) == [asset.uri] and events[asset].extra == processed
    set_outlet_extra(SimpleNamespace(outlets=[]), {}, processed)  # no outlets, no outlet_events: nothing to do
