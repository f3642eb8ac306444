"""Where Airflow's APIs differ between the 3.x releases xacct-map supports, in one place.

The shape of the amazon provider's ``version_compat``: version flags computed once, and the names
that moved, imported from where the running Airflow has them. Import this module only where
Airflow is needed (it imports Airflow).
"""

from __future__ import annotations

from packaging.version import Version

from airflow import __version__ as _airflow_version

AIRFLOW_VERSION = Version(Version(_airflow_version).base_version)
AIRFLOW_V_3_2_PLUS = AIRFLOW_VERSION >= Version("3.2.0")

if AIRFLOW_V_3_2_PLUS:
    from airflow.dag_processing.dagbag import DagBag
else:  # moved out of airflow.models in 3.2
    from airflow.models.dagbag import DagBag

__all__ = ["AIRFLOW_VERSION", "AIRFLOW_V_3_2_PLUS", "DagBag"]
