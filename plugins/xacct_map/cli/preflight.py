"""``xacct-map preflight``: the command-line adapter of :mod:`xacct_map.setup.preflight`."""

from __future__ import annotations

import argparse
import json

from xacct_map.cli import options
from xacct_map.setup.preflight import PreflightConfig, run_preflight


def register(subparsers) -> None:
    """Add the ``preflight`` subcommand to the ``xacct-map`` parser."""
    parser = subparsers.add_parser(
        "preflight",
        help="check the cross-account setup with real, side-effect-free calls",
        description=(
            "Check that the lister can assume its role and list the source prefix, the processor role can read "
            "an object, the inventory bucket accepts an upload (started and aborted) and the state machine "
            "exists with the expected role. Each failure names the AWS error and the policy statement that "
            "fixes it. Exit code 1 if any check failed."
        ),
    )
    parser.add_argument("--source-bucket", required=True, type=options.bucket_name)
    parser.add_argument(
        "--source-account",
        required=True,
        type=options.account_id,
        help="12-digit account that must own the source bucket",
    )
    parser.add_argument("--prefix", default="", type=options.prefix, help="the source prefix the DAG lists")
    lister = parser.add_mutually_exclusive_group()
    lister.add_argument(
        "--lister-role-arn",
        default=None,
        type=options.role_arn,
        help="role assumed (with the pipeline credentials) to list",
    )
    lister.add_argument("--lister-profile", default=None, help="AWS profile that is the lister (instead of a role)")
    parser.add_argument("--external-id", default=None, help="ExternalId of the lister role's trust policy")
    parser.add_argument(
        "--processor-role-arn",
        default=None,
        type=options.role_arn,
        help="the processor Lambda's role (default: xacct-map-processor of the pipeline account)",
    )
    parser.add_argument("--inventory-bucket", required=True, type=options.bucket_name)
    parser.add_argument("--inventory-prefix", default="xacct-map/", type=options.prefix, help="default: %(default)s")
    parser.add_argument("--state-machine-arn", required=True, type=options.state_machine_arn)
    parser.add_argument(
        "--state-machine-role",
        default="xacct-map-state-machine",
        type=options.role_name_or_arn,
        help="role the state machine must run as (default: %(default)s)",
    )
    parser.add_argument(
        "--source-region", default=None, type=options.region, help="default: discovered with HeadBucket"
    )
    parser.add_argument(
        "--kms-key", default=None, type=options.kms_key_arn, help="the source bucket's SSE-KMS key ARN (for the fixes)"
    )
    parser.add_argument(
        "--request-payer",
        choices=("requester",),
        default=None,
        help="the source is Requester Pays: send RequestPayer=requester on the source checks",
    )
    parser.add_argument("--profile", default=None, help="AWS profile of the pipeline account")
    parser.add_argument(
        "--region", default=None, type=options.region, help="pipeline Region (default: the state machine ARN's)"
    )
    parser.add_argument(
        "--endpoint-url",
        default=None,
        type=options.endpoint_url,
        help="send every call to this endpoint (local emulator)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    import boto3

    config = PreflightConfig(
        source_bucket=args.source_bucket,
        source_account=args.source_account,
        prefix=args.prefix,
        lister_role_arn=args.lister_role_arn,
        lister_profile=args.lister_profile,
        external_id=args.external_id,
        processor_role_arn=args.processor_role_arn,
        inventory_bucket=args.inventory_bucket,
        inventory_prefix=args.inventory_prefix,
        state_machine_arn=args.state_machine_arn,
        state_machine_role=args.state_machine_role,
        source_region=args.source_region,
        kms_key=args.kms_key,
        request_payer=args.request_payer,
        region=args.region,
        endpoint_url=args.endpoint_url,
    )
    session = boto3.session.Session(profile_name=args.profile, region_name=args.region)
    report = run_preflight(config, session=session)
    print(json.dumps(report.as_dict(), sort_keys=True) if args.json else report.format())
    return 0 if report.ok else 1
