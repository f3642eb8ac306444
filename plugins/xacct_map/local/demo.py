"""``xacct-map demo``: deploy both accounts on the embedded emulator and run the real DAG once.

The DAG runs in-process with ``dag.test()`` against a throwaway AIRFLOW_HOME (SQLite), through
Airflow connections and variables that point at the emulator. Exit code 0 only when every listed
object was processed by the deployed handler.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

from xacct_map.cli import options
from xacct_map.setup import resources

DAG_ID = "xacct_distributed_map"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the whole pipeline end to end on an embedded local AWS (two emulated accounts)"
    )
    from xacct_map.local.workload import add_workload_arguments

    add_workload_arguments(parser)
    parser.add_argument(
        "--batch-keys", type=options.integer(1, 10_000), default=100, help="max keys per manifest batch (default 100)"
    )
    parser.add_argument(
        "--json", action="store_true", help="also print the summary as one JSON object on the last line"
    )
    parser.add_argument(
        "--dags-folder",
        type=options.existing_folder,
        default=None,
        help="folder holding the DAG file (default: the DAG shipped with xacct-map)",
    )
    parser.set_defaults(func=_command)


def _command(args) -> int:
    from xacct_map.local.workload import workload_kwargs
    from xacct_map.setup.packaging import PackagingError

    try:
        options = workload_kwargs(args)  # ValueError: a bad --processor-env
    except ValueError as err:
        print(f"xacct-map demo: {err}", file=sys.stderr)
        return 2
    try:
        summary = run_demo(batch_keys=args.batch_keys, dags_folder=args.dags_folder, **options)
    except (PackagingError, FileNotFoundError) as err:  # the processor or --source-dir, named
        print(f"xacct-map demo: {err}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    return 0 if summary["ok"] else 1


def _airflow_home() -> str:
    """A throwaway AIRFLOW_HOME, set before Airflow is imported (it reads its config once)."""
    from cryptography.fernet import Fernet

    # Noise from Airflow's own imports (fastapi's test client), not actionable for a demo user.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")

    home = tempfile.mkdtemp(prefix="xacct-map-airflow-")
    os.environ.update(
        # Trigger arguments are stored encrypted: give the throwaway home its own key.
        AIRFLOW__CORE__FERNET_KEY=Fernet.generate_key().decode(),
        AIRFLOW_HOME=home,
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__CORE__DAGS_FOLDER=str(resources.dags_dir()),
        AIRFLOW__LOGGING__LOGGING_LEVEL=os.environ.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"),
        XACCT_MAP_POKE_INTERVAL=os.environ.get("XACCT_MAP_POKE_INTERVAL", "1"),
    )
    return home


def run_demo(*, objects: int = 1000, batch_keys: int = 100, dags_folder: Path | None = None, **deploy_options) -> dict:
    """Deploy, run the DAG once, and check every object was processed. Returns the summary dict.

    ``deploy_options`` go to :meth:`~xacct_map.local.emulator.LocalAws.deploy` (``object_size``,
    ``source_dir``, ``processor``, ``child_execution_type``).
    """
    if "airflow" not in sys.modules:
        _airflow_home()
    from xacct_map.local.emulator import LocalAws

    timings: dict[str, float] = {}
    started = time.monotonic()
    with LocalAws() as aws:
        pipeline = aws.deploy(objects=objects, **deploy_options)
        timings["deploy_s"] = time.monotonic() - started
        os.environ.update(aws.airflow_environment(pipeline))
        run = _run_dag(dags_folder or resources.dags_dir(), {"max_keys_per_batch": batch_keys}, timings)
        timings["total_s"] = time.monotonic() - started
        return _summarise(aws, pipeline, run, timings, builtin=(deploy_options.get("processor") or _NONE).spec is None)


def _run_dag(dags_folder: Path, conf: dict, timings: dict) -> dict:
    from airflow.utils import db

    from xacct_map.version_compat import DagBag

    t = time.monotonic()
    db.resetdb(skip_init=False)
    timings["airflow_db_s"] = time.monotonic() - t
    bag = DagBag(dag_folder=str(dags_folder))
    if DAG_ID not in bag.dags:
        raise RuntimeError(f"DAG {DAG_ID} not found in {dags_folder}: {bag.import_errors}")
    _activate_assets(bag)
    t = time.monotonic()
    dag_run = bag.dags[DAG_ID].test(run_conf=conf)
    timings["dag_run_s"] = time.monotonic() - t
    return {"state": str(dag_run.state), "run_id": dag_run.run_id, "tasks": _task_results(dag_run)}


def _activate_assets(bag) -> None:
    """Airflow 3.0's ``dag.test()`` does not write the DAGs to the database, so their Assets stay
    inactive and a task with an Asset outlet fails before it starts; 3.1's does. Write them first."""
    from xacct_map.version_compat import AIRFLOW_V_3_1_PLUS

    if AIRFLOW_V_3_1_PLUS:
        return
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    DagBundlesManager().sync_bundles_to_db()
    bag.sync_to_db("dags-folder", None)


