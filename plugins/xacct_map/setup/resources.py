"""The files the commands need beside the code: the state machine definitions (``asl/``), the
processor Lambda (``functions/processor/``) and the ready-made DAG (``dags/``).

The repository's top-level folders are their single source. The wheel and the sdist carry copies
under ``xacct_map/_bundled/`` (pyproject.toml's ``force-include``), so an installed package finds them
wherever it runs; an editable install from a checkout reads the checkout's folders. Set
``XACCT_MAP_HOME`` to a folder of your own with the same layout (``asl/``, ``functions/``, ``dags/``)
to deploy edited definitions.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # xacct_map/setup/resources.py -> xacct_map
_BUNDLED = _PACKAGE_DIR / "_bundled"
_CHECKOUT = _PACKAGE_DIR.parents[1]  # plugins/xacct_map -> the repository root


def home() -> Path:
    """The folder that holds ``asl/``, ``functions/`` and ``dags/``.

    ``XACCT_MAP_HOME`` if set; else the copy inside the installed package; else (an editable
    install) the checkout the package lives in. Raises ``FileNotFoundError`` naming every place
    looked at when none holds the definitions.
    """
    override = os.environ.get("XACCT_MAP_HOME")
    candidates = [Path(override)] if override else [_BUNDLED, _CHECKOUT]
    for folder in candidates:
        if (folder / "asl").is_dir():
            return folder
    where = " or ".join(str(folder / "asl") for folder in candidates)
    hint = (
        "unset XACCT_MAP_HOME or point it at a folder with asl/, functions/ and dags/"
        if override
        else ("reinstall the package (pip install --force-reinstall xacct-map)")
    )
    raise FileNotFoundError(f"xacct-map's state machine definitions are not in {where}: {hint}")


def asl_path(layout: str = "batched") -> Path:
    """The ASL template of a manifest layout: ``batched`` (items are batches) or ``flat`` (ItemBatcher)."""
    name = "distributed_map_flat.asl.json" if layout == "flat" else "distributed_map.asl.json"
    return home() / "asl" / name


def processor_dir() -> Path:
    """The processor Lambda's code, deployed as-is."""
    return home() / "functions" / "processor"


def processor_sdk_dir() -> Path:
    """The processor SDK's files (``xacct_map/processor/``), zipped into every processor Lambda."""
    return _PACKAGE_DIR / "processor"


def examples_dir() -> Path:
    """The example processors (``examples/``): ``xacct-map demo --processor <examples>/copy_objects.py:process``."""
    return home() / "examples"


def dags_dir() -> Path:
    """The folder holding the ready-made DAG ``xacct_distributed_map``."""
    return home() / "dags"


def plugins_dir() -> Path | None:
    """The checkout's ``plugins/`` for a local Airflow, or None for an installed package (whose UI
    plugin Airflow finds through the ``airflow.plugins`` entry point)."""
    folder = _PACKAGE_DIR.parent
    return folder if folder.name == "plugins" and (_CHECKOUT / "asl").is_dir() else None
