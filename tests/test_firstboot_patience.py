"""The agent's AWS calls wait out IAM propagation: the role is made seconds before the instance boots,
and a one-shot first boot must not fail on a refusal that a minute would cure."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from botocore.stub import Stubber

from firstboot.framework import StepFailed, TransientError
from firstboot.platform import AwsUnavailable, IamNotPropagated, Patient


@pytest.fixture
def ssm():
    client = boto3.client("ssm", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        yield client, stubber


class Clock:
    def __init__(self):
        self.now, self.sleeps = 0.0, []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_refusal_while_the_role_propagates_is_tried_again(ssm, caplog):
    client, stubber = ssm
    for code in ("AccessDeniedException", "AccessDeniedException"):
        stubber.add_client_error("get_parameter", service_error_code=code)
    stubber.add_response("get_parameter", {"Parameter": {"Name": "/p", "Value": "v", "Type": "SecureString"}})
    clock = Clock()
    patient = Patient(client, deadline=120, sleep=clock.sleep, clock=lambda: clock.now)
    assert patient.get_parameter(Name="/p", WithDecryption=True)["Parameter"]["Value"] == "v"
    assert clock.sleeps == [2.0, 4.0]
    assert "get_parameter refused (AccessDeniedException)" in caplog.text and "IAM permissions" in caplog.text


def test_other_errors_are_raised_at_once(ssm):
    client, stubber = ssm
    stubber.add_client_error("get_parameter", service_error_code="ParameterNotFound")
    clock = Clock()
    patient = Patient(client, sleep=clock.sleep, clock=lambda: clock.now)
    with pytest.raises(client.exceptions.ParameterNotFound):
        patient.get_parameter(Name="/p")
    assert clock.sleeps == []


def test_a_refusal_that_outlasts_the_deadline_says_which_call_why_and_how_long_it_waited(ssm):
    client, stubber = ssm
    for _ in range(10):
        stubber.add_client_error("get_parameter", service_error_code="AccessDeniedException")
    clock, waits = Clock(), []
    patient = Patient(client, deadline=30, sleep=clock.sleep, clock=lambda: clock.now, on_wait=waits.append)
    with pytest.raises(IamNotPropagated) as raised:
        patient.get_parameter(Name="/p")
    assert clock.sleeps == [2.0, 4.0, 8.0, 16.0] and sum(clock.sleeps) <= 30
    assert str(raised.value).startswith(
        "get_parameter still refused (AccessDeniedException) after waiting 30 s for the instance role's IAM "
        "permissions to propagate"
    )
    assert isinstance(raised.value.__cause__, ClientError)  # the refusal itself, for the traceback
    assert isinstance(raised.value, StepFailed)  # the status file shows its message as it is
    # Each wait was told as it began: a running step shows what it waits for.
    assert waits[0] == (
        "waiting for the instance role's IAM permissions: get_parameter refused (AccessDeniedException), 0 s so far, "
        "trying again in 2 s"
    )
    assert len(waits) == 4 and "14 s so far, trying again in 16 s" in waits[-1]


def test_no_credentials_yet_is_waited_out_too():
    calls = []

    class Client:
        def describe_volumes(self):
            calls.append(1)
            if len(calls) < 3:
                raise NoCredentialsError()
            return {"Volumes": []}

    clock = Clock()
    assert Patient(Client(), sleep=clock.sleep, clock=lambda: clock.now).describe_volumes() == {"Volumes": []}
    assert len(calls) == 3


@pytest.mark.parametrize(
    ("code", "http_status", "reason"),
    [
        ("ThrottlingException", 400, "ThrottlingException"),  # SSM's throttling
        ("RequestLimitExceeded", 503, "RequestLimitExceeded"),  # EC2's
        ("InternalServerError", 500, "InternalServerError"),
    ],
)
def test_a_passing_failure_is_raised_for_the_agent_to_wait_out(ssm, code, http_status, reason):
    """Still failing once botocore's own retries are spent (the Stubber answers past them): the step waits."""
    client, stubber = ssm
    stubber.add_client_error("get_parameter", service_error_code=code, http_status_code=http_status)
    clock = Clock()
    with pytest.raises(AwsUnavailable) as raised:
        Patient(client, sleep=clock.sleep, clock=lambda: clock.now).get_parameter(Name="/p")
    assert str(raised.value).startswith(f"get_parameter failed for a passing reason ({reason}: ")
    assert isinstance(raised.value, TransientError) and clock.sleeps == []


def test_no_connection_is_a_passing_failure_too():
    class Client:
        def get_parameter(self, **_):
            raise EndpointConnectionError(endpoint_url="https://ssm.us-east-1.amazonaws.com/")

    with pytest.raises(AwsUnavailable, match=r"get_parameter failed for a passing reason \(EndpointConnectionError: "):
        Patient(Client()).get_parameter(Name="/p")


def test_no_credentials_past_the_patience_is_a_passing_failure():
    """The metadata service gives the role's credentials: while it gives none, only time helps."""

    class Client:
        def describe_volumes(self):
            raise NoCredentialsError()

    clock = Clock()
    with pytest.raises(AwsUnavailable, match="describe_volumes: still no credentials from the instance role after"):
        Patient(Client(), deadline=30, sleep=clock.sleep, clock=lambda: clock.now).describe_volumes()
    assert clock.sleeps == [2.0, 4.0, 8.0, 16.0]


def test_a_refusal_past_the_patience_stays_permanent(ssm):
    client, stubber = ssm
    stubber.add_client_error("get_parameter", service_error_code="AccessDeniedException")
    with pytest.raises(IamNotPropagated) as raised:
        Patient(client, deadline=0).get_parameter(Name="/p")
    assert not isinstance(raised.value, TransientError)  # the role's policy may lack it: a person must look
