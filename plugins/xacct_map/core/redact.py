"""Keep AWS secrets out of logs, even at DEBUG.

At DEBUG, botocore logs each response body (an AssumeRole reply holds a secret key and a session
token) and each signed request (its ``X-Amz-Security-Token`` header). Airflow's secrets masker only
knows the secrets of connections, not the credentials a role hands out at run time, so the loggers
that print them get a filter that blanks those values before any handler sees the record.
"""

from __future__ import annotations

import logging
import re

# The loggers that print request headers or response bodies (aiobotocore: the triggers' client).
LEAKY_LOGGERS = (
    "botocore.endpoint",
    "botocore.parsers",
    "botocore.auth",
    "aiobotocore.endpoint",
    "aiobotocore.parsers",
)
_SECRET_FIELDS = "SecretAccessKey|SessionToken|secretAccessKey|sessionToken|secret_key|token"
_PATTERNS = (
    # <SecretAccessKey>...</SecretAccessKey> (STS replies)
    (re.compile(rf"<({_SECRET_FIELDS})>[^<]*</"), r"<\1>***</"),
    # "SecretAccessKey": "..." (JSON replies, dict reprs)
    (re.compile(rf"""(["']({_SECRET_FIELDS})["']\s*:\s*b?["'])[^"']*"""), r"\1***"),
    # 'X-Amz-Security-Token': b'...' (header dicts) and x-amz-security-token:... (canonical requests)
    (re.compile(r"""(x-amz-security-token["']?\s*[:=]\s*b?["']?)[^"',\s}]+""", re.IGNORECASE), r"\1***"),
)


def redact(text: str) -> str:
    """``text`` with every AWS secret key and session token replaced by ``***``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """Rewrites a record's message with :func:`redact` (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def install() -> None:
    """Add the filter to the leaky loggers (once; safe to call again)."""
    for name in LEAKY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
