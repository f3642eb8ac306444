"""The "Map runs" page: registered as an Airflow plugin, rows built from the sensor's summaries, escaped.

The page served by a real Airflow, with auth and the run's real counts, is checked by
``tests/system/test_ui_browser.py``.
"""

from __future__ import annotations

import types
from importlib.metadata import entry_points

from xacct_map.ui import XacctMapPlugin, _row, render_page


def test_registered_through_the_airflow_plugins_entry_point():
    (entry,) = [e for e in entry_points(group="airflow.plugins") if e.name == "xacct_map"]
    assert entry.load() is XacctMapPlugin
    (app,) = XacctMapPlugin.fastapi_apps
    assert app["url_prefix"] == "/xacct-map"
    routes = {v["url_route"]: v for v in XacctMapPlugin.external_views}
    assert routes["xacct-map-runs"]["destination"] == "nav"
    assert routes["xacct-map-dag-runs"]["href"] == "/xacct-map/?dag_id={DAG_ID}"
    assert {r.path for r in app["app"].routes} >= {"/", "/runs.json"}


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


def test_rows_carry_the_counts_or_say_the_run_is_waiting():
    done = _row(_ti(), SUMMARY)
    assert (done["succeeded"], done["failed"], done["total"], done["percent_done"]) == (3, 1, 4, 75.0)
    waiting = _row(_ti(state="deferred"), None)
    assert waiting["task_state"] == "deferred" and waiting["total"] is None and waiting["status"] is None
    page = render_page([done, waiting], None)
    assert "3 / 4 (75.0%)" in page and "12 s" in page and ">waiting<" in page


def test_page_escapes_what_it_shows():
    row = _row(_ti(state="failed", run_id="<script>alert(1)</script>"), {**SUMMARY, "error": "<b>States.Runtime</b>"})
    page = render_page([row], 'x"><img src=x>')
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>States" not in page and "&lt;b&gt;States.Runtime" in page
    assert '"><img' not in page
