"""Deploy the pipeline account's side: inventory bucket, roles, processor Lambda, state machine.

Create-or-update and idempotent: every setting is read first and written only when it differs, so a
second run changes nothing (each ``ensure_*`` function reports what it changed). :func:`deploy_pipeline`
does the whole pipeline account with the IAM documents of :mod:`xacct_map.setup.policies`;
``xacct-map deploy`` and the local mode both call it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from xacct_map.setup import policies, resources
from xacct_map.setup.policies import PolicyInputs

_PLACEHOLDER = re.compile(r"^\$\{(\w+)\}$")


def render_definition(template: dict | str | Path, substitutions: dict) -> str:
    """Fill ``"${Name}"`` placeholders of an ASL template with typed values.

    A placeholder must be a whole JSON string; it is replaced by the value itself, so numbers stay
    numbers (``"MaxConcurrency": "${MaxConcurrency}"`` becomes ``"MaxConcurrency": 10``). A
    placeholder without a value raises ``KeyError`` naming it, except ``${ChildExecutionType}``,
    which is ``STANDARD`` unless given.
    """
    substitutions = {"ChildExecutionType": "STANDARD", **substitutions}
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


def package_function(processor=None, requirements: Path | str | None = None) -> bytes:
    """The processor Lambda's zip: the user's function (default: the built-in checksum processor), the
    processor SDK and pure-Python ``requirements`` (:func:`xacct_map.setup.packaging.package_processor`).
    Reproducible: the same inputs give the same bytes."""
    from xacct_map.setup.packaging import package_processor

    return package_processor(processor, requirements)


# Everything xacct-map changed, as "<verb> <resource>: <what>" lines; a second deploy leaves it empty.
Changes = list


def _note(changes: Changes | None, line: str) -> None:
    if changes is not None:
        changes.append(line)


def _retry_iam_propagation(call, *, what: str, attempts: int = 12, delay: float = 5.0):
    """Run ``call()``, retrying while a just-created IAM role is not yet usable by a service.

    A new role takes a few seconds to propagate: Lambda answers InvalidParameterValueException
    ("cannot be assumed by Lambda") and Step Functions AccessDeniedException meanwhile.
    """
    import time

    for attempt in range(attempts):
        try:
            return call()
        except ClientError as err:
            code = err.response["Error"]["Code"]
            message = err.response["Error"].get("Message", "")
            transient = (code == "InvalidParameterValueException" and "assume" in message.lower()) or (
                code == "AccessDeniedException" and "assume" in message.lower()
            )
            if not transient or attempt == attempts - 1:
                raise
            time.sleep(delay)
    raise AssertionError(f"unreachable: {what}")


PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
LIFECYCLE_RULE_ID = "xacct-map-expire-manifests"


def ensure_bucket(
    s3,
    bucket: str,
    region: str,
    *,
    expire_prefix: str | None = None,
    expire_days: int | None = None,
    expected_bucket_owner: str | None = None,
    changes: Changes | None = None,
) -> None:
    """Create ``bucket`` or bring an existing one of this account to the settings below.

    * all public access blocked;
    * default encryption (SSE-S3) unless the bucket already has one (an SSE-KMS default is kept);
    * with ``expire_days``: a lifecycle rule (id ``xacct-map-expire-manifests``) expiring objects
      under ``expire_prefix`` after that many days and aborting multipart uploads left incomplete
      for a day (a manifest writer killed mid-upload); other rules of the bucket are kept.

    Each setting is read first and written only when it differs, so a second run changes nothing.

    :param expected_bucket_owner: the pipeline account id: a bucket of that name owned by another
        account fails with an error instead of being "found".
    :param changes: a list that receives one line per change made.
    """
    owner = {"ExpectedBucketOwner": expected_bucket_owner} if expected_bucket_owner else {}
    try:
        s3.head_bucket(Bucket=bucket, **owner)
    except ClientError as err:
        code = err.response["Error"]["Code"]
        if code in ("403", "AccessDenied"):
            raise RuntimeError(
                f"Bucket {bucket!r} exists but this identity may not use it (403): it belongs to another account "
                f"than {expected_bucket_owner or 'this one'}, or the deploying identity lacks s3:ListBucket on it. "
                "Bucket names are global: pick another --inventory-bucket."
            ) from err
        if code not in ("404", "NoSuchBucket"):
            raise
        kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=bucket, **kwargs)
        _note(changes, f"created bucket {bucket} in {region}")
    _ensure_public_access_block(s3, bucket, owner, changes)
    _ensure_encryption(s3, bucket, owner, changes)
    if expire_days:
        _ensure_lifecycle(s3, bucket, owner, expire_prefix or "", int(expire_days), changes)


def _ensure_public_access_block(s3, bucket: str, owner: dict, changes: Changes | None) -> None:
    try:
        current = s3.get_public_access_block(Bucket=bucket, **owner)["PublicAccessBlockConfiguration"]
    except ClientError as err:
        if err.response["Error"]["Code"] != "NoSuchPublicAccessBlockConfiguration":
            raise
        current = {}
    if {k: current.get(k) for k in PUBLIC_ACCESS_BLOCK} != PUBLIC_ACCESS_BLOCK:
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK, **owner)
        _note(changes, f"updated bucket {bucket}: blocked all public access")


def _ensure_encryption(s3, bucket: str, owner: dict, changes: Changes | None) -> None:
    try:
        rules = s3.get_bucket_encryption(Bucket=bucket, **owner)["ServerSideEncryptionConfiguration"]["Rules"]
    except ClientError as err:
        if err.response["Error"]["Code"] != "ServerSideEncryptionConfigurationNotFoundError":
            raise
        rules = []
    if not any(r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules):
        s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
            **owner,
        )
        _note(changes, f"updated bucket {bucket}: default encryption SSE-S3")


def lifecycle_rule(prefix: str, days: int) -> dict:
    """The lifecycle rule xacct-map owns in the inventory bucket."""
    return {
        "ID": LIFECYCLE_RULE_ID,
        "Filter": {"Prefix": prefix},
        "Status": "Enabled",
        "Expiration": {"Days": days},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
    }


def _ensure_lifecycle(s3, bucket: str, owner: dict, prefix: str, days: int, changes: Changes | None) -> None:
    try:
        rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket, **owner)["Rules"]
    except ClientError as err:
        if err.response["Error"]["Code"] != "NoSuchLifecycleConfiguration":
            raise
        rules = []
    wanted = lifecycle_rule(prefix, days)
    ours = [r for r in rules if r.get("ID") == LIFECYCLE_RULE_ID]
    if len(ours) == 1 and _same_rule(ours[0], wanted):
        return
    # PutBucketLifecycleConfiguration replaces every rule: keep the bucket's other rules as they are.
    others = [r for r in rules if r.get("ID") != LIFECYCLE_RULE_ID]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [*others, wanted]}, **owner)
    _note(changes, f"updated bucket {bucket}: lifecycle expires {prefix}* after {days} days")


def _same_rule(current: dict, wanted: dict) -> bool:
    # S3 may echo a rule with extra defaults or the legacy top-level Prefix; compare what we set.
    prefix = current.get("Filter", {}).get("Prefix", current.get("Prefix"))
    return (
        prefix == wanted["Filter"]["Prefix"]
        and current.get("Status") == "Enabled"
        and current.get("Expiration", {}).get("Days") == wanted["Expiration"]["Days"]
        and current.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation") == 1
    )


def _policy_json(document) -> dict:
    """A policy document as a dict, whether boto3 decoded it already or handed over (URL-encoded) text."""
    from urllib.parse import unquote

    if isinstance(document, dict):
        return document
    text = document if document.lstrip().startswith("{") else unquote(document)
    return json.loads(text)


def ensure_role(
    iam,
    name: str,
    trust_policy: dict,
    inline_policy: dict | None = None,
    *,
    policy_name: str | None = None,
    changes: Changes | None = None,
) -> str:
    """Create or update an IAM role (trust + one inline policy); return its ARN.

    The trust policy and the inline policy are written only when they differ from what IAM holds.
    """
    policy_name = policy_name or f"{name}-policy"
    try:
        role = iam.get_role(RoleName=name)["Role"]
        arn = role["Arn"]
        if _policy_json(role.get("AssumeRolePolicyDocument") or "{}") != trust_policy:
            iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust_policy))
            _note(changes, f"updated role {name}: trust policy")
    except ClientError as err:
        if err.response["Error"]["Code"] != "NoSuchEntity":
            raise
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust_policy))["Role"]["Arn"]
        _note(changes, f"created role {name}")
    if inline_policy:
        try:
            current = _policy_json(iam.get_role_policy(RoleName=name, PolicyName=policy_name)["PolicyDocument"])
        except ClientError as err:
            if err.response["Error"]["Code"] != "NoSuchEntity":
                raise
            current = None
        if current != inline_policy:
            iam.put_role_policy(RoleName=name, PolicyName=policy_name, PolicyDocument=json.dumps(inline_policy))
            _note(changes, f"updated role {name}: inline policy {policy_name}")
    return arn


def service_trust(service: str) -> dict:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    }


FUNCTION_SETTINGS = {
    "Runtime": "python3.12",
    "Handler": "xacct_map_entry.handler",  # generated by xacct_map.setup.packaging
    "Timeout": 900,
    "MemorySize": 1024,
    "EphemeralStorage": {"Size": 512},
}


def parse_environment(pairs: list[str] | None) -> dict[str, str]:
    """``["NAME=value", ...]`` (``--processor-env``) as a dict; raises ``ValueError`` naming a bad one."""
    environment = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            raise ValueError(f"--processor-env {pair!r}: expected NAME=value (NAME: letters, digits, _)")
        environment[name] = value
    return environment


def function_settings(
    *, memory: int | None = None, timeout: int | None = None, ephemeral_storage: int | None = None
) -> dict:
    """The processor's configuration: :data:`FUNCTION_SETTINGS` with ``memory`` (MB, 128-10240),
    ``timeout`` (seconds, 1-900) and ``ephemeral_storage`` (/tmp in MB, 512-10240) where given."""
    settings = dict(FUNCTION_SETTINGS)
    for name, value, low, high, key in (
        ("--memory", memory, 128, 10240, "MemorySize"),
        ("--timeout", timeout, 1, 900, "Timeout"),
        ("--ephemeral-storage", ephemeral_storage, 512, 10240, "EphemeralStorage"),
    ):
        if value is None:
            continue
        if not low <= int(value) <= high:
            raise ValueError(f"{name} {value} is outside Lambda's range {low}-{high}")
        settings[key] = {"Size": int(value)} if key == "EphemeralStorage" else int(value)
    return settings


def code_sha256(code: bytes) -> str:
    """Lambda's ``CodeSha256`` of a deployment package (base64 of its SHA-256)."""
    import base64
    import hashlib

    return base64.b64encode(hashlib.sha256(code).digest()).decode()


