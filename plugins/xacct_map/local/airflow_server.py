"""``xacct-map airflow``: a real local Airflow 3 (scheduler, DAG processor, triggerer, API server/UI)
running this repository's DAG against the embedded two-account AWS emulator.

Unlike ``xacct-map demo`` (one ``dag.test()`` in-process), this starts Airflow's own components as
separate processes, the way a deployment runs them: scheduled runs come from the scheduler, manual
runs from the UI's trigger form or the REST API, task logs show in the UI.

* The emulator (moto's server plus the local Lambda runtime) runs inside *this* process; Airflow's
  task processes reach it through the connections' ``endpoint_url`` (``aws.airflow_environment``).
* Airflow gets its own ``AIRFLOW_HOME`` (SQLite, LocalExecutor), this repository's ``dags/`` and
  ``plugins/``, and listens on 127.0.0.1 only (the worker/triggerer log servers, which would bind
  every interface, are switched off: all components share one home, so the API server reads task
  logs from disk).
* Login: Airflow 3's SimpleAuthManager with one fixed user (default ``admin`` / ``admin``, role
  admin), set through ``[core] simple_auth_manager_users`` and a passwords file written before
  the API server starts (otherwise it would generate a random password).
* Ctrl-C (or SIGTERM) stops every component's process group, then the emulator.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from xacct_map.cli import options
from xacct_map.local.ports import HOST, free_port
from xacct_map.setup import resources

DAG_ID = "xacct_distributed_map"
DEFAULT_PORT = 8080
DEFAULT_USERNAME = "admin"
DEFAULT_PASSWORD = "admin"
# Start order matters little (each waits for the database); stop order: the UI first.
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# Parent variables that would leak a test's or another Airflow's setup into this one.
_DROPPED_PREFIXES = ("AIRFLOW_HOME", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "AIRFLOW__CORE__UNIT_TEST_MODE")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "airflow",
        help="run a real local Airflow 3 (UI on 127.0.0.1) with this DAG against the embedded local AWS",
        description="Start the embedded two-account AWS emulator and a local Airflow 3 (api-server, scheduler, "
        "dag-processor, triggerer; SQLite, LocalExecutor) on 127.0.0.1. Ctrl-C stops everything.",
    )
    parser.add_argument(
        "--port",
        type=options.port,
        default=DEFAULT_PORT,
        help=f"UI/API port on 127.0.0.1 (default {DEFAULT_PORT}; 0 picks a free port)",
    )
    from xacct_map.local.workload import add_workload_arguments

    add_workload_arguments(parser)
    parser.add_argument("--username", default=DEFAULT_USERNAME, help=f"UI login (default {DEFAULT_USERNAME})")
    parser.add_argument("--password", default=DEFAULT_PASSWORD, help=f"UI password (default {DEFAULT_PASSWORD})")
    parser.add_argument(
        "--schedule",
        type=options.schedule,
        default=None,
        help="override the DAG's schedule (sets XACCT_MAP_SCHEDULE), e.g. '*/5 * * * *'",
    )
    parser.add_argument(
        "--paused",
        action="store_true",
        help="leave the DAG paused (default: unpaused, so the scheduler starts its latest run at once)",
    )
    parser.add_argument(
        "--poke-interval",
        type=options.number(0, low_inclusive=False),
        default=5.0,
        help="seconds between the sensor's checks (XACCT_MAP_POKE_INTERVAL, default 5)",
    )
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help="AIRFLOW_HOME to use and keep (default: a fresh temporary one, removed at exit)",
    )
    parser.add_argument("--keep-home", action="store_true", help="keep the temporary AIRFLOW_HOME at exit")
    parser.add_argument(
        "--dags-folder",
        type=options.existing_folder,
        default=None,
        help="DAGs folder (default: the DAG shipped with xacct-map)",
    )
    parser.add_argument(
        "--plugins-folder",
        type=options.existing_folder,
        default=None,
        help="plugins folder (default: a checkout's plugins/, else none: the installed package's "
        "UI plugin comes through its entry point)",
    )
    parser.add_argument(
        "--ready-file",
        type=Path,
        default=None,
        help="write a JSON description (url, login, pids, emulator) here once Airflow is ready",
    )
    parser.add_argument(
        "--startup-timeout",
        type=options.number(0, low_inclusive=False),
        default=240.0,
        help="seconds to wait for Airflow to become ready (default 240)",
    )
    parser.set_defaults(func=_command)


def airflow_environment(
    *,
    home: Path,
    port: int,
    username: str,
    password: str,
    dags_folder: Path,
    plugins_folder: Path,
    extra: Mapping[str, str] | tuple[()] = (),
    schedule: str | None = None,
    paused: bool = False,
    poke_interval: float = 5.0,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment every Airflow component (and so every task process) runs with.

    :param extra: more variables, e.g. the emulator's connections and variables.
    :param base: the parent environment (default ``os.environ``), minus whatever would leak a test's
        or another Airflow's configuration (``AIRFLOW_HOME``, ``AIRFLOW_CONN_*``, ``AIRFLOW_VAR_*``).
    """
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith(_DROPPED_PREFIXES)}
    url = f"http://{HOST}:{port}"
    bin_dir = str(Path(sys.executable).parent)
    env.update(
        # Components start tasks as `airflow ...`/sys.executable: this venv's, where xacct_map is installed.
        PATH=os.pathsep.join([bin_dir, env.get("PATH", "")]),
        PYTHONUNBUFFERED="1",
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags_folder),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(plugins_folder),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__PARALLELISM="4",  # 2-core machines: a handful of task processes is plenty
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=str(paused),
        AIRFLOW__CORE__AUTH_MANAGER="airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{username}:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="False",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(home / "simple_auth_manager_passwords.json"),
        AIRFLOW__API__HOST=HOST,
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__WORKERS="1",
        AIRFLOW__API__BASE_URL=url,
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{url}/execution/",
        # One secret for all components (they sign and check each other's JWTs); new per home.
        AIRFLOW__API_AUTH__JWT_SECRET=_home_secret(home, "jwt_secret"),
        AIRFLOW__API__SECRET_KEY=_home_secret(home, "api_secret_key"),
        # Notice edits in dags/ within half a minute.
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="30",
        XACCT_MAP_POKE_INTERVAL=str(poke_interval),
        # The Map runs page polls (and looks at a run in flight) as often as the sensor does.
        AIRFLOW__XACCT_MAP__MAP_RUNS_REFRESH_SECONDS=str(max(1.0, poke_interval)),
    )
    if schedule:
        env["XACCT_MAP_SCHEDULE"] = schedule
    env.update(extra)
    return env


