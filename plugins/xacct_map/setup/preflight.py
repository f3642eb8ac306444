"""Check the cross-account setup with real calls, changing nothing (``xacct-map preflight``,
:class:`~xacct_map.operators.PreflightOperator`).

Checks, in order (a check that depends on a failed one is skipped):

1. ``assume_lister_role``: the pipeline identity can assume the lister role (sts:AssumeRole);
2. ``list_source``: ListObjectsV2 (MaxKeys=1, ExpectedBucketOwner) on the source prefix as the
   lister, in the bucket's own Region (found with HeadBucket's ``x-amz-bucket-region``);
3. ``read_source_object``: HeadObject of the first listed key as the processor role (assumed for the
   check; HeadObject needs the same s3:GetObject grant as the processor's GetObject);
4. ``write_inventory``: CreateMultipartUpload then AbortMultipartUpload on a key under the
   manifest prefix of the inventory bucket (nothing is ever completed, so no object appears);
5. ``state_machine``: DescribeStateMachine; it exists, is STANDARD and runs as the state machine role
   the policies name.

Each failed check carries the AWS error code, the reason, and the exact statements of
:mod:`xacct_map.setup.policies` that grant what was missing, with where they go. :func:`run_preflight`
returns a :class:`PreflightReport` so an Airflow task can run the same checks. Credentials are
never part of a result or a message.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from xacct_map.core.arns import ROLE_ARN
from xacct_map.setup import policies

OK, FAILED, SKIPPED = "ok", "failed", "skipped"
_STATE_MACHINE_ARN = re.compile(
    r"^arn:(?P<partition>aws[\w-]*):states:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):stateMachine:(?P<name>[^:]+)$"
)
_ASSUMED_ROLE = re.compile(r"^arn:(?P<partition>aws[\w-]*):sts::(?P<account>\d{12}):assumed-role/(?P<name>[^/]+)/")


@dataclass(frozen=True)
class PreflightConfig:
    """What to check. Role and ARN values are the ones the DAG and the policies use.

    :param source_bucket: the bucket holding the data (source account).
    :param source_account: 12-digit id of the account that must own ``source_bucket``.
    :param inventory_bucket: the pipeline account's manifest bucket.
    :param state_machine_arn: the Distributed Map state machine.
    :param prefix: the source prefix the DAG lists.
    :param lister_role_arn: the role the pipeline identity assumes to list (None: ``lister_profile``,
        or the pipeline identity lists itself).
    :param lister_profile: an AWS profile that already is the lister (instead of ``lister_role_arn``).
    :param external_id: the ExternalId the lister role's trust policy requires.
    :param processor_role_arn: the processor Lambda's role (default: ``xacct-map-processor`` of the
        state machine's account); None-like ``""`` skips the read check.
    :param state_machine_role: the role the state machine must run as (name or ARN).
    :param source_region: the source bucket's Region (default: discovered with HeadBucket).
    :param inventory_prefix: the key prefix xacct-map owns in the inventory bucket.
    :param region: the pipeline Region (default: the state machine ARN's).
    :param endpoint_url: send every call there (a local emulator).
    :param kms_key: the source bucket's SSE-KMS key ARN, if any (for the fix statements).
    :param request_payer: ``"requester"`` for a Requester Pays source: sent on the source checks.
    """

    source_bucket: str
    source_account: str
    inventory_bucket: str
    state_machine_arn: str
    prefix: str = ""
    lister_role_arn: str | None = None
    lister_profile: str | None = None
    external_id: str | None = None
    processor_role_arn: str | None = None
    state_machine_role: str = "xacct-map-state-machine"
    source_region: str | None = None
    inventory_prefix: str = "xacct-map/"
    region: str | None = None
    endpoint_url: str | None = None
    kms_key: str | None = None
    request_payer: str | None = None

    @property
    def source_args(self) -> dict:
        """What every call on the source sends: ExpectedBucketOwner, and RequestPayer when given."""
        payer = {"RequestPayer": self.request_payer} if self.request_payer else {}
        return {"ExpectedBucketOwner": self.source_account} | payer


@dataclass(frozen=True)
class Fix:
    """Policy statements that grant what a check missed, and where they go."""

    where: str
    statements: tuple[dict, ...]
    command: str = ""


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # "ok", "failed" or "skipped"
    summary: str  # what was checked, naming the bucket/role/ARN
    error_code: str | None = None
    reason: str | None = None
    fixes: tuple[Fix, ...] = ()
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == OK


@dataclass(frozen=True)
class PreflightReport:
    checks: tuple[CheckResult, ...]
    caller_arn: str | None = None

    @property
    def ok(self) -> bool:
        """True when no check failed (skipped checks do not fail the report)."""
        return all(c.status != FAILED for c in self.checks)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if c.status == FAILED)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "caller_arn": self.caller_arn, "checks": [asdict(c) for c in self.checks]}

    def format(self) -> str:
        """Human-readable report: one line per check, then why and the statements that fix it."""
        lines = [
            f"xacct-map preflight: {'OK' if self.ok else 'FAILED'}"
            + (f" (as {self.caller_arn})" if self.caller_arn else "")
        ]
        for check in self.checks:
            lines.append(f"  [{check.status.upper():7}] {check.name}: {check.summary}")
            if check.reason:
                code = f"{check.error_code}: " if check.error_code else ""
                lines.append(f"            why: {code}{check.reason}")
            for fix in check.fixes:
                lines.append(f"            fix: {fix.where}" + (f" ({fix.command})" if fix.command else ""))
                for statement in fix.statements:
                    for text in json.dumps(statement, indent=2).splitlines():
                        lines.append(f"              {text}")
        return "\n".join(lines)


# -- the checks ----------------------------------------------------------------------------------


def run_preflight(
    config: PreflightConfig,
    *,
    session=None,
    on_client: Callable[[str, Any], None] | None = None,
) -> PreflightReport:
    """Run every check against AWS (or ``config.endpoint_url``); nothing is created or changed.

    :param session: a boto3 session of the pipeline account (Airflow: ``hook.get_session()``);
        default: boto3's default credential chain.
    :param on_client: called as ``on_client(label, client)`` for every client made (labels
        ``pipeline-sts``, ``lister-s3``, ``processor-s3``, ``pipeline-s3``, ``pipeline-stepfunctions``);
        tests attach botocore Stubbers or event hooks there.
    :returns: the report; ``report.ok`` is False when any check failed.
    """
    import boto3

    run = _Preflight(config, session or boto3.session.Session(), on_client)
    for check in (
        run.assume_lister_role,
        run.list_source,
        run.read_source_object,
        run.write_inventory,
        run.state_machine,
    ):
        run.checks.append(check())
    return PreflightReport(tuple(run.checks), caller_arn=run.caller_arn)


class _Preflight:
    """One preflight: the clients, what the checks learnt so far, and one method per check."""

    def __init__(self, config: PreflightConfig, session, on_client: Callable[[str, Any], None] | None):
        self.config, self.session, self.on_client = config, session, on_client
        self.machine = _STATE_MACHINE_ARN.match(config.state_machine_arn or "")
        self.region = (
            config.region or (self.machine["region"] if self.machine else None) or session.region_name or "us-east-1"
        )
        self.sts = self.client("pipeline-sts", session, "sts")
        self.caller_arn: str | None = None
        try:
            self.caller_arn = self.sts.get_caller_identity()["Arn"]
        except Exception:  # noqa: BLE001 - the checks report what fails; this is only for the fixes
            pass
        self.inputs = _policy_inputs(config, self.machine, self.region, self.caller_arn)
        self.documents = policies.all_documents(self.inputs) if self.inputs else {}
        self.checks: list[CheckResult] = []
        # Learnt by the checks, for the ones after them.
        self.lister_session = session
        self.lister_identity = self.caller_arn or "the pipeline identity"
        self.bucket_region = config.source_region
        self.first_key: str | None = None

    def client(self, label: str, session, service: str, region: str | None = None):
        made = session.client(service, region_name=region or self.region, endpoint_url=self.config.endpoint_url)
        if self.on_client:
            self.on_client(label, made)
        return made

    def assume_lister_role(self) -> CheckResult:
        import boto3

        config = self.config
        if config.lister_profile:
            self.lister_session = boto3.session.Session(profile_name=config.lister_profile, region_name=self.region)
            self.lister_identity = f"profile {config.lister_profile!r}"
            return CheckResult("assume_lister_role", SKIPPED, f"listing with profile {config.lister_profile!r}")
        if not config.lister_role_arn:
            return CheckResult("assume_lister_role", SKIPPED, "no lister role: the pipeline identity lists itself")
        self.lister_identity = config.lister_role_arn
        summary = f"{self.caller_arn or 'the pipeline identity'} assumes {config.lister_role_arn}"
        try:
            self.lister_session = _assume(self.sts, config.lister_role_arn, config.external_id, self.region)
        except Exception as err:  # noqa: BLE001
            self.lister_session = None
            return _failure("assume_lister_role", summary, err, _fixes_assume_lister(self.inputs, self.documents))
        return CheckResult("assume_lister_role", OK, summary)

    def list_source(self) -> CheckResult:
        from xacct_map.core.cross_account import bucket_region as discover

        config = self.config
        where = f"s3://{config.source_bucket}/{config.prefix}"
        if self.lister_session is None:
            return CheckResult("list_source", SKIPPED, f"list {where}: the lister role could not be assumed")
        summary = (
            f"ListObjectsV2 {where} (MaxKeys=1, ExpectedBucketOwner={config.source_account}) as {self.lister_identity}"
        )
        try:
            if not self.bucket_region:
                probe = self.client("lister-s3", self.lister_session, "s3")
                self.bucket_region = (
                    discover(probe, config.source_bucket, expected_bucket_owner=config.source_account) or self.region
                )
            s3 = self.client("lister-s3", self.lister_session, "s3", self.bucket_region)
            page = s3.list_objects_v2(
                Bucket=config.source_bucket, Prefix=config.prefix, MaxKeys=1, **config.source_args
            )
        except Exception as err:  # noqa: BLE001
            fixes = _fixes_list(self.inputs, self.documents)
            return _failure("list_source", summary, err, fixes, bucket=config.source_bucket, payer=config.request_payer)
        contents = page.get("Contents") or []
        self.first_key = contents[0]["Key"] if contents else None
        details = {"bucket_region": self.bucket_region, "first_key": self.first_key, "empty": self.first_key is None}
        return CheckResult("list_source", OK, summary + f" in {self.bucket_region}", details=details)

    def read_source_object(self) -> CheckResult:
        config = self.config
        processor_role = config.processor_role_arn
        if processor_role is None and self.inputs:
            processor_role = self.inputs.processor_role_arn
        if not processor_role:
            return CheckResult("read_source_object", SKIPPED, "no processor role given")
        if self.first_key is None:
            listed = any(c.name == "list_source" and c.ok for c in self.checks)
            reason = "nothing was listed under the prefix" if listed else "the listing failed"
            return CheckResult("read_source_object", SKIPPED, f"HeadObject as {processor_role}: {reason}")
        # Keys may hold control characters: escape them so the report stays one line per check.
        target = f"s3://{config.source_bucket}/{json.dumps(self.first_key, ensure_ascii=False)[1:-1]}"
        summary = f"HeadObject {target} (ExpectedBucketOwner={config.source_account}) as {processor_role}"
        try:
            processor_session = _assume(self.sts, processor_role, None, self.region)
        except Exception as err:  # noqa: BLE001
            return self._processor_not_assumable(processor_role, summary, err)
        try:
            s3 = self.client("processor-s3", processor_session, "s3", self.bucket_region)
            s3.head_object(Bucket=config.source_bucket, Key=self.first_key, **config.source_args)
        except Exception as err:  # noqa: BLE001
            fixes = _fixes_read(self.inputs, self.documents)
            return _failure(
                "read_source_object", summary, err, fixes, bucket=config.source_bucket, payer=config.request_payer
            )
        return CheckResult("read_source_object", OK, summary)

    def _processor_not_assumable(self, processor_role: str, summary: str, err: Exception) -> CheckResult:
        """The processor's trust names lambda.amazonaws.com only, as it should: say how to enable the check."""
        fixes: tuple[Fix, ...] = ()
        if self.inputs and self.caller_arn:
            principal = _role_of(self.caller_arn) or self.caller_arn
            fixes = (
                Fix(
                    f"pipeline account {self.inputs.pipeline_account}: trust policy of {processor_role}, "
                    "only while checking",
                    (policies.processor_preflight_trust_statement(self.inputs, principal),),
                    "aws iam update-assume-role-policy; remove it afterwards",
                ),
            )
        return CheckResult(
            "read_source_object",
            SKIPPED,
            summary,
            error_code=_code(err),
            reason=f"cannot assume the processor role to check as it ({_message(err)}); its trust policy "
            "normally names Lambda alone",
            fixes=fixes,
        )

    def write_inventory(self) -> CheckResult:
        config, inputs = self.config, self.inputs
        key = f"{config.inventory_prefix}manifests/_xacct-map-preflight/{uuid.uuid4().hex}.json"
        owner = {"ExpectedBucketOwner": inputs.pipeline_account} if inputs else {}
        summary = (
            f"CreateMultipartUpload + AbortMultipartUpload s3://{config.inventory_bucket}/{key}"
            f" as {self.caller_arn or 'the pipeline identity'}"
        )
        fixes = _fixes_write(inputs, self.documents)
        pipeline_s3 = self.client("pipeline-s3", self.session, "s3")
        try:
            upload = pipeline_s3.create_multipart_upload(Bucket=config.inventory_bucket, Key=key, **owner)
        except Exception as err:  # noqa: BLE001
            return _failure("write_inventory", summary, err, fixes, bucket=config.inventory_bucket)
        try:
            pipeline_s3.abort_multipart_upload(
                Bucket=config.inventory_bucket, Key=key, UploadId=upload["UploadId"], **owner
            )
        except Exception as err:  # noqa: BLE001
            summary += " (the upload was started but not aborted: the bucket's lifecycle rule removes it after a day)"
            return _failure("write_inventory", summary, err, fixes, bucket=config.inventory_bucket)
        return self._beside_state_machine("write_inventory", summary, pipeline_s3, config.inventory_bucket, "manifest")

    def _beside_state_machine(self, name: str, summary: str, s3, bucket: str, what: str) -> CheckResult:
        """OK, or FAILED when ``bucket`` is not in the state machine's account and Region (ItemReader
        and ResultWriter use no other bucket)."""
        from xacct_map.core.limits import bucket_location_problem

        if not self.machine:
            return CheckResult(name, OK, summary)
        try:
            problem = bucket_location_problem(s3, bucket, self.config.state_machine_arn, what=what)
        except Exception as err:  # noqa: BLE001
            return _failure(name, summary + f"; locating {bucket}", err, (), bucket=bucket)
        if problem is None:
            return CheckResult(name, OK, summary + f" (in {self.machine['region']}, beside the state machine)")
        return CheckResult(name, FAILED, summary, error_code="WrongBucketLocation", reason=problem)

    def state_machine(self) -> CheckResult:
        expected_role = self.inputs.state_machine_role_arn if self.inputs else None
        summary = f"DescribeStateMachine {self.config.state_machine_arn}"
        try:
            described = self.client("pipeline-stepfunctions", self.session, "stepfunctions").describe_state_machine(
                stateMachineArn=self.config.state_machine_arn
            )
        except Exception as err:  # noqa: BLE001
            return _failure("state_machine", summary, err, _fixes_state_machine(self.inputs, self.documents))
        role, details = described.get("roleArn"), {"role_arn": described.get("roleArn")}
        problems = _definition_problems(described.get("definition") or "{}")
        if expected_role and role != expected_role:
            problems.append(f"it runs as {role}, not as {expected_role} (the role the policies name)")
        if described.get("type", "STANDARD") != "STANDARD":
            problems.append(f"it is {described.get('type')}, not STANDARD")
        if not problems:
            return self._results_bucket_check(summary + f" (role {role})", described.get("definition") or "{}", details)
        redeploy = Fix(
            "pipeline account: redeploy the state machine",
            (),
            f"xacct-map deploy ... --state-machine-role {policies.role_name(expected_role)}",
        )
        return CheckResult(
            "state_machine",
            FAILED,
            summary,
            error_code="WrongConfiguration",
            reason="; ".join(problems),
            fixes=(redeploy,) if expected_role else (),
            details=details,
        )

    def _results_bucket_check(self, summary: str, definition: str, details: dict) -> CheckResult:
        """The ResultWriter's bucket, when the definition names one, must be beside the state machine."""
        buckets = _result_writer_buckets(definition)
        s3 = self.client("pipeline-s3", self.session, "s3") if buckets else None
        for bucket in buckets:
            result = self._beside_state_machine("state_machine", summary, s3, bucket, "ResultWriter")
            if not result.ok:
                return CheckResult(
                    result.name, result.status, result.summary, result.error_code, result.reason, details=details
                )
        return CheckResult("state_machine", OK, summary, details=details)


def _definition_problems(definition: str) -> list[str]:
    """Map settings of a deployed definition outside Step Functions' limits (:mod:`xacct_map.core.limits`)."""
    from xacct_map.core.limits import map_state_problems

    try:
        return [f"its definition: {p}" for p in map_state_problems(definition)]
    except (ValueError, AttributeError):
        return ["its definition is not valid JSON"]


def _result_writer_buckets(definition: str) -> list[str]:
    """The static ResultWriter buckets of a definition's Map states."""
    from xacct_map.core.limits import map_states

    try:
        states = json.loads(definition).get("States") or {}
    except (ValueError, AttributeError):
        return []
    buckets = []
    for _, state in map_states(states):
        bucket = ((state.get("ResultWriter") or {}).get("Parameters") or {}).get("Bucket")
        if isinstance(bucket, str) and bucket not in buckets:
            buckets.append(bucket)
    return buckets


def run_preflight_with_connection(aws_conn_id: str, config: PreflightConfig) -> PreflightReport:
    """:func:`run_preflight` with the credentials (and endpoint) of an Airflow AWS connection.

    For an Airflow task: the connection is the pipeline one (``xacct_map_pipeline``), the one the
    DAG's tasks use, so the checks run as the identity the pipeline really has. ::

        report = run_preflight_with_connection("xacct_map_pipeline", PreflightConfig(...))
        if not report.ok:
            raise AirflowFailException(report.format())
    """
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return run_preflight_with_hook(AwsBaseHook(aws_conn_id=aws_conn_id, client_type="sts"), config)


def run_preflight_with_hook(hook, config: PreflightConfig) -> PreflightReport:
    """:func:`run_preflight` with an amazon-provider hook's session and endpoint (an operator's ``self.hook``)."""
    from dataclasses import replace

    endpoint_url = config.endpoint_url or hook.conn_config.endpoint_url
    return run_preflight(replace(config, endpoint_url=endpoint_url), session=hook.get_session())


def _assume(sts, role_arn: str, external_id: str | None, region: str):
    """A session of ``role_arn`` (short-lived: a preflight takes seconds, no refresh needed)."""
    import boto3

    kwargs = {"RoleArn": role_arn, "RoleSessionName": "xacct-map-preflight", "DurationSeconds": 900}
    if external_id:
        kwargs["ExternalId"] = external_id
    creds = sts.assume_role(**kwargs)["Credentials"]
    return boto3.session.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=region,
    )


