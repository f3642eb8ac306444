"""The DAG file imports cleanly and wires the three tasks; the package registers as a provider."""

from __future__ import annotations

from importlib.metadata import entry_points

from xacct_map.deploy import PROJECT_ROOT


def test_dag_imports_without_errors_and_is_wired_in_order():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert bag.import_errors == {}
    dag = bag.dags["xacct_distributed_map"]
    assert set(dag.task_ids) == {"build_manifest", "start_map_run", "wait_for_map_run"}
    assert dag.get_task("build_manifest").downstream_task_ids == {"start_map_run"}
    assert dag.get_task("start_map_run").downstream_task_ids == {"wait_for_map_run"}
    assert {"source_bucket", "source_prefix", "inventory_bucket", "state_machine_arn", "max_keys_per_batch",
            "max_bytes_per_batch"} <= set(dag.params.keys())
    assert dag.catchup is False


def test_registered_as_an_airflow_provider():
    (entry,) = [e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("xacct_map")]
    info = entry.load()()
    assert info["package-name"] == "xacct-map" and info["versions"]


def test_airflow_sees_the_provider():
    from airflow.providers_manager import ProvidersManager

    assert "xacct-map" in ProvidersManager().providers