def ensure_function(
    lmb,
    name: str,
    role_arn: str,
    code: bytes,
    environment: dict | None = None,
    *,
    settings: dict | None = None,
    changes: Changes | None = None,
) -> str:
    """Create or update the processor Lambda (``settings``: default :data:`FUNCTION_SETTINGS`); return its ARN.

    Code is uploaded only when its SHA-256 differs from the deployed one (the package is
    reproducible, see :func:`package_function`), the configuration only when a setting differs.
    """
    env = {"Variables": environment or {}}
    settings = settings or FUNCTION_SETTINGS
    try:
        current = lmb.get_function(FunctionName=name)["Configuration"]
    except ClientError as err:
        if err.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        arn = _retry_iam_propagation(
            lambda: lmb.create_function(
                FunctionName=name, Role=role_arn, Code={"ZipFile": code}, Environment=env, **settings
            )["FunctionArn"],
            what=f"create function {name}",
        )
        _note(changes, f"created function {name}")
        return arn
    arn = current["FunctionArn"]
    if current.get("CodeSha256") != code_sha256(code):
        lmb.update_function_code(FunctionName=name, ZipFile=code)
        _note(changes, f"updated function {name}: code")
        # A function accepts no other update while one is in progress.
        lmb.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 60})
    wanted = {"Role": role_arn, **settings}
    differs = sorted(k for k, v in wanted.items() if current.get(k) != v)
    if (current.get("Environment") or {}).get("Variables", {}) != env["Variables"]:
        differs.append("Environment")
    if differs:
        _retry_iam_propagation(
            lambda: lmb.update_function_configuration(FunctionName=name, Environment=env, **wanted),
            what=f"update function {name}",
        )
        _note(changes, f"updated function {name}: {', '.join(differs)}")
    return arn


