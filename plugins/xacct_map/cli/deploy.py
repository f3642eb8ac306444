"""``xacct-map deploy``: create or update the pipeline account's resources, idempotently.

Deploys, in the account of the credentials used (``--profile`` or the default chain), the inventory
bucket, the processor and state machine roles with the policies of :mod:`xacct_map.setup.policies`,
the processor's log group, the processor Lambda (``--processor FILE.py:FUNCTION`` packaged with the
processor SDK, default the built-in one in ``functions/``; or ``--processor-arn`` to invoke an existing
function), the state machine from ``asl/`` (``--child-execution-type STANDARD|EXPRESS``)
and, when the role exists (or ``--airflow-trust`` is given), the Airflow role's inline policy. A
second run with the same options changes nothing and says so. The source account's side is printed, not applied: it is
another account (``xacct-map policy --only source_bucket_policy``).
"""

from __future__ import annotations

import argparse
import json
import sys

from xacct_map.cli import options


def register(subparsers) -> None:
    """Add the ``deploy`` subcommand to the ``xacct-map`` parser."""
    parser = subparsers.add_parser(
        "deploy",
        help="create or update the pipeline account's bucket, roles, Lambda and state machine (idempotent)",
        description=(
            "Create or update, in the pipeline account, the inventory bucket (public access blocked, SSE, "
            "lifecycle), the processor and state machine roles with least-privilege policies, the processor "
            "Lambda and the Distributed Map state machine. Safe to re-run: only differences are written."
        ),
    )
    _source_arguments(parser)
    _resource_name_arguments(parser)
    _processor_arguments(parser)
    _state_machine_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.set_defaults(func=run)


def _source_arguments(parser) -> None:
    """Where the data is and which account and Region the pipeline is deployed to."""
    parser.add_argument(
        "--source-bucket", type=options.bucket_name, required=True, help="the bucket holding the data (source account)"
    )
    parser.add_argument(
        "--source-account", type=options.account_id, required=True, help="12-digit id of the account owning the bucket"
    )
    parser.add_argument(
        "--prefix", type=options.prefix, default="", help="only keys under this prefix are listed and read"
    )
    parser.add_argument(
        "--source-region", type=options.region, default=None, help="the source bucket's Region (default: --region)"
    )
    parser.add_argument(
        "--region", type=options.region, default=None, help="the pipeline Region (default: the profile's Region)"
    )
    parser.add_argument("--profile", default=None, help="AWS profile of the pipeline account")
    parser.add_argument(
        "--endpoint-url",
        type=options.endpoint_url,
        default=None,
        help="send every call to this endpoint (local emulator)",
    )
    parser.add_argument(
        "--pipeline-account",
        type=options.account_id,
        default=None,
        help="12-digit pipeline account id (default: the caller's, from sts:GetCallerIdentity)",
    )
    parser.add_argument(
        "--kms-key", type=options.kms_key_arn, default=None, help="ARN of the source bucket's SSE-KMS key, if any"
    )


def _resource_name_arguments(parser) -> None:
    """The names of what deploy creates, and the roles the policies name."""
    parser.add_argument(
        "--inventory-bucket",
        type=options.bucket_name,
        default=None,
        help="manifest bucket (default: xacct-map-inventory-<pipeline account>)",
    )
    parser.add_argument(
        "--inventory-prefix",
        type=options.prefix,
        default="xacct-map/",
        help="key prefix owned by xacct-map in the inventory bucket (default: %(default)s)",
    )
    parser.add_argument("--state-machine", default="xacct-map-distributed-map", help="default: %(default)s")
    parser.add_argument(
        "--state-machine-role",
        type=options.role_name_or_arn,
        default="xacct-map-state-machine",
        help="default: %(default)s",
    )
    parser.add_argument("--function", default="xacct-map-processor", help="Lambda name (default: %(default)s)")
    parser.add_argument(
        "--processor-role", type=options.role_name_or_arn, default="xacct-map-processor", help="default: %(default)s"
    )
    parser.add_argument(
        "--lister-role",
        type=options.role_name_or_arn,
        default="xacct-map-lister",
        help="the source account's lister role, named in the policies (default: %(default)s)",
    )
    parser.add_argument(
        "--airflow-role",
        type=options.role_name_or_arn,
        default="xacct-map-airflow",
        help="the role Airflow's connection uses; its inline policy is set if it exists (default: %(default)s)",
    )
    parser.add_argument(
        "--airflow-trust",
        default=None,
        metavar="PRINCIPAL",
        help="create the Airflow role if missing, trusting this principal (a role/user ARN, or a "
        "service such as airflow-env.amazonaws.com); an existing role's trust is replaced",
    )
    parser.add_argument(
        "--expire-days",
        type=options.integer(0, 36500),
        default=30,
        help="expire manifests and results after this many days; 0 keeps them (default: %(default)s)",
    )
    parser.add_argument(
        "--log-retention-days",
        type=options.log_retention_days,
        default=30,
        help="keep the processor's logs this many days; 0 leaves the retention alone (default: %(default)s)",
    )


