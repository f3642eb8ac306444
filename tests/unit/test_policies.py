"""The IAM documents of the cross-account setup: statement by statement, then linted as a whole."""

from __future__ import annotations

import dataclasses
import json
import re
import warnings

import pytest

from xacct_map import cli
from xacct_map.setup import policies
from xacct_map.setup.policies import PolicyInputError, PolicyInputs

SOURCE = "111111111111"
PIPELINE = "123456789012"
OTHER = "999999999999"
KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
KMS_KEY = f"arn:aws:kms:us-east-1:{SOURCE}:key/{KEY_ID}"


def make_inputs(**overrides) -> PolicyInputs:
    values = dict(
        source_bucket="source-data",
        source_account=SOURCE,
        pipeline_account=PIPELINE,
        inventory_bucket="pipeline-inventory",
        prefix="exports/2026/",
    )
    values.update(overrides)
    return PolicyInputs(**values)


def statements_by_sid(document: dict) -> dict[str, dict]:
    assert document["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in document["Statement"]]
    assert len(sids) == len(set(sids)), f"duplicate Sids {sids}"
    return {s["Sid"]: s for s in document["Statement"]}


# Every combination the structural checks and the linter go over.
VARIANTS = {
    "prefix": {},
    "whole-bucket": {"prefix": ""},
    "kms": {"kms_key": KMS_KEY, "external_id": "xacct-map-ext-1"},
    "result-writer": {"result_writer": True},
    "cross-region-kms": {
        "source_region": "eu-west-1",
        "kms_key": f"arn:aws:kms:eu-west-1:{SOURCE}:key/mrk-0123456789abcdef0123456789abcdef",
    },
    "china": {
        "region": "cn-north-1",
        "source_region": "cn-northwest-1",
        "kms_key": f"arn:aws-cn:kms:cn-northwest-1:{SOURCE}:key/{KEY_ID}",
    },
    "govcloud": {"region": "us-gov-west-1", "lister_role": f"arn:aws-us-gov:iam::{PIPELINE}:role/team/lister"},
    "direct-listing": {"lister_role": f"arn:aws:iam::{PIPELINE}:role/xacct-map-airflow"},
    # an access point of a third account in front of the source bucket
    "access-point": {"access_point": "arn:aws:s3:us-east-1:222222222222:accesspoint/shared"},
    "directory-bucket": {"source_bucket": "data--use1-az4--x-s3"},
}


# -- source account --------------------------------------------------------------------------


def test_bucket_policy_lets_the_lister_list_only_under_the_prefix():
    inputs = make_inputs()
    stmt = statements_by_sid(policies.source_bucket_policy(inputs))["XacctMapListSourceKeys"]
    assert stmt["Effect"] == "Allow"
    assert stmt["Principal"] == {"AWS": f"arn:aws:iam::{SOURCE}:role/xacct-map-lister"}
    assert stmt["Action"] == ["s3:ListBucket"]
    assert stmt["Resource"] == "arn:aws:s3:::source-data"
    assert stmt["Condition"] == {
        "Bool": {"aws:SecureTransport": "true"},
        "StringLike": {"s3:prefix": ["exports/2026/*"]},
    }


def test_bucket_policy_lets_the_processor_read_only_objects_under_the_prefix():
    inputs = make_inputs()
    stmt = statements_by_sid(policies.source_bucket_policy(inputs))["XacctMapReadSourceObjects"]
    assert stmt["Principal"] == {"AWS": f"arn:aws:iam::{PIPELINE}:role/xacct-map-processor"}
    assert stmt["Action"] == ["s3:GetObject"]
    assert stmt["Resource"] == "arn:aws:s3:::source-data/exports/2026/*"
    assert stmt["Condition"] == {"Bool": {"aws:SecureTransport": "true"}}


def test_bucket_policy_has_exactly_two_statements_and_no_kms_action():
    # S3 rejects bucket policies with non-S3 actions: KMS goes to the key policy instead.
    document = policies.source_bucket_policy(make_inputs(kms_key=KMS_KEY))
    assert list(statements_by_sid(document)) == ["XacctMapListSourceKeys", "XacctMapReadSourceObjects"]
    assert all(a.startswith("s3:") for s in document["Statement"] for a in s["Action"])


def test_without_prefix_the_whole_bucket_is_granted_and_no_prefix_condition_is_set():
    inputs = make_inputs(prefix="")
    bucket = statements_by_sid(policies.source_bucket_policy(inputs))
    assert bucket["XacctMapListSourceKeys"]["Condition"] == {"Bool": {"aws:SecureTransport": "true"}}
    assert bucket["XacctMapReadSourceObjects"]["Resource"] == "arn:aws:s3:::source-data/*"
    lister = statements_by_sid(policies.lister_role_policy(inputs))["XacctMapListSourceKeys"]
    assert "Condition" not in lister


def test_prefix_without_trailing_slash_is_kept_verbatim():
    # "logs/2026" also covers "logs/2026-01/...": the caller's prefix is a key prefix, not a folder.
    inputs = make_inputs(prefix="logs/2026")
    assert statements_by_sid(policies.lister_role_policy(inputs))["XacctMapListSourceKeys"]["Condition"] == {
        "StringLike": {"s3:prefix": ["logs/2026*"]}
    }
    assert inputs.objects_arn(inputs.source_bucket, inputs.prefix) == "arn:aws:s3:::source-data/logs/2026*"


def test_kms_key_policy_statement_lets_only_the_processor_decrypt_through_s3_of_the_bucket_region():
    inputs = make_inputs(kms_key=KMS_KEY)
    document = policies.source_kms_key_policy(inputs)
    stmt = statements_by_sid(document)["XacctMapProcessorDecryptViaS3"]
    assert stmt["Principal"] == {"AWS": f"arn:aws:iam::{PIPELINE}:role/xacct-map-processor"}
    assert stmt["Action"] == ["kms:Decrypt"]
    assert stmt["Resource"] == "*"  # in a key policy: "the key this policy is attached to"
    assert stmt["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com", "kms:CallerAccount": PIPELINE}
    }


