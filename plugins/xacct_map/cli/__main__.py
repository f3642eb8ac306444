"""``python -m xacct_map.cli``: the same as the ``xacct-map`` command."""

from xacct_map.cli import console

console()