def _processor_arguments(parser) -> None:
    """Which function processes the objects, and its Lambda settings."""
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--processor",
        default=None,
        metavar="FILE.py:FUNCTION",
        help="your function process(obj) (a .py file or a package folder, then :FUNCTION), packaged with "
        "xacct-map's processor SDK (default: the built-in SHA-256 processor)",
    )
    which.add_argument(
        "--processor-arn",
        type=options.lambda_function_arn,
        default=None,
        metavar="ARN",
        help="invoke this existing Lambda function instead of deploying one (the state machine role may invoke it)",
    )
    parser.add_argument(
        "--processor-requirements",
        default=None,
        metavar="REQUIREMENTS.txt",
        help="pure-Python packages to install into the processor's zip (pip or uv, wheels for Lambda's Python)",
    )
    parser.add_argument(
        "--processor-env",
        action="append",
        default=None,
        metavar="NAME=VALUE",
        help="an environment variable of the processor function (repeatable), e.g. DEST_BUCKET=my-copies",
    )
    parser.add_argument(
        "--memory", type=options.integer(128, 10240), default=None, help="processor memory in MB (default 1024)"
    )
    parser.add_argument(
        "--timeout", type=options.integer(1, 900), default=None, help="processor timeout in seconds (default 900)"
    )
    parser.add_argument(
        "--ephemeral-storage",
        type=options.integer(512, 10240),
        default=None,
        help="processor /tmp in MB, 512-10240 (default 512)",
    )


def _state_machine_arguments(parser) -> None:
    """How the state machine runs the map."""
    parser.add_argument(
        "--max-concurrency",
        type=options.integer(0, 10000),
        default=100,
        help="child executions at once (default: %(default)s)",
    )
    parser.add_argument(
        "--tolerated-failure-percentage", type=options.number(0, 100), default=0.0, help="default: %(default)s"
    )
    parser.add_argument(
        "--child-execution-type",
        choices=("STANDARD", "EXPRESS"),
        default="STANDARD",
        help="the Distributed Map's child workflows: STANDARD (per state transition, exactly once) or EXPRESS "
        "(per request and duration, at most 5 minutes per child, at least once) (default: %(default)s)",
    )
    parser.add_argument(
        "--layout",
        choices=("batched", "flat"),
        default="batched",
        help="manifest layout the state machine reads: batched (asl/distributed_map.asl.json) or flat "
        "(asl/distributed_map_flat.asl.json, ItemBatcher) (default: %(default)s)",
    )
    parser.add_argument(
        "--manifest-format",
        choices=("json", "jsonl", "csv"),
        default="json",
        help="flat layout only: the manifest's format (default: %(default)s)",
    )
    parser.add_argument(
        "--max-items-per-batch",
        type=options.integer(1, 100_000_000),
        default=100,
        help="flat layout only: objects per Lambda invocation (default: %(default)s)",
    )


def pipeline_clients(*, profile: str | None, region: str | None, endpoint_url: str | None):
    """``(client_factory, region)`` for the pipeline account's credentials."""
    import boto3

    session = boto3.session.Session(profile_name=profile, region_name=region)
    region = session.region_name or "us-east-1"

    def client(service: str):
        return session.client(service, region_name=region, endpoint_url=endpoint_url)

    return client, region


