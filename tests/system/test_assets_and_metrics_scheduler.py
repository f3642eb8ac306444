"""Assets and metrics under the real scheduler: ``xacct-map airflow`` (scheduler, DAG processor,
triggerer, API server; LocalExecutor task processes) on the local AWS, with Airflow's StatsD settings
pointed at a UDP listener this test opens on loopback.

The source holds ``good/`` files and ``bad/`` files; the processor fails on every ``bad/`` key. Two
manual runs of ``xacct_distributed_map`` through the REST API:

* ``source_prefix=data/good/``: the Map Run succeeds, the processed Asset gets one event whose extra
  names the prefix and the counts, the example ``xacct_processed_downstream`` DAG runs once (the
  scheduler triggers it), and the metrics arrive, tagged;
* ``source_prefix=data/bad/``: the Map Run fails, so no processed event and no downstream run.

``dag.test()`` triggers no downstream DAG: hence the real scheduler.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

MAP_DAG, DOWNSTREAM_DAG = "xacct_distributed_map", "xacct_processed_downstream"
PROCESSED_URI = f"xacct-map://processed/{MAP_DAG}"
# Never due while the test runs (start_date 2026-01-01, no catchup): the only runs are the test's.
SCHEDULE = "0 0 1 1 *"
# Airflow sends StatsD with the `statsd` package (its `statsd` extra; a dev dependency here).
needs_statsd = pytest.mark.skipif(
    importlib.util.find_spec("statsd") is None, reason="the statsd package (apache-airflow[statsd]) is not installed"
)
PROCESSOR = """
def process(obj):
    if "/bad/" in obj.key:
        raise ValueError(f"{obj.key}: refused by the test processor")
    return {"key": obj.key}
"""


class StatsdListener:
    """A UDP socket on 127.0.0.1 collecting StatsD lines (``name[,tag=value...]:value|type``)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.lines.extend(data.decode(errors="replace").splitlines())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def metrics(self, name: str) -> list[tuple[dict, float, str]]:
        """``(tags, value, type)`` of every line of ``airflow.<name>``."""
        found = []
        for line in list(self.lines):
            head, _, rest = line.partition(":")
            stat, *tags = head.split(",")
            if stat == f"airflow.{name}" and "|" in rest:
                value, kind = rest.split("|")[:2]
                found.append((dict(t.split("=", 1) for t in tags), float(value), kind))
        return found


