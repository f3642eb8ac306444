"""The compatibility matrix: build the wheel and sdist, install the wheel into fresh environments that
stand for the Airflows users already run, and run the tests there, against the installed wheel.

    python scripts/compat_matrix.py run [TARGET ...]   build, then test every target (or the named ones)
    python scripts/compat_matrix.py table [--write]    the README's "Supported versions" table
    python scripts/compat_matrix.py constraints        regenerate constraints/ for the older targets

Each older target is installed the way a user's deployment is: first Airflow and the amazon provider
with Airflow's constraints for that release (``constraints/``), then the wheel (with its ``local``
extra) and the test tools, constrained to what is already installed, so that a resolution that would
move Airflow, the provider or anything else of theirs fails instead. The newest target installs
exactly what ``uv.lock`` pins and runs the whole suite. Every other target also runs
``xacct-map demo --objects 60 --json`` with its own console script from a folder outside the
repository (the whole suite does so in ``tests/system/test_demo_end_to_end.py``). Standard library
only; uv comes from ``UV`` (default ``.tools/bin/uv``).

The whole suite takes far longer than the older targets together, and leaves a CPU of two mostly idle:
it runs in the foreground, printing as it goes, while the older targets (then the suite's files of
``NEWEST_BESIDE``, in a second pytest) run beside it one after another, a little lower in priority,
each into ``.venvs/<name>.log``, printed when the foreground is done. Any failure, anywhere, fails the run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "dist"
ENVS = ROOT / ".venvs"
UV = os.environ.get("UV") or str(ROOT / ".tools" / "bin" / "uv")
DEMO_OBJECTS = 60
# The targets beside the foreground one yield to it (the whole suite is the critical path), but only a
# little: their tests wait on the clock too.
BESIDE_NICE = 5
# What the older targets run: the package, DAG, operators, sensor, trigger and listing tests (a few minutes).
COMPAT_TESTS = (
    "tests/system/test_package.py",
    "tests/unit/test_dag_and_provider.py",
    "tests/integration/test_operators.py",
    "tests/integration/test_sensor.py",
    "tests/integration/test_lifecycle.py",
    "tests/integration/test_incremental.py",
    "tests/integration/test_manifest.py",
    "tests/integration/test_deploy.py",
    # the listing engine signs and sends its own requests: botocore's oldest allowed version too
    "tests/integration/test_listing.py",
    "tests/unit/test_sigv4.py",
    "tests/integration/test_http1.py",
)

# The whole suite's slow files that start processes of their own (the demo, dag.test() runs in a
# subprocess) and share nothing with the rest: a second pytest runs them beside the first.
NEWEST_BESIDE = (
    "tests/system/test_demo_end_to_end.py",
    "tests/system/test_demo_processor.py",
    "tests/system/test_empty_source_dag.py",
    "tests/system/test_lineage_dag.py",
    "tests/system/test_ranges_dag.py",
)


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    python: str
    airflow: str = ""  # empty: what uv.lock pins
    amazon: str = ""
    # Airflow's constraints for a release are the versions of its dependencies on its release day:
    # ``constraints`` regenerates the file from PyPI as it was then (uv's --exclude-newer), and
    # ``as_of_later`` lets the packages named there (an amazon provider released later) be newer.
    as_of: str = ""
    as_of_later: tuple[tuple[str, str], ...] = ()
    floors: tuple[str, ...] = ()  # lower bounds of pyproject.toml to test exactly, e.g. "boto3==1.37.2"
    tests: tuple[str, ...] = COMPAT_TESTS
    # Test files of ``tests`` run by a second pytest beside this target's own (see :func:`run`).
    beside: tuple[str, ...] = ()

    @property
    def locked(self) -> bool:
        return not self.airflow

    @property
    def constraints(self) -> Path:
        return ROOT / "constraints" / f"airflow-{self.airflow}-python{self.python}.txt"


# The amazon provider 9.10.0 and its AWS libraries came out after Airflow 3.0.2: take them as of then.
_AMAZON_9_10 = tuple(
    (name, "2025-07-15")
    for name in (
        "apache-airflow-providers-amazon",
        "apache-airflow-providers-common-sql",
        "apache-airflow-providers-common-compat",
        "aiobotocore",
        "boto3",
        "botocore",
        "s3transfer",
    )
)
MATRIX = (
    # The oldest of everything xacct-map supports: Python, Airflow, the amazon provider (and so boto3).
    Target(
        "oldest",
        python="3.10",
        airflow="3.0.2",
        amazon="9.10.0",
        as_of="2025-06-14",
        as_of_later=_AMAZON_9_10,
        floors=("boto3==1.37.2",),
    ),
    Target("airflow-3.1", python="3.12", airflow="3.1.8", amazon="9.23.0", as_of="2026-03-15"),
    Target("newest", python="3.13", tests=("tests",), beside=NEWEST_BESIDE),
)


@dataclasses.dataclass(frozen=True)
class Out:
    """Where a target's commands write: the console (``log`` None) or a log file, at what priority."""

    log: TextIO | None = None
    nice: int = 0

    def print(self, *text: str) -> None:
        print(*text, file=self.log or sys.stdout, flush=True)

    def command(self, args: list[str]) -> list[str]:
        """``args`` as this output runs them: under ``nice`` when it yields."""
        self.print("+", " ".join(args))
        return ["nice", "-n", str(self.nice), *args] if self.nice and shutil.which("nice") else args


