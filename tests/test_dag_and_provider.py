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
    assert dag.get_task("build_manifest").downstream_task_ids == {"start_map_run"}
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
