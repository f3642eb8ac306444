"""The ResultWriter as AWS writes it: moto's writes a ``manifest.json`` whose ``ResultFiles`` are empty.

AWS writes each succeeded child's input and output into ``<prefix>/<map run id>/SUCCEEDED_0.json`` (a
JSON array of ``{"ExecutionArn", "Input", "Output", "Status", ...}``) and lists the file in the
``manifest.json``; the sensor reads them to count what the processor reported (objects changed or gone
since the listing). This bridge writes the succeeded outputs the same way (failed items, which moto
leaves as null, are not written: AWS puts them in FAILED files that the counts do not read).
"""

from __future__ import annotations

import json


def install() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval.resource_eval_s3 import (  # noqa: E501
        ResourceEvalS3,
    )

    original = ResourceEvalS3._handle_put_object
    if getattr(original, "_xacct_map_results", False):
        return

    def handle_put_object(env, resource_runtime_part, state_credentials) -> None:
        parameters, results = env.stack[-1], env.stack[-2]
        original(env, resource_runtime_part, state_credentials)
        details = env.stack[-1]["ResultWriterDetails"]
        client = ResourceEvalS3._get_s3_client(
            resource_runtime_part=resource_runtime_part, state_credentials=state_credentials
        )
        manifest = json.loads(client.get_object(Bucket=details["Bucket"], Key=details["Key"])["Body"].read())
        entries = (
            [
                {"Status": "SUCCEEDED", "Output": json.dumps(output), "OutputDetails": {"Included": True}}
                for output in results
                if output is not None
            ]
            if isinstance(results, list)
            else []
        )
        key = details["Key"].rpartition("/")[0] + "/SUCCEEDED_0.json"
        body = json.dumps(entries).encode()
        client.put_object(Bucket=parameters["Bucket"], Key=key, Body=body)
        manifest["ResultFiles"]["SUCCEEDED"] = [{"Key": key, "Size": len(body)}]
        client.put_object(Bucket=details["Bucket"], Key=details["Key"], Body=json.dumps(manifest, indent=2).encode())

    handle_put_object._xacct_map_results = True  # type: ignore[attr-defined]
    ResourceEvalS3._handle_put_object = staticmethod(handle_put_object)  # type: ignore[method-assign,assignment]
