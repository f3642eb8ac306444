"""Least-privilege IAM documents for the cross-account setup, generated from a few plain values.

Pure module: no Airflow, no boto3. :class:`PolicyInputs` validates the values (with errors that name
the bad one) and :func:`all_documents` returns every document, keyed by name:

Source account (the one owning the data):

* ``source_bucket_policy``: the bucket policy statements. ``s3:ListBucket`` for the lister role
  (scoped by an ``s3:prefix`` condition when a prefix is given) and ``s3:GetObject`` for the
  processor Lambda's role on ``bucket/prefix*``. A bucket policy cannot carry KMS actions, so:
* ``source_kms_key_policy`` (only with ``kms_key``): the statement to merge into the key policy of
  the bucket's SSE-KMS key, letting the processor role decrypt through S3 only.
* ``lister_role_trust_policy`` / ``lister_role_policy``: the role the Airflow role assumes to list
  the bucket (``sts:ExternalId`` required when ``external_id`` is given). Left out when the
  Airflow role is the lister itself and lists with the bucket policy's grant alone.

Sources other than a plain bucket:

* ``access_point`` (an access point ARN, possibly of another account than the bucket's): the lister
  and processor are granted on the access point (``source_access_point_policy``, its own policy;
  the roles' policies name the access point ARN), and ``source_bucket_policy`` becomes the
  bucket's delegation statements (``s3:DataAccessPointAccount``: requests through the access
  points of that account only).
* a directory bucket (``name--usw2-az1--x-s3``): every request is authorised by
  ``s3express:CreateSession`` (read-only sessions) on the bucket; there is no prefix scoping.
* Requester Pays needs no other permission: the reading account pays.

Pipeline account (the one running Step Functions):

* ``state_machine_role_trust_policy`` / ``state_machine_role_policy``: ItemReader on the manifests,
  ``lambda:InvokeFunction`` on the processor, the Distributed Map child-workflow permissions, and
  with ``result_writer=True`` the ResultWriter permissions (the shipped ASL has a ResultWriter;
  ``xacct-map policy`` and ``xacct-map deploy`` turn them on, the library default is off).
* ``processor_role_trust_policy`` / ``processor_role_policy``: cross-account ``s3:GetObject`` (plus
  ``kms:Decrypt``) and its own log group.
* ``airflow_role_policy``: assume the lister role (or list the bucket itself), write manifests,
  start/describe/stop/redrive the state machine's executions, read their map runs, and describe the
  state machine (read-only, for ``xacct-map preflight``).

Action names and resource types follow the Service Authorization Reference (S3, Step Functions,
Lambda, CloudWatch Logs, KMS, STS) and the Step Functions guide's "IAM policies for using
Distributed Map states".
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass

from xacct_map.core.arns import ROLE_ARN
from xacct_map.core.s3uri import access_point as parse_access_point
from xacct_map.core.s3uri import is_directory_bucket

POLICY_VERSION = "2012-10-17"

# Region prefix -> partition. Only the three public partitions; the isolated ones have other DNS
# suffixes and service principals that this module does not know.
_PARTITION_OF_REGION_PREFIX = (("cn-", "aws-cn"), ("us-gov-", "aws-us-gov"))
_DNS_SUFFIX = {"aws": "amazonaws.com", "aws-cn": "amazonaws.com.cn", "aws-us-gov": "amazonaws.com"}

_ACCOUNT = re.compile(r"^\d{12}$")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d{1,2}$")
# IAM role names: letters, digits and + = , . @ _ - (1-64 characters).
_ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$", re.ASCII)
KMS_KEY_ARN = re.compile(
    r"^arn:(?P<partition>aws|aws-cn|aws-us-gov):kms:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):key/"
    r"(?P<key_id>(?:mrk-)?[0-9a-fA-F-]{32,36})$"
)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
# Step Functions state machine names: 1-80 characters, none of these (nor whitespace/control).
_STATE_MACHINE_FORBIDDEN = re.compile(r"[\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]")
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# An unqualified Lambda function ARN (a version or alias would pin the state machine to it).
_FUNCTION_ARN = re.compile(r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:(\d{12}):function:[A-Za-z0-9_-]{1,64}$")
# sts:ExternalId: 2-1224 characters of [\w+=,.@:/-].
_EXTERNAL_ID = re.compile(r"^[\w+=,.@:/-]{2,1224}$", re.ASCII)


def role_name(role_arn: str | None) -> str:
    """The name of a role ARN: its last path segment ("" for None)."""
    return (role_arn or "").rsplit("/", 1)[-1]


class PolicyInputError(ValueError):
    """A value given to :class:`PolicyInputs` cannot produce a valid policy."""


def partition_for_region(region: str) -> str:
    """The ARN partition of ``region`` (``aws``, ``aws-cn`` or ``aws-us-gov``).

    :raises PolicyInputError: ``region`` is not a Region name or is in an isolated partition.
    """
    if isinstance(region, str) and re.match(r"^[a-z]{2}-iso[a-z]?-[a-z]+-\d{1,2}$", region):
        raise PolicyInputError(f"region {region!r} is in an isolated partition, which is not supported")
    if not isinstance(region, str) or not _REGION.match(region):
        raise PolicyInputError(f"region {region!r} is not a Region name like 'us-east-1' or 'eu-west-3'")
    for prefix, partition in _PARTITION_OF_REGION_PREFIX:
        if region.startswith(prefix):
            return partition
    return "aws"


def check_account(field: str, value: str) -> None:
    if not isinstance(value, str) or not _ACCOUNT.match(value):
        raise PolicyInputError(f"{field} {value!r} is not a 12-digit AWS account id")


def check_bucket(field: str, value: str) -> None:
    """General purpose bucket naming rules (length, alphabet, no IP form, reserved affixes)."""
    problem = None
    if not isinstance(value, str) or not _BUCKET.match(value):
        problem = "3-63 lowercase letters, digits, dots or hyphens, starting and ending with a letter or digit"
    elif ".." in value:
        problem = "no two adjacent dots"
    elif value.startswith(_BUCKET_RESERVED_PREFIXES) or value.endswith(_BUCKET_RESERVED_SUFFIXES):
        problem = "no reserved prefix or suffix (xn--, sthree-, -s3alias, --ol-s3, ...)"
    else:
        try:
            ipaddress.IPv4Address(value)
            problem = "not formatted as an IP address"
        except ValueError:
            pass
    if problem:
        raise PolicyInputError(f"{field} {value!r} is not a valid S3 bucket name: {problem}")


def check_prefix(field: str, value: str) -> None:
    # '*', '?' are wildcards in ARNs and StringLike, '${' starts a policy variable: a prefix
    # holding them would grant more (or other) keys than the caller meant.
    if not isinstance(value, str):
        raise PolicyInputError(f"{field} {value!r} must be a string")
    for bad in ("*", "?", "${"):
        if bad in value:
            raise PolicyInputError(
                f"{field} {value!r} contains {bad!r}, which IAM would read as a wildcard or variable"
            )
    if len(value.encode()) > 1024:
        raise PolicyInputError(f"{field} {value!r} is longer than an S3 key (1024 bytes)")


@dataclass(frozen=True)
class PolicyInputs:
    """The values every document is generated from; validated on construction.

    Role fields take a role name or a role ARN. A name is placed in the account the role belongs
    to: the lister role in the source account (the Airflow role assumes it), the processor and
    Airflow roles in the pipeline account. An ARN may also put the lister role in the pipeline
    account, where the bucket policy's ``s3:ListBucket`` statement is what grants it access; the
    Airflow role's own ARN there means the Airflow role lists the bucket itself and assumes nothing.

    :param source_bucket: the bucket holding the data, in ``source_account``.
    :param source_account: 12-digit id of the account owning ``source_bucket``.
    :param pipeline_account: 12-digit id of the account running Airflow's role, the state machine
        and the processor Lambda.
    :param inventory_bucket: the pipeline account's bucket for manifests (and map-run results).
    :param prefix: only keys starting with it are listed and read ("" for the whole bucket).
    :param lister_role: the role listing ``source_bucket``.
    :param processor_role: the processor Lambda's execution role.
    :param airflow_role: the role Airflow's AWS connection uses in the pipeline account.
    :param kms_key: ARN of the SSE-KMS key of ``source_bucket``, if it uses one.
    :param region: the pipeline Region (state machine, Lambda, logs).
    :param source_region: the Region of ``source_bucket`` (defaults to ``region``).
    :param inventory_prefix: the key prefix in ``inventory_bucket`` owned by xacct-map; manifests
        go under ``<inventory_prefix>manifests/``, results under ``<inventory_prefix>results/``.
    :param state_machine: the state machine's name.
    :param function: the processor Lambda's function name.
    :param external_id: the ``sts:ExternalId`` the lister role's trust policy requires.
    :param result_writer: whether the state machine writes map-run results (a ResultWriter under
        ``<inventory_prefix>results/``); off by default.
    :param processor_arn: an existing Lambda function (unqualified ARN) the state machine invokes instead
        of ``function`` (``xacct-map deploy --processor-arn``): the state machine role may invoke it.
    :param state_machine_role: the state machine's execution role (pipeline account); named here so
        ``xacct-map deploy`` creates it and ``xacct-map preflight`` checks the state machine uses it.
    :param access_point: the ARN of the access point the source is read through (its alias cannot
        appear in a policy: give the ARN); it may belong to another account than ``source_account``.
    """

    source_bucket: str
    source_account: str
    pipeline_account: str
    inventory_bucket: str
    prefix: str = ""
    lister_role: str = "xacct-map-lister"
    processor_role: str = "xacct-map-processor"
    airflow_role: str = "xacct-map-airflow"
    kms_key: str | None = None
    region: str = "us-east-1"
    source_region: str | None = None
    inventory_prefix: str = "xacct-map/"
    state_machine: str = "xacct-map-distributed-map"
    function: str = "xacct-map-processor"
    external_id: str | None = None
    result_writer: bool = False
    state_machine_role: str = "xacct-map-state-machine"
    processor_arn: str | None = None
    access_point: str | None = None

    def __post_init__(self) -> None:
        directory = is_directory_bucket(self.source_bucket)
        check_bucket("source_bucket", self.source_bucket.split("--")[0] if directory else self.source_bucket)
        check_bucket("inventory_bucket", self.inventory_bucket)
        check_account("source_account", self.source_account)
        check_account("pipeline_account", self.pipeline_account)
        check_prefix("prefix", self.prefix)
        check_prefix("inventory_prefix", self.inventory_prefix)
        if self.inventory_prefix and not self.inventory_prefix.endswith("/"):
            raise PolicyInputError(
                f"inventory_prefix {self.inventory_prefix!r} must end with '/' so it names a folder of its own"
            )
        partition = partition_for_region(self.region)
        if self.source_region is not None and partition_for_region(self.source_region) != partition:
            raise PolicyInputError(
                f"source_region {self.source_region!r} is in another partition than region {self.region!r}: "
                "IAM principals cannot cross partitions"
            )
        if not isinstance(self.state_machine, str) or not 1 <= len(self.state_machine) <= 80:
            raise PolicyInputError(f"state_machine {self.state_machine!r} must be 1-80 characters")
        if _STATE_MACHINE_FORBIDDEN.search(self.state_machine):
            raise PolicyInputError(
                f"state_machine {self.state_machine!r} contains whitespace or a character Step Functions "
                'forbids in names (< > {{ }} [ ] ? * " # % \\ ^ | ~ ` $ & , ; : /)'
            )
        if not isinstance(self.function, str) or not _FUNCTION_NAME.match(self.function):
            raise PolicyInputError(
                f"function {self.function!r} is not a Lambda function name (1-64 letters, digits, '-' or '_'; "
                "give the name, not the ARN)"
            )
        if self.processor_arn is not None and not _FUNCTION_ARN.match(self.processor_arn):
            raise PolicyInputError(
                f"processor_arn {self.processor_arn!r} is not an unqualified Lambda function ARN "
                "(arn:aws:lambda:REGION:ACCOUNT:function:NAME, no version or alias)"
            )
        if self.external_id is not None and not _EXTERNAL_ID.match(self.external_id):
            raise PolicyInputError(
                f"external_id {self.external_id!r} must be 2-1224 characters of letters, digits and +=,.@:/-_"
            )
        lister = self.lister_role_arn
        if self._account_of("lister_role", lister) not in (self.source_account, self.pipeline_account):
            raise PolicyInputError(
                f"lister_role {self.lister_role!r} belongs to neither source_account {self.source_account} "
                f"nor pipeline_account {self.pipeline_account}"
            )
        for field, arn in (
            ("processor_role", self.processor_role_arn),
            ("airflow_role", self.airflow_role_arn),
            ("state_machine_role", self.state_machine_role_arn),
        ):
            if self._account_of(field, arn) != self.pipeline_account:
                raise PolicyInputError(
                    f"{field} {getattr(self, field)!r} must be a role of pipeline_account {self.pipeline_account}"
                )
        if self.processor_role_arn in (lister, self.airflow_role_arn):
            raise PolicyInputError(
                f"processor_role {self.processor_role!r} is also the lister or the Airflow role; the Lambda needs a "
                "role of its own (its trust policy names lambda.amazonaws.com)"
            )
        if self.external_id is not None and self.lists_directly:
            raise PolicyInputError(
                f"external_id {self.external_id!r} is given, but lister_role is the Airflow role itself: no role is "
                "assumed, so no trust policy could require it"
            )
        if self.kms_key is not None:
            self._check_kms_key()
        if self.access_point is not None:
            self._check_access_point(directory)

    # -- derived values ------------------------------------------------------------------------

    @property
    def partition(self) -> str:
        """The ARN partition of both accounts' resources (from ``region``)."""
        return partition_for_region(self.region)

    @property
    def bucket_region(self) -> str:
        """The Region of ``source_bucket``."""
        return self.source_region or self.region

    @property
    def lister_role_arn(self) -> str:
        return self._role_arn("lister_role", self.lister_role, self.source_account)

    @property
    def processor_role_arn(self) -> str:
        return self._role_arn("processor_role", self.processor_role, self.pipeline_account)

    @property
    def airflow_role_arn(self) -> str:
        return self._role_arn("airflow_role", self.airflow_role, self.pipeline_account)

    @property
    def state_machine_role_arn(self) -> str:
        return self._role_arn("state_machine_role", self.state_machine_role, self.pipeline_account)

    @property
    def lists_directly(self) -> bool:
        """The Airflow role lists the bucket itself (granted by the bucket policy), assuming no role."""
        return self.lister_role_arn == self.airflow_role_arn

    @property
    def manifest_prefix(self) -> str:
        """Where manifests are written (``naming.manifest_key``'s default is ``xacct-map/manifests``)."""
        return f"{self.inventory_prefix}manifests/"

    @property
    def results_prefix(self) -> str:
        """Where the Distributed Map's ResultWriter writes."""
        return f"{self.inventory_prefix}results/"

    @property
    def state_machine_arn(self) -> str:
        return f"arn:{self.partition}:states:{self.region}:{self.pipeline_account}:stateMachine:{self.state_machine}"

    @property
    def executions_arn(self) -> str:
        """Every execution of the state machine (``execution:<name>:<id>``)."""
        return f"arn:{self.partition}:states:{self.region}:{self.pipeline_account}:execution:{self.state_machine}:*"

    @property
    def child_executions_arn(self) -> str:
        """Every Distributed Map child workflow (``execution:<name>/<map run label>:<id>``)."""
        return f"arn:{self.partition}:states:{self.region}:{self.pipeline_account}:execution:{self.state_machine}/*"

    @property
    def map_runs_arn(self) -> str:
        """Every map run of the state machine (``mapRun:<name>/<map run label>:<id>``)."""
        return f"arn:{self.partition}:states:{self.region}:{self.pipeline_account}:mapRun:{self.state_machine}/*:*"

    @property
    def function_arn(self) -> str:
        """The processor the state machine invokes: ``processor_arn``, else ``function`` in this account."""
        if self.processor_arn:
            return self.processor_arn
        return f"arn:{self.partition}:lambda:{self.region}:{self.pipeline_account}:function:{self.function}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function}"

    def bucket_arn(self, bucket: str) -> str:
        return f"arn:{self.partition}:s3:::{bucket}"

    @property
    def directory_bucket(self) -> bool:
        """``source_bucket`` is a directory bucket (S3 Express One Zone)."""
        return is_directory_bucket(self.source_bucket)

    @property
    def express_bucket_arn(self) -> str:
        """A directory bucket's ARN (service ``s3express``), what CreateSession is authorised on."""
        return f"arn:{self.partition}:s3express:{self.bucket_region}:{self.source_account}:bucket/{self.source_bucket}"

    @property
    def access_point_account(self) -> str | None:
        point = parse_access_point(self.access_point or "")
        return point.account if point else None

    @property
    def source_list_arn(self) -> str:
        """What s3:ListBucket is granted on: the access point, else the bucket."""
        return self.access_point or self.bucket_arn(self.source_bucket)

    @property
    def source_objects_arn(self) -> str:
        """What s3:GetObject is granted on: the access point's ``object/prefix*``, else the bucket's."""
        if self.access_point:
            return f"{self.access_point}/object/{self.prefix}*"
        return self.objects_arn(self.source_bucket, self.prefix)

    def objects_arn(self, bucket: str, prefix: str) -> str:
        return f"arn:{self.partition}:s3:::{bucket}/{prefix}*"

    # -- helpers -------------------------------------------------------------------------------

    def _role_arn(self, field: str, value: str, default_account: str) -> str:
        if not isinstance(value, str):
            raise PolicyInputError(f"{field} {value!r} must be a role name or a role ARN")
        if value.startswith("arn:"):
            # Role paths may hold '*', '?' and '$', which would turn a Resource into a wildcard.
            match = None if any(c in value for c in "*?$") else ROLE_ARN.match(value)
            if not match:
                raise PolicyInputError(
                    f"{field} {value!r} is not a role ARN (arn:<partition>:iam::<12-digit account>:role/<name>)"
                )
            if match["partition"] != self.partition:
                raise PolicyInputError(
                    f"{field} {value!r} is in partition {match['partition']!r}, but region {self.region!r} is in "
                    f"{self.partition!r}"
                )
            return value
        if not _ROLE_NAME.match(value):
            raise PolicyInputError(
                f"{field} {value!r} is neither a role name (1-64 letters, digits or +=,.@_-) nor a role ARN"
            )
        return f"arn:{self.partition}:iam::{default_account}:role/{value}"

    @staticmethod
    def _account_of(field: str, role_arn: str) -> str:
        match = ROLE_ARN.match(role_arn)
        if not match:  # unreachable after _role_arn; keeps the error explicit
            raise PolicyInputError(f"{field} {role_arn!r} is not a role ARN")
        return match["account"]

    def _check_access_point(self, directory: bool) -> None:
        point = parse_access_point(self.access_point or "")
        if point is None or point.arn != self.access_point:
            raise PolicyInputError(
                f"access_point {self.access_point!r} is not an access point ARN "
                "(arn:<partition>:s3:<region>:<account>:accesspoint/<name>; give the ARN, not the alias)"
            )
        if point.partition != self.partition or point.region != self.bucket_region:
            raise PolicyInputError(
                f"access_point {self.access_point!r} is not in {self.partition}/{self.bucket_region}, the bucket's "
                "Region: an access point is in its bucket's Region"
            )
        if directory:
            raise PolicyInputError(
                f"access_point is given for directory bucket {self.source_bucket!r}: give the bucket or a regional "
                "access point of a general purpose bucket"
            )

    def _check_kms_key(self) -> None:
        key = self.kms_key
        match = KMS_KEY_ARN.match(key) if isinstance(key, str) else None
        if not match:
            hint = (
                " (an alias cannot be used: IAM and key policies authorize the key ARN)" if "alias/" in str(key) else ""
            )
            raise PolicyInputError(
                f"kms_key {key!r} is not a KMS key ARN (arn:<partition>:kms:<region>:<account>:key/<key id>){hint}"
            )
        if match["partition"] != self.partition:
            raise PolicyInputError(f"kms_key {key!r} is not in partition {self.partition!r}")
        if match["account"] != self.source_account:
            raise PolicyInputError(
                f"kms_key {key!r} belongs to account {match['account']}, not to source_account {self.source_account} "
                "that owns the bucket"
            )
        if match["region"] != self.bucket_region:
            raise PolicyInputError(
                f"kms_key {key!r} is in Region {match['region']}, but the source bucket is in {self.bucket_region}: "
                "S3 only uses keys of the bucket's Region"
            )


