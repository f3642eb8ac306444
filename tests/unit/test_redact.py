"""botocore's DEBUG lines lose every secret key and session token, and keep everything else."""

from __future__ import annotations

import logging

from xacct_map.core import redact

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "FQoGZXIvYXdzEBYaDMDR1KXcdXwTosCacVuJNoDU0re5cx2C/81c8h4w+AcyRquNKF=="

LINES = [
    f"Response body:\nb'<AssumeRoleResult><Credentials><AccessKeyId>ASIAX</AccessKeyId><SecretAccessKey>{SECRET}"
    f"</SecretAccessKey><SessionToken>{TOKEN}</SessionToken></Credentials></AssumeRoleResult>'",
    f"Sending http request: <AWSPreparedRequest headers={{'X-Amz-Security-Token': b'{TOKEN}', 'Host': 's3'}}>",
    f"CanonicalRequest:\nGET\n/\n\nhost:s3.amazonaws.com\nx-amz-security-token:{TOKEN}\n",
    f'{{"Credentials": {{"AccessKeyId": "ASIAX", "SecretAccessKey": "{SECRET}", "SessionToken": "{TOKEN}"}}}}',
]


def test_every_secret_goes_and_the_rest_stays():
    for line in LINES:
        cleaned = redact.redact(line)
        assert SECRET not in cleaned and TOKEN not in cleaned, cleaned
        assert "***" in cleaned
    assert "ASIAX" in redact.redact(LINES[0]) and "'Host': 's3'" in redact.redact(LINES[1])
    assert redact.redact("ListObjectsV2 s3://bucket/key") == "ListObjectsV2 s3://bucket/key"


def test_the_installed_filter_blanks_botocore_records(caplog):
    redact.install()
    redact.install()  # twice: still one filter
    logger = logging.getLogger("botocore.parsers")
    assert sum(isinstance(f, redact.RedactSecrets) for f in logger.filters) == 1
    with caplog.at_level(logging.DEBUG, logger="botocore.parsers"):
        logger.debug("Response body:\n%r", LINES[0].encode())
    assert caplog.records and SECRET not in caplog.text and TOKEN not in caplog.text