def ensure_log_group(logs, name: str, retention_days: int | None = 30, *, changes: Changes | None = None) -> None:
    """Create the log group (with a retention) unless it exists; fix its retention if it differs.

    The processor role may write to its own log group but not create it (least privilege), so the
    deploy creates ``/aws/lambda/<function>`` before the first invocation needs it.
    """
    groups = logs.describe_log_groups(logGroupNamePrefix=name).get("logGroups", [])
    group = next((g for g in groups if g["logGroupName"] == name), None)
    if group is None:
        logs.create_log_group(logGroupName=name)
        _note(changes, f"created log group {name}")
        group = {}
    if retention_days and group.get("retentionInDays") != retention_days:
        logs.put_retention_policy(logGroupName=name, retentionInDays=retention_days)
        _note(changes, f"updated log group {name}: retention {retention_days} days")


def ensure_state_machine(sfn, name: str, definition: str, role_arn: str, *, changes: Changes | None = None) -> str:
    """Create or update a STANDARD state machine; return its ARN.

    Updated only when its definition (compared as JSON) or its role differ.
    """
    for page in sfn.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                arn = machine["stateMachineArn"]
                current = sfn.describe_state_machine(stateMachineArn=arn)
                if json.loads(current["definition"]) != json.loads(definition) or current["roleArn"] != role_arn:
                    _retry_iam_propagation(
                        lambda: sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role_arn),  # noqa: B023
                        what=f"update state machine {name}",
                    )
                    _note(changes, f"updated state machine {name}")
                return arn
    arn = _retry_iam_propagation(
        lambda: sfn.create_state_machine(name=name, definition=definition, roleArn=role_arn, type="STANDARD")[
            "stateMachineArn"
        ],
        what=f"create state machine {name}",
    )
    _note(changes, f"created state machine {name}")
    return arn


