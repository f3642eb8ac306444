"""No credential leaks: the whole demo path, with everything it prints, logs, stores and writes.

One subprocess runs ``xacct_map.local.demo.run_demo`` (the real DAG with ``dag.test()``, Airflow
logging at DEBUG so the task logs, botocore's request and response lines included, reach stdout)
with known base credentials in its environment and records every credential moto's STS issued
(AssumeRole: the emulator's setup sessions and the lister role the source connection assumes). Then
none of those secret keys and session tokens, nor the known base secret, may appear in
stdout/stderr, the summary (with the XComs), any file of the run's AIRFLOW_HOME (task logs, the
SQLite database with XComs and rendered fields), the Lambda logs, the manifest object (nothing but
batches of source keys), its metadata sidecar, or the execution's input. At DEBUG, botocore prints
AssumeRole replies and signed headers: :mod:`xacct_map.core.redact` blanks them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BASE_ACCESS_KEY = "AKIAXACCTMAPSECRETTEST"
BASE_SECRET = "xacct-map-base-secret-must-never-be-logged-0123456789"

_RUNNER = textwrap.dedent(
    """
    import json, os, sys
    from moto.sts import models as sts_models

    issued = []
    _assume = sts_models.STSBackend.assume_role

    def recording_assume_role(self, *args, **kwargs):
        role = _assume(self, *args, **kwargs)
        issued.append({"role_arn": role.role_arn, "access_key_id": role.access_key_id,
                       "secret_access_key": role.secret_access_key, "session_token": role.session_token})
        return role

    sts_models.STSBackend.assume_role = recording_assume_role

    from xacct_map.local.demo import format_summary, run_demo

    summary = run_demo(objects=50, batch_keys=10)
    print(format_summary(summary))
    print(json.dumps(summary, sort_keys=True))

    # The server has stopped; moto's backends still hold what it stored.
    from moto.s3.models import s3_backends
    manifest = summary["manifest"]
    backend = s3_backends[summary["pipeline"]["pipeline_account"]]["aws"]
    body = backend.get_object(manifest["bucket"], manifest["key"]).value
    sidecar = backend.get_object(manifest["bucket"], manifest["key"] + ".meta.json").value
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends
    sfn = stepfunctions_parser_backends[summary["pipeline"]["pipeline_account"]]["us-east-1"]
    inputs = [e.execution_input for e in sfn._get_executions()]
    with open(sys.argv[1], "w") as out:
        json.dump({"issued": issued, "manifest": body.decode("utf-8"), "airflow_home": os.environ["AIRFLOW_HOME"],
                   "summary": summary, "sidecar": sidecar.decode("utf-8"), "execution_inputs": inputs}, out)
    """
)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("secrets")
    script = tmp / "run.py"
    script.write_text(_RUNNER)
    record = tmp / "record.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_"))}
    env.update(
        AWS_ACCESS_KEY_ID=BASE_ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=BASE_SECRET,
        AWS_DEFAULT_REGION="us-east-1",
        AIRFLOW__LOGGING__LOGGING_LEVEL="DEBUG",  # the task logs, in full and with botocore's requests, on stdout
        TMPDIR=str(tmp),  # AIRFLOW_HOME and the Lambda runtime's logs land here too
    )
    proc = subprocess.run(
        [sys.executable, str(script), str(record)], capture_output=True, text=True, timeout=500, env=env, cwd=tmp
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(record.read_text()), tmp


def _secrets(record: dict) -> dict[str, str]:
    secrets = {"base secret key": BASE_SECRET}
    for i, cred in enumerate(record["issued"]):
        secrets[f"secret key #{i} ({cred['role_arn']})"] = cred["secret_access_key"]
        secrets[f"session token #{i} ({cred['role_arn']})"] = cred["session_token"]
    return secrets


def _files_under(root: Path):
    for path in root.rglob("*"):
        if path.is_file() and path.name != "record.json" and path.suffix != ".py":
            yield path


def test_demo_ran_and_moto_issued_role_credentials(demo_run):
    proc, record, _ = demo_run
    assert record["summary"]["ok"] is True, proc.stdout[-2000:]
    roles = {c["role_arn"] for c in record["issued"]}
    # The source connection's role_arn extra assumed the lister role: those are the credentials to guard.
    assert any(r.endswith(":role/xacct-map-lister") for r in roles), roles
    assert all(len(c["secret_access_key"]) >= 20 and len(c["session_token"]) >= 20 for c in record["issued"])
    # The task logs really are in the captured output (otherwise the checks below prove little).
    assert "Listing s3://" in proc.stdout + proc.stderr
    assert "Manifest s3://" in proc.stdout + proc.stderr


def test_no_secret_in_stdout_stderr_or_summary(demo_run):
    proc, record, _ = demo_run
    texts = {"stdout": proc.stdout, "stderr": proc.stderr, "summary (with XComs)": json.dumps(record["summary"])}
    for what, secret in _secrets(record).items():
        for where, text in texts.items():
            assert secret not in text, f"{what} appears in {where}"
    for where, text in texts.items():
        # A secret field may be named (botocore's DEBUG lines, redacted), never followed by a value.
        value = (
            r"(SecretAccessKey|SessionToken|aws_secret_access_key|security-token)[\"'>:= ]+(b['\"])?[A-Za-z0-9+/=]{8}"
        )
        assert not re.search(value, text, re.IGNORECASE), where


def test_no_secret_in_airflow_home_or_lambda_logs(demo_run):
    _, record, tmp = demo_run
    secrets = _secrets(record)
    roots = {Path(record["airflow_home"]), tmp}
    checked = 0
    for root in roots:
        for path in _files_under(root):
            data = path.read_bytes()
            checked += 1
            for what, secret in secrets.items():
                assert secret.encode() not in data, f"{what} appears in {path}"
    assert checked >= 2  # at least the SQLite database and a log file


def test_manifest_holds_only_batches_of_source_keys(demo_run):
    _, record, _ = demo_run
    manifest = json.loads(record["manifest"])
    assert manifest and all(set(batch) == {"bucket", "keys", "bytes"} for batch in manifest)
    source = record["summary"]["pipeline"]
    assert {batch["bucket"] for batch in manifest} == {source["source_bucket"]}
    assert all(key.startswith(source["source_prefix"]) for batch in manifest for key in batch["keys"])
    assert record["execution_inputs"] and json.loads(record["sidecar"])["key"] == record["summary"]["manifest"]["key"]
    written = {"the manifest": record["manifest"], "the metadata sidecar": record["sidecar"]}
    written.update({f"execution input #{i}": str(text) for i, text in enumerate(record["execution_inputs"])})
    for where, text in written.items():
        for what, secret in _secrets(record).items():
            assert secret not in text, f"{what} appears in {where}"
        for cred in record["issued"]:
            assert cred["access_key_id"] not in text, f"an access key id appears in {where}"