# -- documents ---------------------------------------------------------------------------------


def _document(*statements: dict) -> dict:
    return {"Version": POLICY_VERSION, "Statement": list(statements)}


def _statement(
    sid: str,
    actions: list[str],
    resources: list[str] | str,
    *,
    principal: dict | None = None,
    condition: dict | None = None,
) -> dict:
    statement: dict = {"Sid": sid, "Effect": "Allow"}
    if principal:  # resource-based policies (bucket, key) name who is allowed
        statement["Principal"] = principal
    statement["Action"] = actions
    statement["Resource"] = resources
    if condition:
        statement["Condition"] = condition
    return statement


def _list_condition(inputs: PolicyInputs) -> dict:
    # Without a prefix the role may list the whole bucket; with one, a ListObjects request must ask
    # for keys under it (a request without Prefix has no s3:prefix and is denied).
    return {"StringLike": {"s3:prefix": [f"{inputs.prefix}*"]}} if inputs.prefix else {}


def _via_s3_condition(inputs: PolicyInputs) -> dict:
    # The key may only be used by S3 in the bucket's Region on behalf of the pipeline account, not
    # to decrypt arbitrary ciphertext handed to KMS directly.
    return {
        "StringEquals": {
            "kms:ViaService": f"s3.{inputs.bucket_region}.{_DNS_SUFFIX[inputs.partition]}",
            "kms:CallerAccount": inputs.pipeline_account,
        }
    }