def _home_secret(home: Path, name: str) -> str:
    """A random secret kept in the home, so a kept home restarts with the same secrets."""
    path = home / f".{name}"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def write_passwords_file(home: Path, username: str, password: str) -> Path:
    """SimpleAuthManager keeps passwords in a JSON file and only generates one for a user missing there."""
    path = home / "simple_auth_manager_passwords.json"
    path.write_text(json.dumps({username: password}) + "\n")
    path.chmod(0o600)
    return path


@dataclass
class Component:
    """One Airflow component: a process group of its own, output in a log file."""

    name: str
    process: subprocess.Popen
    log_path: Path

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class LocalAirflow:
    """Airflow's components as child processes sharing one AIRFLOW_HOME.

    :param home: AIRFLOW_HOME (created if missing).
    :param port: API server port on 127.0.0.1.
    :param env: the components' environment (:func:`airflow_environment`).
    """

    home: Path
    port: int
    env: dict[str, str]
    username: str = DEFAULT_USERNAME
    password: str = DEFAULT_PASSWORD
    components: dict[str, Component] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log_dir(self) -> Path:
        return self.home / "component-logs"

    @staticmethod
    def _airflow() -> list[str]:
        """This interpreter's ``airflow`` (where xacct_map is installed), never another one on PATH."""
        script = Path(sys.executable).parent / "airflow"
        return [str(script)] if script.exists() else [sys.executable, "-m", "airflow"]

    def migrate(self) -> None:
        """Create/upgrade the metadata database before any component starts."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / "db-migrate.log"
        with log.open("w") as out:
            result = subprocess.run(
                [*self._airflow(), "db", "migrate"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        if result.returncode:
            raise RuntimeError(
                f"airflow db migrate failed ({result.returncode}); see {log}:\n"
                + "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            )

    def start(self) -> None:
        write_passwords_file(self.home, self.username, self.password)
        self.migrate()
        args = {
            "api-server": ["api-server", "--host", HOST, "--port", str(self.port), "--workers", "1"],
            # The log servers bind every interface; the API server reads the shared home's logs instead.
            "scheduler": ["scheduler", "--skip-serve-logs"],
            "dag-processor": ["dag-processor"],
            "triggerer": ["triggerer", "--skip-serve-logs"],
        }
        for name in COMPONENTS:
            log_path = self.log_dir / f"{name}.log"
            out = log_path.open("w")
            # A session of its own: Ctrl-C in the terminal reaches only us, and stopping the component
            # takes its whole group (uvicorn workers, executor workers, task supervisors, tasks).
            process = subprocess.Popen(
                [*self._airflow(), *args[name]],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            out.close()
            self.components[name] = Component(name, process, log_path)

    def dead(self) -> Component | None:
        """The first component whose process has exited, if any."""
        return next((c for c in self.components.values() if c.process.poll() is not None), None)

    def health(self) -> dict:
        import requests

        return requests.get(f"{self.url}/api/v2/monitor/health", timeout=5).json()

    def token(self) -> str:
        import requests

        response = requests.post(
            f"{self.url}/auth/token", json={"username": self.username, "password": self.password}, timeout=10
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def api(self, method: str, path: str, token: str, **kwargs):
        import requests

        response = requests.request(
            method, f"{self.url}/api/v2{path}", headers={"Authorization": f"Bearer {token}"}, timeout=15, **kwargs
        )
        return response

    def wait_ready(self, *, dag_id: str = DAG_ID, timeout: float = 240.0, paused: bool = False) -> dict:
        """Wait until every component is healthy and ``dag_id`` is parsed; set its paused state.

        :return: the DAG as the REST API describes it.
        :raises RuntimeError: a component died, or ``timeout`` passed (with what is known of why).
        """
        import requests

        deadline = time.monotonic() + timeout
        last = "API server not answering yet"
        while time.monotonic() < deadline:
            if dead := self.dead():
                raise RuntimeError(
                    f"Airflow {dead.name} exited with {dead.process.returncode}; "
                    f"last lines of {dead.log_path}:\n{dead.tail()}"
                )
            try:
                health = self.health()
                unhealthy = [k for k, v in health.items() if isinstance(v, dict) and v.get("status") != "healthy"]
                if unhealthy:
                    last = f"not healthy yet: {', '.join(unhealthy)}"
                else:
                    token = self.token()
                    response = self.api("GET", f"/dags/{dag_id}", token)
                    if response.status_code == 200:
                        dag = response.json()
                        if dag.get("is_paused") != paused:
                            patched = self.api("PATCH", f"/dags/{dag_id}", token, json={"is_paused": paused})
                            patched.raise_for_status()
                            dag = patched.json()
                        return dag
                    errors = self.api("GET", "/importErrors", token).json().get("import_errors", [])
                    last = f"DAG {dag_id} not parsed yet" + (f"; import errors: {errors}" if errors else "")
            except (requests.RequestException, ValueError) as err:
                last = f"API server not ready: {err.__class__.__name__}"
            time.sleep(1.0)
        raise RuntimeError(f"Airflow not ready after {timeout:.0f}s: {last}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM every component's process group, SIGKILL what is left after ``timeout``.

        Returns once every group is gone, not just its leader: a component's children (executor
        workers, task supervisors) are still exiting, or waiting to be reaped, when it has exited.
        """
        for component in self.components.values():
            _signal_group(component.process, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for component in self.components.values():
            _wait_for_group(component.process, deadline)
        # Leftovers (a component's children outliving it, or a component ignoring SIGTERM).
        for component in self.components.values():
            _signal_group(component.process, signal.SIGKILL)
        deadline = time.monotonic() + 5
        for component in self.components.values():
            _wait_for_group(component.process, deadline)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    # The component leads its own process group (start_new_session): its pid is the group id.
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_for_group(process: subprocess.Popen, deadline: float) -> None:
    """Wait until ``process`` has exited and no process of its group is left (or ``deadline``)."""
    try:
        process.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)