def test_kms_off_means_no_key_policy_and_no_kms_permission_anywhere():
    inputs = make_inputs()
    documents = policies.all_documents(inputs)
    assert "source_kms_key_policy" not in documents
    assert "kms:" not in policies.render(documents)
    with pytest.raises(PolicyInputError, match="kms_key is not set"):
        policies.source_kms_key_policy(inputs)


def test_lister_role_trust_requires_the_airflow_role_and_the_external_id():
    inputs = make_inputs(external_id="xacct-map-ext-1")
    stmt = statements_by_sid(policies.lister_role_trust_policy(inputs))["XacctMapAirflowAssumesLister"]
    assert stmt["Principal"] == {"AWS": f"arn:aws:iam::{PIPELINE}:role/xacct-map-airflow"}
    assert stmt["Action"] == "sts:AssumeRole"
    assert stmt["Condition"] == {"StringEquals": {"sts:ExternalId": "xacct-map-ext-1"}}
    assert "Resource" not in stmt


def test_lister_role_trust_without_external_id_has_no_condition():
    stmt = policies.lister_role_trust_policy(make_inputs())["Statement"][0]
    assert "Condition" not in stmt


def test_lister_role_policy_lists_only_the_source_bucket_under_the_prefix():
    document = policies.lister_role_policy(make_inputs())
    assert document["Statement"] == [
        {
            "Sid": "XacctMapListSourceKeys",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": "arn:aws:s3:::source-data",
            "Condition": {"StringLike": {"s3:prefix": ["exports/2026/*"]}},
        }
    ]


# -- pipeline account ------------------------------------------------------------------------


def test_state_machine_role_policy_statement_by_statement():
    stmts = statements_by_sid(policies.state_machine_role_policy(make_inputs(result_writer=True)))
    sfn = f"arn:aws:states:us-east-1:{PIPELINE}"
    function = f"arn:aws:lambda:us-east-1:{PIPELINE}:function:xacct-map-processor"
    assert stmts["XacctMapReadManifests"]["Action"] == ["s3:GetObject"]
    assert stmts["XacctMapReadManifests"]["Resource"] == "arn:aws:s3:::pipeline-inventory/xacct-map/manifests/*"
    assert stmts["XacctMapInvokeProcessor"]["Action"] == ["lambda:InvokeFunction"]
    assert stmts["XacctMapInvokeProcessor"]["Resource"] == [function, f"{function}:*"]
    assert stmts["XacctMapStartChildWorkflows"]["Action"] == ["states:StartExecution"]
    assert stmts["XacctMapStartChildWorkflows"]["Resource"] == f"{sfn}:stateMachine:xacct-map-distributed-map"
    assert stmts["XacctMapManageChildWorkflows"]["Action"] == ["states:DescribeExecution", "states:StopExecution"]
    assert stmts["XacctMapManageChildWorkflows"]["Resource"] == [
        f"{sfn}:execution:xacct-map-distributed-map:*",
        f"{sfn}:execution:xacct-map-distributed-map/*",
    ]
    assert stmts["XacctMapRedriveChildWorkflows"]["Action"] == ["states:RedriveExecution"]
    assert stmts["XacctMapRedriveChildWorkflows"]["Resource"] == f"{sfn}:execution:xacct-map-distributed-map/*"
    assert stmts["XacctMapWriteMapRunResults"]["Action"] == [
        "s3:PutObject",
        "s3:GetObject",
        "s3:ListMultipartUploadParts",
        "s3:AbortMultipartUpload",
    ]
    assert stmts["XacctMapWriteMapRunResults"]["Resource"] == "arn:aws:s3:::pipeline-inventory/xacct-map/results/*"
    assert all("Principal" not in s and "Condition" not in s for s in stmts.values())


