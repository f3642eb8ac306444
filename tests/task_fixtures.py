"""Stand-ins for the parts of an Airflow task run that the operators touch (importable by any test)."""

from __future__ import annotations


class FakeTaskInstance:
    """Collects what an operator pushes (extra links) when called outside a DAG run."""

    def __init__(self):
        self.pushed: dict = {}

    def xcom_push(self, key, value, **_):
        self.pushed[key] = value

    def get_first_reschedule_date(self, context):
        return None  # first try: a sensor in reschedule mode starts its timeout clock now
