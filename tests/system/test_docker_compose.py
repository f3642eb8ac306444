"""docker-compose.yaml and Dockerfile, checked without a Docker engine (plus the Airflow settings and
CLI that ``xacct-map airflow`` shares with them).

Statically: services, pinned images, healthchecks, start order (depends_on conditions), mounts of
paths that exist, loopback-only ports, Airflow settings and CLI flags that Airflow 3.3.2 knows, and
connections/variables identical to what the emulator itself generates. Functionally: the `aws`
service's command (the emulator behind its TCP forwarder) serves S3, Step Functions and the real
processor Lambda code. ``docker compose config`` runs too where a compose plugin exists.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
AIRFLOW_COMPONENTS = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
PUBLIC_ENDPOINT = "http://aws:4566"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def _interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with the defaults (what a plain ``docker compose up`` uses)."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: m.group(2), value).replace("$$", "$")


def _airflow_args(service: dict) -> list[str]:
    """The airflow subcommand and flags a service runs (also from inside its ``bash -c`` wrapper)."""
    command = service["command"]
    if command[0] == "bash":
        return shlex.split(command[-1].split("exec airflow ", 1)[1])
    return list(command)


def test_services_present(services):
    assert set(services) == {"postgres", "aws", "airflow-init", *AIRFLOW_COMPONENTS}


def test_images_pinned(services):
    for name, service in services.items():
        image = service.get("image")
        assert image, f"{name}: no image"
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest" and "/" not in tag, f"{name}: unpinned image {image}"
    base = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), flags=re.M)
    assert base == ["apache/airflow:3.3.2-python3.11"]
    # The image's Airflow is the newest the project tests: the one uv.lock pins.
    locked = re.findall(r'^name = "apache-airflow"\nversion = "([\d.]+)"', (ROOT / "uv.lock").read_text(), flags=re.M)
    assert locked == ["3.3.2"]
    built = {s["image"] for s in services.values() if "build" in s}
    assert built == {"xacct-map-airflow:3.3.2-local"}, "every built service must share one image"


def test_dockerfile_copies_existing_paths():
    for line in re.findall(r"^COPY\s+(.+)$", DOCKERFILE.read_text(), flags=re.M):
        parts = [p for p in line.split() if not p.startswith("--")]
        for source in parts[:-1]:
            assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"


def test_healthchecks(services):
    for name, service in services.items():
        if name == "airflow-init":
            assert service["restart"] == "no" and "healthcheck" not in service  # runs once, then exits
            continue
        check = service.get("healthcheck")
        assert check and check["test"][0] in ("CMD", "CMD-SHELL"), f"{name}: no healthcheck"
        assert int(check["retries"]) > 0 and check["interval"].endswith("s")


def test_start_order(services):
    def needs(name: str) -> dict:
        return {dep: cond["condition"] for dep, cond in services[name].get("depends_on", {}).items()}

    assert needs("airflow-init") == {"postgres": "service_healthy"}
    for name in AIRFLOW_COMPONENTS:
        assert needs(name)["postgres"] == "service_healthy", name
        assert needs(name)["airflow-init"] == "service_completed_successfully", name
    # Tasks (scheduler's LocalExecutor) and deferred sensors (triggerer) need the API and the emulator.
    for name in ("airflow-scheduler", "airflow-triggerer"):
        assert needs(name)["airflow-apiserver"] == "service_healthy", name
        assert needs(name)["aws"] == "service_healthy", name
    # Every condition is satisfiable, and there is no cycle.
    for name in services:
        for dep, condition in needs(name).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy, which has no check"
            if condition == "service_completed_successfully":
                assert services[dep]["restart"] == "no", f"{dep} must exit for {name} to start"
    visiting, done = set(), set()

    def visit(name: str) -> None:
        assert name not in visiting, f"depends_on cycle through {name}"
        if name in done:
            return
        visiting.add(name)
        for dep in needs(name):
            visit(dep)
        visiting.discard(name)
        done.add(name)

    for name in services:
        visit(name)


def test_volumes(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).resolve().exists(), f"{name}: mounts missing {source}"
            else:
                assert source in declared, f"{name}: volume {source} not declared"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["airflow-scheduler"]["volumes"]}
    assert mounts["/opt/airflow/dags"] == "./dags"
    # The editable install's source: the mounted provider code is the code that runs.
    assert mounts["/opt/xacct-map/plugins"] == "./plugins"
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == "/opt/xacct-map/plugins"
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/airflow/dags"
    assert "xacct_map/" in (ROOT / "plugins" / ".airflowignore").read_text().split()


def test_ports_on_loopback_only(services):
    for name, service in services.items():
        for port in service.get("ports", []):
            assert _interpolate(str(port)).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_airflow_settings_exist(tmp_path):
    """Every ``AIRFLOW__SECTION__KEY`` that compose or ``xacct-map airflow`` sets names a real Airflow 3.3.2
    option: a typo would be silently ignored."""
    from airflow.configuration import conf

    from xacct_map.local.airflow_server import airflow_environment

    compose_env = yaml.safe_load(COMPOSE.read_text())["x-airflow-common"]["environment"]
    local_env = airflow_environment(
        home=tmp_path,
        port=8080,
        username="admin",
        password="admin",
        dags_folder=ROOT / "dags",
        plugins_folder=ROOT / "plugins",
        base={},
    )
    settings = [k for k in [*compose_env, *local_env] if k.startswith("AIRFLOW__")]
    assert len(settings) > 20
    known = conf.configuration_description  # every documented option, also those defaulting to None

    def documented(name: str) -> bool:
        section, key = name[len("AIRFLOW__") :].lower().split("__", 1)
        return key in known.get(section, {}).get("options", {})

    assert not [k for k in settings if not documented(k)]
    # The local server: loopback only, the documented login, the repo's folders.
    assert local_env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert local_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"
    assert local_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8080/execution/"
    assert local_env["AIRFLOW_HOME"] == str(tmp_path)
    # A test session's or another Airflow's settings do not leak in.
    leaky = airflow_environment(
        home=tmp_path,
        port=1,
        username="u",
        password="p",
        dags_folder=tmp_path,
        plugins_folder=tmp_path,
        base={"AIRFLOW__CORE__UNIT_TEST_MODE": "True", "AIRFLOW_CONN_OTHER": "x", "AIRFLOW_HOME": "/x", "KEEP": "1"},
    )
    assert "AIRFLOW__CORE__UNIT_TEST_MODE" not in leaky and "AIRFLOW_CONN_OTHER" not in leaky
    assert leaky["AIRFLOW_HOME"] == str(tmp_path) and leaky["KEEP"] == "1"


def test_local_airflow_command():
    """``xacct-map airflow`` is registered, with the documented local login and loopback-only UI."""
    from xacct_map.cli import build_parser
    from xacct_map.local import airflow_server

    args = build_parser().parse_args(["airflow", "--port", "0", "--schedule", "*/5 * * * *", "--paused"])
    assert args.func is airflow_server._command
    assert (args.username, args.password, args.port, args.schedule, args.paused) == (
        "admin",
        "admin",
        0,
        "*/5 * * * *",
        True,
    )
    assert airflow_server.HOST == "127.0.0.1"


def test_airflow_commands_parse(services):
    """The components' commands and flags exist in this Airflow's CLI."""
    from airflow.cli.cli_parser import get_parser

    parser = get_parser()
    expected = {
        "airflow-init": "db",
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
    }
    for name, subcommand in expected.items():
        args = _airflow_args(services[name])
        assert args[0] == subcommand, name
        parser.parse_args(args)  # SystemExit on an unknown flag
    assert services["airflow-apiserver"]["command"][0] == "bash"


def test_connections_match_the_emulator(services, local_aws):
    """The compose connections/variables are exactly what the emulator generates for its public endpoint."""
    from xacct_map.local.aws_service import public_airflow_environment

    aws, pipeline = local_aws
    expected = public_airflow_environment(aws.airflow_environment(pipeline), aws.endpoint_url, PUBLIC_ENDPOINT)
    env = services["airflow-scheduler"]["environment"]
    got = {k: str(v) for k, v in env.items() if k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))}
    assert set(got) == set(expected)
    for key, value in expected.items():
        if key.startswith("AIRFLOW_CONN_"):
            assert json.loads(got[key]) == json.loads(value), key
        else:
            assert got[key] == value, key
    # ... and the aws service is told that public endpoint.
    command = services["aws"]["command"]
    assert command[command.index("--public-endpoint") + 1] == PUBLIC_ENDPOINT


def test_aws_service_command_serves_the_real_handler(services, tmp_path):
    """Run the `aws` service's own command (loopback, free port): S3, Step Functions and the processor answer."""
    import boto3

    from xacct_map.local.aws_service import parse_args

    service = services["aws"]
    assert service["entrypoint"] == ["python", "-m", "xacct_map.local.aws_service"]
    args = [_interpolate(a) for a in service["command"]]
    parsed = parse_args(args)
    assert (parsed.host, parsed.port) == ("0.0.0.0", 4566)
    assert service["healthcheck"]["test"] == ["CMD", "test", "-f", str(parsed.ready_file)]
    ready = tmp_path / "ready.json"
    local = [
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--objects",
        "25",
        "--public-endpoint",
        "http://127.0.0.1:PORT",
        "--ready-file",
        str(ready),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MOTO"))}
    process = subprocess.Popen(
        [sys.executable, *service["entrypoint"][1:], *local],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "aws service not ready in 60 s"
            time.sleep(0.2)
        info = json.loads(ready.read_text())
        endpoint = f"http://{info['listen']}"  # the forwarder's real port (--port 0)
        assert info["airflow_environment"]["AIRFLOW_VAR_XACCT_MAP_SOURCE_BUCKET"] == info["pipeline"]["source_bucket"]
        kwargs = dict(
            endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        s3, sfn, lmb = (boto3.client(s, **kwargs) for s in ("s3", "stepfunctions", "lambda"))
        pipeline = info["pipeline"]
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=pipeline["source_bucket"])["Contents"]]
        assert len(keys) == 25
        assert sfn.describe_state_machine(stateMachineArn=pipeline["state_machine_arn"])["status"] == "ACTIVE"
        # The processor's real code runs behind the forwarder (moto alone would echo the event).
        event = {
            "bucket": pipeline["source_bucket"],
            "keys": keys[:3],
            "source": {"account_id": pipeline["source_account"]},
        }
        response = lmb.invoke(FunctionName=pipeline["function_arn"], Payload=json.dumps(event).encode())
        result = json.loads(response["Payload"].read())
        assert "FunctionError" not in response, result
        assert result != event and result["objects"] == 3, result
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
    assert process.returncode == 0
    assert not ready.exists(), "the ready file must go with the service (a stale one would pass the healthcheck)"


def _compose_command() -> list[str] | None:
    """Docker Compose v2: ``$DOCKER_COMPOSE``, the ``docker compose`` plugin, or a ``docker-compose`` v2 binary."""
    candidates = [[os.environ["DOCKER_COMPOSE"]]] if os.environ.get("DOCKER_COMPOSE") else []
    if docker := shutil.which("docker"):
        candidates.append([docker, "compose"])
    if standalone := shutil.which("docker-compose"):
        candidates.append([standalone])
    for command in candidates:
        result = subprocess.run([*command, "version"], capture_output=True, text=True)
        if result.returncode == 0 and re.search(r"version v?2\.", result.stdout):
            return command
    return None


def test_docker_compose_config():
    """``docker compose config -q`` (it parses and validates offline) where Compose v2 exists."""
    command = _compose_command()
    if command is None:
        pytest.skip(
            "no Docker Compose v2 here (`docker compose` plugin, docker-compose v2, or $DOCKER_COMPOSE); "
            "the static checks above cover the file"
        )
    result = subprocess.run([*command, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