def test_state_machine_without_result_writer_gets_no_s3_write():
    # The default, like the shipped ASL (no ResultWriter): the role only reads manifests.
    document = policies.state_machine_role_policy(make_inputs())
    assert "XacctMapWriteMapRunResults" not in statements_by_sid(document)
    assert "s3:PutObject" not in policies.render(document)


def test_inventory_prefix_moves_manifests_and_results_together():
    stmts = statements_by_sid(
        policies.state_machine_role_policy(make_inputs(inventory_prefix="teams/a/", result_writer=True))
    )
    assert stmts["XacctMapReadManifests"]["Resource"] == "arn:aws:s3:::pipeline-inventory/teams/a/manifests/*"
    assert stmts["XacctMapWriteMapRunResults"]["Resource"] == "arn:aws:s3:::pipeline-inventory/teams/a/results/*"


def test_state_machine_trust_is_limited_to_this_accounts_state_machine():
    stmt = policies.state_machine_role_trust_policy(make_inputs())["Statement"][0]
    assert stmt["Principal"] == {"Service": "states.amazonaws.com"}
    assert stmt["Action"] == "sts:AssumeRole"
    assert stmt["Condition"] == {
        "StringEquals": {"aws:SourceAccount": PIPELINE},
        "ArnLike": {"aws:SourceArn": f"arn:aws:states:us-east-1:{PIPELINE}:stateMachine:xacct-map-distributed-map"},
    }


def test_processor_role_policy_reads_source_objects_and_writes_only_its_own_logs():
    stmts = statements_by_sid(policies.processor_role_policy(make_inputs()))
    assert list(stmts) == ["XacctMapReadSourceObjects", "XacctMapWriteOwnLogs"]
    assert stmts["XacctMapReadSourceObjects"]["Action"] == ["s3:GetObject"]
    assert stmts["XacctMapReadSourceObjects"]["Resource"] == "arn:aws:s3:::source-data/exports/2026/*"
    assert stmts["XacctMapWriteOwnLogs"]["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert stmts["XacctMapWriteOwnLogs"]["Resource"] == (
        f"arn:aws:logs:us-east-1:{PIPELINE}:log-group:/aws/lambda/xacct-map-processor:log-stream:*"
    )


def test_processor_role_policy_with_kms_decrypts_only_that_key_through_s3():
    stmt = statements_by_sid(policies.processor_role_policy(make_inputs(kms_key=KMS_KEY)))[
        "XacctMapDecryptSourceObjects"
    ]
    assert stmt["Action"] == ["kms:Decrypt"]
    assert stmt["Resource"] == KMS_KEY
    assert stmt["Condition"]["StringEquals"]["kms:ViaService"] == "s3.us-east-1.amazonaws.com"