def run(args: argparse.Namespace) -> int:
    """Deploy; exit code 0 on success, 2 for invalid options, 1 for an AWS error."""
    from botocore.exceptions import BotoCoreError, ClientError

    from xacct_map.setup import deploy, policies
    from xacct_map.setup.packaging import PackagingError

    try:
        client, region = pipeline_clients(profile=args.profile, region=args.region, endpoint_url=args.endpoint_url)
        account = args.pipeline_account or client("sts").get_caller_identity()["Account"]
    except (BotoCoreError, ClientError) as err:
        print(f"xacct-map deploy: cannot reach the pipeline account: {err}", file=sys.stderr)
        return 1
    try:
        inputs = _policy_inputs(args, account, region)
    except policies.PolicyInputError as err:
        print(f"xacct-map deploy: {err}", file=sys.stderr)
        return 2
    try:
        result = deploy.deploy_pipeline(
            client,
            inputs,
            max_concurrency=args.max_concurrency,
            tolerated_failure_percentage=args.tolerated_failure_percentage,
            expire_days=args.expire_days or None,
            log_retention_days=args.log_retention_days or None,
            airflow_trust=args.airflow_trust,
            layout=args.layout,
            manifest_format=args.manifest_format,
            max_items_per_batch=args.max_items_per_batch,
            processor=deploy.ProcessorOptions(
                spec=args.processor,
                requirements=args.processor_requirements,
                environment=deploy.parse_environment(args.processor_env),
                memory=args.memory,
                timeout=args.timeout,
                ephemeral_storage=args.ephemeral_storage,
            ),
            child_execution_type=args.child_execution_type,
        )
    except PackagingError as err:
        print(f"xacct-map deploy: {err}", file=sys.stderr)
        return 2
    except ClientError as err:
        error = err.response.get("Error", {})
        print(
            f"xacct-map deploy: {err.operation_name} failed in account {account} ({region}): "
            f"{error.get('Code')}: {error.get('Message')}",
            file=sys.stderr,
        )
        return 1
    except (RuntimeError, ValueError) as err:
        print(f"xacct-map deploy: {err}", file=sys.stderr)
        return 1
    _print_result(args, result, account, region)
    return 0


def _policy_inputs(args: argparse.Namespace, account: str, region: str):
    """The :class:`~xacct_map.setup.policies.PolicyInputs` of the command line (raises PolicyInputError)."""
    from xacct_map.setup import policies

    return policies.PolicyInputs(
        source_bucket=args.source_bucket,
        source_account=args.source_account,
        pipeline_account=account,
        inventory_bucket=args.inventory_bucket or f"xacct-map-inventory-{account}",
        prefix=args.prefix,
        lister_role=args.lister_role,
        processor_role=args.processor_role,
        airflow_role=args.airflow_role,
        kms_key=args.kms_key,
        region=region,
        source_region=args.source_region,
        inventory_prefix=args.inventory_prefix,
        state_machine=args.state_machine,
        function=args.function,
        result_writer=True,
        state_machine_role=args.state_machine_role,
        processor_arn=args.processor_arn,
    )


def _print_result(args: argparse.Namespace, result, account: str, region: str) -> None:
    if args.json:
        print(json.dumps(result.as_dict(), sort_keys=True))
        return
    print(
        f"xacct-map deploy: account {account}, Region {region}: "
        + (f"{len(result.changes)} change(s)" if result.changes else "no changes, everything up to date")
    )
    for line in result.changes:
        print(f"  - {line}")
    print(f"  inventory bucket    s3://{result.inventory_bucket}")
    print(f"  processor function  {result.function_arn}")
    print(f"  state machine       {result.state_machine_arn}")
    roles = [result.processor_role_arn, result.state_machine_role_arn, result.airflow_role_arn]
    print(f"  roles               {', '.join(r for r in roles if r)}")
    for note in result.notes:
        print(f"  note: {note}")
