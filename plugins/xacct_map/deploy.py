"""Deploy the pipeline account's side: inventory bucket, processor Lambda, state machine.

Create-or-update and idempotent. The local mode calls the same functions against the emulator.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from pathlib import Path

from botocore.exceptions import ClientError

# The repository root holds asl/ and functions/; XACCT_MAP_HOME overrides it for other layouts.
PROJECT_ROOT = Path(os.environ.get("XACCT_MAP_HOME") or Path(__file__).resolve().parents[2])
ASL_PATH = PROJECT_ROOT / "asl" / "distributed_map.asl.json"
PROCESSOR_DIR = PROJECT_ROOT / "functions" / "processor"
_PLACEHOLDER = re.compile(r"^\$\{(\w+)\}$")


def render_definition(template: dict | str | Path, substitutions: dict) -> str:
    """Fill ``"${Name}"`` placeholders of an ASL template with typed values.

    A placeholder must be a whole JSON string; it is replaced by the value itself, so numbers stay
    numbers (``"MaxConcurrency": "${MaxConcurrency}"`` becomes ``"MaxConcurrency": 10``). A
    placeholder without a value raises ``KeyError`` naming it.
    """
    if isinstance(template, Path):
        template = template.read_text()
    doc = json.loads(template) if isinstance(template, str) else template

    def fill(node):
        if isinstance(node, dict):
            return {k: fill(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fill(v) for v in node]
        if isinstance(node, str) and (m := _PLACEHOLDER.match(node)):
            if m.group(1) not in substitutions:
                raise KeyError(f"ASL placeholder ${{{m.group(1)}}} has no value; pass it in substitutions")
            return substitutions[m.group(1)]
        return node

    return json.dumps(fill(doc), indent=2)


def package_function(source_dir: Path = PROCESSOR_DIR) -> bytes:
    """Zip a function directory (its .py files) the way Lambda expects: files at the archive root."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(source_dir.rglob("*.py")):
            info = zipfile.ZipInfo(str(path.relative_to(source_dir)), date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def ensure_bucket(s3, bucket: str, region: str) -> None:
    """Create ``bucket`` (private, encrypted) unless this account already owns it."""
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError as err:
        if err.response["Error"]["Code"] not in ("404", "NoSuchBucket"):
            raise
    kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=bucket, **kwargs)
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
    )


def ensure_role(iam, name: str, trust_policy: dict, inline_policy: dict | None = None) -> str:
    """Create or update an IAM role (trust + one inline policy); return its ARN."""
    try:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
        iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust_policy))
    except ClientError as err:
        if err.response["Error"]["Code"] != "NoSuchEntity":
            raise
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust_policy))["Role"]["Arn"]
    if inline_policy:
        iam.put_role_policy(RoleName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(inline_policy))
    return arn


def service_trust(service: str) -> dict:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    }


def ensure_function(lmb, name: str, role_arn: str, code: bytes, environment: dict | None = None) -> str:
    """Create or update the processor Lambda; return its ARN."""
    env = {"Variables": environment or {}}
    try:
        lmb.get_function(FunctionName=name)
    except ClientError as err:
        if err.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        return lmb.create_function(
            FunctionName=name, Runtime="python3.12", Role=role_arn, Handler="handler.handler",
            Code={"ZipFile": code}, Timeout=900, MemorySize=1024, Environment=env,
        )["FunctionArn"]
    lmb.update_function_code(FunctionName=name, ZipFile=code)
    return lmb.update_function_configuration(FunctionName=name, Role=role_arn, Environment=env)["FunctionArn"]


def ensure_state_machine(sfn, name: str, definition: str, role_arn: str) -> str:
    """Create or update a STANDARD state machine; return its ARN."""
    for page in sfn.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                sfn.update_state_machine(stateMachineArn=machine["stateMachineArn"], definition=definition, roleArn=role_arn)
                return machine["stateMachineArn"]
    return sfn.create_state_machine(name=name, definition=definition, roleArn=role_arn, type="STANDARD")[
        "stateMachineArn"
    ]
