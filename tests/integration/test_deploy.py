"""``xacct-map deploy`` / :func:`xacct_map.setup.deploy.deploy_pipeline`: create, then change nothing.

Against the embedded emulator (module-scoped ``local_aws``, whose own deployment already went
through ``deploy_pipeline``): a fresh set of names is deployed twice through the CLI and every
resource is snapshotted (bucket settings, role trust and inline policies, function code hash and
configuration, state machine definition and role) before and after the second run.
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from xacct_map import cli
from xacct_map.local.emulator import PIPELINE_ACCOUNT, SOURCE_ACCOUNT
from xacct_map.setup import deploy, policies
from xacct_map.setup.resources import asl_path

NAMES = dict(
    inventory_bucket="xacct-map-deploy-test-inventory",
    state_machine="xacct-map-deploy-test",
    state_machine_role="xacct-map-deploy-test-sm",
    function="xacct-map-deploy-test-proc",
    processor_role="xacct-map-deploy-test-proc",
    airflow_role="xacct-map-deploy-test-airflow",
)


def _inputs(**overrides) -> policies.PolicyInputs:
    """The policy inputs of what :func:`_argv` deploys (the NAMES, their-data/exports/ of SOURCE_ACCOUNT)."""
    return policies.PolicyInputs(
        source_bucket="their-data",
        source_account=SOURCE_ACCOUNT,
        pipeline_account=PIPELINE_ACCOUNT,
        prefix="exports/",
        **NAMES,
        **overrides,
    )


def _argv(aws, **overrides) -> list[str]:
    values = {
        "source-bucket": "their-data",
        "source-account": SOURCE_ACCOUNT,
        "prefix": "exports/",
        "region": "us-east-1",
        "endpoint-url": aws.endpoint_url,
        "inventory-bucket": NAMES["inventory_bucket"],
        "state-machine": NAMES["state_machine"],
        "state-machine-role": NAMES["state_machine_role"],
        "function": NAMES["function"],
        "processor-role": NAMES["processor_role"],
        "airflow-role": NAMES["airflow_role"],
        "max-concurrency": "20",
    }
    values.update(overrides)
    argv = ["deploy"]
    for flag, value in values.items():
        if value is not None:
            argv += [f"--{flag}", value]
    return argv + ["--json"]


def _deploy(aws, capsys, **overrides) -> dict:
    assert cli.main(_argv(aws, **overrides)) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _snapshot(aws, result: dict) -> dict:
    """Everything a deploy sets, read back from the emulator."""
    s3, iam, lmb, sfn = (aws.client(s) for s in ("s3", "iam", "lambda", "stepfunctions"))
    bucket = result["inventory_bucket"]
    roles = {}
    for arn in filter(
        None, (result["processor_role_arn"], result["state_machine_role_arn"], result["airflow_role_arn"])
    ):
        name = arn.rsplit("/", 1)[1]
        role = iam.get_role(RoleName=name)["Role"]
        roles[name] = {
            "trust": deploy._policy_json(role["AssumeRolePolicyDocument"]),
            "inline": {
                p: deploy._policy_json(iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"])
                for p in iam.list_role_policies(RoleName=name)["PolicyNames"]
            },
        }
    function = lmb.get_function(FunctionName=result["function_arn"])["Configuration"]
    machine = sfn.describe_state_machine(stateMachineArn=result["state_machine_arn"])
    log_group_name = f"/aws/lambda/{function['FunctionName']}"
    (log_group,) = [
        g
        for g in aws.client("logs").describe_log_groups(logGroupNamePrefix=log_group_name)["logGroups"]
        if g["logGroupName"] == log_group_name
    ]
    return {
        "log_group_retention": log_group.get("retentionInDays"),
        "public_access_block": s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"],
        "encryption": s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"],
        "lifecycle": s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"],
        "roles": roles,
        "function": {
            k: function.get(k)
            for k in (
                "CodeSha256",
                "Role",
                "Runtime",
                "Handler",
                "Timeout",
                "MemorySize",
                "Environment",
                "LastModified",
            )
        },
        "state_machine": {k: machine[k] for k in ("definition", "roleArn", "type")},
    }


@pytest.fixture(scope="module")
def first_and_second(local_aws):
    """Deploy the fresh names twice (with an Airflow role created from --airflow-trust)."""
    aws, _ = local_aws
    out = []
    for _ in range(2):
        argv = _argv(aws, **{"airflow-trust": f"arn:aws:iam::{PIPELINE_ACCOUNT}:role/mwaa-execution"})
        import contextlib
        import io

        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            assert cli.main(argv) == 0
        result = json.loads(buffer.getvalue().strip().splitlines()[-1])
        out.append((result, _snapshot(aws, result)))
    return out


def test_first_deploy_creates_every_resource(first_and_second):
    (result, _), _ = first_and_second
    changes = "\n".join(result["changes"])
    for expected in (
        f"created bucket {NAMES['inventory_bucket']}",
        f"created role {NAMES['processor_role']}",
        f"created role {NAMES['state_machine_role']}",
        f"created role {NAMES['airflow_role']}",
        f"created function {NAMES['function']}",
        f"created log group /aws/lambda/{NAMES['function']}",
        f"updated log group /aws/lambda/{NAMES['function']}: retention 30 days",
        f"created state machine {NAMES['state_machine']}",
        "blocked all public access",
        "default encryption SSE-S3",
        "lifecycle expires xacct-map/* after 30 days",
    ):
        assert expected in changes, (expected, changes)
    assert result["state_machine_arn"] == (
        f"arn:aws:states:us-east-1:{PIPELINE_ACCOUNT}:stateMachine:{NAMES['state_machine']}"
    )


def test_second_deploy_changes_nothing(first_and_second):
    (first, before), (second, after) = first_and_second
    assert second["changes"] == []
    assert after == before
    assert {k: v for k, v in second.items() if k != "changes"} == {k: v for k, v in first.items() if k != "changes"}


def test_resources_carry_the_generated_policies_and_settings(first_and_second):
    (result, snapshot), _ = first_and_second
    inputs = _inputs(result_writer=True)
    documents = policies.all_documents(inputs)
    roles = snapshot["roles"]
    assert roles[NAMES["processor_role"]]["trust"] == documents["processor_role_trust_policy"]
    assert roles[NAMES["processor_role"]]["inline"] == {
        f"{NAMES['processor_role']}-policy": documents["processor_role_policy"]
    }
    assert roles[NAMES["state_machine_role"]]["trust"] == documents["state_machine_role_trust_policy"]
    assert list(roles[NAMES["state_machine_role"]]["inline"].values()) == [documents["state_machine_role_policy"]]
    assert list(roles[NAMES["airflow_role"]]["inline"].values()) == [documents["airflow_role_policy"]]
    assert roles[NAMES["airflow_role"]]["trust"]["Statement"][0]["Principal"] == {
        "AWS": f"arn:aws:iam::{PIPELINE_ACCOUNT}:role/mwaa-execution"
    }
    assert snapshot["log_group_retention"] == 30
    assert snapshot["public_access_block"] == deploy.PUBLIC_ACCESS_BLOCK
    assert snapshot["encryption"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    (rule,) = snapshot["lifecycle"]
    assert rule["ID"] == deploy.LIFECYCLE_RULE_ID and rule["Expiration"] == {"Days": 30}
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert snapshot["function"]["CodeSha256"] == deploy.code_sha256(deploy.package_function())
    assert snapshot["function"]["Environment"] == {"Variables": {"SOURCE_ACCOUNT_ID": SOURCE_ACCOUNT}}
    assert snapshot["state_machine"]["roleArn"] == result["state_machine_role_arn"] == inputs.state_machine_role_arn
    definition = json.loads(snapshot["state_machine"]["definition"])
    state = definition["States"]["ProcessManifest"]
    assert state["MaxConcurrency"] == 20
    assert state["ItemProcessor"]["States"]["ProcessBatch"]["Parameters"]["FunctionName"] == result["function_arn"]
    # ResultWriter writes inside the prefix the state machine role may write to.
    assert state["ResultWriter"]["Parameters"] == {"Bucket": NAMES["inventory_bucket"], "Prefix": "xacct-map/results"}


def test_the_emulators_own_deployment_is_already_up_to_date(local_aws):
    # LocalAws.deploy() went through deploy_pipeline: the same inputs change nothing.
    aws, pipeline = local_aws
    inputs = policies.PolicyInputs(
        source_bucket=pipeline.source_bucket,
        source_account=SOURCE_ACCOUNT,
        pipeline_account=PIPELINE_ACCOUNT,
        inventory_bucket=pipeline.inventory_bucket,
        prefix=pipeline.source_prefix,
        lister_role=pipeline.source_role_arn,
    )
    result = deploy.deploy_pipeline(aws.client, inputs, max_concurrency=8)
    assert result.changes == ()
    assert (result.function_arn, result.state_machine_arn) == (pipeline.function_arn, pipeline.state_machine_arn)


def test_drift_is_repaired_and_foreign_lifecycle_rules_are_kept(local_aws, first_and_second, capsys):
    aws, _ = local_aws
    s3, iam, sfn = aws.client("s3"), aws.client("iam"), aws.client("stepfunctions")
    (result, before), _ = first_and_second
    bucket = NAMES["inventory_bucket"]
    # Someone edits things by hand.
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {"ID": "team-rule", "Filter": {"Prefix": "other/"}, "Status": "Enabled", "Expiration": {"Days": 7}},
                {
                    "ID": deploy.LIFECYCLE_RULE_ID,
                    "Filter": {"Prefix": "xacct-map/"},
                    "Status": "Enabled",
                    "Expiration": {"Days": 1},
                },
            ]
        },
    )
    iam.put_role_policy(
        RoleName=NAMES["processor_role"],
        PolicyName=f"{NAMES['processor_role']}-policy",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        ),
    )
    definition = json.loads(before["state_machine"]["definition"])
    definition["States"]["ProcessManifest"]["MaxConcurrency"] = 1
    sfn.update_state_machine(stateMachineArn=result["state_machine_arn"], definition=json.dumps(definition))

    repaired = _deploy(aws, capsys)
    assert sorted(repaired["changes"]) == sorted(
        [
            f"updated bucket {bucket}: lifecycle expires xacct-map/* after 30 days",
            f"updated role {NAMES['processor_role']}: inline policy {NAMES['processor_role']}-policy",
            f"updated state machine {NAMES['state_machine']}",
        ]
    )
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert set(rules) == {"team-rule", deploy.LIFECYCLE_RULE_ID}
    assert rules[deploy.LIFECYCLE_RULE_ID]["Expiration"] == {"Days": 30}
    after = _snapshot(aws, repaired)
    assert after["roles"][NAMES["processor_role"]] == before["roles"][NAMES["processor_role"]]
    assert json.loads(after["state_machine"]["definition"]) == json.loads(before["state_machine"]["definition"])
    assert _deploy(aws, capsys)["changes"] == []


def test_changed_function_code_is_uploaded_once(local_aws, first_and_second, tmp_path, capsys):
    aws, _ = local_aws
    (result, _), _ = first_and_second
    inputs = _inputs()
    (tmp_path / "job.py").write_text("def process(obj):\n    return None\n")
    kwargs = dict(max_concurrency=20, processor=deploy.ProcessorOptions(spec=f"{tmp_path / 'job.py'}:process"))
    changed = deploy.deploy_pipeline(aws.client, inputs, **kwargs)
    assert changed.changes == (f"updated function {NAMES['function']}: code",)
    assert deploy.deploy_pipeline(aws.client, inputs, **kwargs).changes == ()
    # Back to the real handler for the other tests.
    assert deploy.deploy_pipeline(aws.client, inputs, max_concurrency=20).changes == (
        f"updated function {NAMES['function']}: code",
    )


def test_flat_layout_deploys_the_itembatcher_definition(local_aws, capsys):
    # moto rejects ItemBatcher at CreateStateMachine (see the notes), so render what would be sent.
    from xacct_map.core.layouts import flat_substitutions

    definition = json.loads(
        deploy.render_definition(
            asl_path("flat"),
            {
                "ProcessorFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:f",
                "MaxConcurrency": 5,
                "ToleratedFailurePercentage": 0.0,
                "ResultsBucket": "b",
                "ResultsPrefix": "xacct-map/results",
                **flat_substitutions(manifest_format="csv", max_items_per_batch=50),
            },
        )
    )
    state = definition["States"]["ProcessManifest"]
    assert state["ItemBatcher"]["MaxItemsPerBatch"] == 50
    assert state["ItemReader"]["ReaderConfig"]["InputType"] == "CSV"


def test_human_output_says_nothing_changed(local_aws, first_and_second, capsys):
    aws, _ = local_aws
    argv = [a for a in _argv(aws) if a != "--json"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "no changes, everything up to date" in out
    assert f"s3://{NAMES['inventory_bucket']}" in out and "xacct-map policy --only source_bucket_policy" in out


def test_missing_airflow_role_is_not_created_without_a_trust_principal(local_aws, capsys):
    aws, _ = local_aws
    result = _deploy(aws, capsys, **{"airflow-role": "xacct-map-nobody"})
    assert result["airflow_role_arn"] is None
    assert any("xacct-map-nobody does not exist" in note for note in result["notes"])
    with pytest.raises(Exception, match="NoSuchEntity|cannot be found"):
        aws.client("iam").get_role(RoleName="xacct-map-nobody")


def test_invalid_options_exit_2_naming_the_value(local_aws, capsys):
    aws, _ = local_aws
    assert cli.main(_argv(aws, **{"source-account": "1234"})) == 2
    assert "--source-account: '1234' is not a 12-digit AWS account id" in capsys.readouterr().err


def test_inventory_bucket_of_another_account_is_an_error_naming_it():
    # moto ignores ExpectedBucketOwner; S3 answers HeadBucket with 403 for another owner's bucket.
    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    with Stubber(s3) as stub:
        stub.add_client_error(
            "head_bucket",
            service_error_code="403",
            http_status_code=403,
            expected_params={"Bucket": "taken-name", "ExpectedBucketOwner": PIPELINE_ACCOUNT},
        )
        with pytest.raises(RuntimeError, match="'taken-name' exists but .*another account than 123456789012"):
            deploy.ensure_bucket(s3, "taken-name", "us-east-1", expected_bucket_owner=PIPELINE_ACCOUNT)


def test_deploy_command_is_registered():
    assert "xacct_map.cli.deploy" in cli.COMMAND_MODULES
