"""Cross-Region and cross-account safety of every call that touches a bucket.

* Region discovery (:func:`xacct_map.core.cross_account.bucket_region`,
  :func:`xacct_map.hooks.source_s3_client`): against moto (a bucket created in eu-west-1 while the
  connections are us-east-1; moto answers HeadBucket from any Region with 200 and
  ``x-amz-bucket-region``) and with stubbed 301/400/403/404 answers, the shapes real S3 gives (the
  header is on every one but 404).
* ExpectedBucketOwner: a recording proxy in front of the emulator sees the *actual* HTTP requests,
  including the parallel lister's worker processes, which botocore event hooks cannot see.

moto ignores ExpectedBucketOwner and bucket Regions, so these tests check what is sent, not what
S3 would answer.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import boto3
import pytest
from botocore.stub import Stubber

from xacct_map import hooks
from xacct_map.core.cross_account import bucket_region
from xacct_map.core.listing import iter_objects
from xacct_map.hooks import source_s3_client
from xacct_map.local.emulator import PIPELINE_ACCOUNT, SOURCE_ACCOUNT
from xacct_map.setup.resources import dags_dir, processor_dir

EU_BUCKET = "xacct-map-eu-source"
EU_KEYS = ["eu/a.txt", "eu/b c.txt", "eu/ü/d"]


# -- a recording proxy ---------------------------------------------------------------------------


class RecordingProxy:
    """An HTTP proxy on loopback that forwards to ``target`` and records every request's headers."""

    def __init__(self, target: str):
        self.target = urlsplit(target)
        self.requests: list[dict] = []
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items()}
                with lock:
                    proxy.requests.append(
                        {
                            "method": self.command,
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in headers.items()},
                        }
                    )
                conn = http.client.HTTPConnection(proxy.target.hostname, proxy.target.port, timeout=60)
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def to_bucket(self, bucket: str) -> list[dict]:
        """Requests for ``bucket`` (path-style: the first path segment)."""
        return [r for r in self.requests if unquote(urlsplit(r["path"]).path).split("/")[1] == bucket]


def _scope(request: dict) -> str | None:
    match = re.search(r"Credential=[^/]+/\d{8}/([^/]+)/s3/", request["headers"].get("authorization", ""))
    return match.group(1) if match else None


@pytest.fixture
def proxy(local_aws):
    aws, _ = local_aws
    with RecordingProxy(aws.endpoint_url) as recording:
        yield recording


@pytest.fixture
def proxied_connections(local_aws, proxy, monkeypatch):
    """Connections ``proxied_pipeline`` / ``proxied_source``: the demo's, with the proxy as endpoint."""
    aws, pipeline = local_aws
    for name in ("PIPELINE", "SOURCE"):
        conn = json.loads(aws.airflow_environment(pipeline)[f"AIRFLOW_CONN_XACCT_MAP_{name}"])
        conn["extra"]["endpoint_url"] = proxy.url
        if "service_config" in conn["extra"]:
            conn["extra"]["service_config"] = {"sts": {"endpoint_url": proxy.url}}
        monkeypatch.setenv(f"AIRFLOW_CONN_PROXIED_{name}", json.dumps(conn))
    return "proxied_pipeline", "proxied_source"


# -- a bucket in another Region -------------------------------------------------------------------


