"""The "Map runs" page: registered as an Airflow plugin; its JSON (progress, ETA, console URLs per
partition, failed keys); the cache that keeps it to one AWS look per run per interval; the endpoints.

The page served by a real Airflow, with auth, a run in flight and its bar moving, is checked by
``tests/system/test_ui_browser.py``.
"""

from __future__ import annotations

import json
import types
from datetime import datetime, timedelta, timezone
from importlib.metadata import entry_points
from urllib.parse import quote_plus

import boto3
import pytest
from airflow.providers.amazon.aws.links.step_function import StateMachineExecutionsDetailsLink
from botocore.stub import Stubber

from xacct_map import ui
from xacct_map.core.map_run import MapRunSnapshot, item_keys, snapshot
from xacct_map.core.progress import add_point, chart_svg, progress
from xacct_map.core.snapshot_cache import Entry, SnapshotCache
from xacct_map.links import ManifestObjectLink, MapRunLink
from xacct_map.sensors import PROGRESS_XCOM_KEY, SUMMARY_XCOM_KEY
from xacct_map.ui import XacctMapPlugin, build_rows, console_links, needs_failures, run_row


def test_registered_through_the_airflow_plugins_entry_point():
    (entry,) = [e for e in entry_points(group="airflow.plugins") if e.name == "xacct_map"]
    assert entry.load() is XacctMapPlugin
    (app,) = XacctMapPlugin.fastapi_apps
    assert app["url_prefix"] == "/xacct-map"
    routes = {v["url_route"]: v for v in XacctMapPlugin.external_views}
    assert routes["xacct-map-runs"]["destination"] == "nav"
    assert routes["xacct-map-dag-runs"]["href"] == "/xacct-map/?dag_id={DAG_ID}"
    assert {r.path for r in app["app"].routes} >= {"/", "/runs.json", "/dags/{dag_id}/runs/{run_id}", "/static"}


def test_airflow_loads_the_plugin_and_serves_its_app_and_views():
    """What the API server does at start-up: the entry point's plugin, its FastAPI app, its two views."""
    from airflow import plugins_manager

    if not hasattr(plugins_manager, "get_fastapi_plugins"):  # Airflow < 3.2: module globals
        plugins_manager.initialize_fastapi_plugins()
        assert any(a["url_prefix"] == "/xacct-map" for a in plugins_manager.fastapi_apps)
        if hasattr(plugins_manager, "initialize_ui_plugins"):  # external views: Airflow 3.1+
            plugins_manager.initialize_ui_plugins()  # also validates each view's applies_to paths
            assert {v["url_route"] for v in plugins_manager.external_views} >= {"xacct-map-runs", "xacct-map-dag-runs"}
        assert not plugins_manager.import_errors
        return
    apps, _ = plugins_manager.get_fastapi_plugins()
    assert any(a["url_prefix"] == "/xacct-map" for a in apps)
    views, _ = plugins_manager._get_ui_plugins()  # also validates each view's applies_to paths
    assert {v["url_route"] for v in views} >= {"xacct-map-runs", "xacct-map-dag-runs"}
    assert not plugins_manager.get_import_errors()


def _ti(state="success", run_id="manual__1"):
    return types.SimpleNamespace(
        dag_id="xacct_distributed_map", run_id=run_id, task_id="wait_for_map_run", state=state, map_index=-1
    )


SUMMARY = {
    "status": "SUCCEEDED",
    "item_counts": {"succeeded": 3, "failed": 1, "total": 4},
    "failed_items": 1,
    "duration_seconds": 12.4,
    "map_run_arn": "arn:aws:states:us-east-1:1:mapRun:m/x:1",
    "execution_arn": "arn:aws:states:us-east-1:1:execution:m:x",
    "error": None,
}


# --- what the rows say: progress, ETA, console URLs ---------------------------------------------------

T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=timezone.utc)
ARN = "arn:aws:states:us-east-1:123456789012:execution:m:run-1"
MAP_RUN_ARN = "arn:aws:states:us-east-1:123456789012:mapRun:m/map:run-1"


def _running(counts: dict, *, seconds: float) -> MapRunSnapshot:
    return MapRunSnapshot(
        execution_arn=ARN,
        status="RUNNING",
        map_run_arn=MAP_RUN_ARN,
        map_run_status="RUNNING",
        item_counts=counts,
        start_date=(T0 - timedelta(seconds=5)).isoformat(),
        map_run_start_date=T0.isoformat(),
    )


