"""A small local Lambda runtime for moto's docker-less Lambda backend.

moto without Docker only echoes an invocation's payload. This runtime makes invocations run the
*deployed* code: it unpacks the function's zip as moto stored it, starts worker processes (like
warm Lambda sandboxes) with the function's environment variables plus credentials and an endpoint
for the emulator, and calls the configured handler. An exception in the handler comes back the way
Lambda reports it (``X-Amz-Function-Error: Unhandled`` and an ``errorType``/``errorMessage``
payload), so Step Functions' Retry/Catch and Map Run failure counts behave as on AWS.

A worker is ``python -I .../lambda_runtime.py CODE_DIR HANDLER LOG``: one JSON ``[timeout_s, event]``
per line on stdin, one JSON ``[ok, payload]`` per line on stdout; what the handler prints goes to LOG.
Like Lambda, the handler sees only its zip and what the Python runtime provides: the standard library
and boto3 (with botocore, s3transfer, jmespath, dateutil, six, urllib3). Any other import fails here
as it would on AWS, naming the module, even when this environment has it installed; and the context's
``get_remaining_time_in_millis()`` counts down from the function's Timeout.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.abc
import io
import json
import os
import queue
import select
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# What the Lambda Python runtime (python3.12) provides beside the standard library.
LAMBDA_PROVIDED = frozenset({"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3", "certifi"})


class _Context:
    def __init__(self, name: str, timeout_s: float):
        self.function_name = name
        self.aws_request_id = os.urandom(16).hex()
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class _LambdaImports(importlib.abc.MetaPathFinder):
    """Refuse top-level imports that neither the zip nor the Lambda runtime would have."""

    def __init__(self, code_dir: str):
        self.code_dir = Path(code_dir)

    def find_spec(self, fullname, path=None, target=None):
        name = fullname.partition(".")[0]
        if "." in fullname or name in sys.stdlib_module_names or name in LAMBDA_PROVIDED or name.startswith("_"):
            return None
        if (self.code_dir / name).is_dir() or any(self.code_dir.glob(f"{name}.*")):
            return None
        raise ModuleNotFoundError(
            f"No module named {name!r} in the function's zip: the Lambda Python runtime has only the standard "
            f"library and boto3; add {name!r} to --processor-requirements (pure Python), or to the package",
            name=name,
        )


def _worker_main(code_dir: str, handler: str, log_path: str) -> None:
    protocol = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    # What the handler prints goes to the function's log file, as it would go to CloudWatch Logs.
    sys.stdout = sys.stderr = open(log_path, "a", buffering=1, encoding="utf-8")
    sys.path.insert(0, code_dir)
    sys.meta_path.insert(0, _LambdaImports(code_dir))
    module_name, _, function_name = handler.rpartition(".")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except Exception as err:  # Lambda's Runtime.ImportModuleError: every invocation fails with it
        traceback.print_exc()
        function = _failing(err)
    for line in sys.stdin:
        timeout_s, event = json.loads(line)
        try:
            result = [True, function(event, _Context(os.environ.get("AWS_LAMBDA_FUNCTION_NAME", ""), timeout_s))]
        except Exception as err:  # reported to the caller exactly like Lambda's unhandled error
            traceback.print_exc()
            result = [
                False,
                {
                    "errorMessage": str(err),
                    "errorType": "Runtime.ImportModuleError"
                    if isinstance(err, ImportModuleError)
                    else type(err).__name__,
                    "stackTrace": traceback.format_exc().splitlines(),
                },
            ]
        protocol.write(json.dumps(result) + "\n")


class ImportModuleError(Exception):
    """Lambda's ``Runtime.ImportModuleError``: the handler's module does not import."""


def _failing(err: Exception):
    def handler(event, context):
        raise ImportModuleError(f"Unable to import module: {type(err).__name__}: {err}") from err

    return handler


@dataclass
class Invocation:
    """One invocation as the runtime saw it (the local stand-in for Lambda's logs and metrics)."""

    function_name: str
    event: object
    ok: bool
    result: object


class _Sandbox:
    """One warm worker process; an invocation past the function's Timeout kills it (a fresh one replaces
    it) and fails as Lambda's does: ``Sandbox.Timedout``, "Task timed out after N seconds"."""

    def __init__(self, code_dir: Path, handler: str, env: dict, log_path: Path):
        # -I: no PYTHONPATH, no user site, no script folder: the function's code comes from code_dir only.
        self._argv = [sys.executable, "-I", __file__, str(code_dir), handler, str(log_path)]
        self._env = env
        self.process = self._start()

    def _start(self) -> subprocess.Popen:
        return subprocess.Popen(
            self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=self._env, text=True, encoding="utf-8"
        )

    def _restart(self) -> None:
        self.process.kill()
        self.process.wait()
        self.process = self._start()

    def call(self, event_json: str, timeout_s: float) -> tuple[bool, object]:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None  # Popen(stdin=PIPE, stdout=PIPE)
        stdin.write(f"[{float(timeout_s)}, {event_json.replace(chr(10), ' ')}]\n")
        stdin.flush()
        # One line out per line in: nothing is buffered before this call, so select() sees the answer.
        ready, _, _ = select.select([stdout], [], [], timeout_s + 0.5)
        if not ready:
            self._restart()
            return False, {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"Task timed out after {timeout_s:.2f} seconds",
            }
        line = stdout.readline()
        if not line:
            self._restart()
            return False, {"errorMessage": "sandbox process exited", "errorType": "Runtime.ExitError"}
        ok, payload = json.loads(line)
        return ok, payload

    def close(self) -> None:
        self.process.stdin.close()  # type: ignore[union-attr]  # Popen(stdin=PIPE, stdout=PIPE)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()


class LocalLambdaRuntime:
    """Runs Python handlers of functions deployed to moto's docker-less Lambda backend.

    :param endpoint_url: the emulator's URL, given to handlers as ``AWS_ENDPOINT_URL``.
    :param workers: sandboxes per function (parallel invocations).
    """

    def __init__(self, endpoint_url: str, *, workers: int = 4):
        self.endpoint_url = endpoint_url
        self.workers = workers
        self.invocations: list[Invocation] = []
        self._sandboxes: dict[str, queue.Queue] = {}
        self._all: list[_Sandbox] = []
        self._lock = threading.Lock()
        self._workdir = tempfile.TemporaryDirectory(prefix="xacct-map-lambda-")
        self._original: Any = None

    def install(self) -> None:
        """Route moto's docker-less invocations to this runtime."""
        from moto.awslambda_simple.models import LambdaSimpleBackend

        runtime, self._original = self, LambdaSimpleBackend.invoke

        def invoke(backend, function_name, qualifier, body, headers, response_headers):
            return runtime.invoke(backend.get_function(function_name, qualifier), body, response_headers)

        LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]

    def close(self) -> None:
        if self._original is not None:
            from moto.awslambda_simple.models import LambdaSimpleBackend

            LambdaSimpleBackend.invoke = self._original  # type: ignore[method-assign]
            self._original = None
        for sandbox in self._all:
            sandbox.close()
        self._workdir.cleanup()

    def log_path(self, function_name: str) -> Path:
        """Where the function's output goes (the local CloudWatch Logs)."""
        return Path(self._workdir.name) / f"{function_name}.log"

    def _pool(self, fn) -> queue.Queue:
        code = fn.code_bytes
        env = dict(fn.environment_vars or {})
        tag = hashlib.sha256(code + json.dumps([fn.handler, env], sort_keys=True).encode()).hexdigest()[:16]
        with self._lock:
            if tag not in self._sandboxes:
                code_dir = Path(self._workdir.name) / f"{fn.function_name}-{tag}"
                with zipfile.ZipFile(io.BytesIO(code)) as archive:
                    archive.extractall(code_dir)
                env.update(
                    AWS_LAMBDA_FUNCTION_NAME=fn.function_name,
                    AWS_REGION=fn.region,
                    AWS_DEFAULT_REGION=fn.region,
                    # Like a Lambda sandbox: credentials of the function's role, in the function's account.
                    AWS_ACCESS_KEY_ID="local-lambda-role",
                    AWS_SECRET_ACCESS_KEY="local-lambda-role",
                    AWS_SESSION_TOKEN="local-lambda-role",
                    AWS_ENDPOINT_URL=self.endpoint_url,
                    PATH=os.environ.get("PATH", ""),
                )
                pool: queue.Queue = queue.Queue()
                for _ in range(self.workers):
                    sandbox = _Sandbox(code_dir, fn.handler, env, self.log_path(fn.function_name))
                    self._all.append(sandbox)
                    pool.put(sandbox)
                self._sandboxes[tag] = pool
            return self._sandboxes[tag]

    def invoke(self, fn, body, response_headers: dict) -> bytes:
        if isinstance(body, bytes):
            body = body.decode()
        event_json = body or "{}"
        pool = self._pool(fn)
        sandbox = pool.get()
        try:
            ok, payload = sandbox.call(event_json, float(getattr(fn, "timeout", None) or 3))
        finally:
            pool.put(sandbox)
        if not ok:
            response_headers["x-amz-function-error"] = "Unhandled"
        self.invocations.append(Invocation(fn.function_name, json.loads(event_json), ok, payload))
        return json.dumps(payload).encode()


if __name__ == "__main__":
    _worker_main(*sys.argv[1:4])
