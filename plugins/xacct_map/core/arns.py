"""The shape of the identifiers the package checks (import-light: the policy command uses it too)."""

from __future__ import annotations

import re

#: An IAM role ARN in any partition, with an optional path: groups partition, account, path, name.
ROLE_ARN = re.compile(
    r"^arn:(?P<partition>aws|aws-cn|aws-us-gov):iam::(?P<account>\d{12}):role/"
    r"(?P<path>(?:[\x21-\x7e]+/)*)(?P<name>[\w+=,.@-]{1,64})$",
    re.ASCII,
)