def test_progress_of_a_running_map_run_gives_rate_eta_and_duration_so_far():
    snap = _running({"succeeded": 18, "failed": 2, "running": 8, "pending": 72, "total": 100}, seconds=10)
    view = progress(snap, now=T0 + timedelta(seconds=10))
    # 20 items done in the 10 s since the Map Run started: 2 items/s, the 80 left take 40 s.
    assert (view["succeeded"], view["failed"], view["running"], view["pending"]) == (18, 2, 8, 72)
    assert (view["done"], view["percent"], view["items_per_second"], view["eta_seconds"]) == (20, 20.0, 2.0, 40.0)
    assert view["duration_seconds"] == 15.0  # since the execution started, 5 s before its Map Run


def test_progress_parts_always_add_up_to_the_total_and_a_finished_run_has_no_eta():
    # Counts read a moment apart (running overlapping pending) still give a bar of exactly total.
    snap = _running({"succeeded": 5, "timedOut": 1, "aborted": 1, "running": 9, "pending": 9, "total": 20}, seconds=1)
    view = progress(snap, now=T0 + timedelta(seconds=7))
    assert view["failed"] == 2 and view["running"] == 9 and view["pending"] == 4
    assert sum(view[p] for p in ("succeeded", "failed", "running", "pending")) == 20
    done = MapRunSnapshot.from_dict(
        {**snap.as_dict(), "status": "SUCCEEDED", "stop_date": (T0 + timedelta(seconds=30)).isoformat()}
    )
    finished = progress(done, now=T0 + timedelta(hours=1))
    assert finished["eta_seconds"] is None and finished["duration_seconds"] == 35.0


def test_the_manifests_item_count_is_the_total_until_the_map_runs_counted_every_item():
    # A manifest in parts (one Map Run per part, one after another), or an emulator counting items as
    # it reads them: 10 of the manifest's 40 items counted so far; the other 30 are pending.
    snap = _running({"succeeded": 6, "running": 4, "total": 10}, seconds=3)
    view = progress(snap, now=T0 + timedelta(seconds=3), expected_total=40)
    assert (view["total"], view["pending"], view["percent"], view["eta_seconds"]) == (40, 30, 15.0, 17.0)
    summary = {**snap.as_dict(), "execution_arn": ARN}
    found = (_ti(state="deferred"), {SUMMARY_XCOM_KEY: summary, ui.MANIFEST_XCOM_KEY: {"item_count": 40}})
    assert run_row(*found)["total"] == 40


def test_the_chart_starts_at_zero_when_the_map_run_started():
    series = [[T0.timestamp() + 10, 5, 0, 1, 4, 10], [T0.timestamp() + 20, 10, 0, 0, 0, 10]]
    svg = chart_svg(series, start=T0.isoformat())
    assert svg.count(",") >= 6 and "20 s" in svg  # three points on each line, 20 s from the start
    assert "Not enough" not in chart_svg(series[:1], start=T0.isoformat())


@pytest.mark.parametrize(
    ("partition", "region", "domain"),
    [
        ("aws", "eu-west-1", "aws.amazon.com"),
        ("aws-cn", "cn-north-1", "amazonaws.cn"),
        ("aws-us-gov", "us-gov-west-1", "amazonaws-us-gov.com"),
    ],
)
def test_console_links_are_the_extra_links_urls_in_every_partition(partition, region, domain):
    execution = f"arn:{partition}:states:{region}:123456789012:execution:m:run-1"
    map_run = f"arn:{partition}:states:{region}:123456789012:mapRun:m/map:run-1"
    snap = MapRunSnapshot(execution_arn=execution, status="RUNNING", map_run_arn=map_run)
    manifest_kwargs = {"region_name": region, "aws_domain": domain, "bucket": "inv", "key": "manifests/run 1.json"}
    # Before the tasks persisted their links (deferred): built from the ARNs' partition and Region.
    from_arns = console_links({ManifestObjectLink.key: manifest_kwargs}, snap)
    assert from_arns == {
        "execution": f"https://console.{domain}/states/home?region={region}#/v2/executions/details/"
        + quote_plus(execution),
        "map_run": f"https://console.{domain}/states/home?region={region}#/v2/map-run/details/" + quote_plus(map_run),
        "manifest": f"https://console.{domain}/s3/object/inv?region={region}&prefix=manifests%2Frun%201.json",
    }
    # The kwargs the sensor persisted for its extra links give the very same URLs.
    persisted = {
        StateMachineExecutionsDetailsLink.key: {
            "region_name": region,
            "aws_domain": domain,
            "execution_arn": execution,
        },
        MapRunLink.key: {"region_name": region, "aws_domain": domain, "map_run_arn": map_run},
        ManifestObjectLink.key: manifest_kwargs,
    }
    assert console_links(persisted, None) == from_arns


def test_a_failed_run_shows_its_error_and_first_failed_keys():
    failures = Entry(value=[{"execution_arn": "c1", "error": "ObjectsFailed", "cause": "boom", "keys": ["a/1", "a/2"]}])
    row = run_row(
        _ti(state="failed"),
        {SUMMARY_XCOM_KEY: {**SUMMARY, "status": "FAILED", "error": "States.Runtime"}},
        failures=failures,
    )
    assert row["error"] == "States.Runtime" and row["failed_children"][0]["keys"] == ["a/1", "a/2"]
    assert needs_failures(row)


