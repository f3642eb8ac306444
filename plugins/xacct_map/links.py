"""Extra links to the AWS console: the Map Run and the manifest object.

The execution itself uses the amazon provider's ``StateMachineExecutionsDetailsLink``.
"""

from __future__ import annotations

from urllib.parse import quote, quote_plus

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink


class MapRunLink(BaseAwsLink):
    """The Map Run's page in the Step Functions console."""

    name = "Map Run"
    key = "_xacct_map_map_run"
    format_str = BASE_AWS_CONSOLE_LINK + "/states/home?region={region_name}#/v2/map-run/details/{map_run_arn}"

    def format_link(self, *, map_run_arn: str | None = None, **kwargs) -> str:
        if not map_run_arn:
            return ""
        return super().format_link(map_run_arn=quote_plus(map_run_arn), **kwargs)


class ManifestObjectLink(BaseAwsLink):
    """The manifest object in the S3 console."""

    name = "Manifest (S3)"
    key = "_xacct_map_manifest"
    format_str = BASE_AWS_CONSOLE_LINK + "/s3/object/{bucket}?region={region_name}&prefix={key}"

    def format_link(self, *, bucket: str | None = None, key: str | None = None, **kwargs) -> str:
        if not bucket or not key:
            return ""
        return super().format_link(bucket=quote(bucket, safe=""), key=quote(key, safe=""), **kwargs)
