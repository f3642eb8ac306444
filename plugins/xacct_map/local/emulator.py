"""An emulated pair of AWS accounts on loopback: moto's server, in this process.

* source account 111111111111: a bucket of sample objects and the role the lister assumes;
* pipeline account 123456789012: the inventory bucket, the processor Lambda (run for real by
  :class:`~xacct_map.local.lambda_runtime.LocalLambdaRuntime`) and the Distributed Map state machine
  from ``asl/``, deployed with :mod:`xacct_map.setup.deploy` exactly as on AWS.

The pipeline account must be moto's default account: the Step Functions interpreter makes its own
S3/Lambda calls there. Emulator facts used here are in the project's notes (emulators.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import boto3
import requests

from xacct_map.local import limits, result_writer
from xacct_map.local.lambda_runtime import LocalLambdaRuntime
from xacct_map.local.ports import free_port
from xacct_map.setup import deploy

SOURCE_ACCOUNT = "111111111111"
PIPELINE_ACCOUNT = "123456789012"
REGION = "us-east-1"
# Keys a real bucket may hold and a careless lister mangles: spaces, unicode, +, %, quotes, long names,
# a key ending in "/", doubled slashes, dot segments and a control character.
AWKWARD_KEYS = (
    "with space/file 1.txt",
    "unicodé/日本語/ファイル.bin",
    "emoji/🚀 launch.json",
    "plus+sign/a+b=c.txt",
    "percent/100%25 done %2F not a slash.txt",
    'quotes/it\'s "quoted".txt',
    "symbols/~$#&@!(),;=.txt",
    "trailing/slash/",
    "double//slash//key",
    "dots/./and/../segments",
    "control/tab\there",
    "long/" + "x" * 900,
)


@dataclass(frozen=True)
class LocalPipeline:
    """What the local deployment created: everything a DAG run needs to know."""

    endpoint_url: str
    region: str
    source_account: str
    pipeline_account: str
    source_bucket: str
    source_prefix: str
    source_role_arn: str
    inventory_bucket: str
    function_arn: str
    state_machine_arn: str
    objects: int
    bytes: int
    child_execution_type: str = "STANDARD"

    def as_dict(self) -> dict:
        return asdict(self)


def object_body(key: str, index: int, size: int | None = None) -> bytes:
    """Deterministic content (``size`` bytes, default 256 B to ~4 KiB), so a re-run produces the same checksums."""
    seed = hashlib.sha256(key.encode()).digest()
    size = 256 + (index * 37) % 3840 if size is None else size
    return (seed * (size // len(seed) + 1))[:size]


def source_files(folder: Path) -> list[tuple[str, Path]]:
    """``(relative key, file)`` for every file under ``folder``, sorted; raises naming an empty or missing one."""
    if not folder.is_dir():
        raise FileNotFoundError(f"--source-dir {folder}: no such folder")
    files = [(p.relative_to(folder).as_posix(), p) for p in sorted(folder.rglob("*")) if p.is_file()]
    if not files:
        raise FileNotFoundError(f"--source-dir {folder}: holds no files to seed")
    return files


def _explain_unsupported_calls() -> None:
    """moto lacks RedriveExecution and ListExecutions by Map Run and answers a bare HTTP 500; make
    those calls fail with a message that says why."""
    from moto.core.exceptions import JsonRESTError  # AWSError, its subclass, is gone from moto 5.2.6
    from moto.stepfunctions.responses import StepFunctionResponse

    def unsupported(what: str, instead: str):
        return JsonRESTError("UnsupportedOperation", f"{what} is not implemented by the local emulator; {instead}")

    def redrive_execution(self):
        raise unsupported(
            "RedriveExecution", "on AWS it re-runs only the failed items; locally, start a new DAG run instead."
        )

    list_executions = StepFunctionResponse.list_executions

    def list_executions_by_map_run(self):
        if self._get_param("mapRunArn"):
            raise unsupported(
                "ListExecutions by mapRunArn",
                "the failed items' errors are in the local Lambda log (LocalLambdaRuntime.log_path).",
            )
        return list_executions(self)

    StepFunctionResponse.redrive_execution = redrive_execution  # type: ignore[attr-defined]
    StepFunctionResponse.list_executions = list_executions_by_map_run  # type: ignore[method-assign]


def _express_as_standard(definition: str) -> str:
    """The definition with every Distributed Map's ``ExecutionType: EXPRESS`` children made STANDARD."""
    try:
        doc = json.loads(definition)
    except ValueError:
        return definition  # not JSON: moto's parser reports it

    def walk(node):
        if isinstance(node, dict):
            config = node.get("ProcessorConfig")
            if isinstance(config, dict) and config.get("ExecutionType") == "EXPRESS":
                node["ProcessorConfig"] = {**config, "ExecutionType": "STANDARD"}
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    return json.dumps(doc)