def test_item_keys_reads_every_item_shape():
    assert item_keys(json.dumps({"bucket": "b", "keys": ["k1", "k2", "k3"], "bytes": 3}), 2) == ["k1", "k2"]
    assert item_keys(json.dumps({"Items": [{"Bucket": "b", "Key": "x"}], "BatchInput": {}})) == ["x"]
    assert item_keys(json.dumps({"Bucket": "b", "Key": "one"})) == ["one"]
    assert item_keys("not json") == [] and item_keys(None) == []


def test_the_series_stays_short_and_keeps_a_flat_stretchs_ends():
    series: list = []
    for i in range(5):
        series = add_point(series, [float(i), 0, 0, 1, 9, 10])
    assert [p[0] for p in series] == [0.0, 4.0]  # nothing moved: first and latest look only
    for i in range(5, 400):
        series = add_point(series, [float(i), i, 0, 0, 0, 1000], limit=50)
    assert len(series) <= 50 and series[-1][0] == 399.0 and series[0][0] == 0.0
    svg = chart_svg(series)
    assert svg.startswith("<svg") and 'class="done"' in svg and "<script" not in svg
    assert "Not enough" in chart_svg(series[:1])


# --- the cache: one look at AWS per run per interval, whoever asks -----------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _describe(stub: Stubber, counts: dict, status: str = "RUNNING") -> None:
    execution = {
        "executionArn": ARN,
        "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:m",
        "status": status,
        "startDate": T0,
    }
    stub.add_response("describe_execution", execution, {"executionArn": ARN})
    stub.add_response(
        "list_map_runs",
        {
            "mapRuns": [
                {
                    "executionArn": ARN,
                    "mapRunArn": MAP_RUN_ARN,
                    "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:m/map",
                    "startDate": T0,
                }
            ]
        },
        {"executionArn": ARN},
    )
    full = {
        k: 0 for k in ("pending", "running", "succeeded", "failed", "timedOut", "aborted", "total", "resultsWritten")
    }
    stub.add_response(
        "describe_map_run",
        {
            "mapRunArn": MAP_RUN_ARN,
            "executionArn": ARN,
            "status": status,
            "startDate": T0,
            "maxConcurrency": 4,
            "toleratedFailurePercentage": 0.0,
            "toleratedFailureCount": 0,
            "itemCounts": {**full, **counts},
            "executionCounts": {**full, **counts},
        },
        {"mapRunArn": MAP_RUN_ARN},
    )


