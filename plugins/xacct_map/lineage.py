"""OpenLineage for the operators: what the manifest task read and wrote, what the start task ran.

Imported only by the operators' ``get_openlineage_facets_on_complete``, which the OpenLineage
provider's listener calls (the provider is optional: ``pip install xacct-map[openlineage]``); every
OpenLineage import is inside a function, as in the amazon provider's S3 operators. Datasets follow
OpenLineage's S3 naming: namespace ``s3://<bucket>``, name the key or prefix (``/`` for the whole bucket).
"""

from __future__ import annotations

from functools import cache
from typing import Any

#: The start task's job facet naming the state machine (a custom facet: producer-prefixed name).
STATE_MACHINE_FACET = "xacctMap_stateMachine"


def s3_dataset(bucket: str, key: str) -> Any:
    """An OpenLineage Dataset for ``s3://bucket/key`` (the bucket itself when ``key`` is empty)."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    return Dataset(namespace=f"s3://{bucket}", name=key or "/")


def manifest_datasets(manifest: dict) -> list:
    """The manifest object(s): one per part when it was written in parts, else its key."""
    parts = [part["key"] for part in manifest.get("parts") or [] if part.get("key")]
    return [s3_dataset(manifest["bucket"], key) for key in (parts if len(parts) > 1 else [manifest["key"]])]


def manifest_lineage(*, source_bucket: str, source_prefix: str, manifest: dict | None) -> Any:
    """The manifest task: input the listed ``s3://source_bucket/source_prefix``, output the manifest."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    if manifest:  # what was read (the inventory's bucket when source_bucket was left empty)
        source_bucket = manifest.get("source_bucket") or source_bucket
        source_prefix = manifest.get("source_prefix", source_prefix)
    inputs = [s3_dataset(source_bucket, source_prefix)] if source_bucket else []
    several = ((manifest or {}).get("source") or {}).get("sources")
    if several:  # several sources: each listed prefix is an input
        inputs = [s3_dataset(entry["bucket"], entry.get("prefix") or "") for entry in several]
    return OperatorLineage(inputs=inputs, outputs=manifest_datasets(manifest) if manifest else [])


def start_lineage(*, manifest: dict | None, state_machine_arn: str, execution_arn: str | None) -> Any:
    """The start task: input the manifest; the state machine as a job facet, the execution as a run facet."""
    from airflow.providers.common.compat.openlineage.facet import ExternalQueryRunFacet
    from airflow.providers.openlineage.extractors import OperatorLineage

    run_facets = {}
    if execution_arn:
        run_facets["externalQuery"] = ExternalQueryRunFacet(externalQueryId=execution_arn, source=state_machine_arn)
    has_manifest = isinstance(manifest, dict) and manifest.get("bucket") and manifest.get("key")
    return OperatorLineage(
        inputs=manifest_datasets(manifest) if has_manifest else [],  # type: ignore[arg-type]
        job_facets={STATE_MACHINE_FACET: state_machine_facet(state_machine_arn)},
        run_facets=run_facets,
    )


def state_machine_facet(state_machine_arn: str) -> Any:
    """``{"stateMachineArn", "name", "region", "account"}`` of the state machine the job starts."""
    parts = state_machine_arn.split(":")
    known = len(parts) >= 7 and parts[5] == "stateMachine"
    return _facet_class()(
        stateMachineArn=state_machine_arn,
        name=parts[6] if known else "",
        region=parts[3] if known else "",
        account=parts[4] if known else "",
    )


@cache
def _facet_class() -> type:
    import attr
    from openlineage.client.generated.base import JobFacet

    @attr.define
    class StateMachineJobFacet(JobFacet):
        """The AWS Step Functions state machine the job starts (an execution of it per run)."""

        stateMachineArn: str  # noqa: N815 - OpenLineage's camelCase field names
        name: str
        region: str
        account: str

        @staticmethod
        def _get_schema() -> str:
            return "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/JobFacet"

    return StateMachineJobFacet
