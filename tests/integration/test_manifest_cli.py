"""``xacct-map manifest`` against the emulated accounts: the manifest and sidecar it writes, --json,
the progress line, and one-line errors (no traceback) naming the bucket or role."""

from __future__ import annotations

import io
import json

import pytest
from botocore.exceptions import ClientError

from manifest_fixtures import light_aws
from xacct_map.cli import main
from xacct_map.cli.manifest import Progress
from xacct_map.core.layouts import keys_of, read_items
from xacct_map.local.emulator import AWKWARD_KEYS, SOURCE_ACCOUNT


@pytest.fixture(scope="module")
def local_aws():
    with light_aws("cli") as env:
        yield env


def _cli(aws, *args):
    return main(["manifest", "--endpoint-url", aws.endpoint_url, "--region", "us-east-1", *args])


def test_manifest_command_writes_manifest_and_sidecar_and_prints_metadata(local_aws, capsys):
    aws, pipeline = local_aws
    dest = f"s3://{pipeline.inventory_bucket}/xacct-map/manifests/cli/manifest.csv"
    code = _cli(
        aws,
        "--source",
        f"s3://{pipeline.source_bucket}/data/",
        "--dest",
        dest,
        "--role-arn",
        pipeline.source_role_arn,
        "--expected-bucket-owner",
        SOURCE_ACCOUNT,
        "--layout",
        "flat",
        "--format",
        "csv",
        "--suffix",
        ".txt",
        "--suffix",
        "/",
        "--json",
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    printed = json.loads(out.strip().splitlines()[-1])
    s3 = aws.client("s3")
    body = s3.get_object(Bucket=pipeline.inventory_bucket, Key="xacct-map/manifests/cli/manifest.csv")["Body"].read()
    sidecar = json.loads(
        s3.get_object(Bucket=pipeline.inventory_bucket, Key="xacct-map/manifests/cli/manifest.csv.meta.json")[
            "Body"
        ].read()
    )
    assert printed == sidecar
    keys = list(keys_of(read_items(body, "csv"), "flat"))
    expected = sorted("data/" + k for k in AWKWARD_KEYS if k.endswith((".txt", "/")))
    assert sorted(keys) == expected and sidecar["object_count"] == len(expected)
    assert sidecar["source"]["type"] == "listing" and sidecar["source"]["account_id"] == SOURCE_ACCOUNT
    assert sidecar["filters"]["suffixes"] == [".txt", "/"] and sidecar["skipped"]["suffix"] == 40 - len(expected)
    assert "\r" not in err  # not a terminal: no progress line


def test_manifest_command_default_is_the_batched_json_manifest(local_aws, capsys, monkeypatch):
    import xacct_map.core.build

    asked = []
    listing = xacct_map.core.build.iter_objects
    monkeypatch.setattr(
        xacct_map.core.build, "iter_objects", lambda *a, **kw: asked.append(kw["parallelism"]) or listing(*a, **kw)
    )
    aws, pipeline = local_aws
    code = _cli(
        aws,
        "--source",
        f"s3://{pipeline.source_bucket}/data/",
        "--max-keys-per-batch",
        "10",
        "--dest",
        f"s3://{pipeline.inventory_bucket}/xacct-map/manifests/cli/batched.json",
        "--parallelism",
        "5",
    )
    assert asked == [5]
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "40 objects" in out and "4 batches" in out and "batched.json.meta.json" in out
    body = (
        aws.client("s3")
        .get_object(Bucket=pipeline.inventory_bucket, Key="xacct-map/manifests/cli/batched.json")["Body"]
        .read()
    )
    batches = json.loads(body)
    assert len(batches) == 4 and sum(len(b["keys"]) for b in batches) == 40


@pytest.mark.parametrize("engine, expected", [(None, "parallel"), ("paginator", "plain"), ("parallel", "parallel")])
def test_listing_engine_reaches_the_listing(local_aws, capsys, monkeypatch, engine, expected):
    """--listing-engine is passed on, with the source session's credentials: "auto" (the default)
    lists the emulator (real HTTP) with the parallel engine."""
    import xacct_map.core.build

    used = []
    listing = xacct_map.core.build.iter_objects

    def recording(*a, **kw):
        yield from listing(*a, **kw)
        used.append((kw["listing_engine"], kw["stats"]["engine"]))

    monkeypatch.setattr(xacct_map.core.build, "iter_objects", recording)
    aws, pipeline = local_aws
    dest = f"s3://{pipeline.inventory_bucket}/xacct-map/manifests/cli/engine-{engine}.json"
    code = _cli(
        aws,
        "--source",
        f"s3://{pipeline.source_bucket}/data/",
        "--dest",
        dest,
        *(["--listing-engine", engine] if engine else []),
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "40 objects" in out and used == [(engine or "auto", expected)]


@pytest.mark.parametrize(
    "args, code, message",
    [
        (
            ["--source", "s3://no-such-source-bucket/x/", "--dest", "s3://{inv}/m.json"],
            1,
            r"Source bucket 'no-such-source-bucket' does not exist",
        ),
        (
            ["--source", "s3://{src}/data/", "--dest", "s3://no-such-dest-bucket/m.json"],
            1,
            r"Destination bucket 'no-such-dest-bucket' does not exist.*Nothing was left behind",
        ),
        (["--source", "{src}/data/", "--dest", "s3://{inv}/m.json"], 2, r"--source: .* is not an S3 URI"),
        (["--source", "s3://{src}/data/", "--dest", "s3://{inv}/"], 2, r"--dest: .* names no object key"),
        (
            ["--source", "s3://{src}/data/", "--dest", "s3://{inv}/m.csv", "--format", "csv"],
            2,
            r"format 'csv' is not available for the 'batched' layout",
        ),
        (
            ["--source", "s3://{src}/data/", "--dest", "s3://{inv}/m.json", "--modified-after", "2026-11-26"],
            2,
            r"no time zone",
        ),
        (
            ["--source", "s3://{src}/data/", "--dest", "s3://{inv}/m.json", "--inventory", "s3://{inv}/none"],
            1,
            r"No inventory report under s3://",
        ),
        (
            ["--source", "s3://{src}/data/", "--dest", "s3://{inv}/m.json", "--parallelism", "0"],
            2,
            r"--parallelism: 0 is out of range: give an integer from 1 to 1,024",
        ),
    ],
)
def test_errors_are_one_line_naming_what_failed(local_aws, capsys, args, code, message):
    aws, pipeline = local_aws
    args = [a.format(src=pipeline.source_bucket, inv=pipeline.inventory_bucket) for a in args]
    assert _cli(aws, *args) == code
    err = capsys.readouterr().err
    assert err.startswith("xacct-map manifest: ") and "Traceback" not in err
    assert __import__("re").search(message, err), err


def test_access_denied_names_the_bucket_and_the_role(local_aws, capsys, monkeypatch):
    aws, pipeline = local_aws

    def denied(*_, **__):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "ListObjectsV2")

    monkeypatch.setattr("xacct_map.core.build.iter_objects", denied)
    code = _cli(
        aws,
        "--source",
        f"s3://{pipeline.source_bucket}/data/",
        "--role-arn",
        pipeline.source_role_arn,
        "--dest",
        f"s3://{pipeline.inventory_bucket}/xacct-map/manifests/cli/denied.json",
    )
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"Access denied listing s3://{pipeline.source_bucket}/data/ as {pipeline.source_role_arn}" in err
    assert "s3:ListBucket" in err


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_line_updates_in_place_on_a_terminal():
    stream = _Tty()
    progress = Progress(stream, enabled=stream.isatty(), interval=0.0)
    assert list(progress.wrap(range(5))) == [0, 1, 2, 3, 4]
    progress.finish()
    text = stream.getvalue()
    assert text.count("\r") == 6 and text.endswith("\n") and "5 keys (" in text and "keys/s)" in text
    quiet = io.StringIO()
    silent = Progress(quiet, enabled=quiet.isatty())
    objects = range(3)
    assert silent.wrap(objects) is objects  # not a terminal: nothing counted, nothing added per key
    silent.finish()
    assert quiet.getvalue() == ""


@pytest.mark.parametrize(
    "on_empty, code, prefix, extra",
    [
        (None, 3, "nothing-here/", []),
        ("fail", 1, "data/", ["--suffix", ".no-such-suffix"]),
        ("run", 0, "nothing-here/", []),
    ],
)
def test_an_empty_source_skips_fails_or_runs_without_a_traceback(local_aws, on_empty, code, prefix, extra):
    """A whole process, as a user runs it: the listing workers must end quietly when there is nothing to list."""
    import subprocess
    import sys

    aws, pipeline = local_aws
    key = f"xacct-map/manifests/cli/empty-{on_empty}.json"
    command = [sys.executable, "-m", "xacct_map.cli", "manifest", "--endpoint-url", aws.endpoint_url]
    command += ["--region", "us-east-1", "--source", f"s3://{pipeline.source_bucket}/{prefix}"]
    command += ["--dest", f"s3://{pipeline.inventory_bucket}/{key}", "--listing-engine", "parallel", *extra]
    command += ["--on-empty", on_empty] if on_empty else []
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr and "Error" not in done.stderr.replace("EmptySource", "")
    s3 = aws.client("s3")
    written = s3.list_objects_v2(Bucket=pipeline.inventory_bucket, Prefix=key).get("Contents", [])
    if on_empty == "run":
        assert "0 objects" in done.stdout and {o["Key"] for o in written} == {key, key + ".meta.json"}
        return
    assert f"nothing to process: s3://{pipeline.source_bucket}/{prefix}" in done.stderr or (
        "the filters removed all" in done.stderr and ".no-such-suffix" in done.stderr
    )
    assert not written and not s3.list_multipart_uploads(Bucket=pipeline.inventory_bucket).get("Uploads")


def test_the_command_ends_at_once_with_its_whole_output(local_aws):
    """The console script skips the interpreter's teardown once the command is done: the process still
    hands over all of its output (exit codes 1 and 3: the empty-source test above)."""
    import subprocess
    import sys

    aws, pipeline = local_aws
    key = "xacct-map/manifests/cli/console.json"
    command = [sys.executable, "-m", "xacct_map.cli", "manifest", "--endpoint-url", aws.endpoint_url, "--region"]
    command += ["us-east-1", "--source", f"s3://{pipeline.source_bucket}/data/", "--json"]
    command += ["--dest", f"s3://{pipeline.inventory_bucket}/{key}", "--listing-engine", "parallel"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    summary = json.loads(done.stdout)
    assert summary["key"] == key and summary["object_count"] > 0
    assert summary["source"]["listing"]["engine"] == "parallel"


def test_a_reader_that_goes_away_early_gets_no_traceback(local_aws):
    """``xacct-map manifest --json | head -c 10``: the command still writes the manifest; the output it
    could not hand over makes exit code 1, with no BrokenPipeError traceback."""
    import subprocess
    import sys

    aws, pipeline = local_aws
    key = "xacct-map/manifests/cli/closed-early.json"
    command = [sys.executable, "-m", "xacct_map.cli", "manifest", "--endpoint-url", aws.endpoint_url, "--region"]
    command += ["us-east-1", "--source", f"s3://{pipeline.source_bucket}/data/", "--json"]
    command += ["--dest", f"s3://{pipeline.inventory_bucket}/{key}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # the reader is gone before the summary comes
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1 and "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert aws.client("s3").head_object(Bucket=pipeline.inventory_bucket, Key=key)["ContentLength"] > 0
