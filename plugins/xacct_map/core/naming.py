"""Deterministic names for one DAG run: the execution name and the manifest key.

Both are derived from (dag_id, run_id) only, so every retry of a task in the same run computes the
same values: a retried start attaches to the run's execution and a rebuilt manifest overwrites the
run's own object, never another run's.
"""

from __future__ import annotations

import hashlib
import re

MAX_EXECUTION_NAME = 80
# Step Functions execution names: no whitespace, none of < > { } [ ] ? * " # % \ ^ | ~ ` $ & , ; : /
# and no control characters. Keep a conservative, readable alphabet.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def _digest(dag_id: str, run_id: str) -> str:
    return hashlib.sha256(f"{dag_id}\x00{run_id}".encode()).hexdigest()[:12]


def execution_name(dag_id: str, run_id: str) -> str:
    """A valid, unique-per-run Step Functions execution name (at most 80 characters).

    Readable part first (sanitised ``dag_id__run_id``, truncated), then a hash of the exact pair, so
    two runs whose ids differ only in characters that sanitising drops still get distinct names.
    """
    suffix = _digest(dag_id, run_id)
    readable = _UNSAFE.sub("-", f"{dag_id}__{run_id}").strip("-")
    return f"{readable[: MAX_EXECUTION_NAME - len(suffix) - 1]}-{suffix}"


def manifest_key(dag_id: str, run_id: str, prefix: str = "xacct-map/manifests") -> str:
    """The S3 key of the run's manifest, under ``prefix``."""
    run = _UNSAFE.sub("-", run_id).strip("-")[:100]
    dag = _UNSAFE.sub("-", dag_id).strip("-")[:100]
    return f"{prefix.strip('/')}/{dag}/{run}-{_digest(dag_id, run_id)}/manifest.json"


def execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN an execution called ``name`` of ``state_machine_arn`` has (or would have)."""
    head, sep, machine = state_machine_arn.partition(":stateMachine:")
    if not sep or not machine:
        raise ValueError(
            f"{state_machine_arn!r} is not a state machine ARN "
            "(expected arn:<partition>:states:<region>:<account>:stateMachine:<name>)"
        )
    return f"{head}:execution:{machine.split(':')[0]}:{name}"
