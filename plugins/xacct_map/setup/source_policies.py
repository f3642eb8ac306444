"""The policies of a run over several sources, or over versions: :mod:`xacct_map.setup.policies`' documents
widened to cover every source, and nothing more.

Each source bucket gets its own bucket policy (``source_bucket_policy`` for the first bucket,
``source_bucket_policy:<bucket>`` for each other): ``s3:ListBucket`` for the lister role with an
``s3:prefix`` condition listing that bucket's prefixes, ``s3:GetObject`` for the processor role on each
``bucket/prefix*``. The lister role's policy lists every bucket (one statement each), the processor
role's reads every ``bucket/prefix*``. Sources here share the source account and the lister role; a
source of another account gets its documents from a run of ``xacct-map policy`` for that account (its
bucket policy names this pipeline's processor role all the same).

``versions=True`` (``--versions``/``on_changed`` with VersionIds) adds ``s3:ListBucketVersions`` where
``s3:ListBucket`` is allowed and ``s3:GetObjectVersion`` where ``s3:GetObject`` is: reading a given
version is its own action. (``IfMatch`` with an ETag needs nothing more than ``s3:GetObject``.)
"""

from __future__ import annotations

import copy
from dataclasses import replace

from xacct_map.setup.policies import PolicyInputs, all_documents, check_bucket, check_prefix, source_bucket_policy

_LIST, _GET = "XacctMapListSourceKeys", "XacctMapReadSourceObjects"


def source_documents(inputs: PolicyInputs, sources: list[tuple[str, str]], *, versions: bool = False) -> dict:
    """:func:`~xacct_map.setup.policies.all_documents` for ``inputs`` plus ``sources`` (``(bucket, prefix)``
    pairs in ``inputs.source_account``, read by the same lister role).

    :raises PolicyInputError: a bucket name or prefix that cannot go into a policy.
    """
    prefixes: dict[str, list[str]] = {inputs.source_bucket: [inputs.prefix]}
    for bucket, prefix in sources:
        check_bucket("source bucket", bucket)
        check_prefix("source prefix", prefix)
        prefixes.setdefault(bucket, [])
        if prefix not in prefixes[bucket]:
            prefixes[bucket].append(prefix)
    for bucket, listed in prefixes.items():  # data/ covers data/2026/ (as the listing collapses them)
        prefixes[bucket] = [p for p in listed if not any(p != q and p.startswith(q) for q in listed)]
    documents = all_documents(inputs)
    objects = [inputs.objects_arn(b, p) for b, ps in prefixes.items() for p in ps]
    for name, bucket_prefixes in prefixes.items():
        policy = source_bucket_policy(replace(inputs, source_bucket=name, prefix=bucket_prefixes[0]))
        for statement in policy["Statement"]:
            _widen(statement, inputs, name, bucket_prefixes)
        documents["source_bucket_policy" if name == inputs.source_bucket else f"source_bucket_policy:{name}"] = policy
    for name in ("lister_role_policy", "airflow_role_policy"):
        if name in documents:
            documents[name] = _one_list_statement_per_bucket(documents[name], inputs, prefixes)
    for statement in documents["processor_role_policy"]["Statement"]:
        if statement.get("Sid") == _GET:
            statement["Resource"] = objects if len(objects) > 1 else objects[0]
    if versions:
        _add_version_actions(documents)
    return documents


def _widen(statement: dict, inputs: PolicyInputs, bucket: str, prefixes: list[str]) -> None:
    """A bucket's list or read statement, for every prefix of the bucket."""
    if statement.get("Sid") == _GET:
        arns = [inputs.objects_arn(bucket, p) for p in prefixes]
        statement["Resource"] = arns if len(arns) > 1 else arns[0]
    elif statement.get("Sid", "").startswith(_LIST):
        condition = statement.setdefault("Condition", {})
        like = condition.setdefault("StringLike", {})
        if "" in prefixes:  # the whole bucket: no prefix condition
            like.pop("s3:prefix", None)
        else:
            like["s3:prefix"] = [f"{p}*" for p in prefixes]
        if not like:
            condition.pop("StringLike")
        if not condition:
            statement.pop("Condition")


def _one_list_statement_per_bucket(document: dict, inputs: PolicyInputs, prefixes: dict) -> dict:
    """``document`` with its list statement repeated for each bucket (its own Sid and prefixes)."""
    result = copy.deepcopy(document)
    statements = []
    for statement in result["Statement"]:
        if statement.get("Sid") != _LIST:
            statements.append(statement)
            continue
        for index, (bucket, bucket_prefixes) in enumerate(prefixes.items()):
            one = copy.deepcopy(statement)
            one["Sid"] = _LIST if index == 0 else f"{_LIST}{index + 1}"
            one["Resource"] = inputs.bucket_arn(bucket)
            _widen(one, inputs, bucket, bucket_prefixes)
            statements.append(one)
    result["Statement"] = statements
    return result


def _add_version_actions(documents: dict) -> None:
    for document in documents.values():
        for statement in document.get("Statement", []):
            actions = statement.get("Action")
            if not isinstance(actions, list):
                continue
            if "s3:ListBucket" in actions and "s3:ListBucketVersions" not in actions:
                actions.append("s3:ListBucketVersions")
            if "s3:GetObject" in actions and "s3:GetObjectVersion" not in actions:
                actions.append("s3:GetObjectVersion")