class Airflow:
    def __init__(self, process: subprocess.Popen, info: dict, log_path: Path):
        self.process, self.info, self.log_path, self.url = process, info, log_path, info.get("url", "")
        self._token = ""

    def _headers(self) -> dict:
        if not self._token:  # one token for the test (valid far longer); the API server is slow under load
            response = requests.post(
                f"{self.url}/auth/token",
                json={"username": self.info["username"], "password": self.info["password"]},
                timeout=60,
            )
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def api(self, method: str, path: str, **kwargs) -> dict:
        url = f"{self.url}/api/v2{path}"
        for _ in range(3):  # a read the loaded API server failed (500 while the scheduler writes) is asked again
            response = requests.request(method, url, headers=self._headers(), timeout=60, **kwargs)
            if method != "GET" or response.status_code < 500:
                break
            time.sleep(2)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text[:500]}"
        return response.json()

    def wait(self, what: str, check, timeout: float = 400.0):
        """``check()``'s first true value; a slow answer of the loaded API server is asked again."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"xacct-map airflow exited:\n{self.tail()}"
            try:
                value = check()
            except requests.RequestException:
                value = None
            if value:
                return value
            time.sleep(2)
        raise AssertionError(f"timed out waiting for {what}:\n{self.tail()}")

    def run_map_dag(self, run_id: str, conf: dict) -> dict:
        self.api("POST", f"/dags/{MAP_DAG}/dagRuns", json={"dag_run_id": run_id, "logical_date": None, "conf": conf})

        def finished():
            run = self.api("GET", f"/dags/{MAP_DAG}/dagRuns/{run_id}")
            return run if run["state"] in ("success", "failed") else None

        return self.wait(f"run {run_id}", finished)

    def downstream_runs(self) -> list[dict]:
        return self.api("GET", f"/dags/{DOWNSTREAM_DAG}/dagRuns")["dag_runs"]

    def processed_events(self) -> list[dict]:
        assets = self.api("GET", "/assets", params={"uri_pattern": "xacct-map://processed"})["assets"]
        ids = [a["id"] for a in assets if a["uri"] == PROCESSED_URI]
        if not ids:
            return []
        return self.api("GET", "/assets/events", params={"asset_id": ids[0]})["asset_events"]

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="module")
def statsd():
    listener = StatsdListener()
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def airflow(tmp_path_factory, statsd):
    work = tmp_path_factory.mktemp("xacct-map-assets")
    source = work / "source"
    for name in ("good/a.txt", "good/b.txt", "good/c.txt", "bad/x.txt"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(f"{name}\n")
    (work / "refuse_bad.py").write_text(PROCESSOR)
    ready, log_path = work / "ready.json", work / "xacct-map-airflow.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW__METRICS__STATSD_ON="True",
        AIRFLOW__METRICS__STATSD_HOST="127.0.0.1",
        AIRFLOW__METRICS__STATSD_PORT=str(statsd.port),
        AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED="True",  # tags on the wire: name,tag=value:...
    )
    command = [
        *(sys.executable, "-m", "xacct_map.cli", "airflow", "--port", "0", "--schedule", SCHEDULE),
        *("--source-dir", str(source), "--processor", f"{work / 'refuse_bad.py'}:process"),
        *("--poke-interval", "1", "--home", str(work / "home"), "--ready-file", str(ready)),
    ]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    server = Airflow(process, {}, log_path)
    try:
        deadline = time.monotonic() + 400
        while not ready.exists():
            assert process.poll() is None, f"xacct-map airflow exited:\n{server.tail()}"
            assert time.monotonic() < deadline, f"xacct-map airflow not ready:\n{server.tail()}"
            time.sleep(1)
        server = Airflow(process, json.loads(ready.read_text()), log_path)
        server.wait("the downstream DAG parsed", lambda: server.api("GET", "/dags", params={"dag_id_pattern": "xacct"}))
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # stops Airflow's components, then the emulator
            try:
                process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # its own session: only what this test started
                process.wait(timeout=10)


@pytest.fixture(scope="module")
def good_run(airflow):
    return airflow.run_map_dag("assets_good", {"source_prefix": "data/good/", "preflight": "never"})


def test_a_successful_map_run_emits_the_processed_asset_event_and_triggers_the_downstream_dag(airflow, good_run):
    assert good_run["state"] == "success", airflow.tail()
    (event,) = airflow.processed_events()
    extra = event["extra"]
    assert extra["source_prefix"] == "data/good/" and extra["source_uri"].endswith("/data/good/")
    assert extra["object_count"] == 3 and extra["status"] == "SUCCEEDED"
    assert extra["item_counts"]["succeeded"] >= 1 and extra["failed_items"] == 0
    assert extra["execution_arn"].startswith("arn:aws:states:")
    (run,) = airflow.wait("the downstream DAG's run", lambda: airflow.downstream_runs())
    done = airflow.wait(
        "the downstream run to finish",
        lambda: (
            (r := airflow.api("GET", f"/dags/{DOWNSTREAM_DAG}/dagRuns/{run['dag_run_id']}"))["state"]
            in ("success", "failed")
            and r
        ),
    )
    assert done["state"] == "success" and done["run_type"] == "asset_triggered"


@needs_statsd
def test_the_successful_run_sends_its_metrics_tagged_by_dag_and_state_machine(airflow, good_run, statsd):
    received = statsd.metrics
    airflow.wait(f"the metrics (received: {statsd.lines[-20:]})", lambda: received("xacct_map.map_run_duration"), 60)
    (keys,) = statsd.metrics("xacct_map.keys_listed")
    assert keys[0]["dag_id"] == MAP_DAG and keys[1:] == (3.0, "c")
    (manifest_bytes,) = statsd.metrics("xacct_map.manifest_bytes")
    assert manifest_bytes[1] > 0 and manifest_bytes[2] == "g"
    (rate,) = statsd.metrics("xacct_map.listing_keys_per_second")
    assert rate[1] > 0
    state_machine = airflow.info["pipeline"]["state_machine_arn"].rpartition(":")[2]
    (succeeded,) = statsd.metrics("xacct_map.items_succeeded")
    assert succeeded[0] == {"dag_id": MAP_DAG, "state_machine": state_machine} and succeeded[1] >= 1
    (failed,) = statsd.metrics("xacct_map.items_failed")
    assert failed[1:] == (0.0, "c")
    (duration,) = statsd.metrics("xacct_map.map_run_duration")
    assert duration[0]["state_machine"] == state_machine and duration[2] == "ms"


@pytest.fixture(scope="module")
def bad_run(airflow, good_run):
    return airflow.run_map_dag("assets_bad", {"source_prefix": "data/bad/", "preflight": "never"})


def test_a_failed_map_run_emits_no_processed_event_and_triggers_nothing(airflow, bad_run):
    assert bad_run["state"] == "failed"
    tasks = airflow.api("GET", f"/dags/{MAP_DAG}/dagRuns/assets_bad/taskInstances")["task_instances"]
    assert {t["task_id"]: t["state"] for t in tasks}["wait_for_map_run"] == "failed"
    assert len(airflow.processed_events()) == 1  # the good run's only: no event for the failed one
    assert len(airflow.downstream_runs()) == 1


@needs_statsd
def test_a_failed_map_run_still_sends_its_counts(airflow, bad_run, statsd):
    airflow.wait("the failed run's metrics", lambda: len(statsd.metrics("xacct_map.items_failed")) == 2, timeout=60)
    assert statsd.metrics("xacct_map.items_failed")[-1][1] >= 1
