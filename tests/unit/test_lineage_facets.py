"""The operators' OpenLineage facets (``get_openlineage_facets_on_complete``), built from what their
``execute`` recorded; skipped where the openlineage provider is not installed (an optional extra)."""

from __future__ import annotations

import pytest

pytest.importorskip(
    "airflow.providers.openlineage", reason="the openlineage provider is not installed (extra: xacct-map[openlineage])"
)

from openlineage.client.serde import Serde  # noqa: E402 - after the skip

from xacct_map.operators import BuildKeyManifestOperator, StartDistributedMapOperator  # noqa: E402

STATE_MACHINE = "arn:aws-cn:states:cn-north-1:210987654321:stateMachine:xacct-map-distributed-map"
MANIFEST = {
    "bucket": "inventory",
    "key": "xacct-map/manifests/d/r/manifest.json",
    "source_bucket": "source",
    "source_prefix": "data/2026/",
    "object_count": 3,
}


def _names(datasets) -> list[tuple[str, str]]:
    return [(d.namespace, d.name) for d in datasets]


def _build(**kwargs) -> BuildKeyManifestOperator:
    return BuildKeyManifestOperator(task_id="build_manifest", manifest_bucket="inventory", **kwargs)


def test_the_manifest_task_reads_the_source_prefix_and_writes_the_manifest():
    op = _build(source_bucket="source", source_prefix="data/2026/")
    op._manifest_summary = dict(MANIFEST)
    lineage = op.get_openlineage_facets_on_complete(None)
    assert _names(lineage.inputs) == [("s3://source", "data/2026/")]
    assert _names(lineage.outputs) == [("s3://inventory", MANIFEST["key"])]


def test_a_whole_bucket_is_named_slash_and_a_manifest_in_parts_is_one_dataset_per_part():
    op = _build(source_bucket="source")
    parts = [{"key": f"m/manifest.part-{i}.json"} for i in (1, 2)]
    op._manifest_summary = dict(MANIFEST, source_prefix="", key=parts[0]["key"], parts=parts)
    lineage = op.get_openlineage_facets_on_complete(None)
    assert _names(lineage.inputs) == [("s3://source", "/")]
    assert _names(lineage.outputs) == [("s3://inventory", p["key"]) for p in parts]


def test_an_inventory_source_names_the_bucket_the_inventory_described():
    op = _build(source_bucket="", source_inventory="s3://inv/reports/source/daily")
    op._manifest_summary = dict(MANIFEST)  # source_bucket: taken from the inventory report
    assert _names(op.get_openlineage_facets_on_complete(None).inputs) == [("s3://source", "data/2026/")]


def test_no_manifest_written_means_no_output():
    lineage = _build(source_bucket="source", source_prefix="empty/").get_openlineage_facets_on_complete(None)
    assert _names(lineage.inputs) == [("s3://source", "empty/")] and lineage.outputs == []


def test_the_start_task_reads_the_manifest_and_its_job_facet_names_the_state_machine():
    op = StartDistributedMapOperator(task_id="start", state_machine_arn=STATE_MACHINE, manifest=dict(MANIFEST))
    execution = STATE_MACHINE.replace(":stateMachine:", ":execution:") + ":run-1"
    op._execution_arn = execution
    lineage = op.get_openlineage_facets_on_complete(None)
    assert _names(lineage.inputs) == [("s3://inventory", MANIFEST["key"])]
    assert lineage.outputs == []
    facet = Serde.to_dict(lineage.job_facets["xacctMap_stateMachine"])
    assert {k: facet[k] for k in ("stateMachineArn", "name", "region", "account")} == {
        "stateMachineArn": STATE_MACHINE,
        "name": "xacct-map-distributed-map",
        "region": "cn-north-1",
        "account": "210987654321",
    }
    assert facet["_schemaURL"].startswith("https://openlineage.io/spec/") and facet["_producer"]
    query = Serde.to_dict(lineage.run_facets["externalQuery"])
    assert query["externalQueryId"] == execution and query["source"] == STATE_MACHINE


def test_a_start_that_did_not_run_still_names_the_state_machine_but_no_execution():
    op = StartDistributedMapOperator(task_id="start", state_machine_arn=STATE_MACHINE, manifest="{{ not rendered }}")
    lineage = op.get_openlineage_facets_on_complete(None)
    assert lineage.inputs == [] and lineage.run_facets == {}
    assert lineage.job_facets["xacctMap_stateMachine"].stateMachineArn == STATE_MACHINE