# Distributed Map child workflows: STANDARD (per state transition, exactly once, up to a year) or
# EXPRESS (per request and GB-second, at least once, at most 5 minutes each).
CHILD_EXECUTION_TYPES = ("STANDARD", "EXPRESS")

# -- the whole pipeline account ------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineDeployment:
    """What :func:`deploy_pipeline` created or found, and what it changed.

    ``processor_role_arn`` is None when the state machine invokes an existing function (``processor_arn``).
    """

    region: str
    inventory_bucket: str
    processor_role_arn: str | None
    state_machine_role_arn: str
    function_arn: str
    state_machine_arn: str
    airflow_role_arn: str | None
    changes: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ProcessorOptions:
    """Which processor the state machine invokes, and how its Lambda is configured.

    :ivar spec: the user's function, ``FILE.py:FUNCTION`` or ``PACKAGE_DIR:FUNCTION`` (default: the
        built-in checksum processor), packaged with the SDK (:mod:`xacct_map.setup.packaging`).
    :ivar requirements: a requirements file of pure-Python packages installed into the zip.
    :ivar environment: the function's own environment variables (beside ``SOURCE_ACCOUNT_ID``).
    :ivar memory: MB; :ivar timeout: seconds; :ivar ephemeral_storage: /tmp in MB (Lambda's defaults
        of :data:`FUNCTION_SETTINGS` where None).
    """

    spec: Any = None
    requirements: Path | str | None = None
    environment: dict | None = None
    memory: int | None = None
    timeout: int | None = None
    ephemeral_storage: int | None = None


@dataclass(frozen=True)
class MachineOptions:
    """How the state machine is rendered: layout, concurrency, tolerance, child workflow type."""

    layout: str = "batched"
    manifest_format: str = "json"
    max_items_per_batch: int = 100
    max_concurrency: int = 100
    tolerated_failure_percentage: float = 0.0
    child_execution_type: str = "STANDARD"
    asl_path: Path | None = None