def test_the_page_makes_one_aws_look_per_run_per_interval_however_often_it_is_polled(monkeypatch):
    client = boto3.client("stepfunctions", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    monkeypatch.setattr(ui, "_rendered_fields", lambda session, ti: {"aws_conn_id": "xacct_map_pipeline"})
    monkeypatch.setattr(
        ui, "_hook", lambda fields: types.SimpleNamespace(snapshot=lambda arn: snapshot(client, arn), conn=client)
    )
    clock = Clock()
    cache = SnapshotCache(ttl=10, clock=clock)
    found = [
        (
            _ti(state="deferred"),
            {
                StateMachineExecutionsDetailsLink.key: {
                    "region_name": "us-east-1",
                    "aws_domain": "aws.amazon.com",
                    "execution_arn": ARN,
                }
            },
        )
    ]
    with Stubber(client) as stub:  # a call not stubbed here fails the test
        _describe(stub, {"succeeded": 2, "running": 4, "pending": 4, "total": 10})
        views = [build_rows(None, found, cache)[0] for _ in range(5)]  # five browsers, one interval
        stub.assert_no_pending_responses()
        assert {(v["source"], v["succeeded"], v["running"], v["total"]) for v in views} == {("live", 2, 4, 10)}
        clock.now += 10  # the next interval: one more look
        _describe(stub, {"succeeded": 7, "running": 3, "total": 10})
        row = build_rows(None, found, cache)[0]
        stub.assert_no_pending_responses()
        assert (row["succeeded"], row["pending"]) == (7, 0)
        assert [p[1] for p in row["history"]] == [2, 7]  # one point per look, for the chart
        # Finished: kept for good, never looked at again.
        clock.now += 10
        _describe(stub, {"succeeded": 10, "total": 10}, status="SUCCEEDED")
        assert build_rows(None, found, cache)[0]["status"] == "SUCCEEDED"
        clock.now += 1000
        assert build_rows(None, found, cache)[0]["status"] == "SUCCEEDED"
        stub.assert_no_pending_responses()
    assert cache.get(("snapshot", ARN), lambda: pytest.fail("looked again")).looks == 3


def test_a_failed_look_is_kept_for_the_interval_too():
    clock, calls = Clock(), []

    def look():
        calls.append(1)
        raise RuntimeError("ThrottlingException: Rate exceeded")

    cache = SnapshotCache(ttl=5, clock=clock)
    assert "Rate exceeded" in cache.get("run", look).error
    assert cache.get("run", look).error and len(calls) == 1
    clock.now += 5
    cache.get("run", look)
    assert len(calls) == 2


# --- the endpoints -----------------------------------------------------------------------------------


@pytest.fixture
def client(monkeypatch):
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient

    summary = {**SUMMARY, "execution_arn": ARN, "map_run_arn": MAP_RUN_ARN, "start_date": T0.isoformat()}
    rows = [(_ti(), {SUMMARY_XCOM_KEY: summary, PROGRESS_XCOM_KEY: [[1.0, 0, 0, 4, 0, 4], [9.0, 3, 1, 0, 0, 4]]})]
    monkeypatch.setattr(
        ui, "recent_map_runs", lambda session, **filters: rows if filters.get("run_id") in (None, "manual__1") else []
    )
    monkeypatch.setattr(ui, "_readable_dag_ids", lambda user: {"xacct_distributed_map"})
    monkeypatch.setattr(ui, "failures_look", lambda session, ti, arn, cache=None: Entry(value=[]))
    ui.app.dependency_overrides[get_user] = lambda: types.SimpleNamespace(get_name=lambda: "admin")
    for route in ui.app.routes:
        for dep in getattr(route, "dependencies", []):
            ui.app.dependency_overrides[dep.dependency] = lambda: None
    try:
        yield TestClient(ui.app)
    finally:
        ui.app.dependency_overrides.clear()


def test_runs_json_and_the_detail_view(client):
    data = client.get("/runs.json").json()
    assert data["refresh_seconds"] >= 1
    (run,) = data["runs"]
    assert (run["status"], run["succeeded"], run["failed"], run["total"], run["percent"]) == (
        "SUCCEEDED",
        3,
        1,
        4,
        100.0,
    )
    assert run["links"]["map_run"].startswith(
        "https://console.aws.amazon.com/states/home?region=us-east-1#/v2/map-run/"
    )
    detail = client.get("/dags/xacct_distributed_map/runs/manual__1/json").json()
    assert detail["run"]["history"][-1] == [9.0, 3, 1, 0, 0, 4] and detail["chart_svg"].startswith("<svg")
    assert client.get("/dags/xacct_distributed_map/runs/nope/json").status_code == 404
    page = client.get("/", params={"dag_id": 'x"><img src=x>'}).text
    assert '"><img' not in page and "/static/map_runs.js" in page
    assert "function refresh" in client.get("/static/map_runs.js").text  # shipped in the package


def test_a_failed_runs_first_failed_keys_are_looked_up_once(monkeypatch):
    client = boto3.client("stepfunctions", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    monkeypatch.setattr(ui, "_rendered_fields", lambda session, ti: {"aws_conn_id": "xacct_map_pipeline"})
    monkeypatch.setattr(ui, "_hook", lambda fields: types.SimpleNamespace(conn=client))
    child = "arn:aws:states:us-east-1:123456789012:execution:m/map:child-1"
    summary = {**SUMMARY, "status": "FAILED", "error": "States.ExceedToleratedFailureThreshold"}
    found = [(_ti(state="failed"), {SUMMARY_XCOM_KEY: {**summary, "map_run_arn": MAP_RUN_ARN}})]
    cache = SnapshotCache(ttl=1, clock=Clock())
    with Stubber(client) as stub:
        stub.add_response(
            "list_executions",
            {
                "executions": [
                    {
                        "executionArn": child,
                        "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:m",
                        "name": "child-1",
                        "status": "FAILED",
                        "startDate": T0,
                    }
                ]
            },
            {"mapRunArn": MAP_RUN_ARN, "statusFilter": "FAILED", "maxResults": 3},
        )
        stub.add_response(
            "describe_execution",
            {
                "executionArn": child,
                "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:m",
                "status": "FAILED",
                "startDate": T0,
                "input": json.dumps({"bucket": "src", "keys": ["data/bad 1.csv", "data/bad 2.csv"], "bytes": 9}),
                "error": "ObjectsFailed",
                "cause": "2 of 2 objects failed: data/bad 1.csv: ValueError",
            },
            {"executionArn": child},
        )
        rows = [build_rows(None, found, cache)[0] for _ in range(3)]
        stub.assert_no_pending_responses()
    (failed,) = rows[-1]["failed_children"]
    assert failed["keys"] == ["data/bad 1.csv", "data/bad 2.csv"] and failed["error"] == "ObjectsFailed"
    assert rows[-1]["error"] == "States.ExceedToleratedFailureThreshold"
