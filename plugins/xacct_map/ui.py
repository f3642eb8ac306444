"""A live "Map runs" page in the Airflow UI: each recent Distributed Map run's progress, errors and links.

An Airflow 3 plugin (:class:`XacctMapPlugin`, registered through the ``airflow.plugins`` entry
point) that mounts a small FastAPI app in the API server at ``/xacct-map`` and adds it to the UI:
under *Browse* for every DAG, and as a tab of the DAGs tagged ``xacct-map``. Each row is one
:class:`~xacct_map.sensors.DistributedMapSensor` task instance: a progress bar (succeeded, failed,
running, pending of all items), items/s, ETA, duration, the error of a failed run with its first
failed child executions and their keys, and console links to the execution, the Map Run and the
manifest (the extra links' own URL builders). A detail view per run draws items done over time.

Where the numbers come from:

* a finished run: the sensor's final snapshot (XCom ``map_run_summary``) and the counts it recorded on
  every look (``map_run_progress``: the trigger's polls come with its event);
* a run in flight: one look (DescribeExecution, ListMapRuns, DescribeMapRun) through the sensor's own
  connection (its rendered ``aws_conn_id``, ``region_name``, ...), taken by the API server at most once
  per run per refresh interval (:class:`~xacct_map.core.snapshot_cache.SnapshotCache`), however many
  browsers poll the page. The trigger cannot share its polls while it waits (a trigger fires once and
  cannot write XCom), so this is the only live source in deferrable mode.

The browser polls the JSON every ``[xacct_map] map_runs_refresh_seconds`` (default 10) without reloading.
Endpoints are authenticated by Airflow (the UI's session cookie or an API token); the auth manager
decides which DAGs a user may read (the list) and whether it may read one DAG's runs (the detail).
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from airflow.plugins_manager import AirflowPlugin
from airflow.providers.amazon.aws.links.base_aws import BaseAwsLink
from airflow.providers.amazon.aws.links.step_function import StateMachineExecutionsDetailsLink
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from xacct_map.core.map_run import RUNNING, TERMINAL_FAILURES, MapRunSnapshot, failed_children
from xacct_map.core.progress import add_point, chart_svg, point, progress
from xacct_map.core.snapshot_cache import Entry, SnapshotCache
from xacct_map.links import ManifestObjectLink, MapRunLink
from xacct_map.version_compat import conf

SENSOR = "DistributedMapSensor"
#: The build task's return value (the manifest's description), as the page's rows carry it.
MANIFEST_XCOM_KEY = "manifest"
URL_PREFIX = "/xacct-map"
ASSETS = Path(__file__).with_name("ui_assets")
#: Task states of a sensor still waiting for its execution: the page looks at AWS for these.
IN_FLIGHT = frozenset({"running", "deferred", "up_for_reschedule", "restarting"})
#: The console links (the sensor persists the first two, the build task the manifest's).
LINKS = {"execution": StateMachineExecutionsDetailsLink, "map_run": MapRunLink, "manifest": ManifestObjectLink}


def refresh_seconds() -> float:
    """How often the page polls, and how long one AWS look at a run is reused (at least 1 s)."""
    return max(1.0, conf.getfloat("xacct_map", "map_runs_refresh_seconds", fallback=10.0))


CACHE = SnapshotCache(ttl=refresh_seconds())


# --- what a row says: pure functions over the task instance, its XComs and the last look -------------


def _arn_link_kwargs(arn: str | None) -> dict:
    """The link kwargs a Step Functions ARN implies: its Region and its partition's console domain."""
    parts = (arn or "").split(":")
    domain = BaseAwsLink.get_aws_domain(parts[1]) if len(parts) > 5 else None
    return {"region_name": parts[3], "aws_domain": domain} if domain else {}