def test_processor_trust_is_lambda():
    stmt = policies.processor_role_trust_policy(make_inputs())["Statement"][0]
    assert stmt["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert stmt["Action"] == "sts:AssumeRole"


def test_airflow_role_policy_statement_by_statement():
    stmts = statements_by_sid(policies.airflow_role_policy(make_inputs()))
    sfn = f"arn:aws:states:us-east-1:{PIPELINE}"
    executions = f"{sfn}:execution:xacct-map-distributed-map:*"
    assert stmts["XacctMapAssumeLister"]["Action"] == ["sts:AssumeRole"]
    assert stmts["XacctMapAssumeLister"]["Resource"] == f"arn:aws:iam::{SOURCE}:role/xacct-map-lister"
    assert stmts["XacctMapWriteManifests"]["Action"] == [
        "s3:PutObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
        "s3:GetObject",
        "s3:DeleteObject",
    ]
    assert stmts["XacctMapWriteManifests"]["Resource"] == "arn:aws:s3:::pipeline-inventory/xacct-map/manifests/*"
    assert stmts["XacctMapFindOpenManifestUploads"]["Action"] == ["s3:ListBucketMultipartUploads"]
    assert stmts["XacctMapFindOpenManifestUploads"]["Resource"] == "arn:aws:s3:::pipeline-inventory"
    assert stmts["XacctMapStartExecution"]["Action"] == ["states:StartExecution"]
    assert stmts["XacctMapStartExecution"]["Resource"] == f"{sfn}:stateMachine:xacct-map-distributed-map"
    assert stmts["XacctMapManageExecutions"]["Action"] == [
        "states:DescribeExecution",
        "states:StopExecution",
        "states:RedriveExecution",
    ]
    assert stmts["XacctMapManageExecutions"]["Resource"] == executions
    assert stmts["XacctMapListMapRuns"] == {
        "Sid": "XacctMapListMapRuns",
        "Effect": "Allow",
        "Action": ["states:ListMapRuns"],
        "Resource": executions,
    }
    assert stmts["XacctMapDescribeMapRuns"]["Action"] == ["states:DescribeMapRun"]
    assert stmts["XacctMapDescribeMapRuns"]["Resource"] == f"{sfn}:mapRun:xacct-map-distributed-map/*:*"
    # Read-only, for `xacct-map preflight`: the state machine exists and runs as the right role.
    assert stmts["XacctMapDescribeStateMachine"]["Action"] == ["states:DescribeStateMachine"]
    assert stmts["XacctMapDescribeStateMachine"]["Resource"] == f"{sfn}:stateMachine:xacct-map-distributed-map"
    assert len(stmts) == 8


def test_airflow_role_as_lister_lists_directly_and_assumes_nothing():
    # The bucket-policy-only setup: the source account creates no role at all.
    airflow = f"arn:aws:iam::{PIPELINE}:role/xacct-map-airflow"
    inputs = make_inputs(lister_role=airflow)
    assert inputs.lists_directly
    documents = policies.all_documents(inputs)
    assert "lister_role_trust_policy" not in documents and "lister_role_policy" not in documents
    bucket = statements_by_sid(documents["source_bucket_policy"])["XacctMapListSourceKeys"]
    assert bucket["Principal"] == {"AWS": airflow}
    stmts = statements_by_sid(documents["airflow_role_policy"])
    assert "XacctMapAssumeLister" not in stmts
    assert "sts:AssumeRole" not in policies.render(documents["airflow_role_policy"])
    assert stmts["XacctMapListSourceKeys"] == {
        "Sid": "XacctMapListSourceKeys",
        "Effect": "Allow",
        "Action": ["s3:ListBucket"],
        "Resource": "arn:aws:s3:::source-data",
        "Condition": {"StringLike": {"s3:prefix": ["exports/2026/*"]}},
    }


def test_state_machine_name_is_not_a_prefix_match_of_other_machines():
    # "execution:etl:*" must not cover machine "etl-admin": the separator after the name is fixed.
    inputs = make_inputs(state_machine="etl")
    for arn in (inputs.executions_arn, inputs.child_executions_arn, inputs.map_runs_arn, inputs.state_machine_arn):
        assert re.search(r"(:|/)etl(:|/)|:etl$", arn), arn


def test_role_arns_are_used_as_given():
    inputs = make_inputs(
        lister_role=f"arn:aws:iam::{PIPELINE}:role/service-role/lister",
        processor_role=f"arn:aws:iam::{PIPELINE}:role/proc",
        airflow_role=f"arn:aws:iam::{PIPELINE}:role/mwaa/airflow",
    )
    bucket = statements_by_sid(policies.source_bucket_policy(inputs))
    assert bucket["XacctMapListSourceKeys"]["Principal"]["AWS"] == f"arn:aws:iam::{PIPELINE}:role/service-role/lister"
    assert bucket["XacctMapReadSourceObjects"]["Principal"]["AWS"] == f"arn:aws:iam::{PIPELINE}:role/proc"
    trust = policies.lister_role_trust_policy(inputs)["Statement"][0]
    assert trust["Principal"]["AWS"] == f"arn:aws:iam::{PIPELINE}:role/mwaa/airflow"


# -- partitions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "partition", "suffix"),
    [
        ("eu-west-3", "aws", "amazonaws.com"),
        ("cn-north-1", "aws-cn", "amazonaws.com.cn"),
        ("us-gov-east-1", "aws-us-gov", "amazonaws.com"),
    ],
)
def test_every_arn_uses_the_partition_of_the_region(region, partition, suffix):
    key = f"arn:{partition}:kms:{region}:{SOURCE}:key/{KEY_ID}"
    documents = policies.all_documents(make_inputs(region=region, kms_key=key))
    text = policies.render(documents)
    arns = re.findall(r'"(arn:[^"]*)"', text)
    assert arns and all(arn.startswith(f"arn:{partition}:") for arn in arns), arns
    via = documents["source_kms_key_policy"]["Statement"][0]["Condition"]["StringEquals"]["kms:ViaService"]
    assert via == f"s3.{region}.{suffix}"
    assert f":{region}:" in statements_by_sid(documents["airflow_role_policy"])["XacctMapStartExecution"]["Resource"]


def test_source_region_sets_the_kms_region_but_not_the_pipeline_arns():
    inputs = make_inputs(
        region="us-east-1", source_region="eu-west-1", kms_key=f"arn:aws:kms:eu-west-1:{SOURCE}:key/{KEY_ID}"
    )
    documents = policies.all_documents(inputs)
    via = documents["source_kms_key_policy"]["Statement"][0]["Condition"]["StringEquals"]["kms:ViaService"]
    assert via == "s3.eu-west-1.amazonaws.com"
    assert ":us-east-1:" in statements_by_sid(documents["airflow_role_policy"])["XacctMapStartExecution"]["Resource"]