CONSOLE = Out()


def sh(*args: str, out: Out = CONSOLE, **kwargs) -> subprocess.CompletedProcess:
    """Run ``args``; any exit status but 0 (pytest's 5, "no tests collected", too) raises."""
    if out.log:
        kwargs.update(stdout=out.log, stderr=subprocess.STDOUT)
    return subprocess.run(out.command(list(args)), check=True, **kwargs)


def find_python(version: str) -> str:
    """An interpreter of ``version``: on PATH, or one of pyenv's (whose shims answer only when selected)."""
    for candidate in (
        shutil.which(f"python{version}"),
        *sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")), reverse=True),
    ):
        if candidate and subprocess.run([candidate, "-c", ""], capture_output=True).returncode == 0:
            return candidate
    raise SystemExit(f"compat_matrix: no Python {version} found (on PATH or in ~/.pyenv/versions): install it")


def build() -> Path:
    """The sdist, and the wheel built from it (uv build does both): the wheel every target installs."""
    shutil.rmtree(DIST, ignore_errors=True)
    sh(UV, "build", "--out-dir", str(DIST), cwd=ROOT)
    (wheel,) = DIST.glob("xacct_map-*.whl")
    return wheel


def dev_tools() -> list[str]:
    """The test tools of pyproject's ``dev`` group, with its ranges (the older targets resolve them anew)."""
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^\[dependency-groups\]$.*?^dev = \[$(.*?)^\]$", text, flags=re.S | re.M)
    if not block:
        raise SystemExit("compat_matrix: no [dependency-groups] dev = [...] in pyproject.toml")
    return re.findall(r'^\s*"([A-Za-z0-9_.\-\[\]]+(?:[<>=!~][^"]*)?)"', block.group(1), flags=re.M)


def installed(python: str) -> dict[str, str]:
    out = subprocess.run([UV, "pip", "freeze", "--python", python], check=True, capture_output=True, text=True)
    pairs = (line.split("==", 1) for line in out.stdout.splitlines() if "==" in line)
    return {normalized(name): version for name, version in pairs}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def write_constraints(target: Target) -> None:
    """Airflow and the amazon provider with their dependencies as of ``target.as_of``, pinned."""
    later = [arg for name, day in target.as_of_later for arg in ("--exclude-newer-package", f"{name}={day}T00:00:00Z")]
    with tempfile.NamedTemporaryFile("w", suffix=".in", delete=False) as wanted:
        wanted.write(
            f"apache-airflow=={target.airflow}\napache-airflow-providers-amazon[aiobotocore]=={target.amazon}\n"
            + "".join(f"{floor}\n" for floor in target.floors)
        )
    target.constraints.parent.mkdir(exist_ok=True)
    sh(
        UV,
        "pip",
        "compile",
        "--quiet",
        "--no-header",
        "--python-version",
        target.python,
        "--exclude-newer",
        f"{target.as_of}T00:00:00Z",
        *later,
        wanted.name,
        "-o",
        str(target.constraints),
    )
    text = target.constraints.read_text()
    target.constraints.write_text(
        f"# Airflow {target.airflow} and apache-airflow-providers-amazon {target.amazon} on Python {target.python},\n"
        f"# dependencies as of {target.as_of} (Airflow's constraints file for the release stands in for it).\n"
        f"# Generated by: python scripts/compat_matrix.py constraints\n" + text
    )


