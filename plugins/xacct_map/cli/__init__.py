"""The ``xacct-map`` command. Each subcommand lives in its own module with a ``register(subparsers)``
function (``cli/<command>.py``; the local-mode commands ``demo`` and ``airflow`` in ``local/``);
this file only collects them."""

from __future__ import annotations

import argparse
import importlib

# Modules that add a subcommand. Their heavy imports (Airflow, moto) happen inside the command.
COMMAND_MODULES = (
    "xacct_map.local.demo",
    "xacct_map.cli.policy",
    "xacct_map.local.airflow_server",
    "xacct_map.cli.deploy",
    "xacct_map.cli.preflight",
    "xacct_map.cli.manifest",
)


class _Parser(argparse.ArgumentParser):
    """argparse, with a refused option reported on one line (no usage block) and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="xacct-map",
        description="Run an AWS Step Functions Distributed Map over S3 objects of another account or Region.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code (2: an option was refused, before anything ran)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help, or a refused option: argparse has printed why
        return stop.code if isinstance(stop.code, int) else 2
    return int(args.func(args) or 0)
