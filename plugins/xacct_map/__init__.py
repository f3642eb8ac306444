"""xacct-map: run an AWS Step Functions Distributed Map over S3 objects of another account or Region.

Importing this package stays cheap and imports no Airflow: Airflow reads :func:`get_provider_info`
through the ``apache_airflow_provider`` entry point while it starts.
"""

from __future__ import annotations

__version__ = "0.1.0"


def get_provider_info() -> dict:
    """Describe this package to Airflow's ProvidersManager."""
    return {
        "package-name": "xacct-map",
        "name": "xacct-map",
        "description": "Cross-account / cross-Region S3 manifests for AWS Step Functions Distributed Map.",
        "versions": [__version__],
        "extra-links": [],
    }
