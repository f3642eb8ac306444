"""The ``xacct-map`` command. Each subcommand lives in its own module with a ``register(subparsers)``
function (``cli/<command>.py``; the local-mode commands ``demo`` and ``airflow`` in ``local/``);
this file only collects them."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# The module that adds each subcommand. Their heavy imports (Airflow, moto) happen inside the command;
# a run imports only its own command's module (the others cost a short command ~20 ms more).
COMMANDS = {
    "demo": "xacct_map.local.demo",
    "policy": "xacct_map.cli.policy",
    "airflow": "xacct_map.local.airflow_server",
    "deploy": "xacct_map.cli.deploy",
    "preflight": "xacct_map.cli.preflight",
    "manifest": "xacct_map.cli.manifest",
}
COMMAND_MODULES = tuple(COMMANDS.values())
# Commands whose servers and temporary folders clean up in atexit handlers: they exit the usual way.
LOCAL_COMMANDS = frozenset({"demo", "airflow"})


class _Parser(argparse.ArgumentParser):
    """argparse, with a refused option reported on one line (no usage block) and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of ``command`` alone when it is one."""
    parser = _Parser(
        prog="xacct-map",
        description="Run an AWS Step Functions Distributed Map over S3 objects of another account or Region.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in [COMMANDS[command]] if command in COMMANDS else COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def _command(argv: list[str] | None) -> str | None:
    return next((a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code (2: an option was refused, before anything ran)."""
    from xacct_map.core import redact

    redact.install()  # the commands log through botocore too (demo and airflow at DEBUG if asked)
    try:
        args = build_parser(_command(argv)).parse_args(argv)
    except SystemExit as stop:  # --help, or a refused option: argparse has printed why
        return stop.code if isinstance(stop.code, int) else 2
    return int(args.func(args) or 0)


def console() -> None:
    """The ``xacct-map`` console script (and ``python -m xacct_map.cli``): :func:`main`, then the
    process ends at once.

    When a command returns its work is done: output written, uploads completed or aborted, listing
    workers told to stop. What is left is the interpreter's teardown of boto3's modules, ~50 ms a
    user would wait for; it is skipped once the output is flushed. The local-mode commands exit the
    usual way (their servers and temporary folders clean up in atexit handlers). A reader that goes
    away before the output ends (``| head -c 10``) makes exit code 1, without a traceback.
    """
    try:
        code = main()
    except BrokenPipeError:  # the reader went away (``| head``) before the command had said all
        code = 1
    if _command(None) in LOCAL_COMMANDS:
        sys.exit(code)
    logging.shutdown()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # BrokenPipeError included: the reader went away before the last lines
        code = code or 1
    os._exit(code)
