"""A light two-account emulator for the manifest tests: buckets, the lister role and the Airflow
connections, without the Lambda and state machine deployment (which only the Map Run tests need).

Each test module gets its own buckets (named after the module), so modules never see each
other's objects in moto's process-wide backends.
"""

from __future__ import annotations

import contextlib
import os

from xacct_map.local.emulator import PIPELINE_ACCOUNT, SOURCE_ACCOUNT, LocalAws, LocalPipeline
from xacct_map.setup import deploy


@contextlib.contextmanager
def light_aws(name: str, *, objects: int = 40):
    """``(aws, pipeline)``: ``objects`` objects (awkward keys first) under ``data/`` of a source bucket
    in account 111111111111, an inventory bucket in 123456789012, and the Airflow connections
    ``xacct_map_pipeline`` / ``xacct_map_source`` in the environment (restored afterwards)."""
    saved = dict(os.environ)
    with LocalAws(lambda_workers=1) as aws:
        source_bucket, inventory_bucket = f"xacct-map-{name}-source", f"xacct-map-{name}-inventory"
        lister = deploy.ensure_role(
            aws.client("iam", SOURCE_ACCOUNT),
            "xacct-map-lister",
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{PIPELINE_ACCOUNT}:root"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            },
        )
        s3_source = aws.client("s3", SOURCE_ACCOUNT)
        s3_source.create_bucket(Bucket=source_bucket)
        total = LocalAws._seed(s3_source, source_bucket, "data/", objects)
        aws.client("s3").create_bucket(Bucket=inventory_bucket)
        pipeline = LocalPipeline(
            endpoint_url=aws.endpoint_url,
            region=aws.region,
            source_account=SOURCE_ACCOUNT,
            pipeline_account=PIPELINE_ACCOUNT,
            source_bucket=source_bucket,
            source_prefix="data/",
            source_role_arn=lister,
            inventory_bucket=inventory_bucket,
            function_arn="",
            state_machine_arn="",
            objects=objects,
            bytes=total,
        )
        os.environ.update(aws.airflow_environment(pipeline))
        try:
            yield aws, pipeline
        finally:
            os.environ.clear()
            os.environ.update(saved)


def manifest_operator(pipeline: LocalPipeline, **overrides):
    """``BuildKeyManifestOperator`` over ``pipeline``'s source prefix into its inventory bucket,
    through the ``xacct_map_pipeline``/``xacct_map_source`` connections; ``overrides`` win."""
    from xacct_map.operators import BuildKeyManifestOperator

    args = dict(
        task_id="build_manifest",
        aws_conn_id="xacct_map_pipeline",
        source_aws_conn_id="xacct_map_source",
        source_bucket=pipeline.source_bucket,
        source_prefix=pipeline.source_prefix,
        manifest_bucket=pipeline.inventory_bucket,
    )
    return BuildKeyManifestOperator(**{**args, **overrides})
