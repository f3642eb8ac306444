"""Every bad input stops at the edge with one line that names it: the commands and the DAG's params.

Each row is a value a user could type. The command must end with a non-zero exit code before any
AWS call (this tier has no network: a command that got as far as connecting would fail the test
differently), without a traceback, and print a message that names the option and the value.
"""

from __future__ import annotations

import copy

import pytest

from xacct_map.cli import main
from xacct_map.setup.resources import dags_dir

_ENDPOINT = ["--endpoint-url", "http://127.0.0.1:9", "--region", "us-east-1"]
_MANIFEST = ["manifest", "--source", "s3://src-bucket/p/", "--dest", "s3://dst-bucket/m.json", *_ENDPOINT]
_POLICY = ["policy", "--source-bucket", "src-bucket", "--source-account", "111111111111"]
_POLICY += ["--pipeline-account", "222222222222"]
_STATE_MACHINE = "arn:aws:states:us-east-1:222222222222:stateMachine:xacct-map"
_PREFLIGHT = ["preflight", "--source-bucket", "src-bucket", "--source-account", "111111111111", *_ENDPOINT]
_PREFLIGHT += ["--inventory-bucket", "inv-bucket"]
_DEPLOY = ["deploy", "--source-bucket", "src-bucket", "--source-account", "111111111111", *_ENDPOINT]

