"""The whole pipeline, measured: the bundled DAG in local mode, phase by phase.

Each size runs in a fresh process: ``xacct-map demo``'s embedded AWS (two emulated accounts, the
local Lambda runtime) and the real DAG through ``dag.test()``, then the phases are read back from
the task instances' start and end times, the manifest's sidecar (when the listing's first request
went out, how long it took, when the manifest was complete) and the execution's own history::

    python -m benchmarks.pipeline                         # 1,000 and 20,000 objects
    python -m benchmarks.pipeline --objects 1000 100000 --poke-interval 1 --markdown

Phases: task start to first request (the build task's imports, connections, AssumeRole, Region),
listing (first request to last page), manifest upload (last page to the sidecar), StartExecution
(the start task), the map run (the execution's start to stop, in Step Functions' own history), the
sensor noticing (the execution's stop to the sensor's look that saw it finished: the last point of
its XCom ``map_run_progress``, taken by the sensor or its trigger; within one poll interval plus a
second) and the sensor task's end (the same plus resuming a deferred task and the verdict).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime

PHASES = (
    ("to_first_request_s", "task start to first request"),
    ("listing_s", "listing"),
    ("manifest_upload_s", "manifest upload"),
    ("start_execution_s", "StartExecution task"),
    ("map_run_s", "map run"),
    ("notice_s", "run finished to sensor noticing"),
    ("sensor_delay_s", "run finished to sensor task end"),
)


def _time(value) -> float:
    """Seconds since the epoch of a datetime or an ISO-8601 text."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.timestamp()


def run_child(objects: int, batch_keys: int) -> dict:
    """One DAG run in local mode (this process); its phases."""
    from xacct_map.local import demo

    if "airflow" not in sys.modules:
        demo._airflow_home()
    from xacct_map.local.emulator import LocalAws

    timings: dict[str, float] = {}
    with LocalAws() as aws:
        pipeline = aws.deploy(objects=objects)
        os.environ.update(aws.airflow_environment(pipeline))
        run = demo._run_dag(demo.resources.dags_dir(), {"max_keys_per_batch": batch_keys}, timings)
        dates = _task_dates(run["run_id"])
        looks = _sensor_looks(run["run_id"])
        tasks = run["tasks"]
        manifest = tasks["build_manifest"]["xcom"] or {}
        s3 = aws.client("s3")
        sidecar = json.loads(
            s3.get_object(Bucket=manifest["bucket"], Key=manifest["key"] + ".meta.json")["Body"].read()
        )
        arn = (tasks["wait_for_map_run"]["xcom"] or {}).get("execution_arn") or tasks["start_map_run"]["xcom"]
        execution = aws.client("stepfunctions").describe_execution(executionArn=arn)
    listing = sidecar["source"]["listing"]
    first_request = _time(listing["started_at"])
    listed = first_request + listing["listing_seconds"]
    build_start, _ = dates["build_manifest"]
    start_start, start_end = dates["start_map_run"]
    _, sensor_end = dates["wait_for_map_run"]
    return {
        "objects": objects,
        "ok": run["state"] == "success" and execution["status"] == "SUCCEEDED",
        "to_first_request_s": first_request - build_start,
        "listing_s": listing["listing_seconds"],
        "manifest_upload_s": _time(sidecar["created_at"]) - listed,
        "start_execution_s": start_end - start_start,
        "map_run_s": _time(execution["stopDate"]) - _time(execution["startDate"]),
        "notice_s": looks[-1][0] - _time(execution["stopDate"]),
        "sensor_delay_s": sensor_end - _time(execution["stopDate"]),
        "dag_run_s": timings.get("dag_run_s"),
        "requests": listing.get("requests"),
        "engine": listing.get("engine"),
        "task_seconds": {t: v["seconds"] for t, v in tasks.items()},
    }


def _task_dates(run_id: str) -> dict[str, tuple[float, float]]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        tis = session.scalars(select(TaskInstance).where(TaskInstance.run_id == run_id)).all()
        return {ti.task_id: (_time(ti.start_date), _time(ti.end_date)) for ti in tis if ti.start_date and ti.end_date}


def _sensor_looks(run_id: str) -> list:
    """The sensor's looks (XCom ``map_run_progress``: [time, succeeded, failed, ...] per look)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.scalars(
            select(XComModel).where(
                XComModel.run_id == run_id,
                XComModel.task_id == "wait_for_map_run",
                XComModel.key == "map_run_progress",
            )
        ).first()
        return XComModel.deserialize_value(row) if row is not None else []


def _spawn(objects: int, args) -> dict:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
        XACCT_MAP_POKE_INTERVAL=str(args.poke_interval),
    )
    cmd = [sys.executable, "-m", "benchmarks.pipeline", "--child", str(objects), "--batch-keys", str(args.batch_keys)]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root)
    if done.returncode != 0:
        raise SystemExit(f"pipeline run of {objects} objects failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - started
    return result


def report(rows: list[dict], args) -> str:
    head = "| objects | " + " | ".join(label for _, label in PHASES) + " | DAG run | whole process | requests | ok |"
    lines = [
        f"`python -m benchmarks.pipeline {' '.join(args.argv)}`",
        "",
        f"Sensor poll interval {args.poke_interval:g} s (it should notice within {args.poke_interval + 1:g} s). "
        "Seconds.",
        "",
        head,
        "|" + "---|" * (len(PHASES) + 5),
    ]
    for r in rows:
        phases = " | ".join(f"{r[key]:.2f}" for key, _ in PHASES)
        lines.append(
            f"| {r['objects']:,} | {phases} | {r['dag_run_s']:.1f} | {r['process_s']:.1f} | {r['requests']} "
            f"| {'yes' if r['ok'] else 'NO'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict] | None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, nargs="+", default=[1000, 20_000], help="objects per run")
    parser.add_argument("--batch-keys", type=int, default=100, help="max keys per manifest batch")
    parser.add_argument("--poke-interval", type=float, default=1.0, help="the sensor's poll interval, seconds")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.child is not None:
        print(json.dumps(run_child(args.child, args.batch_keys)))
        return None
    rows = []
    for n in args.objects:
        print(f"pipeline: {n:,} objects ...", file=sys.stderr, flush=True)
        rows.append(_spawn(n, args))
        print(f"  {rows[-1]['process_s']:.1f} s", file=sys.stderr, flush=True)
    text = report(rows, args)
    print(text if args.markdown else text)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return rows


if __name__ == "__main__":
    main()
