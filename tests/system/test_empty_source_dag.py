"""The bundled DAG on an empty source, under ``dag.test()``: the default ``on_empty="skip"`` skips
the run's tasks, writes no manifest and starts no execution (``fail`` and ``run``: the operator's
tests in tests/integration/test_operators.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

_RUNNER = textwrap.dedent(
    """
    import json, os, sys
    from xacct_map.local import demo
    demo._airflow_home()
    from xacct_map.local.emulator import LocalAws
    from xacct_map.setup import resources

    conf = json.loads(sys.argv[1])
    with LocalAws() as aws:
        pipeline = aws.deploy(objects=5)
        os.environ.update(aws.airflow_environment(pipeline))
        run = demo._run_dag(resources.dags_dir(), conf, {})
        sfn = aws.client("stepfunctions")
        executions = sfn.list_executions(stateMachineArn=pipeline.state_machine_arn)["executions"]
        listed = aws.client("s3").list_objects_v2(Bucket=pipeline.inventory_bucket).get("Contents", [])
    print("RESULT " + json.dumps({"run": run, "executions": len(executions), "objects": [o["Key"] for o in listed]}))
    """
)


def _run(conf: dict) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, json.dumps(conf)], capture_output=True, text=True, timeout=300
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


def test_an_empty_prefix_skips_the_run_by_default_and_starts_nothing():
    result = _run({"source_prefix": "nothing-here/", "preflight": "never"})
    tasks = {task: info["state"] for task, info in result["run"]["tasks"].items()}
    assert result["run"]["state"] == "success"
    assert tasks["build_manifest"] == "skipped"
    assert tasks["start_map_run"] == tasks["wait_for_map_run"] == "skipped"
    assert result["executions"] == 0
    assert not [key for key in result["objects"] if "manifests/" in key]