def create_env(target: Target, wheel: Path, out: Out = CONSOLE) -> str:
    env_dir = ENVS / target.name
    sh(UV, "venv", "--clear", "--quiet", "--python", find_python(target.python), str(env_dir), out=out)
    python = str(env_dir / "bin" / "python")
    if target.locked:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as reqs:
            reqs.write(
                subprocess.run(
                    [UV, "export", "--frozen", "--all-extras", "--no-emit-project", "--quiet"],
                    cwd=ROOT,
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
            )
        sh(UV, "pip", "install", "--quiet", "--python", python, "-r", reqs.name, out=out)
        sh(UV, "pip", "install", "--quiet", "--python", python, "--no-deps", str(wheel), out=out)
        return python
    # 1. The user's Airflow, as Airflow's docs install it: with the constraints of that release.
    sh(
        UV,
        "pip",
        "install",
        "--quiet",
        "--python",
        python,
        f"apache-airflow=={target.airflow}",
        f"apache-airflow-providers-amazon[aiobotocore]=={target.amazon}",
        "-c",
        str(target.constraints),
        out=out,
    )
    before = installed(python)
    # 2. xacct-map into it: nothing already installed may move.
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as frozen:
        frozen.write("".join(f"{name}=={version}\n" for name, version in before.items()))
    # Test tools the environment already has (setuptools, say) stay as they are.
    tools = [t for t in dev_tools() if normalized(re.split(r"[<>=!~\[]", t, maxsplit=1)[0]) not in before]
    wanted = [f"{wheel}[local,inventory]", *tools]
    sh(UV, "pip", "install", "--quiet", "--python", python, *wanted, "-c", frozen.name, out=out)
    moved = {n: (v, installed(python).get(n)) for n, v in before.items() if installed(python).get(n) != v}
    if moved:
        raise SystemExit(f"compat_matrix: installing the wheel changed the user's packages: {moved}")
    return python


def run_tests(target: Target, python: str, out: Out = CONSOLE, *, beside: bool = False) -> None:
    """The target's tests but those it runs beside (or, ``beside``, those)."""
    env = dict(os.environ, XACCT_MAP_EXPECT_INSTALLED="1")
    tests = target.beside if beside else (*target.tests, *(f"--ignore={path}" for path in target.beside))
    # pytest exits 5 when it collected nothing: sh fails on it like on any failure.
    sh(python, "-m", "pytest", "-p", "no:cacheprovider", *tests, cwd=ROOT, env=env, out=out)


def run_demo(python: str, out: Out = CONSOLE) -> dict:
    """The short demo, with the environment's console script, from a folder outside the repository."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_", "XACCT_MAP_HOME"))}
    command = out.command([str(Path(python).with_name("xacct-map")), "demo", "--objects", str(DEMO_OBJECTS), "--json"])
    with tempfile.TemporaryDirectory(prefix="xacct-map-demo-") as outside:
        proc = subprocess.run(
            command,
            cwd=outside,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    out.print(proc.stdout[-2000:] + "\n" + proc.stderr[-3000:])
    if proc.returncode != 0:
        raise SystemExit(f"compat_matrix: the demo failed (exit {proc.returncode})")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    if summary["execution_status"] != "SUCCEEDED" or summary["objects_processed"] != DEMO_OBJECTS:
        raise SystemExit(f"compat_matrix: the demo did not process every object: {summary}")
    return summary


def versions(python: str) -> dict[str, str]:
    packages = installed(python)
    names = ("apache-airflow", "apache-airflow-providers-amazon", "boto3", "botocore", "moto")
    py = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"], check=True, capture_output=True, text=True
    ).stdout.strip()
    return {"python": py, **{n: packages.get(n, "-") for n in names}}


def run(names: list[str]) -> int:
    unknown = set(names) - {t.name for t in MATRIX}
    if unknown:
        raise SystemExit(f"compat_matrix: no target {sorted(unknown)}; the targets are {[t.name for t in MATRIX]}")
    # The whole suite (the locked target), the longest, in front; the others beside it.
    front, *beside = sorted((t for t in MATRIX if not names or t.name in names), key=lambda t: not t.locked)
    if os.environ.get("PYTEST_ADDOPTS"):  # narrowed (-k ...): one pytest, or the files beside might select nothing
        front = dataclasses.replace(front, beside=())
    wheel = build()
    ENVS.mkdir(exist_ok=True)
    seconds: dict[str, float] = {}
    front_env: Future[str] = Future()
    jobs = [(t.name, functools.partial(whole_target, t, wheel)) for t in beside]
    if front.beside:
        jobs.append((f"{front.name}-beside", lambda out: run_tests(front, front_env.result(), out, beside=True)))
    if not front.locked:  # the whole suite runs the demo itself: tests/system/test_demo_end_to_end.py
        jobs.append((f"{front.name}-demo", lambda out: run_demo(front_env.result(), out)))
    print(f"compat_matrix: beside {front.name}, one after another: {', '.join(n for n, _ in jobs)}", flush=True)
    with ThreadPoolExecutor(max_workers=1) as pool:
        side = pool.submit(run_beside, jobs, seconds)
        try:
            with timed(seconds, front.name):
                print(f"\n=== {front.name} ===", flush=True)
                front_env.set_result(create_env(front, wheel))
                run_tests(front, front_env.result())
        except BaseException as err:
            if not front_env.done():
                front_env.set_exception(err)  # its demo, beside, gives up
            raise
        finally:
            failed = print_beside(side.result())
    if failed:
        print(f"compat_matrix: FAILED beside the {front.name} target: {', '.join(failed)}", file=sys.stderr)
        return 1
    print("\ncompat_matrix: every target passed")
    for target in (front, *beside):
        row = {"target": target.name, **versions(str(ENVS / target.name / "bin" / "python"))}
        print("  " + ", ".join(f"{k} {v}" for k, v in {**row, "seconds": round(seconds[target.name])}.items()))
    return 0


@contextlib.contextmanager
def timed(seconds: dict[str, float], name: str):
    """Add the time the block takes to ``seconds[name]``."""
    started = time.monotonic()
    try:
        yield
    finally:
        seconds[name] = seconds.get(name, 0.0) + time.monotonic() - started


def whole_target(target: Target, wheel: Path, out: Out = CONSOLE) -> None:
    python = create_env(target, wheel, out)
    run_tests(target, python, out)
    run_demo(python, out)


def run_beside(jobs: list[tuple[str, Callable[[Out], object]]], seconds: dict[str, float]) -> list[tuple]:
    """Each job, one after another, a little lower in priority, into ``.venvs/<name>.log``; a failed one
    does not stop the rest. ``[(name, log, error or None)]``."""
    done = []
    for name, job in jobs:
        log_path = ENVS / f"{name}.log"
        with log_path.open("w") as log, timed(seconds, name.split("-beside")[0].removesuffix("-demo")):
            try:
                job(Out(log, BESIDE_NICE))
                error = None
            except (Exception, SystemExit) as err:  # a failed command; the demo's or the install's verdict
                error = err
        done.append((name, log_path, error))
    return done


def print_beside(done: list[tuple]) -> list[str]:
    """Print each log written beside the front target; the names of those that failed."""
    failed = []
    for name, log_path, error in done:
        print(f"\n=== {name} (ran beside; {log_path.relative_to(ROOT)}) ===", flush=True)
        print(log_path.read_text(errors="replace"), flush=True)
        if error is not None:
            failed.append(name)
            command = " ".join(map(str, error.cmd)) if isinstance(error, subprocess.CalledProcessError) else ""
            print(f"compat_matrix: {name} FAILED: {command or error}", file=sys.stderr, flush=True)
    return failed


def table() -> str:
    """The README's "Supported versions" table: what each target of :data:`MATRIX` installs."""
    lock = (ROOT / "uv.lock").read_text()

    def locked(name: str) -> str:
        # uv.lock may hold older versions for older Pythons; the newest target runs the newest.
        found = re.findall(rf'^name = "{re.escape(name)}"\nversion = "([^"]+)"', lock, flags=re.M)
        return max(found, key=lambda v: tuple(int(p) for p in re.findall(r"\d+", v)))

    def constrained(t: Target, name: str) -> str:
        return re.search(rf"^{re.escape(name)}==(\S+)", t.constraints.read_text(), flags=re.M).group(1)

    rows = ["| CI target | Python | Airflow | amazon provider | boto3 | tests |", "|---|---|---|---|---|---|"]
    for t in MATRIX:
        airflow = t.airflow or locked("apache-airflow")
        amazon = t.amazon or locked("apache-airflow-providers-amazon")
        boto3 = locked("boto3") if t.locked else constrained(t, "boto3")
        how = (
            "whole suite, versions of `uv.lock`"
            if t.locked
            else f"package, DAG, operators, sensor, deploy, listing; `constraints/{t.constraints.name}`"
        )
        rows.append(f"| {t.name} | {t.python} | {airflow} | {amazon} | {boto3} | {how} + demo |")
    return "\n".join(rows)


def with_table(readme: str) -> str:
    """The README text with :func:`table` between its ``compat-matrix`` markers."""
    start, end = "<!-- compat-matrix:start -->\n", "<!-- compat-matrix:end -->"
    head, rest = readme.split(start, 1)
    return head + start + table() + "\n" + end + rest.split(end, 1)[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run").add_argument("targets", nargs="*", help=f"any of {[t.name for t in MATRIX]} (default: all)")
    sub.add_parser("table").add_argument("--write", action="store_true", help="write it into README.md")
    sub.add_parser("constraints", help="regenerate constraints/ for the older targets")
    args = parser.parse_args(argv)
    if args.command == "table":
        if args.write:
            readme = ROOT / "README.md"
            readme.write_text(with_table(readme.read_text()))
        print(table())
        return 0
    if args.command == "constraints":
        for target in MATRIX:
            if not target.locked:
                write_constraints(target)
        return 0
    try:
        return run(args.targets)
    except subprocess.CalledProcessError as err:
        print(f"compat_matrix: FAILED (exit {err.returncode}): {' '.join(map(str, err.cmd))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