def _source_client(aws, region: str):
    """An S3 client acting in the source account, for ``region``."""
    sts = boto3.client(
        "sts",
        region_name="us-east-1",
        endpoint_url=aws.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{SOURCE_ACCOUNT}:role/xacct-map-admin", RoleSessionName="eu")[
        "Credentials"
    ]
    return boto3.client(
        "s3",
        region_name=region,
        endpoint_url=aws.endpoint_url,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


@pytest.fixture(scope="module")
def eu_bucket(local_aws):
    aws, _ = local_aws
    s3 = _source_client(aws, "eu-west-1")
    s3.create_bucket(Bucket=EU_BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    for key in EU_KEYS:
        s3.put_object(Bucket=EU_BUCKET, Key=key, Body=key.encode())
    return EU_BUCKET


def test_moto_reports_the_bucket_region_from_another_region(local_aws, eu_bucket):
    aws, _ = local_aws
    us_client = _source_client(aws, "us-east-1")
    assert bucket_region(us_client, eu_bucket) == "eu-west-1"
    assert bucket_region(us_client, eu_bucket, expected_bucket_owner=SOURCE_ACCOUNT) == "eu-west-1"
    assert bucket_region(us_client, "xacct-map-no-such-bucket") is None


@pytest.mark.parametrize(
    ("status", "code"),
    [(301, "PermanentRedirect"), (400, "AuthorizationHeaderMalformed"), (403, "403")],
)
def test_region_comes_from_the_header_of_an_error_answer_too(status, code):
    # Real S3 puts x-amz-bucket-region on 301 (another Region's endpoint), 400 (signed for the wrong
    # Region) and 403 (no access, or another owner than ExpectedBucketOwner) answers of HeadBucket.
    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    with Stubber(s3) as stub:
        stub.add_client_error(
            "head_bucket",
            service_error_code=code,
            http_status_code=status,
            response_meta={"HTTPHeaders": {"x-amz-bucket-region": "ap-southeast-2"}},
            expected_params={"Bucket": "their-bucket", "ExpectedBucketOwner": SOURCE_ACCOUNT},
        )
        assert bucket_region(s3, "their-bucket", expected_bucket_owner=SOURCE_ACCOUNT) == "ap-southeast-2"


def test_no_header_means_unknown_region():
    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    with Stubber(s3) as stub:
        stub.add_client_error("head_bucket", service_error_code="404", http_status_code=404)
        assert bucket_region(s3, "gone") is None


@pytest.mark.parametrize("via", ["source_aws_conn_id", "source_role_arn"])
def test_source_client_is_built_for_the_buckets_region_and_lists_it(local_aws, eu_bucket, via):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    aws, pipeline = local_aws
    hook = S3Hook(aws_conn_id="xacct_map_pipeline")
    assert hook.conn_region_name == "us-east-1"
    source = hooks.source_s3(
        hook,
        source_aws_conn_id="xacct_map_source" if via == "source_aws_conn_id" else None,
        source_role_arn=pipeline.source_role_arn if via == "source_role_arn" else None,
        source_external_id=None,
        source_region=None,
        session_name="test",
        source_bucket=eu_bucket,
        expected_bucket_owner=SOURCE_ACCOUNT,
    )
    assert source.client.meta.region_name == "eu-west-1"
    stats: dict = {}
    objects = iter_objects(
        source.client,
        eu_bucket,
        "eu/",
        expected_bucket_owner=SOURCE_ACCOUNT,
        credentials=source.credentials,
        verify=source.verify,
        stats=stats,
    )
    assert sorted(o.key for o in objects) == sorted(EU_KEYS)
    assert stats["engine"] == "parallel"  # the source's credentials reached the engine


def test_a_given_source_region_is_used_without_discovery(local_aws, eu_bucket, monkeypatch):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    calls = []
    monkeypatch.setattr(hooks, "bucket_region", lambda *a, **k: calls.append(a) or "eu-west-1")
    common = dict(
        source_aws_conn_id="xacct_map_source", source_role_arn=None, source_external_id=None, session_name="test"
    )
    hook = S3Hook(aws_conn_id="xacct_map_pipeline")
    given = source_s3_client(hook, source_region="ap-south-1", source_bucket=eu_bucket, **common)
    assert given.meta.region_name == "ap-south-1" and calls == []
    # Without the bucket (the old call), nothing is discovered either: the connection's Region.
    assert source_s3_client(hook, source_region=None, **common).meta.region_name == "us-east-1" and calls == []


def test_discovery_headbucket_carries_expected_bucket_owner(local_aws, eu_bucket, proxied_connections, proxy):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    pipeline_conn, source_conn = proxied_connections
    client = source_s3_client(
        S3Hook(aws_conn_id=pipeline_conn),
        source_aws_conn_id=source_conn,
        source_role_arn=None,
        source_external_id=None,
        source_region=None,
        session_name="test",
        source_bucket=eu_bucket,
        expected_bucket_owner=SOURCE_ACCOUNT,
    )
    assert client.meta.region_name == "eu-west-1"
    heads = [r for r in proxy.to_bucket(eu_bucket) if r["method"] == "HEAD"]
    assert heads and all(r["headers"].get("x-amz-expected-bucket-owner") == SOURCE_ACCOUNT for r in heads)


def test_listing_goes_to_the_source_region_and_the_manifest_stays_in_the_pipeline_region(
    local_aws, eu_bucket, proxied_connections, proxy, run_context
):
    from xacct_map.operators import BuildKeyManifestOperator

    aws, pipeline = local_aws
    pipeline_conn, source_conn = proxied_connections
    summary = BuildKeyManifestOperator(
        task_id="build_manifest",
        aws_conn_id=pipeline_conn,
        source_aws_conn_id=source_conn,
        source_bucket=eu_bucket,
        source_prefix="eu/",
        source_region="eu-west-1",
        source_account_id=SOURCE_ACCOUNT,
        manifest_bucket=pipeline.inventory_bucket,
        manifest_bucket_owner=PIPELINE_ACCOUNT,
    ).execute(run_context("run-eu"))
    assert summary["object_count"] == len(EU_KEYS)
    source_scopes = {_scope(r) for r in proxy.to_bucket(eu_bucket) if _scope(r)}
    inventory_scopes = {_scope(r) for r in proxy.to_bucket(pipeline.inventory_bucket)}
    assert source_scopes == {"eu-west-1"}
    assert inventory_scopes == {"us-east-1"}


# -- ExpectedBucketOwner on every request -------------------------------------------------------


def test_every_manifest_task_request_names_the_expected_owner(
    local_aws, proxied_connections, proxy, run_context, monkeypatch
):
    """Lister (botocore's first page and folder probe + parallel worker processes) and manifest writer."""
    import functools

    from xacct_map.core import build
    from xacct_map.operators import BuildKeyManifestOperator

    # 10-key pages: the 40 objects take the worker processes too, not only botocore's first page
    monkeypatch.setattr(build, "iter_objects", functools.partial(build.iter_objects, page_size=10))
    # a few KB of manifest is one PutObject; the multipart calls must carry the owner too
    monkeypatch.setattr("xacct_map.core.manifest.SMALL_OBJECT_PUT", False)

    aws, pipeline = local_aws
    pipeline_conn, source_conn = proxied_connections
    summary = BuildKeyManifestOperator(
        task_id="build_manifest",
        aws_conn_id=pipeline_conn,
        source_aws_conn_id=source_conn,
        source_bucket=pipeline.source_bucket,
        source_prefix=pipeline.source_prefix,
        source_account_id=SOURCE_ACCOUNT,
        manifest_bucket=pipeline.inventory_bucket,
        manifest_bucket_owner=PIPELINE_ACCOUNT,
        max_keys_per_batch=5,
    ).execute(run_context("run-owner"))
    assert summary["object_count"] >= 40

    source = proxy.to_bucket(pipeline.source_bucket)
    lists = [r for r in source if "list-type=2" in r["path"]]
    assert len(lists) >= 3, "expected the first page, the folder probe and the engine's pages"
    assert any("start-after" in r["path"] for r in lists), "no page of the engine's"
    assert source and all(r["headers"].get("x-amz-expected-bucket-owner") == SOURCE_ACCOUNT for r in source), [
        (r["method"], r["path"][:80])
        for r in source
        if r["headers"].get("x-amz-expected-bucket-owner") != SOURCE_ACCOUNT
    ]
    inventory = proxy.to_bucket(pipeline.inventory_bucket)
    operations = {
        (r["method"], "uploads" in r["path"], "partNumber" in r["path"], "uploadId" in r["path"]) for r in inventory
    }
    assert ("POST", True, False, False) in operations  # CreateMultipartUpload
    assert ("PUT", False, True, True) in operations  # UploadPart
    assert ("POST", False, False, True) in operations  # CompleteMultipartUpload
    assert all(r["headers"].get("x-amz-expected-bucket-owner") == PIPELINE_ACCOUNT for r in inventory)


@pytest.fixture
def handler_module():
    spec = importlib.util.spec_from_file_location("processor_handler_owner", processor_dir() / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("from_env", [False, True])
def test_processor_sends_expected_owner_on_every_get(local_aws, proxy, handler_module, monkeypatch, from_env):
    aws, pipeline = local_aws
    keys = [pipeline.source_prefix + "with space/file 1.txt", pipeline.source_prefix + "plus+sign/a+b=c.txt"]
    from xacct_map.processor import _objects

    monkeypatch.setitem(
        _objects._clients,
        None,
        boto3.client(
            "s3",
            region_name="us-east-1",
            endpoint_url=proxy.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ),
    )
    event = {"bucket": pipeline.source_bucket, "keys": keys, "bytes": 0, "source": {"bucket": pipeline.source_bucket}}
    if from_env:
        monkeypatch.setenv("SOURCE_ACCOUNT_ID", SOURCE_ACCOUNT)
    else:
        monkeypatch.delenv("SOURCE_ACCOUNT_ID", raising=False)
        event["source"]["account_id"] = SOURCE_ACCOUNT
    assert handler_module.handler(event)["objects"] == 2
    gets = [r for r in proxy.to_bucket(pipeline.source_bucket) if r["method"] == "GET"]
    assert len(gets) == 2 and all(r["headers"].get("x-amz-expected-bucket-owner") == SOURCE_ACCOUNT for r in gets)


def test_the_dag_names_the_inventory_bucket_owner():
    from xacct_map.version_compat import DagBag

    dag = DagBag(dag_folder=str(dags_dir())).dags["xacct_distributed_map"]
    # Rendered at run time from the Variable the local modes and docker compose set.
    assert "xacct_map_pipeline_account_id" in dag.get_task("build_manifest").manifest_bucket_owner


def test_the_operator_discovers_the_source_region(local_aws, eu_bucket, proxied_connections, proxy, run_context):
    from xacct_map.operators import BuildKeyManifestOperator, build_execution_input

    aws, pipeline = local_aws
    pipeline_conn, source_conn = proxied_connections
    manifest = BuildKeyManifestOperator(
        task_id="build_manifest",
        aws_conn_id=pipeline_conn,
        source_aws_conn_id=source_conn,
        source_bucket=eu_bucket,
        source_prefix="eu/",
        source_account_id=SOURCE_ACCOUNT,
        manifest_bucket=pipeline.inventory_bucket,
        manifest_bucket_owner=PIPELINE_ACCOUNT,
    ).execute(run_context("run-eu-discover"))
    listing = [r for r in proxy.to_bucket(eu_bucket) if r["method"] == "GET"]
    assert listing and {_scope(r) for r in listing} == {"eu-west-1"}  # only the discovery HeadBucket asks us-east-1
    # The discovered Region travels in the manifest's XCom to the processor's execution input.
    assert manifest["source"]["region"] == "eu-west-1"
    assert build_execution_input(manifest)["source"] == {
        "bucket": eu_bucket,
        "prefix": "eu/",
        "account_id": SOURCE_ACCOUNT,
        "region": "eu-west-1",
    }
    assert build_execution_input(manifest, source_region="us-west-2")["source"]["region"] == "us-west-2"
