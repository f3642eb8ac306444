"""Every state machine definition the code can render is valid ASL within Step Functions' limits.

Two checks over each rendering (every ``asl/*.asl.json`` template, every flat format, the edges of
the settings): the npm package ``asl-validator`` (the Amazon States Language schema and its path
rules; installed by ``make asl-validator``, pinned in ``scripts/asl-validator/package-lock.json``),
and :func:`xacct_map.core.limits.map_state_problems` (the numeric limits a schema does not know:
MaxConcurrency 0-10,000, ToleratedFailurePercentage 0-100, MaxInputBytesPerBatch at most 256 KiB).
The validator runs as a subprocess (no sockets). In CI (``CI`` set) a missing validator fails the
test; elsewhere it skips and says how to install it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from xacct_map.core.layouts import DEFAULT_MAX_BATCH_BYTES, MAX_CHILD_INPUT_BYTES, flat_substitutions
from xacct_map.core.limits import map_state_problems
from xacct_map.setup import resources
from xacct_map.setup.deploy import render_definition

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = Path(
    os.environ.get("XACCT_MAP_ASL_VALIDATOR") or ROOT / "scripts/asl-validator/node_modules/.bin/asl-validator"
)
FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:xacct-map-processor"
SETTINGS = [  # (MaxConcurrency, ToleratedFailurePercentage, MaxItemsPerBatch, MaxInputBytesPerBatch)
    (0, 0.0, 1, 1),
    (8, 5.0, 100, DEFAULT_MAX_BATCH_BYTES),
    (10_000, 100.0, 10_000, MAX_CHILD_INPUT_BYTES),
]


def _templates() -> list[Path]:
    return sorted((resources.home() / "asl").glob("*.asl.json"))


def _renderings() -> list[tuple[str, str]]:
    """``(label, definition)`` for every template x format x settings the deploy code can produce."""
    out = []
    for template in _templates():
        placeholders = set(re.findall(r'"\$\{(\w+)\}"', template.read_text()))
        formats = ("json", "jsonl", "csv") if "ReaderConfig" in placeholders else ("json",)
        for (concurrency, tolerance, items, input_bytes), child in zip(
            SETTINGS, ("STANDARD", "EXPRESS", "STANDARD"), strict=True
        ):
            for fmt in formats:
                values = {
                    "ChildExecutionType": child,
                    "ProcessorFunctionArn": FUNCTION,
                    "MaxConcurrency": concurrency,
                    "ToleratedFailurePercentage": tolerance,
                    "ResultsBucket": "xacct-map-inventory",
                    "ResultsPrefix": "xacct-map/results",
                    **flat_substitutions(
                        manifest_format=fmt, max_items_per_batch=items, max_input_bytes_per_batch=input_bytes
                    ),
                }
                missing = placeholders - set(values)
                assert not missing, f"{template.name}: placeholders {missing} have no test value: add them here"
                label = f"{template.name}[{fmt},{child},{concurrency},{tolerance},{items},{input_bytes}]"
                out.append((label, render_definition(template, values)))
    return out


RENDERINGS = _renderings()


def test_the_templates_are_all_rendered():
    assert {t.name for t in _templates()} >= {"distributed_map.asl.json", "distributed_map_flat.asl.json"}
    assert len(RENDERINGS) >= 2 * len(SETTINGS)


@pytest.mark.parametrize("label, definition", RENDERINGS, ids=[label for label, _ in RENDERINGS])
def test_every_rendering_is_within_the_limits(label, definition):
    assert map_state_problems(definition) == [], label


def test_asl_validator_accepts_every_rendering(tmp_path):
    if not VALIDATOR.exists():
        message = f"asl-validator is not installed at {VALIDATOR}: run `make asl-validator` (npm)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    args = [str(VALIDATOR)]
    for i, (_, definition) in enumerate(RENDERINGS):
        path = tmp_path / f"{i}.json"
        path.write_text(definition)
        args += ["--json-path", str(path)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("✓") >= len(RENDERINGS) or "valid" in result.stdout.lower()


def test_asl_validator_refuses_a_broken_definition(tmp_path):
    """The validator is really checking: a Map without its processor's StartAt fails."""
    if not VALIDATOR.exists():
        pytest.skip("asl-validator is not installed: run `make asl-validator`")
    broken = json.loads(RENDERINGS[0][1])
    del broken["States"]["ProcessManifest"]["ItemProcessor"]["StartAt"]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    result = subprocess.run([str(VALIDATOR), "--json-path", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("MaxConcurrency", 10_001, "MaxConcurrency is 10001; Step Functions requires between 0 and 10000"),
        ("MaxConcurrency", -1, "between 0 and 10000"),
        (
            "ToleratedFailurePercentage",
            100.5,
            "ToleratedFailurePercentage is 100.5; Step Functions requires between 0 and 100",
        ),
        ("ToleratedFailureCount", -1, "ToleratedFailureCount is -1"),
        ("MaxConcurrency", "10", None),  # a placeholder or path filled later: not judged here
    ],
)
def test_map_settings_outside_the_limits_are_named(field, value, message):
    doc = json.loads(RENDERINGS[0][1])
    doc["States"]["ProcessManifest"][field] = value
    problems = map_state_problems(doc)
    if message is None:
        assert problems == []
    else:
        assert len(problems) == 1 and message in problems[0] and problems[0].startswith("ProcessManifest:")


def test_batcher_limits_are_checked():
    flat = next(json.loads(d) for label, d in RENDERINGS if label.startswith("distributed_map_flat"))
    flat["States"]["ProcessManifest"]["ItemBatcher"].update(
        MaxItemsPerBatch=0, MaxInputBytesPerBatch=MAX_CHILD_INPUT_BYTES + 1
    )
    problems = map_state_problems(flat)
    assert any("MaxItemsPerBatch is 0" in p for p in problems)
    assert any("MaxInputBytesPerBatch is 262145" in p for p in problems)