def _express_session(sid: str, inputs: PolicyInputs, principal: str | None = None) -> dict:
    # Directory buckets authorise each session, not each request: read-only sessions list and read.
    return _statement(
        sid,
        ["s3express:CreateSession"],
        inputs.express_bucket_arn,
        principal={"AWS": principal} if principal else None,
        condition={"StringEquals": {"s3express:SessionMode": "ReadOnly"}},
    )


def _delegation_policy(inputs: PolicyInputs) -> dict:
    """The bucket policy of a bucket read through an access point: the same grants, delegated to the
    access points of the access point's account (``s3:DataAccessPointAccount``); the access point's
    own policy says who may do what."""
    through = {"StringEquals": {"s3:DataAccessPointAccount": inputs.access_point_account}}
    return _document(
        _statement(
            "XacctMapDelegateListToAccessPoint",
            ["s3:ListBucket"],
            inputs.bucket_arn(inputs.source_bucket),
            principal={"AWS": inputs.lister_role_arn},
            condition=through,
        ),
        _statement(
            "XacctMapDelegateReadToAccessPoint",
            ["s3:GetObject"],
            inputs.objects_arn(inputs.source_bucket, inputs.prefix),
            principal={"AWS": inputs.processor_role_arn},
            condition=through,
        ),
    )


