"""``xacct-map preflight`` against the embedded two-account AWS, and every failure path.

moto evaluates no bucket or trust policy, so the AccessDenied answers are injected on the clients
the preflight makes (``on_client`` hook, botocore ``before-call`` handlers: the same mechanism as
botocore's Stubber), each shaped like S3's/STS's/Step Functions' real error.
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from xacct_map import cli
from xacct_map.local.emulator import PIPELINE_ACCOUNT, SOURCE_ACCOUNT
from xacct_map.setup import policies
from xacct_map.setup.preflight import FAILED, OK, SKIPPED, PreflightConfig, run_preflight


@pytest.fixture
def config(local_aws):
    aws, pipeline = local_aws
    return PreflightConfig(
        source_bucket=pipeline.source_bucket,
        source_account=pipeline.source_account,
        prefix=pipeline.source_prefix,
        lister_role_arn=pipeline.source_role_arn,
        inventory_bucket=pipeline.inventory_bucket,
        state_machine_arn=pipeline.state_machine_arn,
        endpoint_url=aws.endpoint_url,
    )


@pytest.fixture
def session():
    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")


def _inputs(pipeline) -> policies.PolicyInputs:
    # What the preflight derives: moto's caller is a user, so the Airflow role keeps its default name.
    return policies.PolicyInputs(
        source_bucket=pipeline.source_bucket,
        source_account=SOURCE_ACCOUNT,
        pipeline_account=PIPELINE_ACCOUNT,
        inventory_bucket=pipeline.inventory_bucket,
        prefix=pipeline.source_prefix,
        lister_role=pipeline.source_role_arn,
        result_writer=True,
    )


def _statement(pipeline, document: str, sid: str) -> dict:
    return policies.find_statement(policies.all_documents(_inputs(pipeline))[document], sid)


def deny(label: str, operation: str, code: str = "AccessDenied", status: int = 403, only_role: str | None = None):
    """An ``on_client`` hook: ``operation`` on clients labelled ``label`` answers ``code``."""

    def on_client(made_label, client):
        if made_label != label:
            return

        def remember(params, context, **_):
            context["injected_role_arn"] = params.get("RoleArn")  # the API parameters, before serialising

        def answer(model, context, **_):
            if model.name != operation or (only_role and context.get("injected_role_arn") != only_role):
                return None
            parsed = {
                "Error": {"Code": code, "Message": f"{code} (injected)"},
                "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}},
            }
            return AWSResponse("https://injected", status, {}, None), parsed

        client.meta.events.register("before-parameter-build", remember)
        client.meta.events.register("before-call", answer)

    return on_client


def _by_name(report) -> dict:
    return {c.name: c for c in report.checks}


def test_everything_passes_on_the_deployed_emulator_without_side_effects(local_aws, config, session):
    aws, pipeline = local_aws
    s3 = aws.client("s3")
    report = run_preflight(config, session=session)
    checks = _by_name(report)
    assert report.ok and [c.status for c in report.checks] == [OK] * 5, report.format()
    assert list(checks) == [
        "assume_lister_role",
        "list_source",
        "read_source_object",
        "write_inventory",
        "state_machine",
    ]
    assert checks["list_source"].details["bucket_region"] == "us-east-1"
    assert checks["list_source"].details["first_key"].startswith(pipeline.source_prefix)
    assert (
        checks["state_machine"].details["role_arn"] == f"arn:aws:iam::{PIPELINE_ACCOUNT}:role/xacct-map-state-machine"
    )
    # Nothing left behind: the upload was aborted, no object was written.
    assert not s3.list_multipart_uploads(Bucket=pipeline.inventory_bucket).get("Uploads")
    assert not s3.list_objects_v2(
        Bucket=pipeline.inventory_bucket, Prefix="xacct-map/manifests/_xacct-map-preflight/"
    ).get("Contents")


def test_cli_exit_codes_and_json(local_aws, config, capsys):
    aws, pipeline = local_aws
    argv = [
        "preflight",
        "--source-bucket",
        pipeline.source_bucket,
        "--source-account",
        SOURCE_ACCOUNT,
        "--prefix",
        pipeline.source_prefix,
        "--lister-role-arn",
        pipeline.source_role_arn,
        "--inventory-bucket",
        pipeline.inventory_bucket,
        "--state-machine-arn",
        pipeline.state_machine_arn,
        "--endpoint-url",
        aws.endpoint_url,
    ]
    assert cli.main([*argv, "--json"]) == 0
    # the report is the last line: Airflow 3.0, imported by other tests, sends log records to stdout
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert report["ok"] is True and [c["status"] for c in report["checks"]] == [OK] * 5
    assert cli.main([*argv, "--state-machine-role", "someone-else"]) == 1
    out = capsys.readouterr().out
    assert "[FAILED ] state_machine" in out and "not as arn:aws:iam::123456789012:role/someone-else" in out


def test_lister_cannot_assume_its_role(local_aws, config, session):
    _, pipeline = local_aws
    report = run_preflight(
        config, session=session, on_client=deny("pipeline-sts", "AssumeRole", only_role=pipeline.source_role_arn)
    )
    checks = _by_name(report)
    assert not report.ok
    failed = checks["assume_lister_role"]
    assert failed.status == FAILED and failed.error_code == "AccessDenied"
    statements = [s for fix in failed.fixes for s in fix.statements]
    assert _statement(pipeline, "lister_role_trust_policy", "XacctMapAirflowAssumesLister") in statements
    assert _statement(pipeline, "airflow_role_policy", "XacctMapAssumeLister") in statements
    assert "source account 111111111111: trust policy of arn:aws:iam::111111111111:role/xacct-map-lister" in (
        failed.fixes[0].where
    )
    assert checks["list_source"].status == SKIPPED and checks["read_source_object"].status == SKIPPED
    assert checks["write_inventory"].status == OK and checks["state_machine"].status == OK


def test_listing_denied_names_the_bucket_policy_statement(local_aws, config, session):
    _, pipeline = local_aws
    report = run_preflight(config, session=session, on_client=deny("lister-s3", "ListObjectsV2"))
    failed = _by_name(report)["list_source"]
    assert failed.status == FAILED and failed.error_code == "AccessDenied"
    assert "another account than expected" in failed.reason
    bucket_statement = _statement(pipeline, "source_bucket_policy", "XacctMapListSourceKeys")
    assert bucket_statement["Principal"] == {"AWS": pipeline.source_role_arn}
    assert bucket_statement["Condition"]["StringLike"] == {"s3:prefix": [f"{pipeline.source_prefix}*"]}
    assert failed.fixes[0].statements == (bucket_statement,)
    assert failed.fixes[1].statements == (_statement(pipeline, "lister_role_policy", "XacctMapListSourceKeys"),)
    text = report.format()
    assert "why: AccessDenied" in text and '"Sid": "XacctMapListSourceKeys"' in text
    assert "xacct-map policy --only source_bucket_policy" in text


def test_processor_cannot_read_names_both_grants(local_aws, config, session):
    _, pipeline = local_aws
    report = run_preflight(config, session=session, on_client=deny("processor-s3", "HeadObject", code="403"))
    failed = _by_name(report)["read_source_object"]
    assert failed.status == FAILED and failed.error_code == "403"
    statements = [s for fix in failed.fixes for s in fix.statements]
    assert statements == [
        _statement(pipeline, "source_bucket_policy", "XacctMapReadSourceObjects"),
        _statement(pipeline, "processor_role_policy", "XacctMapReadSourceObjects"),
    ]
    assert statements[0]["Principal"] == {"AWS": f"arn:aws:iam::{PIPELINE_ACCOUNT}:role/xacct-map-processor"}


def test_processor_role_that_only_trusts_lambda_skips_the_read_check_with_the_statement_to_enable_it(
    local_aws, config, session
):
    _, pipeline = local_aws
    processor = f"arn:aws:iam::{PIPELINE_ACCOUNT}:role/xacct-map-processor"
    report = run_preflight(config, session=session, on_client=deny("pipeline-sts", "AssumeRole", only_role=processor))
    check = _by_name(report)["read_source_object"]
    assert report.ok and check.status == SKIPPED and check.error_code == "AccessDenied"
    (fix,) = check.fixes
    assert fix.statements[0]["Sid"] == "XacctMapPreflightAssumesProcessor" and "remove it afterwards" in fix.command


def test_inventory_write_denied(local_aws, config, session):
    _, pipeline = local_aws
    report = run_preflight(config, session=session, on_client=deny("pipeline-s3", "CreateMultipartUpload"))
    failed = _by_name(report)["write_inventory"]
    assert failed.status == FAILED and failed.error_code == "AccessDenied"
    assert failed.fixes[0].statements == (_statement(pipeline, "airflow_role_policy", "XacctMapWriteManifests"),)
    assert "pipeline account 123456789012" in failed.fixes[0].where


def test_state_machine_describe_denied_and_missing(local_aws, config, session):
    _, pipeline = local_aws
    report = run_preflight(
        config,
        session=session,
        on_client=deny("pipeline-stepfunctions", "DescribeStateMachine", code="AccessDeniedException", status=400),
    )
    failed = _by_name(report)["state_machine"]
    assert failed.status == FAILED and failed.error_code == "AccessDeniedException"
    assert failed.fixes[0].statements == (_statement(pipeline, "airflow_role_policy", "XacctMapDescribeStateMachine"),)

    missing = PreflightConfig(**{**config.__dict__, "state_machine_arn": pipeline.state_machine_arn + "-gone"})
    failed = _by_name(run_preflight(missing, session=session))["state_machine"]
    assert failed.status == FAILED and failed.error_code == "StateMachineDoesNotExist" and failed.fixes == ()
    assert "does not exist" in failed.reason


def test_missing_bucket_and_empty_prefix(local_aws, config, session):
    report = run_preflight(
        PreflightConfig(**{**config.__dict__, "source_bucket": "xacct-map-no-such-bucket"}), session=session
    )
    failed = _by_name(report)["list_source"]
    assert failed.status == FAILED and failed.error_code == "NoSuchBucket" and failed.fixes == ()

    report = run_preflight(PreflightConfig(**{**config.__dict__, "prefix": "nothing-here/"}), session=session)
    checks = _by_name(report)
    assert report.ok and checks["list_source"].details["empty"] is True
    assert (
        checks["read_source_object"].status == SKIPPED and "nothing was listed" in checks["read_source_object"].summary
    )


def test_an_airflow_task_runs_it_with_the_pipeline_connection(local_aws, config):
    from xacct_map.setup.preflight import run_preflight_with_connection

    # The connection (set by the local_aws fixture) carries the endpoint; the config does not need to.
    report = run_preflight_with_connection(
        "xacct_map_pipeline", PreflightConfig(**{**config.__dict__, "endpoint_url": None})
    )
    assert report.ok, report.format()
    assert [c.status for c in report.checks] == [OK] * 5


def test_report_carries_no_credentials(local_aws, config, session):
    report = run_preflight(config, session=session)
    text = report.format() + json.dumps(report.as_dict())
    for word in ("SecretAccessKey", "SessionToken", "AccessKeyId", "testing"):
        assert word not in text


def test_preflight_command_is_registered():
    assert "xacct_map.cli.preflight" in cli.COMMAND_MODULES
