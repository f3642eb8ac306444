"""Names that moved between the Airflow 3.x releases xacct-map supports, imported from one place.

The shape of the amazon provider's ``version_compat``: version flags computed once, each moved name
imported from where the running Airflow has it. Everything else imports these names from here.
"""

from __future__ import annotations

from airflow import __version__ as _airflow_version

# Not moved: airflow.exceptions defines it in every supported release (3.0.2 to 3.3.x) and the Task
# SDK has no copy; exported from here so the shells take every Airflow name from one place.
from airflow.exceptions import AirflowProviderDeprecationWarning
from airflow.sdk import Asset  # the Task SDK's since 3.0: outlets and their events (outlet_events[asset].extra)
from packaging.version import Version

AIRFLOW_VERSION = Version(Version(_airflow_version).base_version)
AIRFLOW_V_3_1_PLUS = AIRFLOW_VERSION >= Version("3.1.0")  # UI plugins' external views
AIRFLOW_V_3_2_PLUS = AIRFLOW_VERSION >= Version("3.2.0")

if AIRFLOW_V_3_2_PLUS:  # the Task SDK owns the task exceptions, the configuration and the metrics
    from airflow.sdk.configuration import conf
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowRescheduleException,
        AirflowSkipException,
        TaskDeferred,
    )
    from airflow.sdk.observability.stats import Stats
else:
    from airflow.configuration import conf  # type: ignore[no-redef]
    from airflow.exceptions import (  # type: ignore[no-redef]
        AirflowException,
        AirflowFailException,
        AirflowRescheduleException,
        AirflowSkipException,
        TaskDeferred,
    )
    from airflow.stats import Stats  # type: ignore[no-redef]  # deprecated (a warning) from 3.2 on


def __getattr__(name: str):
    # DagBag on first use only: it pulls in Airflow's ORM, which task code must not import.
    if name == "DagBag":
        if AIRFLOW_V_3_2_PLUS:
            from airflow.dag_processing.dagbag import DagBag
        else:  # moved out of airflow.models in 3.2
            from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
        return DagBag
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AIRFLOW_V_3_1_PLUS",
    "AIRFLOW_V_3_2_PLUS",
    "AIRFLOW_VERSION",
    "AirflowException",
    "AirflowFailException",
    "AirflowProviderDeprecationWarning",
    "AirflowRescheduleException",
    "AirflowSkipException",
    "Asset",
    "DagBag",  # noqa: F822 (module __getattr__, on first use)
    "Stats",
    "TaskDeferred",
    "conf",
]