def source_access_point_policy(inputs: PolicyInputs) -> dict:
    """The access point's policy (``aws s3control put-access-point-policy``, in the access point's account)."""
    secure_transport = {"Bool": {"aws:SecureTransport": "true"}}
    return _document(
        _statement(
            "XacctMapListSourceKeys",
            ["s3:ListBucket"],
            inputs.source_list_arn,
            principal={"AWS": inputs.lister_role_arn},
            condition={**secure_transport, **_list_condition(inputs)},
        ),
        _statement(
            "XacctMapReadSourceObjects",
            ["s3:GetObject"],
            inputs.source_objects_arn,
            principal={"AWS": inputs.processor_role_arn},
            condition=secure_transport,
        ),
    )


def source_bucket_policy(inputs: PolicyInputs) -> dict:
    """Statements for ``source_bucket``'s bucket policy (source account).

    ``put-bucket-policy`` replaces the whole policy: merge these statements into the existing one.
    Through an access point: the delegation statements; a directory bucket: read-only sessions.
    """
    if inputs.access_point:
        return _delegation_policy(inputs)
    if inputs.directory_bucket:
        return _document(
            _express_session("XacctMapListSourceKeys", inputs, inputs.lister_role_arn),
            _express_session("XacctMapReadSourceObjects", inputs, inputs.processor_role_arn),
        )
    secure_transport = {"Bool": {"aws:SecureTransport": "true"}}
    list_statement = _statement(
        "XacctMapListSourceKeys",
        ["s3:ListBucket"],
        inputs.bucket_arn(inputs.source_bucket),
        principal={"AWS": inputs.lister_role_arn},
        condition={**secure_transport, **_list_condition(inputs)},
    )
    get_statement = _statement(
        "XacctMapReadSourceObjects",
        ["s3:GetObject"],
        inputs.objects_arn(inputs.source_bucket, inputs.prefix),
        principal={"AWS": inputs.processor_role_arn},
        condition=secure_transport,
    )
    return _document(list_statement, get_statement)


