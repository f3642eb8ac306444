"""The bundled ``xacct_distributed_map_ranges`` DAG under ``dag.test()`` (Airflow's own scheduler loop,
mapped tasks expanded from the planner's XCom) on the local AWS: the listing is spread over mapped
``build_manifest`` tasks, every key lands in exactly one manifest part, and one execution's Map Runs
process every key exactly once."""

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
    from xacct_map.local.emulator import SOURCE_ACCOUNT, LocalAws
    from xacct_map.setup import resources

    conf = json.loads(sys.argv[1])
    with LocalAws() as aws:
        pipeline = aws.deploy(objects=int(sys.argv[2]), object_size=32)
        os.environ.update(aws.airflow_environment(pipeline))
        run = demo._run_dag(resources.dags_dir(), conf, {}, dag_id="xacct_distributed_map_ranges")
        sfn, s3 = aws.client("stepfunctions"), aws.client("s3")
        executions = sfn.list_executions(stateMachineArn=pipeline.state_machine_arn)["executions"]
        map_runs = [
            m for e in executions for m in sfn.list_map_runs(executionArn=e["executionArn"])["mapRuns"]
        ]
        source = [
            o["Key"]
            for page in aws.client("s3", SOURCE_ACCOUNT).get_paginator("list_objects_v2").paginate(
                Bucket=pipeline.source_bucket, Prefix=pipeline.source_prefix
            )
            for o in page.get("Contents", [])
        ]
        parts = {}
        for name, task in run["tasks"].items():
            for part in ((task.get("xcom") or {}).get("parts") or []) if name.startswith("build_manifest") else []:
                body = s3.get_object(Bucket=pipeline.inventory_bucket, Key=part["key"])["Body"].read()
                parts[part["key"]] = [k for item in json.loads(body) for k in item["keys"]]
        processed = [k for i in aws.runtime.invocations if i.ok for k in i.event.get("keys", [])]
    print("RESULT " + json.dumps({
        "run": run, "executions": len(executions), "map_runs": len(map_runs), "source": source,
        "parts": parts, "processed": processed,
    }))
    """
)


def _run(conf: dict, objects: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, json.dumps(conf), str(objects)], capture_output=True, text=True, timeout=900
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


def test_a_listing_over_four_mapped_tasks_processes_every_key_once():
    conf = {"listing_tasks": 4, "preflight": "never", "max_keys_per_batch": 25, "manifest_part_bytes": 4096}
    result = _run(conf, objects=1_500)  # more than one page: the planner probes for the key space's end
    tasks = result["run"]["tasks"]
    states = {name: task["state"] for name, task in tasks.items()}
    assert result["run"]["state"] == "success", states
    ranges = tasks["plan_listing"]["xcom"]
    builds = sorted(name for name in tasks if name.startswith("build_manifest["))
    assert len(ranges) >= 3 and builds == [f"build_manifest[{i}]" for i in range(len(ranges))]
    assert all(states[name] == "success" for name in builds)

    # Every key in exactly one part of exactly one range, inside that range's bounds.
    source = result["source"]
    in_parts = [k for keys in result["parts"].values() for k in keys]
    assert sorted(in_parts) == sorted(source) and len(set(in_parts)) == len(in_parts) == 1_500
    for name in builds:
        xcom = tasks[name]["xcom"]
        low, high = xcom["key_range"]["start_after"], xcom["key_range"]["up_to"]
        keys = [k for p in xcom["parts"] for k in result["parts"][p["key"]]]
        assert all(low < k and (high is None or k <= high) for k in keys), name
    assert sum(1 for name in builds if tasks[name]["xcom"]["object_count"]) >= 2  # really spread

    # One execution, one Map Run per non-empty part, every key processed once.
    combined = tasks["combine_manifest"]["xcom"]
    assert combined["object_count"] == 1_500 and combined["part_count"] == len(combined["parts"]) > len(ranges)
    assert result["executions"] == 1 and result["map_runs"] == combined["part_count"]
    assert sorted(result["processed"]) == sorted(source)
    assert tasks["wait_for_map_run"]["xcom"]["status"] == "SUCCEEDED"
    print("objects per range", [tasks[n]["xcom"]["object_count"] for n in builds], "parts", combined["part_count"])