# -- bad inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"source_account": "12345"}, "source_account '12345' is not a 12-digit AWS account id"),
        ({"pipeline_account": "12345678901a"}, "pipeline_account '12345678901a' is not a 12-digit"),
        ({"source_bucket": "Source_Data"}, "source_bucket 'Source_Data' is not a valid S3 bucket name"),
        ({"source_bucket": "ab"}, "source_bucket 'ab' is not a valid S3 bucket name"),
        ({"inventory_bucket": "my..bucket"}, "inventory_bucket 'my..bucket' is not a valid S3 bucket name: no two"),
        ({"source_bucket": "192.168.5.4"}, "'192.168.5.4' is not a valid S3 bucket name: not formatted as an IP"),
        ({"source_bucket": "xn--data"}, "'xn--data' is not a valid S3 bucket name: no reserved"),
        ({"source_bucket": "data-s3alias"}, "'data-s3alias' is not a valid S3 bucket name: no reserved"),
        ({"prefix": "exports/*"}, "prefix 'exports/*' contains '*'"),
        ({"prefix": "a?b"}, "prefix 'a?b' contains '?'"),
        ({"prefix": "${aws:username}/"}, "prefix '${aws:username}/' contains '${'"),
        ({"inventory_prefix": "xacct-map"}, "inventory_prefix 'xacct-map' must end with '/'"),
        ({"region": "us-east"}, "region 'us-east' is not a Region name"),
        ({"region": "US-EAST-1"}, "region 'US-EAST-1' is not a Region name"),
        ({"region": "us-iso-east-1"}, "region 'us-iso-east-1' is in an isolated partition"),
        ({"source_region": "cn-north-1"}, "source_region 'cn-north-1' is in another partition than region"),
        ({"lister_role": "bad role"}, "lister_role 'bad role' is neither a role name"),
        ({"lister_role": "x" * 65}, "is neither a role name"),
        (
            {"lister_role": "arn:aws:iam::1234:role/lister"},
            "lister_role 'arn:aws:iam::1234:role/lister' is not a role ARN",
        ),
        ({"lister_role": "arn:aws:iam::111111111111:user/lister"}, "is not a role ARN"),
        (
            {"lister_role": "arn:aws:iam::111111111111:role/*/lister"},
            "'arn:aws:iam::111111111111:role/*/lister' is not a role ARN",
        ),
        ({"processor_role": "proc*"}, "processor_role 'proc*' is neither a role name"),
        ({"lister_role": f"arn:aws:iam::{OTHER}:role/lister"}, f"belongs to neither source_account {SOURCE}"),
        ({"lister_role": f"arn:aws-cn:iam::{SOURCE}:role/lister"}, "is in partition 'aws-cn', but region 'us-east-1'"),
        (
            {"processor_role": f"arn:aws:iam::{SOURCE}:role/proc"},
            f"processor_role 'arn:aws:iam::{SOURCE}:role/proc' must be a role of pipeline_account",
        ),
        ({"airflow_role": f"arn:aws:iam::{OTHER}:role/airflow"}, "airflow_role"),
        (
            {"lister_role": f"arn:aws:iam::{PIPELINE}:role/airflow", "airflow_role": "airflow", "external_id": "ext-1"},
            "external_id 'ext-1' is given, but lister_role is the Airflow role itself",
        ),
        (
            {"processor_role": "xacct-map-airflow"},
            "processor_role 'xacct-map-airflow' is also the lister or the Airflow role",
        ),
        ({"state_machine": "my machine"}, "state_machine 'my machine' contains whitespace"),
        ({"state_machine": "a:b"}, "state_machine 'a:b' contains"),
        ({"state_machine": "m" * 81}, "must be 1-80 characters"),
        ({"function": f"arn:aws:lambda:us-east-1:{PIPELINE}:function:f"}, "is not a Lambda function name"),
        ({"external_id": "x"}, "external_id 'x' must be 2-1224 characters"),
        ({"external_id": "has space"}, "external_id 'has space'"),
        ({"kms_key": f"arn:aws:kms:us-east-1:{SOURCE}:alias/data"}, "an alias cannot be used"),
        ({"kms_key": "1234abcd-12ab-34cd-56ef-1234567890ab"}, "is not a KMS key ARN"),
        (
            {"kms_key": f"arn:aws:kms:us-east-1:{PIPELINE}:key/{KEY_ID}"},
            f"belongs to account {PIPELINE}, not to source_account",
        ),
        (
            {"kms_key": f"arn:aws:kms:eu-west-1:{SOURCE}:key/{KEY_ID}"},
            "is in Region eu-west-1, but the source bucket is in us-east-1",
        ),
        ({"kms_key": f"arn:aws-cn:kms:us-east-1:{SOURCE}:key/{KEY_ID}"}, "is not in partition 'aws'"),
    ],
)
def test_bad_inputs_are_rejected_naming_the_value(overrides, message):
    with pytest.raises(PolicyInputError) as raised:
        make_inputs(**overrides)
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_inputs_are_frozen():
    inputs = make_inputs()
    with pytest.raises(dataclasses.FrozenInstanceError):
        inputs.prefix = ""  # type: ignore[misc]


# -- every document, structurally ------------------------------------------------------------

# Which ARN service each action's resources must belong to.
_ACTION_SERVICE_ARN = {
    "s3": "s3",
    "s3express": "s3express",
    "states": "states",
    "lambda": "lambda",
    "logs": "logs",
    "kms": "kms",
    "sts": "iam",
}