def _task_results(dag_run) -> dict:
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    results = {}
    with create_session() as session:
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id)
        ).all()
        for ti in tis:
            start, end = ti.start_date, ti.end_date
            row = session.scalars(
                select(XComModel).where(
                    XComModel.dag_id == ti.dag_id,
                    XComModel.run_id == ti.run_id,
                    XComModel.task_id == ti.task_id,
                    XComModel.key == "return_value",
                )
            ).first()
            results[ti.task_id] = {
                "state": str(ti.state),
                "seconds": round((end - start).total_seconds(), 2) if start and end else None,
                "xcom": XComModel.deserialize_value(row) if row is not None else None,
            }
    return results


class _NONE:
    spec = None


def _failures(invocations, shown: int = 10) -> list[dict]:
    """The failed invocations' errors (type and message: the keys and exceptions), the first ``shown``."""
    failed = [i.result for i in invocations if not i.ok]
    return [{"type": r.get("errorType"), "message": r.get("errorMessage")} for r in failed[:shown]]


def _summarise(aws, pipeline, run: dict, timings: dict, builtin: bool = True) -> dict:
    tasks = run["tasks"]
    manifest = (tasks.get("build_manifest") or {}).get("xcom") or {}
    execution = (tasks.get("wait_for_map_run") or {}).get("xcom") or {}
    preflight = (tasks.get("preflight") or {}).get("xcom") or {}
    # The runtime saw every invocation of the deployed handler: count what it really processed.
    processed = [i for i in aws.runtime.invocations if i.ok]
    objects_processed = sum(i.result["objects"] for i in processed)
    bytes_processed = sum(i.result["bytes"] for i in processed)
    keys_processed = [k for i in processed for k in i.event.get("keys", [])]
    objects_listed = manifest.get("object_count", 0)
    ok = (
        run["state"] == "success"
        and execution.get("status") == "SUCCEEDED"
        and objects_listed == pipeline.objects
        and objects_processed == objects_listed
        and len(set(keys_processed)) == len(keys_processed) == objects_listed
        # Your function reports the bytes it learnt (read, or from the manifest); the built-in reads all.
        and (not builtin or bytes_processed == pipeline.bytes == manifest.get("total_bytes"))
    )
    return {
        "ok": ok,
        "dag_run_state": run["state"],
        "run_id": run["run_id"],
        "objects_seeded": pipeline.objects,
        "objects_listed": objects_listed,
        "preflight": {c["name"]: c["status"] for c in preflight.get("checks", [])},
        "manifest": {k: manifest.get(k) for k in ("bucket", "key", "batch_count", "total_bytes", "sha256")},
        "execution_arn": execution.get("execution_arn"),
        "execution_status": execution.get("status"),
        "item_counts": execution.get("item_counts", {}),
        "objects_processed": objects_processed,
        "bytes_processed": bytes_processed,
        "lambda_invocations": len(aws.runtime.invocations),
        "failed_invocations": sum(not i.ok for i in aws.runtime.invocations),
        "failures": _failures(aws.runtime.invocations),
        "results_sample": [r for i in processed[:1] for r in i.result.get("results", [])[:3]],
        "child_execution_type": pipeline.child_execution_type,
        "task_seconds": {t: v["seconds"] for t, v in tasks.items()},
        "task_states": {t: v["state"] for t, v in tasks.items()},
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "pipeline": pipeline.as_dict(),
    }


def format_summary(s: dict) -> str:
    m = s["manifest"]
    lines = [
        f"xacct-map demo: {'OK' if s['ok'] else 'FAILED'} (DAG run {s['run_id']}: {s['dag_run_state']})",
        f"  source       s3://{s['pipeline']['source_bucket']}/{s['pipeline']['source_prefix']} "
        f"in account {s['pipeline']['source_account']} ({s['objects_seeded']} objects seeded)",
        "  preflight    " + (", ".join(f"{k} {v}" for k, v in s["preflight"].items()) or "not run"),
        f"  listed       {s['objects_listed']} objects into {m['batch_count']} batches, {m['total_bytes']} bytes",
        f"  manifest     s3://{m['bucket']}/{m['key']} (sha256 {str(m['sha256'])[:16]}...)",
        f"  execution    {s['execution_status']} {s['execution_arn']}",
        f"  map run      items {s['item_counts']}",
        f"  processed    {s['objects_processed']} objects, {s['bytes_processed']} bytes "
        f"in {s['lambda_invocations']} Lambda invocations",
        "  time         "
        + ", ".join(f"{k} {v}s" for k, v in s["task_seconds"].items())
        + " | "
        + ", ".join(f"{k} {v}" for k, v in s["timings"].items()),
    ]
    if s["results_sample"]:
        lines.insert(-1, "  results      " + ", ".join(json.dumps(r, ensure_ascii=False) for r in s["results_sample"]))
    if s["failed_invocations"]:
        lines.append(f"  FAILED       {s['failed_invocations']} Lambda invocation(s) raised; the first:")
        lines += [f"    {f['type']}: {f['message']}" for f in s["failures"]]
    return "\n".join(lines)
