"""``xacct-map demo --processor``: your function, from a folder outside the repository, on every object.

Two demo runs through the real DAG and the emulator's Lambda runtime (each ~30-40 s here):

* the validate-and-count example, copied to a temporary folder as a user's file, on the user's own
  sample files (``--source-dir``), one of them invalid: the demo exits 1 and prints the failing key
  and the exception, and the other objects are processed;
* the server-side copy example with EXPRESS children (``--processor-env`` names the destination):
  every object is copied, keys preserved.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _demo(cwd: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_"))}
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("xacct-map")), "demo", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
    )
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "{}"
    return proc, json.loads(last) if last.startswith("{") else {}


def test_a_users_function_runs_on_their_files_and_a_failing_object_fails_the_demo_naming_it(tmp_path):
    user = tmp_path / "my code"
    user.mkdir()
    shutil.copy(ROOT / "examples" / "validate_records.py", user / "validate.py")
    samples = tmp_path / "samples"
    (samples / "2026" / "12").mkdir(parents=True)
    (samples / "good.jsonl").write_text('{"id": 1, "name": "a"}\n{"id": 2}\n\n')
    (samples / "2026" / "12" / "orders.csv").write_text('id,name\n1,a\n2,"b, c"\n3,d\n')
    (samples / "2026" / "12" / "more.jsonl.gz").write_bytes(gzip.compress(b'{"x": 1}\n{"x": 2}\n'))
    (samples / "broken records.jsonl").write_text('{"id": 1}\n[1, 2]\n')
    proc, summary = _demo(
        tmp_path, "--processor", f"{user / 'validate.py'}:process", "--source-dir", str(samples), "--batch-keys", "1"
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "xacct-map demo: FAILED" in proc.stdout
    failing = "s3://xacct-map-demo-source/data/broken records.jsonl: ValueError: 1 invalid jsonl record(s) (1 valid)"
    assert failing in proc.stdout
    assert summary["objects_seeded"] == summary["objects_listed"] == 4
    assert summary["objects_processed"] == 3 and summary["failed_invocations"] == 1
    assert summary["failures"][0]["type"] == "ObjectsFailed"


def test_the_copy_example_copies_every_object_with_express_children(tmp_path):
    proc, summary = _demo(
        tmp_path,
        *("--processor", f"{ROOT / 'examples' / 'copy_objects.py'}:process"),
        *("--processor-env", "DEST_BUCKET=xacct-map-demo-inventory", "--processor-env", "DEST_PREFIX=copies/"),
        *("--objects", "24", "--batch-keys", "6", "--child-execution-type", "EXPRESS"),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert summary["ok"] and summary["child_execution_type"] == "EXPRESS"
    assert summary["objects_processed"] == 24 and summary["item_counts"]["succeeded"] == 4
    for result in summary["results_sample"]:
        assert result["result"]["copied_to"] == f"s3://xacct-map-demo-inventory/copies/{result['key']}"
