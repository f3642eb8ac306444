"""The options ``xacct-map demo`` and ``xacct-map airflow`` share: what to seed, which processor to run.

Imports nothing heavy: the command modules register their options when ``xacct-map --help`` runs.
"""

from __future__ import annotations

from pathlib import Path

from xacct_map.cli import options


def add_workload_arguments(parser) -> None:
    """The options ``xacct-map demo`` and ``xacct-map airflow`` share: what to seed, what to run on it."""
    parser.add_argument(
        "--objects",
        type=options.integer(1, 1_000_000),
        default=1000,
        help="objects to seed in the source bucket (default 1000)",
    )
    parser.add_argument(
        "--object-size",
        type=options.integer(1, 100 * 1024 * 1024),
        default=None,
        help="bytes per seeded object (default: 256 B to 4 KiB, varied)",
    )
    parser.add_argument(
        "--source-dir",
        type=options.existing_folder,
        default=None,
        help="seed the source bucket with the files of this folder (keys: their paths under it) instead",
    )
    parser.add_argument(
        "--processor",
        default=None,
        metavar="FILE.py:FUNCTION",
        help="run your function process(obj) on every object, packaged exactly as `xacct-map deploy --processor` "
        "does (default: the built-in SHA-256 processor)",
    )
    parser.add_argument(
        "--processor-requirements", default=None, metavar="REQUIREMENTS.txt", help="pure-Python packages for it"
    )
    parser.add_argument(
        "--processor-env",
        action="append",
        default=None,
        metavar="NAME=VALUE",
        help="an environment variable of the processor function (repeatable)",
    )
    parser.add_argument(
        "--seconds-per-object",
        type=options.number(0),
        default=0.0,
        help="slow the processor down: it sleeps this long after each object (a batch's objects still run "
        "8 at a time), to watch a run's progress, e.g. on the Map runs page (default 0: full speed)",
    )
    parser.add_argument(
        "--child-execution-type",
        choices=("STANDARD", "EXPRESS"),
        default="STANDARD",
        help="the Distributed Map's child workflows (default: %(default)s)",
    )


def workload_kwargs(args) -> dict:
    """:meth:`~xacct_map.local.emulator.LocalAws.deploy` keyword arguments from :func:`add_workload_arguments`."""
    from xacct_map.setup.deploy import ProcessorOptions, parse_environment

    spec, environment = args.processor, parse_environment(args.processor_env)
    if getattr(args, "seconds_per_object", 0):
        if spec:
            raise ValueError("--seconds-per-object slows the built-in processor: leave out --processor")
        spec = f"{Path(__file__).with_name('slow_processor.py')}:process"
        environment = {**environment, "XACCT_MAP_SECONDS_PER_OBJECT": str(args.seconds_per_object)}
    return {
        "objects": args.objects,
        "object_size": args.object_size,
        "source_dir": args.source_dir,
        "processor": ProcessorOptions(
            spec=spec,
            requirements=args.processor_requirements,
            environment=environment,
        ),
        "child_execution_type": args.child_execution_type,
    }
