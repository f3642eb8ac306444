"""`xacct-map demo` end to end: the real DAG, the deployed state machine and handler, two emulated accounts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_demo_processes_every_listed_object_exactly_once(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_"))}
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("xacct-map")), "demo", "--objects", "300", "--batch-keys", "40", "--json"],
        capture_output=True,
        text=True,
        timeout=400,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True
    assert summary["execution_status"] == "SUCCEEDED"
    assert summary["objects_listed"] == summary["objects_processed"] == 300
    assert summary["bytes_processed"] == summary["pipeline"]["bytes"] == summary["manifest"]["total_bytes"]
    assert summary["manifest"]["batch_count"] == 8  # 300 keys, 40 per batch
    assert summary["item_counts"]["succeeded"] == 8 and summary["item_counts"]["failed"] == 0
    assert summary["task_states"] == {
        "preflight": "success",
        "build_manifest": "success",
        "start_map_run": "success",
        "wait_for_map_run": "success",
    }
    # A manual run: the preflight checks ran, with the lister role of the source connection.
    assert summary["preflight"] == dict.fromkeys(
        ["assume_lister_role", "list_source", "read_source_object", "write_inventory", "state_machine"], "ok"
    )
    assert "xacct-map demo: OK" in proc.stdout