def _all_variant_documents():
    for variant, overrides in VARIANTS.items():
        inputs = make_inputs(**overrides)
        for name, document in policies.all_documents(inputs).items():
            yield variant, inputs, name, document


@pytest.mark.parametrize(("variant", "overrides"), VARIANTS.items(), ids=list(VARIANTS))
def test_documents_are_complete_and_json_round_trip(variant, overrides):
    inputs = make_inputs(**overrides)
    documents = policies.all_documents(inputs)
    expected = set(policies.DOCUMENT_TARGETS)
    if not inputs.kms_key:
        expected.discard("source_kms_key_policy")
    if not inputs.access_point:
        expected.discard("source_access_point_policy")
    if inputs.lists_directly:
        expected -= {"lister_role_trust_policy", "lister_role_policy"}
    assert set(documents) == expected
    assert json.loads(policies.render(documents)) == documents


def test_every_statement_is_least_privilege():
    checked = 0
    for variant, inputs, name, document in _all_variant_documents():
        where = f"{variant}/{name}"
        for stmt in statements_by_sid(document).values():
            checked += 1
            assert re.fullmatch(r"XacctMap[A-Za-z0-9]+", stmt["Sid"]), where
            assert stmt["Effect"] == "Allow", where
            actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
            for action in actions:
                assert "*" not in action and re.fullmatch(r"[a-z0-9-]+:[A-Za-z]+", action), (where, action)
            if name.endswith("_trust_policy"):
                assert actions == ["sts:AssumeRole"] and "Resource" not in stmt, where
                continue
            resources = stmt["Resource"] if isinstance(stmt["Resource"], list) else [stmt["Resource"]]
            if name == "source_kms_key_policy":
                # A key policy's "*" is the key it is attached to; principal and conditions scope it.
                assert resources == ["*"] and stmt["Principal"] and stmt["Condition"], where
                continue
            services = {a.split(":")[0] for a in actions}
            assert len(services) == 1, (where, actions)
            arn_service = _ACTION_SERVICE_ARN[services.pop()]
            for resource in resources:
                assert resource.startswith(f"arn:{inputs.partition}:{arn_service}:"), (where, resource)
                account_region = resource.split(":")[3:5]
                assert "*" not in "".join(account_region), (where, resource)
                if arn_service == "s3" and ":accesspoint/" in resource:
                    assert resource.startswith(inputs.access_point), (where, resource)
                elif arn_service == "s3":
                    assert resource.split(":::", 1)[1].split("/")[0] in (inputs.source_bucket, inputs.inventory_bucket)
                elif arn_service == "s3express":
                    assert resource == inputs.express_bucket_arn, (where, resource)
    assert checked > 50


# -- the linter ------------------------------------------------------------------------------

# Findings that are wrong for these documents, each with the reason:
# - parliament lists both `execution` and `express` as required resource types of
#   states:DescribeExecution; they are alternatives, and this pipeline's executions are STANDARD.
# - a KMS key policy's Resource is "*" by definition (the key the policy is attached to).
# - parliament matches s3express's bucket/NAME resource like a general purpose bucket's (no '/').
_KNOWN_FALSE_FINDINGS = {
    ("RESOURCE_MISMATCH", "states:DescribeExecution", "arn:*:states:*:*:express:*:*:*"),
    ("RESOURCE_MISMATCH", "s3express:CreateSession", "arn:*:s3express:*:*:bucket/*"),
    ("RESOURCE_STAR", "kms:Decrypt", None),
}


def _as_bucket_arns(text: str) -> str:
    """Access point ARNs as the bucket ARNs of the same shape: parliament's S3 resource data predates
    access points (s3:ListBucket on the access point's ARN, s3:GetObject on its ``object/`` ARN, as in
    the S3 user guide's access point policies), so the action/resource pairing is checked on those."""
    text = re.sub(r"arn:([a-z-]+):s3:[a-z0-9-]+:\d{12}:accesspoint/([a-z0-9-]+)/object/", r"arn:\1:s3:::\2/", text)
    return re.sub(r"arn:([a-z-]+):s3:[a-z0-9-]+:\d{12}:accesspoint/([a-z0-9-]+)", r"arn:\1:s3:::\2", text)


def _parliament_findings(document: dict, *, trust_role_arn: str | None = None) -> list:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # parliament imports the deprecated pkg_resources
        import parliament

    if trust_role_arn:
        # parliament reads every document as a permissions policy and trust policies have no
        # Resource: lint the statement with the role it guards as the resource, which still checks
        # the action, the principal and the condition keys.
        document = {
            **document,
            "Statement": [{**s, "Resource": trust_role_arn} for s in document["Statement"]],
        }
    policy = parliament.analyze_policy_string(_as_bucket_arns(json.dumps(document)))
    remaining = []
    for finding in policy.findings:
        detail = finding.detail
        if finding.issue == "RESOURCE_MISMATCH":
            leftover = [
                d
                for d in detail
                if ("RESOURCE_MISMATCH", d["action"], d["required_format"]) not in _KNOWN_FALSE_FINDINGS
            ]
            if leftover:
                remaining.append((finding.issue, leftover))
        elif finding.issue == "RESOURCE_STAR" and all(
            ("RESOURCE_STAR", a, None) in _KNOWN_FALSE_FINDINGS for a in detail
        ):
            continue
        else:
            remaining.append((finding.issue, detail))
    return remaining


