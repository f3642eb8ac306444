"""One task of a DAG run in a process of its own, for the kill cases of ``test_faults.py``.

    python task.py build|start RUN_ID DAG_ID MANIFEST_JSON

Signals are handled as Airflow 3's task runner does: SIGTERM calls the operator's ``on_kill()``
(then the supervisor sends SIGKILL if the task is still there); SIGKILL ends it on the spot.
The connections and the deployment come from the environment the test gives it.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import sys


def main(task: str, run_id: str, dag_id: str, manifest: str) -> int:
    from airflow.sdk import DAG

    from xacct_map.operators import BuildKeyManifestOperator, StartDistributedMapOperator

    pipeline = json.loads(os.environ["XACCT_MAP_FAULT_PIPELINE"])
    if task == "build":
        operator = BuildKeyManifestOperator(
            task_id="build_manifest",
            aws_conn_id="xacct_map_pipeline",
            source_aws_conn_id="xacct_map_source",
            source_bucket=pipeline["source_bucket"],
            source_prefix=pipeline["source_prefix"],
            manifest_bucket=pipeline["inventory_bucket"],
            max_keys_per_batch=5,
        )
    else:
        operator = StartDistributedMapOperator(
            task_id="start_map_run",
            aws_conn_id="xacct_map_pipeline",
            state_machine_arn=pipeline["state_machine_arn"],
            manifest=json.loads(manifest),
            source_account_id=pipeline["source_account"],
        )
    parent = os.getpid()

    def on_term(signum, frame):  # airflow.sdk.execution_time.task_runner's _on_term
        if os.getpid() == parent:
            operator.on_kill()

    signal.signal(signal.SIGTERM, on_term)
    dag = DAG(dag_id, schedule=None, start_date=datetime.datetime(2026, 1, 1))
    context = {"dag": dag, "run_id": run_id}
    print(json.dumps(operator.execute(context)), flush=True)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