def console_links(xcoms: dict, snap: MapRunSnapshot | None) -> dict:
    """The extra links' URLs: from the kwargs the tasks persisted, else from the snapshot's ARNs."""
    fallback = {
        "execution": {**_arn_link_kwargs(snap.execution_arn), "execution_arn": snap.execution_arn} if snap else {},
        "map_run": {**_arn_link_kwargs(snap.map_run_arn), "map_run_arn": snap.map_run_arn} if snap else {},
        "manifest": {},
    }
    out = {}
    for name, link in LINKS.items():
        kwargs = xcoms.get(link.key) or fallback[name]
        out[name] = (link().format_link(**kwargs) if kwargs.get("aws_domain") else "") or None
    return out


def _snapshot(xcoms: dict, live: Entry | None) -> tuple[MapRunSnapshot | None, str | None]:
    from xacct_map.sensors import SUMMARY_XCOM_KEY

    summary = xcoms.get(SUMMARY_XCOM_KEY)
    if isinstance(summary, dict):
        return MapRunSnapshot.from_dict(summary), "final"
    if live is not None and isinstance(live.value, MapRunSnapshot):
        return live.value, "live"
    return None, None


def run_row(ti, xcoms: dict, *, live: Entry | None = None, failures: Entry | None = None, now=None) -> dict:
    """One run as the page's JSON shows it.

    :param ti: the sensor's task instance (``dag_id``, ``run_id``, ``task_id``, ``state``).
    :param xcoms: its XComs and the DAG run's link XComs, by key.
    :param live: the cache's last look at a run in flight.
    :param failures: the cache's look at a failed run's first failed child executions.
    """
    from xacct_map.sensors import PROGRESS_XCOM_KEY, SUMMARY_XCOM_KEY

    now = now or datetime.now(timezone.utc)
    snap, source = _snapshot(xcoms, live)
    state = ti.state.value if hasattr(ti.state, "value") else ti.state
    persisted = xcoms.get(StateMachineExecutionsDetailsLink.key) or {}  # the sensor's first act
    row: dict[str, Any] = {
        "dag_id": ti.dag_id,
        "run_id": ti.run_id,
        "task_id": ti.task_id,
        "task_state": str(state or "none"),
        "source": source,
        "status": snap.status if snap else None,
        "map_run_status": snap.map_run_status if snap else None,
        "execution_arn": snap.execution_arn if snap else persisted.get("execution_arn"),
        "map_run_arn": snap.map_run_arn if snap else None,
        "map_run_start_date": snap.map_run_start_date if snap else None,
        "error": snap.error if snap else None,
        "cause": (snap.cause or "")[:1000] if snap and snap.cause else None,
        "links": console_links(xcoms, snap),
        "live_error": live.error if live is not None else None,
        "failed_children": (failures.value or []) if failures is not None else [],
        **(progress(snap, now, _manifest_items(xcoms)) if snap else {}),
    }
    row["history"] = xcoms.get(PROGRESS_XCOM_KEY) or (live.history if live is not None else [])
    summary = xcoms.get(SUMMARY_XCOM_KEY)
    if isinstance(summary, dict) and "changed" in summary:  # pinned items (on_changed): the sensor's counts
        row["changed"], row["gone"] = summary.get("changed"), summary.get("gone")
    return row


def _manifest_items(xcoms: dict) -> int | None:
    """The manifest's item count (the build task's XCom), the run's total before the Map Runs know it."""
    manifest = xcoms.get(MANIFEST_XCOM_KEY)
    count = manifest.get("item_count") if isinstance(manifest, dict) else None
    return count if isinstance(count, int) else None


def needs_failures(snap_row: dict) -> bool:
    """A finished run whose failed children are worth one look: it failed, or items failed."""
    return bool(snap_row.get("map_run_arn")) and (
        snap_row.get("status") in TERMINAL_FAILURES or bool(snap_row.get("failed"))
    )


# --- the database and AWS ----------------------------------------------------------------------------


