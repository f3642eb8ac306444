"""Wait for a Distributed Map execution, logging Map Run progress, failing loudly."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from airflow.providers.amazon.aws.hooks.step_function import StepFunctionHook
from airflow.providers.amazon.aws.sensors.base_aws import AwsBaseSensor
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.sdk.bases.sensor import PokeReturnValue
from xacct_map.map_run import snapshot, verdict

if TYPE_CHECKING:
    from airflow.sdk import Context


class DistributedMapSensor(AwsBaseSensor[StepFunctionHook]):
    """
    Wait for a Distributed Map execution to finish, logging its Map Run's progress on every poke.

    Succeeds only when the execution SUCCEEDED **and** its Map Run reports no more than
    ``max_failed_items`` failed (or timed out, or aborted) items; DescribeMapRun is checked because an
    execution may report SUCCEEDED with failed items. FAILED, TIMED_OUT, ABORTED and PENDING_REDRIVE
    fail the task at once with the execution's error and cause, without retries: waiting again cannot
    change a finished execution.

    :param execution_arn: ARN of the execution (the XCom of :class:`StartDistributedMapOperator`).
    :param max_failed_items: failed items tolerated before the task fails (default 0).
    :param aws_conn_id: AWS connection of the pipeline account.
    :param region_name: AWS region_name. If not specified then the default boto3 behaviour is used.
    :param verify: Whether or not to verify SSL certificates.
    :param botocore_config: Configuration dictionary (key-values) for botocore client.
    :return: a summary: status, Map Run ARN, item counts, failed items, dates.
    """

    aws_hook_class = StepFunctionHook
    template_fields: Sequence[str] = aws_template_fields("execution_arn", "max_failed_items")
    ui_color = "#f9c915"

    def __init__(self, *, execution_arn: str, max_failed_items: int | str = 0, **kwargs):
        super().__init__(**kwargs)
        self.execution_arn = execution_arn
        self.max_failed_items = max_failed_items

    def poke(self, context: Context) -> PokeReturnValue | bool:
        snap = snapshot(self.hook.conn, self.execution_arn)
        self.log.info("%s", snap.progress_line())
        if snap.status == "RUNNING":
            return False
        failure = verdict(snap, max_failed_items=int(self.max_failed_items))
        if failure:
            raise AirflowFailException(failure)
        self.log.info("Execution %s succeeded: %s", self.execution_arn, snap.item_counts)
        return PokeReturnValue(is_done=True, xcom_value=snap.as_dict())
