"""Instance identity: IMDSv2 against a local stand-in (the real IMDS exists only in EC2), cloud-init's data."""

from __future__ import annotations

import json

import pytest
from imds_standin import ImdsStandIn

from firstboot import identity


@pytest.fixture
def imds():
    server = ImdsStandIn("i-0123456789abcdef0", "eu-west-1b", "eu-west-1")
    yield server
    server.stop()


def test_token_first_then_the_identity_document(imds):
    found = identity.imds_identity(imds.url)
    assert found == identity.Identity("i-0123456789abcdef0", "eu-west-1b", "eu-west-1")
    methods = [(method, path) for method, path, _ in imds.requests]
    assert methods == [("PUT", "/latest/api/token"), ("GET", "/latest/dynamic/instance-identity/document")]


def test_metadata_is_never_fetched_through_a_proxy(imds, monkeypatch):
    """A proxy in the environment (as on many corporate networks) must not see IMDS traffic."""
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # the discard port: a proxy there answers nothing
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert identity.imds_identity(imds.url, deadline_seconds=3).instance_id == "i-0123456789abcdef0"


def test_retries_until_the_service_answers(imds):
    imds.fail_first = 3
    assert identity.imds_identity(imds.url, deadline_seconds=30).instance_id == "i-0123456789abcdef0"
    assert len(imds.requests) == 5  # three failures, then token and document


def test_gives_up_at_the_deadline(imds):
    imds.fail_first = 10**6
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    # ImdsUnavailable: a passing failure, which the agent waits out longer (test_firstboot_outages.py).
    with pytest.raises(identity.ImdsUnavailable, match="did not answer within 20 s; last error: HTTPError"):
        identity.imds_identity(imds.url, deadline_seconds=20, clock=lambda: now[0], sleep=sleep)
    assert now[0] <= 20


def test_cloud_init_instance_data_for_the_local_target(tmp_path):
    path = tmp_path / "instance-data.json"
    path.write_text(json.dumps({"v1": {"instance_id": "local-alpha", "availability_zone": None, "region": None}}))
    assert identity.cloud_init_identity(path) == identity.Identity("local-alpha", None, None)
    path.write_text("{}")
    with pytest.raises(identity.IdentityError, match="no cloud-init instance data") as raised:
        identity.cloud_init_identity(path)
    assert not isinstance(raised.value, identity.ImdsUnavailable)  # no later run would find it either
