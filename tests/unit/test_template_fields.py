"""Every operator's and sensor's template fields follow Airflow's rule (the amazon provider's
``validate_template_fields``): each name in ``template_fields`` is a constructor parameter, stored
unchanged under the same attribute name, so what Airflow renders is what ``execute`` reads."""

from __future__ import annotations

import inspect

import pytest

from xacct_map.operators import (
    SOURCE_ARGUMENTS,
    BuildKeyManifestOperator,
    PlanKeyRangesOperator,
    PreflightOperator,
    StartDistributedMapOperator,
)
from xacct_map.sensors import DistributedMapSensor

CLASSES = [
    BuildKeyManifestOperator,
    StartDistributedMapOperator,
    PreflightOperator,
    PlanKeyRangesOperator,
    DistributedMapSensor,
]
SOURCE_READERS = [BuildKeyManifestOperator, PreflightOperator, PlanKeyRangesOperator]


def _constructor_parameters(cls: type) -> set[str]:
    """Keyword parameters of ``cls.__init__`` and of the ``__init__`` of every class it derives from."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for parameter in inspect.signature(init).parameters.values():
            if parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD) and parameter.name != "self":
                names.add(parameter.name)
    return names


def validate_template_fields(operator) -> None:
    """Airflow's rule for ``operator``, instantiated with a distinct value for every template field."""
    parameters = _constructor_parameters(type(operator))
    for field in operator.template_fields:
        assert field in parameters, f"{type(operator).__name__}: template field {field!r} is no constructor parameter"
        assert field in vars(operator), f"{type(operator).__name__}: {field!r} is not stored as an attribute"
        assert getattr(operator, field) == f"<{field}>", (
            f"{type(operator).__name__}: {field!r} is stored changed ({getattr(operator, field)!r}), "
            "so the rendered value is not what was passed"
        )


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_each_template_field_is_a_constructor_parameter_stored_unchanged(cls):
    values = {field: f"<{field}>" for field in cls.template_fields}
    operator = cls(task_id=f"check_{cls.__name__}", **values)
    validate_template_fields(operator)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_every_required_argument_is_templated(cls):
    """A required argument left out of template_fields could not take a param or a Variable."""
    required = {
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.default is p.empty
    }
    assert required <= set(cls.template_fields)


def test_the_rule_catches_a_field_stored_under_another_name():
    class Renamed(StartDistributedMapOperator):
        template_fields = (*StartDistributedMapOperator.template_fields, "label")

        def __init__(self, *, label: str = "", **kwargs):
            super().__init__(**kwargs)
            self.name_label = label

    values = {field: f"<{field}>" for field in Renamed.template_fields}
    with pytest.raises(AssertionError, match="'label' is not stored as an attribute"):
        validate_template_fields(Renamed(task_id="renamed", **values))


@pytest.mark.parametrize("cls", SOURCE_READERS, ids=lambda cls: cls.__name__)
def test_the_shared_source_arguments_stay_in_each_operators_own_signature_and_docstring(cls):
    """Stored by one helper, but named by each operator: what users read (help(), the docs) and what
    Airflow checks ``partial``/``expand`` arguments against."""
    own = inspect.signature(cls.__init__).parameters
    for name in SOURCE_ARGUMENTS:
        assert own[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert name in cls.template_fields and f":param {name}:" in cls.__doc__, name