def source_kms_key_policy(inputs: PolicyInputs) -> dict:
    """The statement to merge into the source bucket's KMS key policy (source account).

    In a key policy ``"Resource": "*"`` means "this key" (the policy is attached to exactly one key);
    the principal and the conditions are what scope it.
    """
    if inputs.kms_key is None:
        raise PolicyInputError("kms_key is not set: the source bucket's key policy needs no statement")
    return _document(
        _statement(
            "XacctMapProcessorDecryptViaS3",
            ["kms:Decrypt"],
            "*",
            principal={"AWS": inputs.processor_role_arn},
            condition=_via_s3_condition(inputs),
        )
    )


def lister_role_trust_policy(inputs: PolicyInputs) -> dict:
    """Trust policy of the lister role: only the Airflow role may assume it (with the ExternalId)."""
    statement = {
        "Sid": "XacctMapAirflowAssumesLister",
        "Effect": "Allow",
        "Principal": {"AWS": inputs.airflow_role_arn},
        "Action": "sts:AssumeRole",
    }
    if inputs.external_id:
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": inputs.external_id}}
    return _document(statement)


def lister_role_policy(inputs: PolicyInputs) -> dict:
    """Permissions of the lister role: list ``source_bucket`` (under ``prefix``) and nothing else."""
    if inputs.directory_bucket:
        return _document(_express_session("XacctMapListSourceKeys", inputs))
    statement = _statement("XacctMapListSourceKeys", ["s3:ListBucket"], inputs.source_list_arn)
    if condition := _list_condition(inputs):
        statement["Condition"] = condition
    return _document(statement)


