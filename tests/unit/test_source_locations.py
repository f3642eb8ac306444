"""Sources beyond a plain bucket, where no network is needed: access point ARNs and aliases parsed
(and the kinds that are not supported refused, naming the ARN), directory buckets recognised and
listed without an order check but never a key twice, Requester Pays in the messages and the estimate."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from xacct_map.cli import main
from xacct_map.core.build import ManifestRequest, inventory_source
from xacct_map.core.errors import explain_source_error
from xacct_map.core.estimate import estimate, estimate_manifest, format_estimate
from xacct_map.core.inventory import InventoryManifest
from xacct_map.core.listing import ListingEngineError, ListingOrderError, iter_objects
from xacct_map.core.s3uri import access_point, is_access_point_alias, is_directory_bucket, split_s3_uri

ARN = "arn:aws:s3:us-east-1:222222222222:accesspoint/shared"
MRAP = "arn:aws:s3::222222222222:accesspoint/mfzwi23gnjvgw.mrap"
OBJECT_LAMBDA = "arn:aws:s3-object-lambda:us-east-1:222222222222:accesspoint/transform"
DIRECTORY = "data--usw2-az1--x-s3"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (f"s3://{ARN}/data/2026/", (ARN, "data/2026/")),
        (f"s3://{ARN}", (ARN, "")),
        (f"s3://{ARN}/", (ARN, "")),
        (
            "s3://arn:aws-cn:s3:cn-north-1:222222222222:accesspoint/shared/k",
            (ARN.replace("aws:s3:us-east-1", "aws-cn:s3:cn-north-1"), "k"),
        ),
        (
            "s3://shared-q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6-s3alias/data/",
            ("shared-q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6-s3alias", "data/"),
        ),
        (f"s3://{DIRECTORY}/data/", (DIRECTORY, "data/")),
        ("s3://bucket/a/b", ("bucket", "a/b")),
    ],
)
def test_access_point_arns_split_after_the_access_point_name(uri, expected):
    assert split_s3_uri(uri) == expected


def test_the_kinds_of_source_are_told_apart():
    point = access_point(ARN)
    assert point is not None and (point.region, point.account, point.name) == ("us-east-1", "222222222222", "shared")
    assert point.host_prefix == "shared-222222222222"
    assert access_point("bucket") is None and access_point(MRAP) is None
    assert is_access_point_alias("shared-q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6-s3alias") and not is_access_point_alias(
        "b-s3"
    )
    assert is_directory_bucket(DIRECTORY) and not is_directory_bucket("data-usw2-az1-x-s3")


@pytest.mark.parametrize(
    ("bucket", "kind"),
    [
        (MRAP, "a Multi-Region Access Point"),
        (OBJECT_LAMBDA, "an Object Lambda access point"),
        ("arn:aws:s3-outposts:us-east-1:222222222222:outpost/op-1/accesspoint/x", "an S3 on Outposts access point"),
    ],
)
def test_unsupported_access_points_are_refused_naming_the_arn(bucket, kind, capsys):
    with pytest.raises(ValueError, match=f"{bucket}.*is {kind}, which xacct-map does not support") as raised:
        split_s3_uri(f"s3://{bucket}/data/", what="--source")
    assert "regional access point" in str(raised.value)
    # the CLI: one line naming the ARN, exit code 2, before any AWS call
    code = main(["manifest", "--source", f"s3://{bucket}/data/", "--dest", "s3://m/x.json"])
    assert code == 2 and bucket in capsys.readouterr().err


def test_the_operator_refuses_an_unsupported_access_point_before_any_call():
    from xacct_map.operators import BuildKeyManifestOperator
    from xacct_map.version_compat import AirflowFailException

    operator = BuildKeyManifestOperator(task_id="m", source_bucket=MRAP, manifest_bucket="manifests")
    with pytest.raises(AirflowFailException, match="Multi-Region Access Point"):
        operator._validate()
    operator = BuildKeyManifestOperator(task_id="m", source_bucket=ARN, manifest_bucket="m", request_payer="owner")
    with pytest.raises(AirflowFailException, match="request_payer must be 'requester'"):
        operator._validate()


def _client():
    return boto3.client("s3", region_name="us-west-2", aws_access_key_id="x", aws_secret_access_key="y")


def _page(keys, token=None):
    page = {"IsTruncated": token is not None, "Name": DIRECTORY, "KeyCount": len(keys)}
    page["Contents"] = [{"Key": k, "Size": 1, "ETag": '"e"', "StorageClass": "EXPRESS_ONEZONE"} for k in keys]
    return page | ({"NextContinuationToken": token} if token else {})


def test_a_directory_bucket_lists_out_of_order_but_never_a_key_twice():
    client = _client()
    with Stubber(client) as stub:
        expected = {"Bucket": DIRECTORY, "Prefix": "data/", "RequestPayer": "requester"}
        stub.add_response("list_objects_v2", _page(["data/c", "data/a"], "t1"), expected)
        stub.add_response("list_objects_v2", _page(["data/b"]), expected | {"ContinuationToken": "t1"})
        listed = [o.key for o in iter_objects(client, DIRECTORY, "data/", request_payer="requester")]
    assert listed == ["data/c", "data/a", "data/b"]  # S3's order, accepted; no StartAfter sent

    with Stubber(client) as stub:
        stub.add_response("list_objects_v2", _page(["data/c", "data/a"], "t1"), {"Bucket": DIRECTORY, "Prefix": ""})
        stub.add_response(
            "list_objects_v2", _page(["data/a"]), {"Bucket": DIRECTORY, "Prefix": "", "ContinuationToken": "t1"}
        )
        with pytest.raises(ListingOrderError, match=f"directory bucket s3://{DIRECTORY}/ listed 'data/a' twice"):
            list(iter_objects(client, DIRECTORY))


def test_a_directory_bucket_refuses_the_key_range_engine_and_a_partial_prefix():
    with pytest.raises(ListingEngineError, match=f"'{DIRECTORY}' is a directory bucket"):
        list(iter_objects(_client(), DIRECTORY, "data/", listing_engine="parallel"))
    with pytest.raises(ValueError, match=f"{DIRECTORY}.*only prefixes that end in '/': use 'data/'"):
        iter_objects(_client(), DIRECTORY, "data/part-")


def test_a_403_names_requester_pays_and_the_option_unless_it_was_sent():
    err = ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "ListObjectsV2")
    message = explain_source_error(err, bucket="open-data", prefix="d/", identity="role r", owner=None)
    assert "Requester Pays" in message and "--request-payer requester" in message
    sent = explain_source_error(err, bucket=ARN, prefix="", identity="r", owner=None, request_payer="requester")
    assert "Requester Pays" not in sent and f"s3:ListBucket on {ARN}" in sent and "access point" in sent


def test_an_inventory_of_the_bucket_is_read_for_its_access_point():
    report = InventoryManifest(
        bucket="inv", key="m.json", source_bucket="data-bucket", file_format="CSV", columns=("Key", "Size"), files=()
    )
    request = ManifestRequest(ARN, "", "manifests", "m.json", request_payer="requester")
    source = inventory_source(request, None, report)
    assert source.description["bucket"] == ARN and source.description["request_payer"] == "requester"
    with pytest.raises(ValueError, match="is a report of bucket 'data-bucket', not of the source bucket 'other'"):
        inventory_source(ManifestRequest("other", "", "manifests", "m.json"), None, report)


def test_the_estimate_adds_what_the_requester_pays():
    plain = estimate(objects=2_000, total_bytes=3 * 1024**3, region="us-east-1")
    same = estimate(objects=2_000, total_bytes=3 * 1024**3, region="us-east-1", request_payer="requester")
    other = estimate(
        objects=2_000, total_bytes=3 * 1024**3, region="us-east-1", request_payer="requester", source_region="eu-west-1"
    )
    assert plain.cost_requester_pays is None and "Requester Pays" not in format_estimate(plain)
    requests = 2_000 * 0.0000004 + 2 * 0.000005
    assert same.cost_requester_pays == pytest.approx(requests) and same.cost_requester_pays_transfer == 0
    assert other.cost_requester_pays == pytest.approx(requests + 3 * 0.02)
    assert "Requester Pays" in format_estimate(other)
    manifest = {"object_count": 2_000, "total_bytes": 3 * 1024**3, "batch_count": 20}
    manifest["source"] = {"request_payer": "requester", "region": "eu-west-1"}
    assert estimate_manifest(manifest, region="us-east-1").cost_requester_pays == pytest.approx(
        other.cost_requester_pays
    )


def test_the_dag_takes_an_access_point_and_requester_pays():
    import copy

    from xacct_map.setup.resources import dags_dir
    from xacct_map.version_compat import DagBag

    dag = DagBag(dag_folder=str(dags_dir())).dags["xacct_distributed_map"]
    params = copy.deepcopy(dag.params)
    params["source_bucket"], params["request_payer"] = ARN, "requester"
    params.validate()
    build = dag.get_task("build_manifest")
    assert "request_payer" in build.template_fields and "xacct_map_request_payer" in build.request_payer