def deploy_pipeline(
    client: Callable[[str], Any],
    inputs: PolicyInputs,
    *,
    max_concurrency: int = 100,
    tolerated_failure_percentage: float = 0.0,
    expire_days: int | None = 30,
    log_retention_days: int | None = 30,
    airflow_trust: str | None = None,
    layout: str = "batched",
    manifest_format: str = "json",
    max_items_per_batch: int = 100,
    asl_path: Path | None = None,
    processor: ProcessorOptions | None = None,
    child_execution_type: str = "STANDARD",
) -> PipelineDeployment:
    """Create or update the pipeline account's side of ``inputs``, idempotently.

    * the inventory bucket (:func:`ensure_bucket`: public access blocked, SSE, lifecycle rule
      expiring ``<inventory_prefix>`` objects after ``expire_days``);
    * the state machine role and (unless ``inputs.processor_arn`` names an existing function) the
      processor role, with the documents of :mod:`xacct_map.setup.policies`;
    * the processor's log group ``/aws/lambda/<function>`` (its role may write there, not create it),
      keeping ``log_retention_days`` of logs, and the processor Lambda packaged from ``processor``
      (:class:`ProcessorOptions`; ``SOURCE_ACCOUNT_ID`` in its environment); code is uploaded only
      when the zip's SHA-256 differs from the deployed one;
    * the state machine rendered from ``asl_path`` (default: by ``layout``: ``batched`` is
      ``asl/distributed_map.asl.json``, each manifest item a batch; ``flat`` is
      ``asl/distributed_map_flat.asl.json``, one item per object in ``manifest_format`` grouped by
      ItemBatcher into ``max_items_per_batch``), its children ``child_execution_type`` workflows;
    * the Airflow role's inline policy, when the role exists; created only with ``airflow_trust`` (an
      AWS ARN or a service such as ``airflow-env.amazonaws.com``: only the caller knows where Airflow runs).

    The source account's side (bucket policy, lister role) is not touched: ``xacct-map policy`` prints it.

    :param client: ``client(service_name)`` -> a boto3 client of the pipeline account in ``inputs.region``.
    """
    machine = MachineOptions(
        layout=layout,
        manifest_format=manifest_format,
        max_items_per_batch=max_items_per_batch,
        max_concurrency=max_concurrency,
        tolerated_failure_percentage=tolerated_failure_percentage,
        child_execution_type=child_execution_type,
        asl_path=asl_path,
    )
    changes: Changes = []
    notes: list[str] = []
    documents = policies.all_documents(replace(inputs, result_writer=True))
    ensure_bucket(
        client("s3"),
        inputs.inventory_bucket,
        inputs.region,
        expire_prefix=inputs.inventory_prefix,
        expire_days=expire_days,
        expected_bucket_owner=inputs.pipeline_account,
        changes=changes,
    )
    processor_role_arn, function_arn = _deploy_processor(
        client, inputs, documents, processor or ProcessorOptions(), log_retention_days, changes
    )
    machine_role_arn, machine_arn = _deploy_state_machine(client, inputs, documents, function_arn, machine, changes)
    airflow_role_arn = _ensure_airflow_role(
        client("iam"), inputs, documents["airflow_role_policy"], airflow_trust, changes, notes
    )
    notes.extend(_source_account_notes(inputs))
    return PipelineDeployment(
        region=inputs.region,
        inventory_bucket=inputs.inventory_bucket,
        processor_role_arn=processor_role_arn,
        state_machine_role_arn=machine_role_arn,
        function_arn=function_arn,
        state_machine_arn=machine_arn,
        airflow_role_arn=airflow_role_arn,
        changes=tuple(changes),
        notes=tuple(notes),
    )


def _deploy_processor(
    client, inputs: PolicyInputs, documents: dict, options: ProcessorOptions, log_retention_days, changes: Changes
) -> tuple[str | None, str]:
    """The processor role, log group and Lambda; or, with ``inputs.processor_arn``, that function as is."""
    if inputs.processor_arn:
        if options.spec or options.requirements or options.environment:
            raise ValueError(
                "--processor-arn names an existing function: give it without --processor, "
                "--processor-requirements or --processor-env (configure that function itself)"
            )
        return None, inputs.processor_arn
    settings = function_settings(
        memory=options.memory, timeout=options.timeout, ephemeral_storage=options.ephemeral_storage
    )
    code = package_function(options.spec, options.requirements)  # before any change: a bad spec fails first
    role_arn = ensure_role(
        client("iam"),
        policies.role_name(inputs.processor_role_arn),
        documents["processor_role_trust_policy"],
        documents["processor_role_policy"],
        changes=changes,
    )
    ensure_log_group(client("logs"), inputs.log_group_name, log_retention_days, changes=changes)
    function_arn = ensure_function(
        client("lambda"),
        inputs.function,
        role_arn,
        code,
        environment={**(options.environment or {}), "SOURCE_ACCOUNT_ID": inputs.source_account},
        settings=settings,
        changes=changes,
    )
    return role_arn, function_arn