def state_machine_role_trust_policy(inputs: PolicyInputs) -> dict:
    """Trust policy of the state machine's role: Step Functions, for this account's state machine."""
    return _document(
        {
            "Sid": "XacctMapStepFunctionsAssumesRole",
            "Effect": "Allow",
            "Principal": {"Service": "states.amazonaws.com"},
            "Action": "sts:AssumeRole",
            # Confused-deputy guard: only on behalf of this account's state machine.
            "Condition": {
                "StringEquals": {"aws:SourceAccount": inputs.pipeline_account},
                "ArnLike": {"aws:SourceArn": inputs.state_machine_arn},
            },
        }
    )


def state_machine_role_policy(inputs: PolicyInputs) -> dict:
    """Permissions of the state machine's role (pipeline account).

    Distributed Map child workflows are executions of the state machine itself, so the role
    starts executions of its own state machine and describes/stops them; redriving a map run
    redrives its child workflows (``execution:<name>/<label>:<id>``).
    """
    statements = [
        _statement(
            "XacctMapReadManifests",
            ["s3:GetObject"],
            inputs.objects_arn(inputs.inventory_bucket, inputs.manifest_prefix),
        ),
        _statement(
            "XacctMapInvokeProcessor",
            ["lambda:InvokeFunction"],
            [inputs.function_arn, f"{inputs.function_arn}:*"],
        ),
        _statement("XacctMapStartChildWorkflows", ["states:StartExecution"], inputs.state_machine_arn),
        _statement(
            "XacctMapManageChildWorkflows",
            ["states:DescribeExecution", "states:StopExecution"],
            [inputs.executions_arn, inputs.child_executions_arn],
        ),
        _statement("XacctMapRedriveChildWorkflows", ["states:RedriveExecution"], inputs.child_executions_arn),
    ]
    if inputs.result_writer:
        statements.append(
            _statement(
                "XacctMapWriteMapRunResults",
                ["s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"],
                inputs.objects_arn(inputs.inventory_bucket, inputs.results_prefix),
            )
        )
    return _document(*statements)


