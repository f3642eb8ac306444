"""The real Airflow UI, in a real browser: ``xacct-map airflow`` driven by Playwright + system chromium.

One local Airflow (api-server, scheduler, dag-processor, triggerer) is started for the module as a
subprocess, exactly as a developer starts it. The tests then:

* sign in through the SimpleAuthManager login page with the documented local login;
* trigger ``xacct_distributed_map`` from the trigger form with params typed into the form; watch the
  run on the plugin's live "Map runs" page while it is in flight (the processor sleeps
  ``SECONDS_PER_OBJECT`` per object, ``--seconds-per-object``, so the run lasts ~30 s): its bar moves
  part-way and reaches the end without a page reload, its console links are the sensor's and the build
  task's extra links, its detail view charts items done over time; then read the sensor's Map Run
  progress lines in the task log view;
* check that the scheduler created and finished a scheduled run on its own (the schedule is
  overridden through ``XACCT_MAP_SCHEDULE``, ``--schedule``);
* fail a run (a source bucket that does not exist) and read the preflight's report in the log view;
* stop the server like Ctrl-C does and check that no component process is left.

Screenshots go to ``artifacts/screenshots/``. Skipped only when chromium is not installed
(``scripts/install-browser.sh`` installs it); Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
DAG_ID = "xacct_distributed_map"
OBJECTS = 60
KEYS_PER_BATCH = 1  # one object per Map item: the bar moves in small steps
SECONDS_PER_OBJECT = 2  # 60 items on 4 local Lambda workers: ~30 s in flight
SCHEDULE = "* * * * *"  # every minute: the run after seeding covers the seeded objects
RUN_ID = f"ui_browser_test_{int(time.time())}"
CHROMIUM = os.environ.get("XACCT_MAP_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="chromium is not installed: run scripts/install-browser.sh "
        "(apt-get install chromium); Playwright drives the system browser",
    ),
]


class Server:
    """The ``xacct-map airflow`` subprocess and what its ready file says."""

    def __init__(self, process: subprocess.Popen, info: dict, log_path: Path):
        self.process, self.info, self.log_path = process, info, log_path
        self.url = info["url"]

    def token(self) -> str:
        response = requests.post(
            f"{self.url}/auth/token",
            timeout=10,
            json={"username": self.info["username"], "password": self.info["password"]},
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def api(self, path: str, **params) -> dict:
        response = requests.get(
            f"{self.url}/api/v2{path}", params=params, timeout=15, headers={"Authorization": f"Bearer {self.token()}"}
        )
        response.raise_for_status()
        return response.json()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 60.0) -> float:
        """Ctrl-C, as a developer stops it; returns the seconds it took."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # its own session: only what the test started
                self.process.wait(timeout=10)
                raise
        return time.monotonic() - started


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("xacct-map-airflow")
    ready, log_path = work / "ready.json", work / "xacct-map-airflow.log"
    # The test session's own Airflow settings (conftest's AIRFLOW_HOME, unit-test mode, emulator
    # connections) must not leak into the server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    # DEBUG: botocore prints every AssumeRole reply and signed request; none may leak a credential
    # (test_no_credential_in_the_local_airflows_logs, after the runs).
    env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "DEBUG"
    command = [
        sys.executable,
        "-m",
        "xacct_map.cli",
        "airflow",
        "--port",
        "0",
        "--objects",
        str(OBJECTS),
        "--schedule",
        SCHEDULE,
        "--poke-interval",
        "2",
        "--seconds-per-object",
        str(SECONDS_PER_OBJECT),
        "--home",
        str(work / "home"),
        "--ready-file",
        str(ready),
    ]
    if os.environ.get("XACCT_MAP_UI_TEST_DAGS_FOLDER"):  # try a changed DAG before committing it
        command += ["--dags-folder", os.environ["XACCT_MAP_UI_TEST_DAGS_FOLDER"]]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
    started = time.monotonic()
    try:
        while not ready.exists():
            if process.poll() is not None:
                pytest.fail(f"xacct-map airflow exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
            if time.monotonic() - started > 180:
                pytest.fail(f"xacct-map airflow not ready after 180 s:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        srv = Server(process, json.loads(ready.read_text()), log_path)
        srv.info["ready_after_s"] = round(time.monotonic() - started, 1)
        print(f"\nlocal Airflow ready after {srv.info['ready_after_s']} s at {srv.url}")
        yield srv
    finally:
        if process.poll() is None:
            Server(process, {"url": ""}, log_path).stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(browser, server):
    """A signed-in page (the login form, as a person uses it)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto(server.url)
    page.wait_for_url("**/auth/login**")
    page.get_by_label("Username").fill(server.info["username"])
    page.get_by_label("Password").fill(server.info["password"])
    page.screenshot(path=SCREENSHOTS / "01-login.png")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)
    yield page
    context.close()


def _wait(predicate, timeout: float, what: str, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _warn_on_retries(server, run_id: str) -> dict:
    """Retries hide races (a task that failed once and then passed): make them visible, not fatal."""
    tasks = server.api(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
    tries = {t["task_id"]: t["try_number"] for t in tasks}
    retried = {task: n for task, n in tries.items() if n > 1}
    if retried:
        warnings.warn(
            f"run {run_id} succeeded only after retries {retried}; see the task logs in "
            f"{server.info['airflow_home']}/logs",
            stacklevel=2,
        )
    return {t["task_id"]: t["state"] for t in tasks}


def _explain_blocked_form(form) -> None:
    """The trigger button stays disabled: name the empty fields (the form requires params that refuse null)."""
    empty = sorted(
        name.removeprefix("element_")
        for field in form.locator("input[name^=element_], textarea[name^=element_]").all()
        if (name := field.get_attribute("name")) and not field.input_value().strip()
    )
    pytest.fail(f"the trigger form refuses the params typed in; fields still empty: {empty}")


def _log_lines(server, run_id: str, task_id: str, try_number: int = 1) -> list[str]:
    """The task's log as Airflow serves it to its log view (its own and its trigger's lines)."""
    log = server.api(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}", full_content="true")
    return [str(entry.get("event", "")) if isinstance(entry, dict) else str(entry) for entry in log["content"]]


def test_manual_run_from_the_trigger_form(server, page):
    """Trigger with params typed into the form; the run succeeds in the UI; the sensor's log shows progress."""
    pipeline = server.info["pipeline"]
    page.goto(f"{server.url}/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger Dag").click()
    form = page.locator("[role=dialog][data-state=open]")
    form.wait_for()
    # The explicit settings exercise the params path (the scheduled run below uses the Variables).
    typed = {
        "source_bucket": pipeline["source_bucket"],
        "source_prefix": pipeline["source_prefix"],
        "source_account_id": pipeline["source_account"],
        "inventory_bucket": pipeline["inventory_bucket"],
        "state_machine_arn": pipeline["state_machine_arn"],
        "max_keys_per_batch": str(KEYS_PER_BATCH),
    }
    for name, value in typed.items():
        form.locator(f"input[name=element_{name}]").fill(value)
    form.get_by_role("button", name="Advanced Options").click()
    form.get_by_label("Run ID").fill(RUN_ID)
    page.screenshot(path=SCREENSHOTS / "02-trigger-form.png", full_page=True)
    trigger = form.get_by_role("button", name="Trigger", exact=True)
    if not trigger.is_enabled():
        _explain_blocked_form(form)
    trigger.click()
    page.wait_for_url(f"**/dags/{DAG_ID}/runs/{RUN_ID}")
    _watch_the_run_on_the_map_runs_page(server, page)

    # The run page in the UI: its header badge next to the run id (the page refreshes itself).
    page.goto(f"{server.url}/dags/{DAG_ID}/runs/{RUN_ID}")
    header = page.get_by_role("heading", name=RUN_ID).locator("xpath=..")

    def finished() -> str | None:
        text = header.inner_text()
        return next((state for state in ("Success", "Failed") if state in text), None)

    state = _wait(finished, 150, f"run {RUN_ID} to finish in the UI", interval=1.0)
    page.screenshot(path=SCREENSHOTS / "06-manual-run.png")
    assert state == "Success", f"the UI shows run {RUN_ID} {state}:\n{server.log_tail()}"
    run = server.api(f"/dags/{DAG_ID}/dagRuns/{RUN_ID}")
    assert run["state"] == "success" and run["run_type"] == "manual"
    assert run["conf"]["max_keys_per_batch"] == KEYS_PER_BATCH  # the form's integer field, as an integer
    assert set(_warn_on_retries(server, RUN_ID).values()) == {"success"}

    manifest = _xcom(server, RUN_ID, "build_manifest")
    assert manifest["object_count"] == OBJECTS
    assert manifest["batch_count"] == math.ceil(OBJECTS / KEYS_PER_BATCH)

    # The sensor's log, in the UI's log view: Map Run progress ("N succeeded, ... of M items").
    page.goto(f"{server.url}/dags/{DAG_ID}/runs/{RUN_ID}/tasks/wait_for_map_run")
    # (the view renders only the lines in sight, and the local Airflow logs at DEBUG: the lines are read
    # from the API the view reads)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=SCREENSHOTS / "07-sensor-log.png")
    lines = [line for line in _log_lines(server, RUN_ID, "wait_for_map_run") if "succeeded," in line]
    assert any(
        f"{manifest['batch_count']} succeeded," in line and f"of {manifest['batch_count']} items" in line
        for line in lines
    ), lines

    # The plugin's JSON needs a signed-in user: the API's bearer token works, no credentials get 401.
    batches = manifest["batch_count"]
    assert requests.get(f"{server.url}/xacct-map/runs.json", timeout=15).status_code == 401
    detail = f"{server.url}/xacct-map/dags/{DAG_ID}/runs/{RUN_ID}/json"
    assert requests.get(detail, timeout=15).status_code == 401
    data = requests.get(
        f"{server.url}/xacct-map/runs.json",
        params={"dag_id": DAG_ID},
        timeout=15,
        headers={"Authorization": f"Bearer {server.token()}"},
    ).json()
    (mine,) = [r for r in data["runs"] if r["run_id"] == RUN_ID]
    assert (mine["status"], mine["succeeded"], mine["failed"], mine["total"]) == ("SUCCEEDED", batches, 0, batches)
    assert mine["source"] == "final" and len(mine["history"]) >= 2  # the trigger's polls, recorded


def _watch_the_run_on_the_map_runs_page(server, page) -> None:
    """Browse > Map runs (the plugin's page in an iframe) while the run is in flight: the bar moves
    part-way and to the end without a reload; the links are the extra links; the detail view charts it."""
    page.goto(f"{server.url}/plugin/xacct-map-runs")
    frame = page.frame_locator("iframe")
    row = frame.locator(f'#map-runs tbody tr[data-run-id="{RUN_ID}"]')
    bar = row.locator(".bar[data-total]")
    bar.wait_for(timeout=150_000)  # the sensor is waiting and its Map Run exists
    plugin = next(f for f in page.frames if "/xacct-map/" in f.url)
    plugin.evaluate("window.xacctMapNotReloaded = true")  # a reload would drop it
    seen: list[tuple[int, int]] = []

    def done_of_total() -> tuple[int, int]:
        done, total = int(bar.get_attribute("data-done") or 0), int(bar.get_attribute("data-total") or 0)
        seen.append((done, total))
        return done, total

    # Part-way, of all the manifest's items (the total is known before the Map Run has counted them all).
    _wait(lambda: 0 < done_of_total()[0] < seen[-1][1] == OBJECTS, 120, "the bar part-way", interval=0.5)
    page.screenshot(path=SCREENSHOTS / "03-map-runs-part-way.png")
    text = row.inner_text()
    assert "items/s" in text and "ETA" in text and "running" in text, text

    def finished() -> bool:  # and the sensor's own summary arrived (source "final", its links persisted)
        done, total = done_of_total()
        return (
            row.get_attribute("data-status") == "SUCCEEDED"
            and done == total == OBJECTS
            and row.get_attribute("data-source") == "final"
        )

    _wait(finished, 150, f"run {RUN_ID} to reach the end of its bar", interval=0.5)
    page.screenshot(path=SCREENSHOTS / "04-map-runs-done.png")
    assert plugin.evaluate("window.xacctMapNotReloaded === true"), "the page reloaded instead of updating"
    assert len({done for done, _ in seen}) >= 3, seen  # moved in steps, not only start and end
    # The console links: the very URLs of the sensor's and the build task's extra links.
    links = {a.get_attribute("class"): a.get_attribute("href") for a in row.locator(".links a").all()}
    base = f"/dags/{DAG_ID}/dagRuns/{RUN_ID}/taskInstances"
    sensor_links = server.api(f"{base}/wait_for_map_run/links")["extra_links"]
    build_links = server.api(f"{base}/build_manifest/links")["extra_links"]
    assert links == {
        "link-execution": sensor_links["State Machine Executions Details"],
        "link-map_run": sensor_links["Map Run"],
        "link-manifest": build_links["Manifest (S3)"],
    }
    assert links["link-map_run"].startswith("https://console.aws.amazon.com/states/home?region=us-east-1#/v2/map-run/")
    # The detail view: items done over time, drawn from the recorded snapshots.
    row.get_by_role("link", name=RUN_ID).click()
    chart = frame.locator("#chart svg polyline.done")
    chart.wait_for()
    assert len((chart.get_attribute("points") or "").split()) >= 3
    page.screenshot(path=SCREENSHOTS / "05-map-run-detail.png")


def _task_state(server, run_id: str, task_id: str) -> str:
    return server.api(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}")["state"]


def _xcom(server, run_id: str, task_id: str) -> dict:
    entry = server.api(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value")
    return entry["value"] if isinstance(entry["value"], dict) else json.loads(entry["value"])


def test_scheduled_runs_process_every_seeded_object_once(server, page):
    """Under the real scheduler, incremental runs (one a minute here) pick up every seeded object exactly once.

    Each scheduled run lists only objects modified in its data interval; the objects were seeded just
    before Airflow started, so one run (two, if seeding straddled a minute) takes all of them, and a
    run whose interval holds nothing new is skipped (``on_empty="skip"``) without an execution.
    """
    dag = server.api(f"/dags/{DAG_ID}")
    assert dag["timetable_summary"] == SCHEDULE and not dag["is_paused"]
    counts: dict[str, int] = {}

    def every_object_processed() -> bool:
        runs = server.api(f"/dags/{DAG_ID}/dagRuns", run_type="scheduled")["dag_runs"]
        assert not [r for r in runs if r["state"] == "failed"], runs
        for run in runs:
            if run["state"] == "success" and run["dag_run_id"] not in counts:
                if _task_state(server, run["dag_run_id"], "build_manifest") == "skipped":
                    counts[run["dag_run_id"]] = 0  # nothing new in its interval: on_empty="skip"
                    continue
                manifest = _xcom(server, run["dag_run_id"], "build_manifest")
                assert manifest["filters"]["listing_mode"] == "incremental", manifest["filters"]
                summary = _xcom(server, run["dag_run_id"], "wait_for_map_run")
                assert summary["status"] == "SUCCEEDED"
                assert summary["item_counts"]["succeeded"] == manifest["batch_count"]
                counts[run["dag_run_id"]] = manifest["object_count"]
        return sum(counts.values()) >= OBJECTS

    _wait(every_object_processed, 240, f"scheduled runs to process the {OBJECTS} seeded objects")
    assert sum(counts.values()) == OBJECTS, counts  # exactly once across the runs
    for run_id, objects in counts.items():
        done = "success" if objects else "skipped"  # an empty interval starts no execution
        assert _warn_on_retries(server, run_id) == {
            "preflight": "success",
            "build_manifest": done,
            "start_map_run": done,
            "wait_for_map_run": done,
        }
    # The runs list in the UI shows them as scheduled runs.
    page.goto(f"{server.url}/dags/{DAG_ID}/runs")
    page.get_by_text(next(iter(counts))).first.wait_for()
    page.screenshot(path=SCREENSHOTS / "08-runs.png")


def test_a_failed_run_shows_the_actionable_error_in_the_task_log(server, page):
    """A run with a source bucket that does not exist fails at preflight; its log says what and how to fix."""
    run_id = f"{RUN_ID}_missing_bucket"
    response = requests.post(
        f"{server.url}/api/v2/dags/{DAG_ID}/dagRuns",
        timeout=15,
        headers={"Authorization": f"Bearer {server.token()}"},
        json={"dag_run_id": run_id, "logical_date": None, "conf": {"source_bucket": "xacct-map-no-such-bucket"}},
    )
    assert response.status_code == 200, response.text

    def failed() -> dict | None:
        run = server.api(f"/dags/{DAG_ID}/dagRuns/{run_id}")
        assert run["state"] != "success", run
        return run if run["state"] == "failed" else None

    _wait(failed, 150, f"run {run_id} to fail")
    states = {
        t["task_id"]: t["state"] for t in server.api(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
    }
    assert states["preflight"] == "failed" and states["start_map_run"] == "upstream_failed", states
    page.goto(f"{server.url}/dags/{DAG_ID}/runs/{run_id}/tasks/preflight")
    report = page.get_by_text("list_source").filter(has_text="FAILED")
    report.first.wait_for()
    log = page.locator("body").inner_text()
    page.screenshot(path=SCREENSHOTS / "09-failed-run-log.png")
    # What failed, why (the AWS error code) and what fixes it, in the UI's log view.
    assert "xacct-map-no-such-bucket" in log and "NoSuchBucket" in log, log[-3000:]


def test_ctrl_c_stops_every_component(server):
    """Ctrl-C stops the whole tree: every Airflow component's process group and the emulator."""
    pids = server.info["pids"]
    seconds = server.stop()
    print(f"\nstopped in {seconds:.1f} s")
    assert server.process.returncode == 0, server.log_tail()
    assert "stopped." in server.log_tail(5)
    left = []
    for name, pid in pids.items():
        try:
            os.killpg(pid, 0)  # each component led its own process group
            left.append(name)
        except ProcessLookupError:
            pass
    assert not left, f"still running after Ctrl-C: {left}"


# A credential's value after its name: XML (STS replies), JSON, header dicts, canonical requests.
_CREDENTIAL_VALUE = re.compile(
    r"(SecretAccessKey|SessionToken|aws_secret_access_key|security-token)[\"'>:= ]+(b['\"])?[A-Za-z0-9+/=]{8}",
    re.IGNORECASE,
)


def test_no_credential_in_the_local_airflows_logs(server):
    """After the runs above (role credentials assumed by every build_manifest task), at DEBUG: no
    secret key or session token in any log, the database (XComs, rendered fields) or the server's output."""
    home = Path(server.info.get("airflow_home") or server.log_path.parent / "home")
    files = [p for p in home.rglob("*") if p.is_file()] + [server.log_path]
    assert any("logs" in p.parts for p in files), "no task log to scan"
    leaks = [
        f"{p}: {m.group(0)[:40]}..."
        for p in files
        for m in _CREDENTIAL_VALUE.finditer(p.read_bytes().decode("utf-8", "replace"))
    ]
    assert not leaks, leaks[:5]
    assert "botocore" in server.log_tail(10_000) or any(
        "botocore" in p.read_text(errors="replace") for p in files if "logs" in p.parts
    ), "DEBUG logging did not reach botocore: the scan proves little"