def _deploy_state_machine(
    client, inputs: PolicyInputs, documents: dict, function_arn: str, machine: MachineOptions, changes: Changes
) -> tuple[str, str]:
    """The state machine role and the state machine rendered from its ASL template."""
    role_arn = ensure_role(
        client("iam"),
        policies.role_name(inputs.state_machine_role_arn),
        documents["state_machine_role_trust_policy"],
        documents["state_machine_role_policy"],
        changes=changes,
    )
    definition = _definition(
        machine.asl_path or resources.asl_path(machine.layout),
        inputs,
        function_arn,
        layout=machine.layout,
        max_concurrency=machine.max_concurrency,
        tolerated_failure_percentage=machine.tolerated_failure_percentage,
        manifest_format=machine.manifest_format,
        max_items_per_batch=machine.max_items_per_batch,
        child_execution_type=machine.child_execution_type,
    )
    arn = ensure_state_machine(client("stepfunctions"), inputs.state_machine, definition, role_arn, changes=changes)
    return role_arn, arn


def _definition(
    template: Path,
    inputs: PolicyInputs,
    function_arn: str,
    *,
    layout: str,
    max_concurrency: int,
    tolerated_failure_percentage: float,
    manifest_format: str,
    max_items_per_batch: int,
    child_execution_type: str = "STANDARD",
) -> str:
    """The state machine definition: the ASL template of ``layout`` with this deployment's values."""
    if child_execution_type not in CHILD_EXECUTION_TYPES:
        raise ValueError(
            f"child execution type {child_execution_type!r} is not one of {', '.join(CHILD_EXECUTION_TYPES)}"
        )
    substitutions = {
        "ProcessorFunctionArn": function_arn,
        "MaxConcurrency": int(max_concurrency),
        "ToleratedFailurePercentage": float(tolerated_failure_percentage),
        "ResultsBucket": inputs.inventory_bucket,
        # ResultWriter writes <prefix>/<map run id>/...: inside the policy's results/ prefix.
        "ResultsPrefix": inputs.results_prefix.rstrip("/"),
        "ChildExecutionType": child_execution_type,
    }
    if layout == "flat":
        from xacct_map.core.layouts import flat_substitutions

        substitutions |= flat_substitutions(manifest_format=manifest_format, max_items_per_batch=max_items_per_batch)
    elif layout != "batched":
        raise ValueError(f"layout {layout!r}: the state machine reads 'batched' or 'flat' manifests")
    return render_definition(template, substitutions)


def _ensure_airflow_role(
    iam, inputs: PolicyInputs, policy: dict, airflow_trust: str | None, changes: Changes, notes: list[str]
) -> str | None:
    """The Airflow role's inline policy, when the role exists; created only with ``airflow_trust``."""
    airflow_name = policies.role_name(inputs.airflow_role_arn)
    if not airflow_trust and not _role_exists(iam, airflow_name):
        notes.append(
            f"Airflow role {airflow_name} does not exist: not created (pass --airflow-trust PRINCIPAL to create it, "
            "or attach `xacct-map policy --only airflow_role_policy` to the role your Airflow uses)."
        )
        return None
    if airflow_trust:
        trust = _trust_for(airflow_trust)
    else:  # keep the existing trust policy: it says where Airflow runs
        trust = _policy_json(iam.get_role(RoleName=airflow_name)["Role"]["AssumeRolePolicyDocument"])
    return ensure_role(iam, airflow_name, trust, policy, changes=changes)


def _source_account_notes(inputs: PolicyInputs) -> list[str]:
    """What the source account's owner must apply: deploy never touches another account."""
    notes = []
    if inputs.lists_directly:
        notes.append("The Airflow role lists the source bucket itself: the source bucket policy must grant it.")
    lister = (
        ""
        if inputs.lists_directly
        else f" and create the lister role {inputs.lister_role_arn} (lister_role_trust_policy, lister_role_policy)"
    )
    notes.append(
        f"Source account {inputs.source_account}: apply `xacct-map policy --only source_bucket_policy` to "
        f"s3://{inputs.source_bucket}{lister}."
    )
    return notes


def _role_exists(iam, name: str) -> bool:
    try:
        iam.get_role(RoleName=name)
        return True
    except ClientError as err:
        if err.response["Error"]["Code"] == "NoSuchEntity":
            return False
        raise


def _trust_for(principal: str) -> dict:
    """A trust policy for an AWS principal ARN or a service principal (``*.amazonaws.com``)."""
    key = "Service" if principal.endswith(".amazonaws.com") or principal.endswith(".amazonaws.com.cn") else "AWS"
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {key: principal}, "Action": "sts:AssumeRole"}],
    }