def _role_of(caller_arn: str) -> str | None:
    """``arn:aws:iam::<acct>:role/<name>`` for an assumed-role session ARN (the path is not in it)."""
    match = _ASSUMED_ROLE.match(caller_arn or "")
    return f"arn:{match['partition']}:iam::{match['account']}:role/{match['name']}" if match else None


def _policy_inputs(config: PreflightConfig, machine, region: str, caller_arn: str | None):
    """The :class:`~xacct_map.setup.policies.PolicyInputs` the fixes are generated from, or None."""
    if not machine:
        return None
    pipeline_account = machine["account"]
    airflow_role = _role_of(caller_arn or "")
    if airflow_role and ROLE_ARN.match(airflow_role) and airflow_role.split(":")[4] != pipeline_account:
        airflow_role = None
    values = dict(
        source_bucket=config.source_bucket,
        source_account=config.source_account,
        pipeline_account=pipeline_account,
        inventory_bucket=config.inventory_bucket,
        prefix=config.prefix,
        region=region,
        source_region=config.source_region,
        inventory_prefix=config.inventory_prefix,
        state_machine=machine["name"],
        external_id=config.external_id,
        kms_key=config.kms_key,
        state_machine_role=config.state_machine_role,
        result_writer=True,
    )
    if config.lister_role_arn:
        values["lister_role"] = config.lister_role_arn
    if config.processor_role_arn:
        values["processor_role"] = config.processor_role_arn
    if airflow_role:
        values["airflow_role"] = airflow_role
    if not config.lister_role_arn and not config.lister_profile and airflow_role:
        values["lister_role"] = airflow_role  # the pipeline identity lists the bucket itself
        values["external_id"] = None
    for attempt in (values, {k: v for k, v in values.items() if k != "airflow_role"}):
        try:
            return policies.PolicyInputs(**attempt)
        except policies.PolicyInputError:
            continue
    return None


