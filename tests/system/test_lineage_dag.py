"""OpenLineage from a real run: the bundled DAG under ``dag.test()`` on the local AWS, with the
openlineage provider's listener and a file transport (``AIRFLOW__OPENLINEAGE__TRANSPORT``), as a
user wires it. The events written are read back: the manifest task's input is the source prefix and
its output the manifest object; the start task's input is that manifest, its job facet names the
state machine and its run facet the execution."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip(
    "airflow.providers.openlineage", reason="the openlineage provider is not installed (extra: xacct-map[openlineage])"
)

_RUNNER = textwrap.dedent(
    """
    import json, os, sys
    from xacct_map.local import demo
    demo._airflow_home()
    from xacct_map.local.emulator import LocalAws
    from xacct_map.setup import resources

    with LocalAws() as aws:
        pipeline = aws.deploy(objects=5)
        os.environ.update(aws.airflow_environment(pipeline))
        run = demo._run_dag(resources.dags_dir(), {"preflight": "never"}, {})
    tasks = {task: info["state"] for task, info in run["tasks"].items()}
    print("RESULT " + json.dumps({"state": run["state"], "tasks": tasks, "pipeline": pipeline.as_dict(),
                                  "manifest": run["tasks"]["build_manifest"]["xcom"]}))
    """
)


@pytest.fixture(scope="module")
def lineage_run(tmp_path_factory):
    events_file = tmp_path_factory.mktemp("openlineage") / "events.jsonl"
    env = dict(
        os.environ,
        AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps({"type": "file", "log_file_path": str(events_file), "append": True}),
        AIRFLOW__OPENLINEAGE__NAMESPACE="xacct-map-test",
    )
    env.pop("AIRFLOW__OPENLINEAGE__DISABLED", None)
    done = subprocess.run([sys.executable, "-c", _RUNNER], capture_output=True, text=True, timeout=400, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["state"] == "success", f"{result}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    assert events_file.exists(), "no OpenLineage event was written: " + done.stderr[-3000:]
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    return result, events


def _complete(events: list[dict], task_id: str) -> dict:
    found = [
        e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"] == f"xacct_distributed_map.{task_id}"
    ]
    assert len(found) == 1, [(e["eventType"], e["job"]["name"]) for e in events]
    return found[0]


def _datasets(event: dict, side: str) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in event.get(side, [])]


def test_the_manifest_task_reads_the_source_prefix_and_writes_the_manifest(lineage_run):
    result, events = lineage_run
    pipeline, manifest = result["pipeline"], result["manifest"]
    event = _complete(events, "build_manifest")
    assert event["job"]["namespace"] == "xacct-map-test"
    assert _datasets(event, "inputs") == [(f"s3://{pipeline['source_bucket']}", pipeline["source_prefix"])]
    assert _datasets(event, "outputs") == [(f"s3://{pipeline['inventory_bucket']}", manifest["key"])]
    assert manifest["key"].endswith("/manifest.json") and manifest["bucket"] == pipeline["inventory_bucket"]


def test_the_start_task_reads_the_manifest_and_names_the_state_machine_and_execution(lineage_run):
    result, events = lineage_run
    pipeline, manifest = result["pipeline"], result["manifest"]
    event = _complete(events, "start_map_run")
    assert _datasets(event, "inputs") == [(f"s3://{manifest['bucket']}", manifest["key"])]
    assert _datasets(event, "outputs") == []
    facet = event["job"]["facets"]["xacctMap_stateMachine"]
    arn = pipeline["state_machine_arn"]
    assert facet["stateMachineArn"] == arn
    assert facet["name"] == arn.rpartition(":")[2] and facet["account"] == pipeline["pipeline_account"]
    execution = event["run"]["facets"]["externalQuery"]
    assert execution["source"] == arn
    assert execution["externalQueryId"].startswith(arn.replace(":stateMachine:", ":execution:") + ":")
