"""A "Map runs" page in the Airflow UI: recent Distributed Map runs with their item counts.

An Airflow 3 plugin (:class:`XacctMapPlugin`, registered through the ``airflow.plugins`` entry
point) that mounts a small FastAPI app in the API server at ``/xacct-map`` and adds it to the UI:
under *Browse* for every DAG, and as a tab of the DAGs tagged ``xacct-map``. Each row is one
:class:`~xacct_map.sensors.DistributedMapSensor` task instance: the DAG run, the task's state, and
the final snapshot the sensor pushed (``map_run_summary``: execution status, items succeeded,
failed, total, duration, the Map Run's console link). Runs still waiting show their state; their
live progress is in the sensor's log.

The page never calls Step Functions (no DescribeMapRun per page view: that API's budget, 1 request
per second per account and Region, belongs to the sensors); it reads the XComs the sensors pushed.

Only DAGs the signed-in user may read are listed (the UI's own session cookie authenticates the
page, the auth manager decides).
"""

from __future__ import annotations

import html

from airflow.api_fastapi.core_api.security import GetUserDep
from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse

SENSOR = "DistributedMapSensor"
URL_PREFIX = "/xacct-map"


def recent_map_runs(session, *, dag_ids: set[str] | None, dag_id: str | None = None, limit: int = 50) -> list[dict]:
    """The newest ``limit`` sensor task instances (of ``dag_ids``; None: all) with their summaries."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from sqlalchemy import and_, select

    from xacct_map.sensors import SUMMARY_XCOM_KEY

    # One query: each sensor task instance with its summary XCom, if it has pushed one yet.
    summary = and_(
        XComModel.dag_id == TaskInstance.dag_id,
        XComModel.run_id == TaskInstance.run_id,
        XComModel.task_id == TaskInstance.task_id,
        XComModel.map_index == TaskInstance.map_index,
        XComModel.key == SUMMARY_XCOM_KEY,
    )
    query = select(TaskInstance, XComModel).outerjoin(XComModel, summary).where(TaskInstance.operator == SENSOR)
    if dag_ids is not None:
        query = query.where(TaskInstance.dag_id.in_(dag_ids))
    if dag_id:
        query = query.where(TaskInstance.dag_id == dag_id)
    query = query.order_by(TaskInstance.id.desc()).limit(limit)  # ids are UUIDv7: newest first
    rows = []
    for ti, xcom in session.execute(query):
        value = XComModel.deserialize_value(xcom) if xcom is not None else None
        rows.append(_row(ti, value if isinstance(value, dict) else None))
    return rows


def _row(ti, summary: dict | None) -> dict:
    counts = (summary or {}).get("item_counts") or {}
    total = int(counts.get("total") or 0)
    succeeded = int(counts.get("succeeded") or 0)
    return {
        "dag_id": ti.dag_id,
        "run_id": ti.run_id,
        "task_id": ti.task_id,
        "task_state": str(ti.state.value if hasattr(ti.state, "value") else ti.state or "none"),
        "status": (summary or {}).get("status"),
        "succeeded": succeeded if summary else None,
        "failed": (summary or {}).get("failed_items"),
        "total": total if summary else None,
        "percent_done": round(100.0 * succeeded / total, 1) if total else None,
        "duration_seconds": (summary or {}).get("duration_seconds"),
        "map_run_arn": (summary or {}).get("map_run_arn"),
        "execution_arn": (summary or {}).get("execution_arn"),
        "error": (summary or {}).get("error"),
        # Pinned runs (on_changed): objects changed or deleted since the listing, as the sensor counted them.
        "changed": (summary or {}).get("changed"),
        "gone": (summary or {}).get("gone"),
    }


def _readable_dag_ids(user) -> set[str]:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().get_authorized_dag_ids(user=user, method="GET")


app = FastAPI(title="xacct-map: Map runs")


def _rows(user, dag_id: str | None, limit: int) -> list[dict]:
    from airflow.utils.session import create_session

    with create_session() as session:
        return recent_map_runs(session, dag_ids=_readable_dag_ids(user), dag_id=dag_id, limit=limit)


@app.get("/runs.json")
def runs_json(user: GetUserDep, dag_id: str | None = None, limit: int = Query(50, ge=1, le=500)) -> list[dict]:
    """The rows as JSON (newest first)."""
    return _rows(user, dag_id, limit)


@app.get("/", response_class=HTMLResponse)
def runs_page(user: GetUserDep, dag_id: str | None = None, limit: int = Query(50, ge=1, le=500)) -> str:
    """The rows as a page that refreshes itself every 15 s."""
    return render_page(_rows(user, dag_id, limit), dag_id)


def render_page(rows: list[dict], dag_id: str | None) -> str:
    e = html.escape

    def cell(row: dict) -> str:
        done = "" if row["total"] is None else f"{row['succeeded']} / {row['total']}"
        if row["percent_done"] is not None:
            done += f" ({row['percent_done']}%)"
        failed = "" if row["failed"] is None else str(row["failed"])
        seconds = row["duration_seconds"]
        status = row["status"] or "waiting"
        if row.get("changed") is not None:
            status += f" ({row['changed']} changed, {row.get('gone') or 0} gone since listing)"
        return (
            f"<tr class='{e(row['task_state'])}'><td>{e(row['dag_id'])}</td><td>{e(row['run_id'])}</td>"
            f"<td>{e(row['task_state'])}</td><td>{e(status)}</td><td class='n'>{e(done)}</td>"
            f"<td class='n'>{e(failed)}</td><td class='n'>{'' if seconds is None else f'{seconds:.0f} s'}</td>"
            f"<td>{e(row['error'] or '')}</td></tr>"
        )

    title = f"Map runs of {dag_id}" if dag_id else "Recent Distributed Map runs"
    body = "".join(cell(r) for r in rows) or "<tr><td colspan='8'>No Distributed Map runs yet.</td></tr>"
    return f"""<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="15">
<title>{e(title)}</title><style>
body{{font-family:system-ui,sans-serif;margin:1rem;color:#1a202c}} table{{border-collapse:collapse;width:100%}}
th,td{{padding:.35rem .6rem;border-bottom:1px solid #e2e8f0;text-align:left;font-size:.9rem}}
td.n{{text-align:right;font-variant-numeric:tabular-nums}} tr.failed td{{background:#fff5f5}}
tr.success td:nth-child(3){{color:#276749}} tr.failed td:nth-child(3){{color:#c53030}}
</style></head><body><h2>{e(title)}</h2><table id="map-runs"><thead><tr><th>DAG</th><th>Run</th><th>Task</th>
<th>Execution</th><th>Items succeeded</th><th>Items failed</th><th>Duration</th><th>Error</th></tr></thead>
<tbody>{body}</tbody></table></body></html>"""


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