def _run_express_children_as_standard() -> None:
    """moto 5.2.5's ASL grammar accepts only STANDARD children in a Distributed Map (CreateStateMachine
    fails with ``mismatched input '"EXPRESS"'``). Its parser gets a STANDARD copy of the definition; the
    state machine keeps (and DescribeStateMachine returns) the EXPRESS one that was deployed, so deploy
    stays idempotent. Locally, EXPRESS children therefore run exactly once and without the 5-minute limit."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    if getattr(AmazonStateLanguageParser.parse, "xacct_map_bridge", False):
        return
    parse = AmazonStateLanguageParser.parse

    def parse_express_as_standard(definition: str):
        return parse(_express_as_standard(definition))

    parse_express_as_standard.xacct_map_bridge = True  # type: ignore[attr-defined]
    AmazonStateLanguageParser.parse = staticmethod(parse_express_as_standard)  # type: ignore[method-assign,assignment]


def _apply_ephemeral_storage_updates() -> None:
    """moto 5.2.5's UpdateFunctionConfiguration ignores ``EphemeralStorage`` (CreateFunction keeps it):
    apply it, as Lambda does, so a deploy that changes ``--ephemeral-storage`` converges."""
    from moto.awslambda.models import LambdaFunction

    if getattr(LambdaFunction.update_configuration, "xacct_map_bridge", False):
        return
    update = LambdaFunction.update_configuration

    def update_configuration(self, config_updates):
        if "EphemeralStorage" in config_updates:
            self.ephemeral_storage = config_updates["EphemeralStorage"]["Size"]
        return update(self, config_updates)

    update_configuration.xacct_map_bridge = True  # type: ignore[attr-defined]
    LambdaFunction.update_configuration = update_configuration  # type: ignore[method-assign]


class LocalAws:
    """Start moto's server on 127.0.0.1 with Step Functions execution and the local Lambda runtime.

    Use as a context manager. ``MOTO_PORT`` must be set before the server starts: the Step Functions
    interpreter's own clients call ``http://localhost:$MOTO_PORT``.
    """

    def __init__(self, *, port: int | None = None, region: str = REGION, lambda_workers: int = 4):
        self.port = port or free_port()
        self.region = region
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.lambda_workers = lambda_workers
        self.runtime: LocalLambdaRuntime | None = None
        self._server: Any = None  # moto.server.ThreadedMotoServer, imported on start

    def __enter__(self) -> LocalAws:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
        # moto warns on every execution that it does not enforce ToleratedFailure*; the sensor does.
        logging.getLogger("moto.stepfunctions.parser.asl.parse.preprocessor").setLevel(logging.ERROR)
        os.environ["MOTO_PORT"] = str(self.port)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        # moto's backends live in this process, not in the server: a fresh LocalAws starts empty, not
        # with the buckets and executions of one that ran before it in the same process.
        requests.post(f"{self.endpoint_url}/moto-api/reset", timeout=10).raise_for_status()
        response = requests.post(
            f"{self.endpoint_url}/moto-api/config",
            json={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}},
            timeout=10,
        )
        response.raise_for_status()
        self.runtime = LocalLambdaRuntime(self.endpoint_url, workers=self.lambda_workers)
        self.runtime.install()
        _explain_unsupported_calls()
        _run_express_children_as_standard()
        _apply_ephemeral_storage_updates()
        limits.install()  # fail where AWS would: child inputs > 256 KiB, ItemReader size and Region
        result_writer.install()  # the SUCCEEDED result files AWS writes (moto writes none)
        return self

    def __exit__(self, *exc) -> None:
        if self.runtime:
            self.runtime.close()
        if self._server:
            self._server.stop()

    def client(self, service: str, account: str = PIPELINE_ACCOUNT):
        """A client acting in ``account`` (the source account is reached through sts:AssumeRole)."""
        kwargs = dict(region_name=self.region, endpoint_url=self.endpoint_url)
        creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        if account != PIPELINE_ACCOUNT:
            sts = boto3.client("sts", **kwargs, **creds)
            c = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/xacct-map-admin", RoleSessionName="setup")[
                "Credentials"
            ]
            creds = {
                "aws_access_key_id": c["AccessKeyId"],
                "aws_secret_access_key": c["SecretAccessKey"],
                "aws_session_token": c["SessionToken"],
            }
        return boto3.client(service, **kwargs, **creds)

    def deploy(
        self,
        *,
        objects: int = 1000,
        source_bucket: str = "xacct-map-demo-source",
        source_prefix: str = "data/",
        inventory_bucket: str = "xacct-map-demo-inventory",
        max_concurrency: int = 8,
        tolerated_failure_percentage: float = 0.0,
        object_size: int | None = None,
        source_dir: Path | None = None,
        processor: deploy.ProcessorOptions | None = None,
        child_execution_type: str = "STANDARD",
    ) -> LocalPipeline:
        """Create both accounts' resources and seed ``objects`` objects under ``source_prefix`` (of
        ``object_size`` bytes, or the files of ``source_dir``); deploy ``processor`` (default: built-in)."""
        iam_src, s3_src = self.client("iam", SOURCE_ACCOUNT), self.client("s3", SOURCE_ACCOUNT)
        lister_role = deploy.ensure_role(
            iam_src,
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
        deploy.ensure_bucket(s3_src, source_bucket, self.region)
        if source_dir is not None:
            objects, total = self._seed_files(s3_src, source_bucket, source_prefix, source_files(source_dir))
        else:
            total = self._seed(s3_src, source_bucket, source_prefix, objects, object_size)

        # The pipeline account: the same code path as `xacct-map deploy` on AWS.
        from xacct_map.setup.policies import PolicyInputs

        inputs = PolicyInputs(
            source_bucket=source_bucket,
            source_account=SOURCE_ACCOUNT,
            pipeline_account=PIPELINE_ACCOUNT,
            inventory_bucket=inventory_bucket,
            prefix=source_prefix,
            lister_role=lister_role,
            region=self.region,
        )
        deployment = deploy.deploy_pipeline(
            self.client,
            inputs,
            # moto runs each worker's items recursively (~900 max): keep items per worker low.
            max_concurrency=max(max_concurrency, -(-objects // 100 // 500)),
            tolerated_failure_percentage=tolerated_failure_percentage,
            processor=processor,
            child_execution_type=child_execution_type,
        )
        function_arn, machine_arn = deployment.function_arn, deployment.state_machine_arn
        return LocalPipeline(
            endpoint_url=self.endpoint_url,
            region=self.region,
            source_account=SOURCE_ACCOUNT,
            pipeline_account=PIPELINE_ACCOUNT,
            source_bucket=source_bucket,
            source_prefix=source_prefix,
            source_role_arn=lister_role,
            inventory_bucket=inventory_bucket,
            function_arn=function_arn,
            state_machine_arn=machine_arn,
            objects=objects,
            bytes=total,
            child_execution_type=child_execution_type,
        )

    @staticmethod
    def _seed(s3, bucket: str, prefix: str, count: int, size: int | None = None) -> int:
        keys = [prefix + k for k in AWKWARD_KEYS[:count]]
        keys += [f"{prefix}part-{i // 100:04d}/object-{i:07d}.bin" for i in range(count - len(keys))]

        def put(index_key: tuple[int, str]) -> int:
            body = object_body(index_key[1], index_key[0], size)  # made in the worker: one body in memory each
            s3.put_object(Bucket=bucket, Key=index_key[1], Body=body)
            return len(body)

        with ThreadPoolExecutor(8) as pool:
            return sum(pool.map(put, enumerate(keys)))

    @staticmethod
    def _seed_files(s3, bucket: str, prefix: str, files: list[tuple[str, Path]]) -> tuple[int, int]:
        """Upload the user's sample files; ``(objects, bytes)``."""
        with ThreadPoolExecutor(8) as pool:
            sizes = list(
                pool.map(lambda kp: s3.put_object(Bucket=bucket, Key=prefix + kp[0], Body=kp[1].read_bytes()), files)
            )
        return len(sizes), sum(p.stat().st_size for _, p in files)

    def airflow_environment(self, pipeline: LocalPipeline) -> dict[str, str]:
        """Airflow connections and variables (as environment variables) that point at the emulator.

        ``xacct_map_pipeline`` is the pipeline account; ``xacct_map_source`` assumes the lister role in
        the source account through the provider's standard ``role_arn`` extra. moto's STS needs its
        endpoint in ``service_config`` because the provider's assume-role client ignores ``endpoint_url``.
        """
        base = {"endpoint_url": self.endpoint_url, "region_name": self.region}
        pipeline_conn = {"conn_type": "aws", "login": "testing", "password": "testing", "extra": base}
        source_conn = {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {
                **base,
                "role_arn": pipeline.source_role_arn,
                "service_config": {"sts": {"endpoint_url": self.endpoint_url}},
            },
        }
        return {
            "AIRFLOW_CONN_XACCT_MAP_PIPELINE": json.dumps(pipeline_conn),
            "AIRFLOW_CONN_XACCT_MAP_SOURCE": json.dumps(source_conn),
            "AIRFLOW_VAR_XACCT_MAP_SOURCE_BUCKET": pipeline.source_bucket,
            "AIRFLOW_VAR_XACCT_MAP_SOURCE_PREFIX": pipeline.source_prefix,
            "AIRFLOW_VAR_XACCT_MAP_SOURCE_ACCOUNT_ID": pipeline.source_account,
            "AIRFLOW_VAR_XACCT_MAP_INVENTORY_BUCKET": pipeline.inventory_bucket,
            "AIRFLOW_VAR_XACCT_MAP_STATE_MACHINE_ARN": pipeline.state_machine_arn,
            "AIRFLOW_VAR_XACCT_MAP_PIPELINE_ACCOUNT_ID": pipeline.pipeline_account,
        }