# (what, arguments, text the message must contain: the option or field, and the bad value)
COMMANDS = [
    ("source not s3", ["manifest", "--source", "http://x/y", "--dest", "s3://d-b/k"], ["--source", "http://x/y"]),
    (
        "source bucket",
        ["manifest", "--source", "s3://Bad_Bucket/p", "--dest", "s3://d-b/k"],
        ["--source", "Bad_Bucket"],
    ),
    ("dest without key", ["manifest", "--source", "s3://src-b/p", "--dest", "s3://dst-b/"], ["--dest", "s3://dst-b/"]),
    ("dest bucket short", ["manifest", "--source", "s3://src-b/p", "--dest", "s3://ab/k"], ["--dest", "'ab'"]),
    ("keys per batch 0", [*_MANIFEST, "--max-keys-per-batch", "0"], ["--max-keys-per-batch", "0"]),
    ("keys per batch text", [*_MANIFEST, "--max-keys-per-batch", "ten"], ["--max-keys-per-batch", "ten"]),
    ("bytes per batch", [*_MANIFEST, "--max-bytes-per-batch", "-1"], ["--max-bytes-per-batch", "-1"]),
    ("min size", [*_MANIFEST, "--min-size", "-5"], ["--min-size", "-5"]),
    ("max size text", [*_MANIFEST, "--max-size", "1GB"], ["--max-size", "1GB"]),
    ("sizes crossed", [*_MANIFEST, "--min-size", "10", "--max-size", "5"], ["min_size", "max_size"]),
    ("no time zone", [*_MANIFEST, "--modified-after", "2026-01-01T00:00:00"], ["--modified-after", "time zone"]),
    ("not a date", [*_MANIFEST, "--modified-before", "yesterday"], ["--modified-before", "yesterday"]),
    (
        "window inverted",
        [*_MANIFEST, "--modified-after", "2026-02-01T00:00:00Z", "--modified-before", "2026-01-01T00:00:00Z"],
        ["modified_after", "modified_before"],
    ),
    ("storage class", [*_MANIFEST, "--storage-class", "GOLD"], ["--storage-class", "GOLD"]),
    ("layout", [*_MANIFEST, "--layout", "tree"], ["--layout", "tree"]),
    ("csv batched", [*_MANIFEST, "--format", "csv"], ["csv", "batched"]),
    ("parallelism 0", [*_MANIFEST, "--parallelism", "0"], ["--parallelism", "0"]),
    ("parallelism huge", [*_MANIFEST, "--parallelism", "100000"], ["--parallelism", "100000"]),
    ("role arn", [*_MANIFEST, "--role-arn", "arn:aws:iam::123:role/x"], ["--role-arn", "arn:aws:iam::123:role/x"]),
    ("source owner", [*_MANIFEST, "--expected-bucket-owner", "12345"], ["--expected-bucket-owner", "12345"]),
    ("dest owner", [*_MANIFEST, "--dest-bucket-owner", "abc"], ["--dest-bucket-owner", "abc"]),
    ("region", [*_MANIFEST, "--region", "mars-1"], ["--region", "mars-1"]),
    ("source region", [*_MANIFEST, "--source-region", "us-east"], ["--source-region", "us-east"]),
    ("inventory", [*_MANIFEST, "--inventory", "inv/x"], ["--inventory", "inv/x"]),
    ("endpoint", ["manifest", "--source", "s3://s-b/p", "--dest", "s3://d-b/k", "--endpoint-url", "nope"], ["nope"]),
    ("empty pattern", [*_MANIFEST, "--pattern", ""], ["--pattern", "empty"]),
    ("empty suffix", [*_MANIFEST, "--suffix", ""], ["--suffix", "empty"]),
    ("on empty", [*_MANIFEST, "--on-empty", "ignore"], ["--on-empty", "ignore"]),
    ("policy account", ["policy", "--source-bucket", "s-b", "--source-account", "1"], ["--pipeline-account"]),
    ("policy source account", [*_POLICY[:3], "--source-account", "1", *_POLICY[5:]], ["source_account", "'1'"]),
    ("policy bucket", ["policy", "--source-bucket", "s3://x", *_POLICY[3:]], ["source_bucket", "s3://x"]),
    ("policy region", [*_POLICY, "--region", "Europe"], ["region", "Europe"]),
    ("policy kms key", [*_POLICY, "--kms-key", "mykey"], ["kms_key", "mykey"]),
    ("policy role", [*_POLICY, "--lister-role", "bad role!"], ["lister_role", "bad role!"]),
    ("policy airflow role", [*_POLICY, "--airflow-role", "arn:aws:iam::1:role/x"], ["airflow_role", "iam::1:"]),
    ("policy prefix", [*_POLICY, "--prefix", "logs/*"], ["prefix", "logs/*"]),
    ("preflight state machine", [*_PREFLIGHT, "--state-machine-arn", "sm"], ["--state-machine-arn", "'sm'"]),
    (
        "preflight lister",
        [*_PREFLIGHT, "--state-machine-arn", _STATE_MACHINE, "--lister-role-arn", "role"],
        ["--lister-role-arn", "role"],
    ),
    ("preflight region", [*_PREFLIGHT, "--state-machine-arn", _STATE_MACHINE, "--region", "xx"], ["--region", "xx"]),
    (
        "preflight account",
        [*_PREFLIGHT, "--state-machine-arn", _STATE_MACHINE, "--source-account", "11111111111"],
        ["--source-account", "11111111111"],
    ),
    (
        "preflight bucket",
        [*_PREFLIGHT, "--state-machine-arn", _STATE_MACHINE, "--inventory-bucket", "Inv"],
        ["--inventory-bucket", "Inv"],
    ),
    (
        "preflight kms key",
        [*_PREFLIGHT, "--state-machine-arn", _STATE_MACHINE, "--kms-key", "alias/x"],
        ["--kms-key", "alias/x"],
    ),
    ("deploy concurrency", [*_DEPLOY, "--max-concurrency", "20000"], ["--max-concurrency", "20000"]),
    ("deploy tolerance", [*_DEPLOY, "--tolerated-failure-percentage", "150"], ["--tolerated-failure-percentage"]),
    ("deploy batch items", [*_DEPLOY, "--max-items-per-batch", "0"], ["--max-items-per-batch", "0"]),
    ("deploy memory", [*_DEPLOY, "--memory", "64"], ["--memory", "64"]),
    ("deploy timeout", [*_DEPLOY, "--timeout", "901"], ["--timeout", "901"]),
    ("deploy storage", [*_DEPLOY, "--ephemeral-storage", "100"], ["--ephemeral-storage", "100"]),
    ("deploy log retention", [*_DEPLOY, "--log-retention-days", "8"], ["--log-retention-days", "8"]),
    ("deploy expiry", [*_DEPLOY, "--expire-days", "-1"], ["--expire-days", "-1"]),
    ("deploy account", [*_DEPLOY, "--pipeline-account", "x1"], ["--pipeline-account", "x1"]),
    ("deploy processor arn", [*_DEPLOY, "--processor-arn", "my-fn"], ["--processor-arn", "my-fn"]),
    ("demo objects", ["demo", "--objects", "0"], ["--objects", "0"]),
    ("demo batch keys", ["demo", "--batch-keys", "0"], ["--batch-keys", "0"]),
    ("demo dags folder", ["demo", "--dags-folder", "/no/such/folder"], ["--dags-folder", "/no/such/folder"]),
    ("demo object size", ["demo", "--object-size", "-1"], ["--object-size", "-1"]),
    ("airflow port", ["airflow", "--port", "70000"], ["--port", "70000"]),
    ("airflow objects", ["airflow", "--objects", "-3"], ["--objects", "-3"]),
    ("airflow poke interval", ["airflow", "--poke-interval", "0"], ["--poke-interval", "0"]),
    ("airflow schedule", ["airflow", "--schedule", "every day"], ["--schedule", "every day"]),
    ("airflow startup timeout", ["airflow", "--startup-timeout", "-1"], ["--startup-timeout", "-1"]),
    ("unknown command", ["frobnicate"], ["frobnicate"]),
]


