"""A stand-in for Amazon Data Lifecycle Manager under the tests that launch on moto for other reasons.

moto has no DLM, and the real service is out of reach: every `launch` on moto reconciles the
platform's snapshot policy, so these tests need DLM calls that answer. The stand-in hooks a real
boto3 `dlm` client the way botocore's Stubber does (`before-call`): botocore has already checked
each request against the service model when it runs, and each answer is checked against the
operation's output shape as Stubber checks its queued responses. It keeps the policies in memory,
per test. What DLM does with a policy (snapshots on a schedule) it does not do: the DLM behaviour
itself is tested with the Stubber in tests/test_snapshot_policy.py.
"""

from __future__ import annotations

import copy
import itertools
import json
from datetime import datetime, timezone

from botocore.awsrequest import AWSResponse
from botocore.validate import validate_parameters

ACCOUNT = "123456789012"


class DlmStandin:
    def __init__(self):
        self.policies: dict[str, dict] = {}
        self.calls: list[str] = []
        self._ids = itertools.count(1)

    def attach(self, client) -> None:
        client.meta.events.register_first("before-call.dlm.*", self._answer)

    def _answer(self, model, params, **_):
        body = json.loads(params["body"]) if params.get("body") else {}  # as serialized for the wire
        path = params.get("url_path", "")
        self.calls.append(model.name)
        handler = getattr(self, f"_{model.name}", None)
        if handler is None:
            raise NotImplementedError(f"the DLM stand-in does not answer {model.name}")
        status, parsed = handler(body, path, params.get("query_string", {}))
        if status == 200 and model.output_shape is not None:
            validate_parameters(parsed, model.output_shape)
        parsed.setdefault("ResponseMetadata", {"HTTPStatusCode": status, "HTTPHeaders": {}})
        return AWSResponse("", status, {}, None), parsed

    @staticmethod
    def _missing(policy_id: str):
        return 404, {"Error": {"Code": "ResourceNotFoundException", "Message": f"{policy_id} not found"}}

    def _CreateLifecyclePolicy(self, body, path, query):
        policy_id = f"policy-{next(self._ids):017x}"
        now = datetime.now(timezone.utc)
        self.policies[policy_id] = {
            **copy.deepcopy(body),
            "PolicyId": policy_id,
            "DateCreated": now,
            "DateModified": now,
            "PolicyArn": f"arn:aws:dlm:us-east-1:{ACCOUNT}:policy/{policy_id}",
        }
        return 200, {"PolicyId": policy_id}

    def _GetLifecyclePolicies(self, body, path, query):
        wanted = query.get("targetTags", [])
        wanted = [wanted] if isinstance(wanted, str) else wanted
        found = []
        for policy in self.policies.values():
            tags = {f"{t['Key']}={t['Value']}" for t in policy["PolicyDetails"].get("TargetTags", [])}
            if not wanted or tags & set(wanted):
                found.append(
                    {
                        "PolicyId": policy["PolicyId"],
                        "Description": policy["Description"],
                        "State": policy["State"],
                        "Tags": policy.get("Tags", {}),
                        "PolicyType": policy["PolicyDetails"].get("PolicyType", "EBS_SNAPSHOT_MANAGEMENT"),
                    }
                )
        if not found:  # as DLM answers a filter that matches nothing
            return 404, {"Error": {"Code": "ResourceNotFoundException", "Message": "no policy matches"}}
        return 200, {"Policies": found}

    def _GetLifecyclePolicy(self, body, path, query):
        policy_id = path.rsplit("/", 1)[-1]
        if policy_id not in self.policies:
            return self._missing(policy_id)
        return 200, {"Policy": copy.deepcopy(self.policies[policy_id])}

    def _UpdateLifecyclePolicy(self, body, path, query):
        policy_id = path.rsplit("/", 1)[-1]
        if policy_id not in self.policies:
            return self._missing(policy_id)
        self.policies[policy_id].update(copy.deepcopy(body), DateModified=datetime.now(timezone.utc))
        return 200, {}

    def _DeleteLifecyclePolicy(self, body, path, query):
        policy_id = path.rsplit("/", 1)[-1]
        if self.policies.pop(policy_id, None) is None:
            return self._missing(policy_id)
        return 200, {}
