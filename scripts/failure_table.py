"""The README's "Failure guarantees" table, from the fault-injection suite's cases (tests/faults/fault_cases.py).

    python scripts/failure_table.py           print it
    python scripts/failure_table.py --write   write it into README.md, between its failure-guarantees markers

Standard library only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "faults"))

from fault_cases import README, table, with_table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write it into README.md")
    args = parser.parse_args(argv)
    if args.write:
        README.write_text(with_table(README.read_text()))
    else:
        print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
