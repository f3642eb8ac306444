"""``python -m xacct_map.cli``: the same as the ``xacct-map`` command."""

import sys

from xacct_map.cli import main

sys.exit(main())