class _Stop(Exception):
    """Raised by the SIGTERM/SIGHUP handler, to stop like Ctrl-C does."""


def _raise_stop(signum, frame):
    raise _Stop(signal.Signals(signum).name)


def _command(args) -> int:
    # SIGINT explicitly: a process started in the background by a non-interactive shell inherits it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_stop)
    temporary = args.home is None
    home = (args.home or Path(tempfile.mkdtemp(prefix="xacct-map-airflow-"))).resolve()
    home.mkdir(parents=True, exist_ok=True)
    try:
        return _serve(args, home)
    except (KeyboardInterrupt, _Stop):
        return 0
    except (RuntimeError, ValueError) as err:  # ValueError: a workload option (--processor-env, ...)
        print(f"xacct-map airflow: {err}", file=sys.stderr, flush=True)
        return 1
    finally:
        if temporary and not args.keep_home:
            shutil.rmtree(home, ignore_errors=True)
        print("xacct-map airflow: stopped.", flush=True)


def _serve(args, home: Path) -> int:
    from xacct_map.local.emulator import LocalAws
    from xacct_map.local.workload import workload_kwargs

    started = time.monotonic()
    port = free_port(args.port)  # before the emulator starts: fail fast on a taken port
    print(f"xacct-map airflow: starting the local AWS emulator ({args.objects} objects)...", flush=True)
    with LocalAws() as aws:
        pipeline = aws.deploy(**workload_kwargs(args))
        env = airflow_environment(
            home=home,
            port=port,
            username=args.username,
            password=args.password,
            dags_folder=(args.dags_folder or resources.dags_dir()).resolve(),
            plugins_folder=(args.plugins_folder or resources.plugins_dir() or home / "plugins").resolve(),
            extra=aws.airflow_environment(pipeline),
            schedule=args.schedule,
            paused=args.paused,
            poke_interval=args.poke_interval,
        )
        airflow = LocalAirflow(home=home, port=port, env=env, username=args.username, password=args.password)
        try:
            print(f"xacct-map airflow: starting Airflow in {home} (component logs in {airflow.log_dir})...", flush=True)
            airflow.start()
            dag = airflow.wait_ready(timeout=args.startup_timeout, paused=args.paused)
            info = {
                "url": airflow.url,
                "username": args.username,
                "password": args.password,
                "airflow_home": str(home),
                "component_logs": str(airflow.log_dir),
                "dag_id": DAG_ID,
                "dag_paused": dag.get("is_paused"),
                "schedule": dag.get("timetable_summary"),
                "emulator": aws.endpoint_url,
                "pipeline": pipeline.as_dict(),
                "pids": {"xacct-map": os.getpid(), **{n: c.process.pid for n, c in airflow.components.items()}},
                "startup_seconds": round(time.monotonic() - started, 1),
            }
            print(_banner(info), flush=True)
            if args.ready_file:
                tmp = args.ready_file.with_name(args.ready_file.name + ".tmp")
                tmp.write_text(json.dumps(info, indent=2))
                tmp.replace(args.ready_file)  # readers never see half a file
            while True:
                time.sleep(1.0)
                if dead := airflow.dead():
                    print(
                        f"xacct-map airflow: {dead.name} exited with {dead.process.returncode}; "
                        f"last lines of {dead.log_path}:\n{dead.tail()}",
                        file=sys.stderr,
                        flush=True,
                    )
                    return 1
        finally:
            # Airflow first (its tasks may still be calling the emulator), then the emulator (the with).
            # A second Ctrl-C or SIGTERM must not cut this short and orphan components.
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)
            print("xacct-map airflow: stopping Airflow and the local AWS...", flush=True)
            airflow.stop()


def _banner(info: dict) -> str:
    p = info["pipeline"]
    return "\n".join(
        [
            "",
            f"Airflow is ready ({info['startup_seconds']}s): {info['url']}",
            f"  login      {info['username']} / {info['password']}  (SimpleAuthManager, role admin)",
            f"  DAG        {info['dag_id']}: {'paused' if info['dag_paused'] else 'unpaused'}, "
            f"schedule {info['schedule']}",
            f"  local AWS  {info['emulator']}  source s3://{p['source_bucket']}/{p['source_prefix']} "
            f"({p['objects']} objects, account {p['source_account']}), pipeline account {p['pipeline_account']}",
            f"  home       {info['airflow_home']}  (component logs: {info['component_logs']})",
            "Trigger a run from the UI (Trigger button, params form) or wait for the schedule. "
            "Ctrl-C stops everything.",
            "",
        ]
    )
