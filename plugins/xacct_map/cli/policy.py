"""``xacct-map policy``: print the IAM documents of the cross-account setup as JSON.

The output is a JSON object, document name -> document; ``--only NAME`` prints one document alone,
ready for ``aws iam put-role-policy --policy-document file://...`` or
``aws s3api put-bucket-policy --policy file://...`` (merge it into any existing policy first:
both calls replace the whole policy).
"""

from __future__ import annotations

import argparse
import sys

from xacct_map.cli import options
from xacct_map.setup import policies

_ACCESS_POINT_HELP = (
    "the source is read through this access point (its ARN, also for an alias; it may belong to another account): "
    "prints its policy and the bucket's delegation statements"
)


def register(subparsers) -> None:
    """Add the ``policy`` subcommand to the ``xacct-map`` parser."""
    parser = subparsers.add_parser(
        "policy",
        help="print least-privilege IAM policies for the source and pipeline accounts",
        description=(
            "Print the IAM documents (bucket policy, KMS key policy statement, role trust and permissions "
            "policies) for listing and reading a bucket of a source account from a pipeline account. "
            "Role options take a role name or ARN."
        ),
    )
    parser.add_argument("--source-bucket", required=True, help="the bucket holding the data (source account)")
    parser.add_argument("--source-account", required=True, help="12-digit id of the account owning the bucket")
    parser.add_argument("--pipeline-account", required=True, help="12-digit id of the account running the pipeline")
    parser.add_argument("--prefix", default="", help="only keys under this prefix are listed and read")
    _sources_arguments(parser)
    parser.add_argument(
        "--lister-role",
        default="xacct-map-lister",
        help="role listing the bucket; a name is taken in the source account (default: %(default)s)",
    )
    parser.add_argument(
        "--processor-role",
        default="xacct-map-processor",
        help="the processor Lambda's role, pipeline account (default: %(default)s)",
    )
    parser.add_argument(
        "--airflow-role",
        default="xacct-map-airflow",
        help="the role of Airflow's AWS connection, pipeline account (default: %(default)s)",
    )
    parser.add_argument("--kms-key", default=None, help="ARN of the source bucket's SSE-KMS key, if any")
    parser.add_argument("--access-point", default=None, metavar="ARN", help=_ACCESS_POINT_HELP)
    parser.add_argument("--region", default="us-east-1", help="the pipeline Region (default: %(default)s)")
    parser.add_argument("--source-region", default=None, help="the source bucket's Region (default: --region)")
    parser.add_argument(
        "--inventory-bucket",
        default=None,
        help="the pipeline account's manifest bucket (default: xacct-map-inventory-<pipeline account>)",
    )
    parser.add_argument(
        "--inventory-prefix",
        default="xacct-map/",
        help="key prefix owned by xacct-map in the inventory bucket (default: %(default)s)",
    )
    parser.add_argument(
        "--state-machine", default="xacct-map-distributed-map", help="the state machine's name (default: %(default)s)"
    )
    parser.add_argument(
        "--state-machine-role",
        default="xacct-map-state-machine",
        help="the state machine's execution role, pipeline account (default: %(default)s)",
    )
    parser.add_argument(
        "--function", default="xacct-map-processor", help="the processor Lambda's function name (default: %(default)s)"
    )
    parser.add_argument(
        "--processor-arn",
        default=None,
        metavar="ARN",
        help="an existing Lambda function the state machine invokes instead of --function "
        "(as `xacct-map deploy --processor-arn`)",
    )
    parser.add_argument("--external-id", default=None, help="sts:ExternalId the lister role's trust policy requires")
    parser.add_argument(
        "--result-writer",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the state machine has a ResultWriter (the shipped asl/ has one): let it write under "
        "<inventory prefix>results/ (default: on; --no-result-writer for an ASL without one)",
    )
    parser.add_argument(
        "--only",
        default=None,
        choices=sorted(policies.DOCUMENT_TARGETS),
        metavar="NAME",
        help="print only this document: " + ", ".join(sorted(policies.DOCUMENT_TARGETS)),
    )
    parser.set_defaults(func=run)


def _sources_arguments(parser) -> None:
    parser.add_argument(
        "--also-source",
        action="append",
        default=[],
        type=options.s3_uri(),
        metavar="S3URI",
        help="another s3://bucket/prefix of the same source account read by the same lister role (repeat): "
        "every policy covers it, and each other bucket gets its own source_bucket_policy:<bucket>",
    )
    parser.add_argument(
        "--versions",
        action="store_true",
        help="the run reads versions (--versions, or a key list with versionIds): adds s3:ListBucketVersions "
        "and s3:GetObjectVersion",
    )


def run(args: argparse.Namespace) -> int:
    """Print the documents; exit code 2 (with the reason on stderr) for an invalid value."""
    try:
        inputs = policies.PolicyInputs(
            source_bucket=args.source_bucket,
            source_account=args.source_account,
            pipeline_account=args.pipeline_account,
            inventory_bucket=args.inventory_bucket or f"xacct-map-inventory-{args.pipeline_account}",
            prefix=args.prefix,
            lister_role=args.lister_role,
            processor_role=args.processor_role,
            airflow_role=args.airflow_role,
            kms_key=args.kms_key,
            region=args.region,
            source_region=args.source_region,
            inventory_prefix=args.inventory_prefix,
            state_machine=args.state_machine,
            function=args.function,
            external_id=args.external_id,
            result_writer=args.result_writer,
            state_machine_role=args.state_machine_role,
            processor_arn=args.processor_arn,
            access_point=args.access_point,
        )
    except policies.PolicyInputError as err:
        print(f"xacct-map policy: {err}", file=sys.stderr)
        return 2
    try:
        documents = _documents(inputs, args)
    except policies.PolicyInputError as err:
        print(f"xacct-map policy: {err}", file=sys.stderr)
        return 2
    if args.only:
        if args.only not in documents:
            reason = {
                "source_kms_key_policy": "it needs --kms-key",
                "source_access_point_policy": "it needs --access-point",
            }.get(args.only, "the Airflow role lists the bucket itself, so there is no lister role")
            print(f"xacct-map policy: no {args.only} document for these options: {reason}", file=sys.stderr)
            return 2
        print(policies.render(documents[args.only]))
    else:
        print(policies.render(documents))
    return 0


def _documents(inputs, args: argparse.Namespace) -> dict:
    """Every document; with ``--also-source``/``--versions``, widened to cover them."""
    if not args.also_source and not args.versions:
        return policies.all_documents(inputs)
    from xacct_map.core.s3uri import split_s3_uri
    from xacct_map.setup.source_policies import source_documents

    sources = [split_s3_uri(uri, what="--also-source") for uri in args.also_source]
    return source_documents(inputs, sources, versions=args.versions)