def _code(err: Exception) -> str:
    from xacct_map.core.errors import error_code

    response = getattr(err, "response", None)
    if isinstance(response, dict):
        return error_code(err) or type(err).__name__
    return type(err).__name__


def _message(err: Exception) -> str:
    response = getattr(err, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Message") or str(err)
    return str(err)


_REASONS = {
    "AccessDenied": "access denied: no statement allows it (identity policy, bucket policy or trust policy)",
    "403": "forbidden: access denied, or the bucket belongs to another account than ExpectedBucketOwner",
    "NoSuchBucket": "the bucket does not exist",
    "404": "not found",
    "NoSuchKey": "the object does not exist",
    "StateMachineDoesNotExist": "the state machine does not exist in this account and Region",
    "InvalidArn": "not a valid state machine ARN",
    "PermanentRedirect": "the bucket is in another Region than the request's",
    "AuthorizationHeaderMalformed": "the request was signed for another Region than the bucket's",
    "InvalidClientTokenId": "the credentials are not valid",
    "ExpiredToken": "the credentials have expired",
}


def _failure(
    name: str,
    summary: str,
    err: Exception,
    fixes: tuple[Fix, ...],
    *,
    bucket: str | None = None,
    payer: str | None = None,
) -> CheckResult:
    from xacct_map.core.errors import requester_pays_hint

    code = _code(err)
    reason = _REASONS.get(code, _message(err))
    if code in ("403", "AccessDenied") and bucket:
        reason += f" (S3 answers 403 too when {bucket} is owned by another account than expected)."
        reason += requester_pays_hint(payer, "request_payer='requester' on the operators")
    if code in (
        "NoSuchBucket",
        "404",
        "NoSuchKey",
        "InvalidArn",
        "StateMachineDoesNotExist",
        "PermanentRedirect",
        "AuthorizationHeaderMalformed",
        "InvalidClientTokenId",
        "ExpiredToken",
    ):
        fixes = ()  # a name, Region or credential problem: no policy statement fixes it
    return CheckResult(name, FAILED, summary, error_code=code, reason=reason, fixes=fixes)


def _statements(documents: dict, name: str, *sids: str) -> tuple[dict, ...]:
    document = documents.get(name)
    return tuple(policies.find_statement(document, sid) for sid in sids) if document else ()


def _fixes_assume_lister(inputs, documents) -> tuple[Fix, ...]:
    if not inputs or inputs.lists_directly:
        return ()
    return (
        Fix(
            f"source account {inputs.source_account}: trust policy of {inputs.lister_role_arn}",
            _statements(documents, "lister_role_trust_policy", "XacctMapAirflowAssumesLister"),
            "xacct-map policy --only lister_role_trust_policy",
        ),
        Fix(
            f"pipeline account {inputs.pipeline_account}: policy of {inputs.airflow_role_arn}",
            _statements(documents, "airflow_role_policy", "XacctMapAssumeLister"),
            "xacct-map policy --only airflow_role_policy",
        ),
    )


def _fixes_list(inputs, documents) -> tuple[Fix, ...]:
    if not inputs:
        return ()
    fixes = [
        Fix(
            f"source account {inputs.source_account}: bucket policy of s3://{inputs.source_bucket} (merge)",
            _statements(documents, "source_bucket_policy", "XacctMapListSourceKeys"),
            "xacct-map policy --only source_bucket_policy",
        )
    ]
    if inputs.lists_directly:
        fixes.append(
            Fix(
                f"pipeline account {inputs.pipeline_account}: policy of {inputs.airflow_role_arn}",
                _statements(documents, "airflow_role_policy", "XacctMapListSourceKeys"),
                "xacct-map policy --only airflow_role_policy",
            )
        )
    else:
        fixes.append(
            Fix(
                f"source account {inputs.source_account}: policy of {inputs.lister_role_arn}",
                _statements(documents, "lister_role_policy", "XacctMapListSourceKeys"),
                "xacct-map policy --only lister_role_policy",
            )
        )
    return tuple(fixes)


def _fixes_read(inputs, documents) -> tuple[Fix, ...]:
    if not inputs:
        return ()
    fixes = [
        Fix(
            f"source account {inputs.source_account}: bucket policy of s3://{inputs.source_bucket} (merge)",
            _statements(documents, "source_bucket_policy", "XacctMapReadSourceObjects"),
            "xacct-map policy --only source_bucket_policy",
        ),
        Fix(
            f"pipeline account {inputs.pipeline_account}: policy of {inputs.processor_role_arn}",
            _statements(documents, "processor_role_policy", "XacctMapReadSourceObjects"),
            "xacct-map policy --only processor_role_policy",
        ),
    ]
    if inputs.kms_key:
        fixes.append(
            Fix(
                f"source account {inputs.source_account}: key policy of {inputs.kms_key} (merge)",
                _statements(documents, "source_kms_key_policy", "XacctMapProcessorDecryptViaS3"),
                "xacct-map policy --only source_kms_key_policy",
            )
        )
    return tuple(fixes)


def _fixes_write(inputs, documents) -> tuple[Fix, ...]:
    if not inputs:
        return ()
    return (
        Fix(
            f"pipeline account {inputs.pipeline_account}: policy of {inputs.airflow_role_arn}",
            _statements(documents, "airflow_role_policy", "XacctMapWriteManifests"),
            "xacct-map policy --only airflow_role_policy",
        ),
    )


def _fixes_state_machine(inputs, documents) -> tuple[Fix, ...]:
    if not inputs:
        return ()
    return (
        Fix(
            f"pipeline account {inputs.pipeline_account}: policy of {inputs.airflow_role_arn}",
            _statements(documents, "airflow_role_policy", "XacctMapDescribeStateMachine"),
            "xacct-map policy --only airflow_role_policy",
        ),
    )