def recent_map_runs(
    session, *, dag_ids: set[str] | None, dag_id: str | None = None, run_id: str | None = None, limit: int = 50
) -> list[tuple[Any, dict]]:
    """The newest ``limit`` sensor task instances (of ``dag_ids``; None: all) with their XComs by key
    (the summary, the recorded progress, the console links' kwargs; the manifest's from the build task)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    from xacct_map.sensors import PROGRESS_XCOM_KEY, SUMMARY_XCOM_KEY

    query = select(TaskInstance).where(TaskInstance.operator == SENSOR)
    if dag_ids is not None:
        query = query.where(TaskInstance.dag_id.in_(dag_ids))
    for column, value in ((TaskInstance.dag_id, dag_id), (TaskInstance.run_id, run_id)):
        if value:
            query = query.where(column == value)
    tis = list(session.scalars(query.order_by(TaskInstance.id.desc()).limit(limit)))  # UUIDv7: newest first
    if not tis:
        return []
    keys = {SUMMARY_XCOM_KEY, PROGRESS_XCOM_KEY, "return_value", *(link.key for link in LINKS.values())}
    found = select(XComModel).where(
        XComModel.dag_id.in_({ti.dag_id for ti in tis}),
        XComModel.run_id.in_({ti.run_id for ti in tis}),
        XComModel.key.in_(keys),
    )
    by_run: dict[tuple, dict] = {}
    for x in session.scalars(found):
        value = XComModel.deserialize_value(x)
        by_run.setdefault((x.dag_id, x.run_id), {}).setdefault((x.task_id, x.map_index), {})[x.key] = value
    out = []
    for ti in tis:
        tasks = by_run.get((ti.dag_id, ti.run_id), {})
        mine = dict(tasks.get((ti.task_id, ti.map_index), {}))
        mine.pop("return_value", None)
        for task in tasks.values():  # the build task: the manifest's link and description
            if ManifestObjectLink.key in task:
                mine[ManifestObjectLink.key] = task[ManifestObjectLink.key]
                mine[MANIFEST_XCOM_KEY] = task.get("return_value")
        out.append((ti, mine))
    return out


def _rendered_fields(session, ti) -> dict:
    """The sensor's rendered template fields (its connection, Region, ...), ``{}`` when not stored."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as RTIF
    from sqlalchemy import select

    found = session.scalar(
        select(RTIF.rendered_fields).where(
            RTIF.dag_id == ti.dag_id,
            RTIF.task_id == ti.task_id,
            RTIF.run_id == ti.run_id,
            RTIF.map_index == ti.map_index,
        )
    )
    return found if isinstance(found, dict) else {}


def _hook(fields: dict):
    from xacct_map.hooks import DistributedMapHook

    if not fields.get("aws_conn_id"):
        raise ValueError("the sensor's rendered fields name no aws_conn_id: no connection to look with")
    return DistributedMapHook(
        aws_conn_id=fields["aws_conn_id"],
        region_name=fields.get("region_name"),
        verify=fields.get("verify"),
        config=fields.get("botocore_config") if isinstance(fields.get("botocore_config"), dict) else None,
    )


def _record(history: list, snap: MapRunSnapshot) -> list:
    return add_point(history, point(snap)) if snap.item_counts else history


def live_look(session, ti, execution_arn: str, cache: SnapshotCache = CACHE) -> Entry:
    """The last look at a run in flight (at most one per run per refresh interval, see :data:`CACHE`)."""
    return cache.get(
        ("snapshot", execution_arn),
        lambda: _hook(_rendered_fields(session, ti)).snapshot(execution_arn),
        final=lambda snap: snap.status != RUNNING,
        record=_record,
    )


def failures_look(session, ti, map_run_arn: str, cache: SnapshotCache = CACHE) -> Entry:
    """A finished run's first failed child executions: looked up once per run (they cannot change)."""
    return cache.get(
        ("failures", map_run_arn),
        lambda: failed_children(_hook(_rendered_fields(session, ti)).conn, map_run_arn),
        final=lambda value: True,
    )


def build_rows(session, found: list[tuple[Any, dict]], cache: SnapshotCache = CACHE) -> list[dict]:
    """The JSON rows: finished runs from their XComs, runs in flight from a (cached) look at AWS."""
    rows = []
    for ti, xcoms in found:
        row = run_row(ti, xcoms)
        state = row["task_state"]
        if row["source"] is None and state in IN_FLIGHT and row["execution_arn"]:
            row = run_row(ti, xcoms, live=live_look(session, ti, row["execution_arn"], cache))
        if row["source"] == "final" and needs_failures(row):
            row = run_row(ti, xcoms, failures=failures_look(session, ti, row["map_run_arn"], cache))
        rows.append(row)
    return rows