def test_parliament_finds_nothing_in_any_document():
    # parliament is a pinned dev dependency: no importorskip, a broken install fails the lint.
    role_of_trust = {
        "lister_role_trust_policy": lambda i: i.lister_role_arn,
        "state_machine_role_trust_policy": lambda i: (
            f"arn:{i.partition}:iam::{i.pipeline_account}:role/xacct-map-state-machine"
        ),
        "processor_role_trust_policy": lambda i: i.processor_role_arn,
    }
    linted = 0
    for variant, inputs, name, document in _all_variant_documents():
        trust_arn = role_of_trust[name](inputs) if name in role_of_trust else None
        assert _parliament_findings(document, trust_role_arn=trust_arn) == [], f"{variant}/{name}"
        linted += 1
    assert linted == sum(len(policies.all_documents(make_inputs(**o))) for o in VARIANTS.values())
    assert linted > 50


def test_parliament_would_catch_a_wrong_action_or_resource():
    # The linter check above is only worth something if parliament flags real mistakes.
    bad_action = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "A",
                "Effect": "Allow",
                "Action": ["states:ListMapRun"],
                "Resource": "arn:aws:states:us-east-1:123456789012:execution:m:*",
            }
        ],
    }
    bad_resource = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "B", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": "arn:aws:s3:::bucket/prefix/*"}
        ],
    }
    bad_condition = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "C",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": "arn:aws:s3:::bucket/*",
                "Condition": {"StringLike": {"s3:prefix": ["a*"]}},
            }
        ],
    }
    assert [issue for issue, _ in _parliament_findings(bad_action)] == ["UNKNOWN_ACTION"]
    assert [issue for issue, _ in _parliament_findings(bad_resource)] == ["RESOURCE_MISMATCH"]
    assert [issue for issue, _ in _parliament_findings(bad_condition)] == ["UNKNOWN_CONDITION_FOR_ACTION"]


# -- the CLI ---------------------------------------------------------------------------------


# The policy command's required arguments, for the source-data bucket of SOURCE and the PIPELINE account.
POLICY_ARGS = ["policy", "--source-bucket", "source-data", "--source-account", SOURCE, "--pipeline-account", PIPELINE]


@pytest.fixture
def policy_cli():
    # The real entry point with every registered subcommand (their heavy imports are lazy).
    return cli.main


def test_policy_command_is_registered_in_the_cli():
    assert "xacct_map.cli.policy" in cli.COMMAND_MODULES


def test_cli_prints_every_document_as_json(policy_cli, capsys):
    code = policy_cli(
        [
            *POLICY_ARGS,
            "--prefix",
            "exports/2026/",
            "--inventory-bucket",
            "pipeline-inventory",
            "--kms-key",
            KMS_KEY,
            "--external-id",
            "xacct-map-ext-1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert json.loads(out) == policies.all_documents(
        make_inputs(kms_key=KMS_KEY, external_id="xacct-map-ext-1", result_writer=True)
    )


def test_cli_only_prints_one_document_ready_for_put_role_policy(policy_cli, capsys):
    code = policy_cli(
        [
            *POLICY_ARGS,
            "--region",
            "cn-north-1",
            "--state-machine",
            "etl",
            "--function",
            "etl-proc",
            "--lister-role",
            "ro",
            "--only",
            "airflow_role_policy",
        ]
    )
    document = json.loads(capsys.readouterr().out)
    assert code == 0
    stmts = statements_by_sid(document)
    assert stmts["XacctMapStartExecution"]["Resource"] == f"arn:aws-cn:states:cn-north-1:{PIPELINE}:stateMachine:etl"
    assert stmts["XacctMapAssumeLister"]["Resource"] == f"arn:aws-cn:iam::{SOURCE}:role/ro"
    # The default inventory bucket is derived from the pipeline account.
    assert stmts["XacctMapWriteManifests"]["Resource"] == (
        f"arn:aws-cn:s3:::xacct-map-inventory-{PIPELINE}/xacct-map/manifests/*"
    )


def test_cli_result_writer_flag(policy_cli, capsys):
    base = [*POLICY_ARGS, "--only", "state_machine_role_policy"]
    # On by default: the shipped asl/ has a ResultWriter.
    assert policy_cli(base) == 0
    assert "XacctMapWriteMapRunResults" in statements_by_sid(json.loads(capsys.readouterr().out))
    assert policy_cli([*base, "--no-result-writer"]) == 0
    assert "XacctMapWriteMapRunResults" not in statements_by_sid(json.loads(capsys.readouterr().out))
    assert policy_cli([*base, "--result-writer"]) == 0
    assert "XacctMapWriteMapRunResults" in statements_by_sid(json.loads(capsys.readouterr().out))


def test_cli_bad_value_exits_2_naming_it(policy_cli, capsys):
    code = policy_cli(
        ["policy", "--source-bucket", "source-data", "--source-account", "1111", "--pipeline-account", PIPELINE]
    )
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert "source_account '1111' is not a 12-digit AWS account id" in captured.err


def test_cli_key_policy_without_kms_key_exits_2(policy_cli, capsys):
    code = policy_cli([*POLICY_ARGS, "--only", "source_kms_key_policy"])
    assert code == 2
    assert "it needs --kms-key" in capsys.readouterr().err


def test_cli_lister_documents_when_airflow_lists_directly_exit_2(policy_cli, capsys):
    code = policy_cli(
        [
            *POLICY_ARGS,
            "--lister-role",
            f"arn:aws:iam::{PIPELINE}:role/xacct-map-airflow",
            "--only",
            "lister_role_trust_policy",
        ]
    )
    assert code == 2
    assert "the Airflow role lists the bucket itself" in capsys.readouterr().err


def test_cli_rejects_an_unknown_document_name(policy_cli, capsys):
    code = policy_cli([*POLICY_ARGS, "--only", "everything"])
    assert code == 2
    assert "invalid choice: 'everything'" in capsys.readouterr().err


def test_processor_arn_is_the_function_the_state_machine_may_invoke(capsys):
    """``--processor-arn``: invoke exactly that function; a version or alias ARN is refused, named."""
    import json as _json

    from xacct_map import cli

    arn = "arn:aws:lambda:us-east-1:222222222222:function:their-processor"
    argv = ["policy", "--source-bucket", "src", "--source-account", "111111111111", "--pipeline-account"]
    argv += ["222222222222", "--only", "state_machine_role_policy", "--processor-arn", arn]
    assert cli.main(argv) == 0
    statements = {s["Sid"]: s for s in _json.loads(capsys.readouterr().out)["Statement"]}
    assert statements["XacctMapInvokeProcessor"]["Resource"] == [arn, f"{arn}:*"]
    assert cli.main(argv[:-1] + [f"{arn}:7"]) == 2
    assert "is not an unqualified Lambda function ARN" in capsys.readouterr().err


def test_several_sources_and_versions_are_covered_and_nothing_more():
    from xacct_map.setup.policies import PolicyInputs, find_statement
    from xacct_map.setup.source_policies import source_documents

    inputs = PolicyInputs(
        source_bucket="src-bucket",
        source_account="111111111111",
        pipeline_account="123456789012",
        inventory_bucket="inv-bucket",
        prefix="data/",
    )
    docs = source_documents(
        inputs, [("src-bucket", "data/2026/"), ("src-bucket", "logs/"), ("other-bucket", "")], versions=True
    )
    own = docs["source_bucket_policy"]
    listing = find_statement(own, "XacctMapListSourceKeys")
    assert listing["Condition"]["StringLike"]["s3:prefix"] == ["data/*", "logs/*"]  # data/2026/ is inside data/
    assert listing["Action"] == ["s3:ListBucket", "s3:ListBucketVersions"]
    reading = find_statement(own, "XacctMapReadSourceObjects")
    assert reading["Resource"] == ["arn:aws:s3:::src-bucket/data/*", "arn:aws:s3:::src-bucket/logs/*"]
    assert reading["Action"] == ["s3:GetObject", "s3:GetObjectVersion"]
    other = docs["source_bucket_policy:other-bucket"]
    assert (
        "Condition" not in find_statement(other, "XacctMapListSourceKeys")
        or "StringLike" not in (find_statement(other, "XacctMapListSourceKeys")["Condition"])
    )
    assert find_statement(other, "XacctMapReadSourceObjects")["Resource"] == "arn:aws:s3:::other-bucket/*"
    lister = docs["lister_role_policy"]["Statement"]
    assert [(s["Sid"], s["Resource"]) for s in lister] == [
        ("XacctMapListSourceKeys", "arn:aws:s3:::src-bucket"),
        ("XacctMapListSourceKeys2", "arn:aws:s3:::other-bucket"),
    ]
    processor_reads = find_statement(docs["processor_role_policy"], "XacctMapReadSourceObjects")
    assert processor_reads["Resource"] == [
        "arn:aws:s3:::src-bucket/data/*",
        "arn:aws:s3:::src-bucket/logs/*",
        "arn:aws:s3:::other-bucket/*",
    ]
    # Without versions, nothing beyond GetObject/ListBucket.
    plain = source_documents(inputs, [("other-bucket", "x/")])
    assert "s3:GetObjectVersion" not in json.dumps(plain) and "s3:ListBucketVersions" not in json.dumps(plain)
