"""xacct-map: run an AWS Step Functions Distributed Map over S3 objects of another account or Region.

Importing this package stays cheap and imports no Airflow: Airflow reads :func:`get_provider_info`
through the ``apache_airflow_provider`` entry point while it starts.
"""

from __future__ import annotations

# The same as pyproject.toml's ``version`` (tests/system/test_package.py compares both with the
# installed metadata): a constant, because importlib.metadata costs every command ~40 ms to import.
__version__ = "0.2.0"


# The README is the package's long description: on PyPI its sections are the how-to guides.
_DOCS = "https://pypi.org/project/xacct-map/"
_INTEGRATION = "AWS Step Functions Distributed Map (cross-account S3)"


def _modules(name: str) -> list[dict]:
    return [{"integration-name": _INTEGRATION, "python-modules": [f"xacct_map.{name}"]}]


def get_provider_info() -> dict:
    """Describe this package to Airflow's ProvidersManager, in the shape of the amazon provider's own."""
    return {
        "package-name": "xacct-map",
        "name": "xacct-map",
        "description": "Run an AWS Step Functions Distributed Map over S3 objects that live in another AWS account "
        "or Region: a cross-account key manifest, exactly one execution per DAG run, Map Run progress.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "external-doc-url": "https://docs.aws.amazon.com/step-functions/latest/dg/state-map-distributed.html",
                "how-to-guide": [
                    f"{_DOCS}#use-it-in-your-own-dag-real-aws",
                    f"{_DOCS}#set-up-on-aws",
                    f"{_DOCS}#monitoring-and-failures",
                ],
                "tags": ["aws"],
            }
        ],
        "hooks": _modules("hooks"),
        "operators": _modules("operators"),
        "sensors": _modules("sensors"),
        "triggers": _modules("triggers"),
        "extra-links": ["xacct_map.links.MapRunLink", "xacct_map.links.ManifestObjectLink"],
        "plugins": [{"name": "xacct_map", "plugin-class": "xacct_map.ui.XacctMapPlugin"}],
        "config": {
            "xacct_map": {
                "description": "xacct-map's settings.",
                "options": {
                    "map_runs_refresh_seconds": {
                        "description": "How often the Map runs page refreshes, and how long the API server "
                        "reuses one look at a running execution (at most one AWS look per run per interval).",
                        "version_added": "0.2.0",
                        "type": "float",
                        "example": "30",
                        "default": "10",
                    }
                },
            }
        },
    }