# --- the app -----------------------------------------------------------------------------------------


def _readable_dag_ids(user) -> set[str]:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().get_authorized_dag_ids(user=user, method="GET")


app = FastAPI(title="xacct-map: Map runs")
app.mount("/static", StaticFiles(directory=ASSETS), name="static")


def _rows(dag_ids: set[str] | None, **filters) -> list[dict]:
    from airflow.utils.session import create_session

    with create_session() as session:
        return build_rows(session, recent_map_runs(session, dag_ids=dag_ids, **filters))


@app.get("/runs.json")
def runs_json(user: GetUserDep, dag_id: str | None = None, limit: int = Query(50, ge=1, le=500)) -> dict:
    """The recent runs (newest first) and how often to ask again."""
    return {"refresh_seconds": refresh_seconds(), "runs": _rows(_readable_dag_ids(user), dag_id=dag_id, limit=limit)}


@app.get(
    "/dags/{dag_id}/runs/{run_id}/json",
    dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.RUN))],
)
def run_json(dag_id: str, run_id: str) -> dict:
    """One run with its recorded progress and the chart of it."""
    rows = _rows(None, dag_id=dag_id, run_id=run_id, limit=1)
    if not rows:
        raise HTTPException(404, f"No Distributed Map sensor in run {run_id!r} of DAG {dag_id!r}")
    run = rows[0]
    chart = chart_svg(run["history"], start=run["map_run_start_date"])
    return {"refresh_seconds": refresh_seconds(), "run": run, "chart_svg": chart}


@app.get("/", response_class=HTMLResponse)
def runs_page(request: Request, user: GetUserDep, dag_id: str | None = None) -> str:
    """The runs, drawn by ``ui_assets/map_runs.js`` from :func:`runs_json` (polled, no reload)."""
    title = f"Map runs of {dag_id}" if dag_id else "Recent Distributed Map runs"
    from urllib.parse import urlencode

    query = f"?{urlencode({'dag_id': dag_id})}" if dag_id else ""
    return render_page(request.scope.get("root_path", ""), "list", title, f"runs.json{query}")


@app.get(
    "/dags/{dag_id}/runs/{run_id}",
    response_class=HTMLResponse,
    dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.RUN))],
)
def run_page(request: Request, dag_id: str, run_id: str) -> str:
    """One run: its bar, its error and failed keys, its links, and items done over time."""
    from urllib.parse import quote

    path = f"dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/json"
    return render_page(request.scope.get("root_path", ""), "detail", f"Map run {run_id} of {dag_id}", path)


def render_page(root: str, view: str, title: str, json_path: str) -> str:
    """The page's shell: the script draws it from the JSON (no inline script, no CDN)."""
    e = html.escape
    data = json.dumps({"view": view, "json": f"{root}/{json_path}", "base": root})
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{e(title)}</title>
<link rel="stylesheet" href="{e(root)}/static/map_runs.css"></head>
<body data-config="{e(data)}"><h2>{e(title)}</h2><p id="status" class="muted">Loading...</p>
<main id="content"></main><script src="{e(root)}/static/map_runs.js"></script></body></html>"""


class XacctMapPlugin(AirflowPlugin):
    """Registers the Map runs page (FastAPI app + external views) with Airflow 3's UI."""

    name = "xacct_map"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "xacct-map Map runs"}]
    external_views = [
        {
            "name": "Map runs",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "category": "browse",
            "url_route": "xacct-map-runs",
        },
        {
            "name": "Map runs",
            "href": f"{URL_PREFIX}/?dag_id={{DAG_ID}}",
            "destination": "dag",
            "url_route": "xacct-map-dag-runs",
            "applies_to": {"dag.tags.name": ["xacct-map"]},
        },
    ]