@pytest.mark.parametrize("arguments, expected", [c[1:] for c in COMMANDS], ids=[c[0] for c in COMMANDS])
def test_a_bad_command_line_value_stops_with_one_line_naming_it(capsys, arguments, expected):
    try:
        code = main(arguments)
    except SystemExit as stop:  # argparse's own exit for an option it refused
        code = stop.code
    err = capsys.readouterr().err
    assert code not in (0, None), err
    assert "Traceback" not in err
    message = err.strip().splitlines()[-1]
    assert message.startswith("xacct-map"), err
    for text in expected:
        assert text in message, (text, message)


# (what, DAG param, bad value): the trigger form and the API refuse the run before it exists.
PARAMS = [
    ("account id", "source_account_id", "12345"),
    ("bucket", "source_bucket", "My_Bucket"),
    ("multi-region access point", "source_bucket", "arn:aws:s3::111111111111:accesspoint/mfzwi23gnjvgw.mrap"),
    ("request payer", "request_payer", "owner"),
    ("inventory bucket", "inventory_bucket", "s3://inventory"),
    ("state machine", "state_machine_arn", "my-state-machine"),
    ("keys per batch", "max_keys_per_batch", 0),
    ("keys per batch too many", "max_keys_per_batch", 10_001),
    ("bytes per batch", "max_bytes_per_batch", -1),
    ("failed items", "max_failed_items", -1),
    ("listing mode", "listing_mode", "sometimes"),
    ("empty suffix", "suffixes", [""]),
    ("storage class", "storage_classes", ["GOLD"]),
    ("min size", "min_size", -1),
    ("modified after", "modified_after", "2026-01-01"),
    ("modified before", "modified_before", "last tuesday"),
    ("layout", "layout", "tree"),
    ("format", "manifest_format", "xml"),
    ("inventory", "source_inventory", "inventory/x"),
    ("preflight", "preflight", "sometimes"),
    ("on empty", "on_empty", "ignore"),
    ("on existing", "on_existing", "replace"),
    ("dry run", "dry_run", "maybe"),
]


@pytest.fixture(scope="module")
def dag():
    from xacct_map.version_compat import DagBag

    return DagBag(dag_folder=str(dags_dir())).dags["xacct_distributed_map"]


@pytest.mark.parametrize("name, value", [p[1:] for p in PARAMS], ids=[p[0] for p in PARAMS])
def test_a_bad_dag_param_is_refused_naming_the_param(dag, name, value):
    params = copy.deepcopy(dag.params)
    with pytest.raises(Exception) as refused:  # noqa: B017 (ParamValidationError moved between Airflow versions)
        params[name] = value  # what the trigger form and the REST API do with a run's conf
        params.validate()
    assert type(refused.value).__name__ == "ParamValidationError"
    first = str(refused.value).splitlines()[0]
    bad = repr(value[0] if isinstance(value, list) else value)  # for a list, the item at fault
    assert first.startswith(f"Invalid input for param {name}: {bad}"), first


def test_the_table_is_large_enough():
    assert len(COMMANDS) + len(PARAMS) >= 40
