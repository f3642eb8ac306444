"""The DAG file imports cleanly and wires its tasks; the package registers as a provider."""

from __future__ import annotations

from importlib.metadata import entry_points

from xacct_map.setup.resources import dags_dir


def test_dag_imports_without_errors_and_is_wired_in_order():
    from xacct_map.version_compat import DagBag

    bag = DagBag(dag_folder=str(dags_dir()))
    assert bag.import_errors == {}
    dag = bag.dags["xacct_distributed_map"]
    assert set(dag.task_ids) == {"preflight", "build_manifest", "start_map_run", "wait_for_map_run"}
    assert dag.get_task("preflight").downstream_task_ids == {"build_manifest"}
    # and the sensor reads the manifest summary (the processed Asset event's source bucket and prefix)
    assert dag.get_task("build_manifest").downstream_task_ids == {"start_map_run", "wait_for_map_run"}
    assert dag.get_task("start_map_run").downstream_task_ids == {"wait_for_map_run"}
    assert {
        "source_bucket",
        "source_prefix",
        "inventory_bucket",
        "state_machine_arn",
        "max_keys_per_batch",
        "max_bytes_per_batch",
        "dry_run",
        "preflight",
    } <= set(dag.params.keys())
    assert dag.catchup is False


def test_every_optional_param_can_stay_empty_in_the_trigger_form():
    """The UI's form requires every param whose schema refuses null: optional text must allow null."""
    from xacct_map.version_compat import DagBag

    dag = DagBag(dag_folder=str(dags_dir())).dags["xacct_distributed_map"]
    params = dag.params.dump()
    schemas = {name: dag.params.get_param(name).schema for name in params}
    empty = [name for name, value in params.items() if value in ("", None)]
    assert {"source_bucket", "source_prefix", "inventory_bucket", "state_machine_arn", "source_inventory"} <= set(empty)
    for name in empty:
        assert params[name] is None and "null" in schemas[name]["type"], (name, schemas[name])
    # An empty form validates (what the trigger button checks before it enables).
    dag.params.validate()


def test_registered_as_an_airflow_provider():
    (entry,) = [e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("xacct_map")]
    info = entry.load()()
    assert info["package-name"] == "xacct-map" and info["versions"]


def test_airflow_sees_the_provider():
    from airflow.providers_manager import ProvidersManager

    assert "xacct-map" in ProvidersManager().providers


def test_scheduled_runs_get_a_data_interval_that_spans_the_period():
    """Incremental runs list their data interval: Airflow 3's default cron timetable makes it empty."""
    from datetime import datetime, timedelta, timezone

    from airflow.timetables.base import TimeRestriction

    from xacct_map.version_compat import DagBag

    dag = DagBag(dag_folder=str(dags_dir())).dags["xacct_distributed_map"]
    info = dag.timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=datetime(2026, 1, 1, tzinfo=timezone.utc), latest=None, catchup=True),
    )
    assert info.data_interval.end - info.data_interval.start == timedelta(days=1)  # @daily


def test_templates_render_native_values_and_keep_text_as_text():
    """The DAG renders natively: params keep their types, and free text (a 12-digit account id, a
    bucket named "2026") stays text instead of being read as a Python literal."""
    from types import SimpleNamespace

    from xacct_map.version_compat import DagBag

    dag = DagBag(dag_folder=str(dags_dir())).dags["xacct_distributed_map"]
    assert dag.render_template_as_native_obj is True
    params = {
        **dag.params.dump(),
        "source_bucket": "2026",
        "max_keys_per_batch": 7,
        "suffixes": [".parquet"],
        "min_size": 5,
        "modified_after": "2026-11-01T00:00:00+00:00",
        "dry_run": True,
    }
    variables = {"xacct_map_source_account_id": "111111111111", "xacct_map_pipeline_account_id": "012345678901"}
    context = {"params": params, "var": SimpleNamespace(value=SimpleNamespace(get=lambda n, d="": variables.get(n, d)))}

    build = dag.get_task("build_manifest")
    build.render_template_fields(context)
    assert (build.source_bucket, build.source_prefix, build.source_account_id) == ("2026", "", "111111111111")
    assert build.manifest_bucket_owner == "012345678901"
    assert (build.max_keys_per_batch, build.max_bytes_per_batch, build.listing_mode) == (7, 512 * 1024 * 1024, "auto")
    assert build.object_filter == {
        "suffixes": [".parquet"],
        "patterns": [],
        "pattern_base": "key",
        "min_size": 5,
        "max_size": None,
        "storage_classes": [],
        "include_archived": False,
        "modified_after": "2026-11-01T00:00:00+00:00",
        "modified_before": "",
    }
    # (start_map_run and the sensor take XComs too, which need a running task: their other fields, one by one)
    start, wait = dag.get_task("start_map_run"), dag.get_task("wait_for_map_run")
    env = dag.get_template_env()
    assert start.render_template(start.dry_run, context, env) is True
    assert start.render_template(start.source_account_id, context, env) == "111111111111"
    assert wait.render_template(wait.max_failed_items, context, env) == 0


def test_the_dag_declares_its_assets_and_the_example_downstream_dag_is_scheduled_on_the_processed_one(monkeypatch):
    """Asset URIs are fixed at parse time: the manifests' bucket from the environment, "processed" per DAG."""
    from xacct_map.version_compat import DagBag

    monkeypatch.setenv("AIRFLOW_VAR_XACCT_MAP_INVENTORY_BUCKET", "my-inventory")
    monkeypatch.delenv("XACCT_MAP_INVENTORY_BUCKET", raising=False)
    bag = DagBag(dag_folder=str(dags_dir()))
    assert bag.import_errors == {}
    dag = bag.dags["xacct_distributed_map"]
    assert [a.uri for a in dag.get_task("build_manifest").outlets] == [
        "s3://my-inventory/xacct-map/manifests/xacct_distributed_map"
    ]
    assert [a.uri for a in dag.get_task("wait_for_map_run").outlets] == ["xacct-map://processed/xacct_distributed_map"]
    assert not dag.get_task("start_map_run").outlets
    downstream = bag.dags["xacct_processed_downstream"]
    assert [a.uri for a in downstream.timetable.asset_condition.objects] == [
        "xacct-map://processed/xacct_distributed_map"
    ]

    monkeypatch.delenv("AIRFLOW_VAR_XACCT_MAP_INVENTORY_BUCKET")
    unset = DagBag(dag_folder=str(dags_dir())).dags["xacct_distributed_map"]
    assert not unset.get_task("build_manifest").outlets  # no bucket known at parse time: no manifest Asset