def processor_role_trust_policy(inputs: PolicyInputs) -> dict:
    """Trust policy of the processor Lambda's execution role."""
    return _document(
        {
            "Sid": "XacctMapLambdaAssumesRole",
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    )


def processor_role_policy(inputs: PolicyInputs) -> dict:
    """Permissions of the processor Lambda's role: read source objects, write its own logs.

    Cross-account access needs both this identity policy and the source bucket policy (and, with
    SSE-KMS, the key policy statement).
    """
    statements = [
        _express_session("XacctMapReadSourceObjects", inputs)
        if inputs.directory_bucket
        else _statement("XacctMapReadSourceObjects", ["s3:GetObject"], inputs.source_objects_arn)
    ]
    if inputs.kms_key:
        statements.append(
            _statement(
                "XacctMapDecryptSourceObjects", ["kms:Decrypt"], inputs.kms_key, condition=_via_s3_condition(inputs)
            )
        )
    log_group = (
        f"arn:{inputs.partition}:logs:{inputs.region}:{inputs.pipeline_account}:log-group:{inputs.log_group_name}"
    )
    statements.append(
        _statement(
            "XacctMapWriteOwnLogs",
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            f"{log_group}:log-stream:*",
        )
    )
    return _document(*statements)


def airflow_role_policy(inputs: PolicyInputs) -> dict:
    """Permissions of the Airflow role (pipeline account).

    It assumes the lister role, or, when it is the lister itself (:attr:`PolicyInputs.lists_directly`),
    lists the source bucket with its own credentials.
    """
    if inputs.lists_directly:
        source_access = lister_role_policy(inputs)["Statement"][0]
    else:
        source_access = _statement("XacctMapAssumeLister", ["sts:AssumeRole"], inputs.lister_role_arn)
    return _document(
        source_access,
        # GetObject: HeadObject tells a CompleteMultipartUpload whose answer was lost from one that failed;
        # DeleteObject: a manifest whose metadata sidecar could not be written is deleted again.
        _statement(
            "XacctMapWriteManifests",
            [
                "s3:PutObject",
                "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts",
                "s3:GetObject",
                "s3:DeleteObject",
            ],
            inputs.objects_arn(inputs.inventory_bucket, inputs.manifest_prefix),
        ),
        # Uploads of a manifest's key left open by an earlier, killed try are aborted by the next one.
        _statement(
            "XacctMapFindOpenManifestUploads",
            ["s3:ListBucketMultipartUploads"],
            inputs.bucket_arn(inputs.inventory_bucket),
        ),
        _statement("XacctMapStartExecution", ["states:StartExecution"], inputs.state_machine_arn),
        _statement(
            "XacctMapManageExecutions",
            ["states:DescribeExecution", "states:StopExecution", "states:RedriveExecution"],
            inputs.executions_arn,
        ),
        # ListMapRuns is authorized on the execution whose map runs it lists.
        _statement("XacctMapListMapRuns", ["states:ListMapRuns"], inputs.executions_arn),
        _statement("XacctMapDescribeMapRuns", ["states:DescribeMapRun"], inputs.map_runs_arn),
        # Read-only: `xacct-map preflight` checks the state machine exists and runs as the right role.
        _statement("XacctMapDescribeStateMachine", ["states:DescribeStateMachine"], inputs.state_machine_arn),
    )


def processor_preflight_trust_statement(inputs: PolicyInputs, principal_arn: str) -> dict:
    """An optional trust statement letting ``principal_arn`` assume the processor role.

    Only ``xacct-map preflight``'s "the processor can read an object" check needs it (the processor's
    own trust names Lambda alone). Add it to the processor role's trust policy while checking, and
    remove it afterwards: whoever may assume the role may read the source objects.
    """
    return {
        "Sid": "XacctMapPreflightAssumesProcessor",
        "Effect": "Allow",
        "Principal": {"AWS": principal_arn},
        "Action": "sts:AssumeRole",
    }


def find_statement(document: dict, sid: str) -> dict:
    """The statement ``sid`` of ``document``; ``KeyError`` naming the Sid when it has none."""
    for statement in document["Statement"]:
        if statement.get("Sid") == sid:
            return statement
    raise KeyError(f"no statement {sid!r} in the document")


# Document name -> (account it goes to, how it is applied).
DOCUMENT_TARGETS: dict[str, tuple[str, str]] = {
    "source_bucket_policy": ("source", "merge into the bucket policy (aws s3api put-bucket-policy replaces it)"),
    "source_kms_key_policy": ("source", "merge into the KMS key policy (aws kms put-key-policy replaces it)"),
    "source_access_point_policy": (
        "access point",
        "the access point's policy, in the access point's account (aws s3control put-access-point-policy)",
    ),
    "lister_role_trust_policy": ("source", "the lister role's trust policy (aws iam update-assume-role-policy)"),
    "lister_role_policy": ("source", "inline policy of the lister role (aws iam put-role-policy)"),
    "state_machine_role_trust_policy": ("pipeline", "the state machine role's trust policy"),
    "state_machine_role_policy": ("pipeline", "inline policy of the state machine role (aws iam put-role-policy)"),
    "processor_role_trust_policy": ("pipeline", "the processor Lambda role's trust policy"),
    "processor_role_policy": ("pipeline", "inline policy of the processor Lambda role (aws iam put-role-policy)"),
    "airflow_role_policy": ("pipeline", "inline policy of the Airflow role (aws iam put-role-policy)"),
}


def all_documents(inputs: PolicyInputs) -> dict[str, dict]:
    """Every document for ``inputs``, keyed by the names of :data:`DOCUMENT_TARGETS`.

    ``source_kms_key_policy`` is present only when ``inputs.kms_key`` is set; the lister role's two
    documents only when the lister is a role of its own (not the Airflow role listing directly).
    """
    documents = {"source_bucket_policy": source_bucket_policy(inputs)}
    if inputs.access_point:
        documents["source_access_point_policy"] = source_access_point_policy(inputs)
    if not inputs.lists_directly:
        documents["lister_role_trust_policy"] = lister_role_trust_policy(inputs)
        documents["lister_role_policy"] = lister_role_policy(inputs)
    documents |= {
        "state_machine_role_trust_policy": state_machine_role_trust_policy(inputs),
        "state_machine_role_policy": state_machine_role_policy(inputs),
        "processor_role_trust_policy": processor_role_trust_policy(inputs),
        "processor_role_policy": processor_role_policy(inputs),
        "airflow_role_policy": airflow_role_policy(inputs),
    }
    if inputs.kms_key:
        documents["source_kms_key_policy"] = source_kms_key_policy(inputs)
    return documents


def render(documents: dict, *, indent: int | None = 2) -> str:
    """JSON text of a document (or of a name -> document mapping), keys in generation order."""
    return json.dumps(documents, indent=indent)
