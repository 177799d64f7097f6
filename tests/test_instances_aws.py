"""status, destroy, --wait and secrets against moto (the stand-in for the AWS API, out of reach here).

The agent's side of the status tags is played by the test writing those tags through the same API,
as the agent's role does on a real instance.
"""

from __future__ import annotations

import io
import json
import time

import pytest
from conftest import AWS_ZONE as ZONE

from builder.aws import names
from builder.aws.instances import wait_for_agent

PLATFORM_YAML = (
    f"version: 1\ndata_volume: {{availability_zone: {ZONE}}}\n"
    "providers: {anthropic_api_key_parameter: /ai-platform/providers/anthropic}\n"
)


@pytest.fixture
def launched(aws, baked, builder, tmp_path):
    (tmp_path / "platform.yaml").write_text(PLATFORM_YAML)
    aws.client("ssm").put_parameter(Name="/ai-platform/providers/anthropic", Value="sk-test", Type="SecureString")
    result = builder("--json", "launch", "alpha")
    assert result.code == 0, result.err
    return json.loads(result.out)


def agent_reports(aws, instance_id, state, detail=""):
    aws.client("ec2").create_tags(
        Resources=[instance_id],
        Tags=[{"Key": names.STATUS_TAG, "Value": state}, {"Key": names.STATUS_DETAIL_TAG, "Value": detail}],
    )


def test_status_shows_the_agents_report(aws, launched, builder):
    before = json.loads(builder("--json", "status").out)
    assert [(v["name"], v["instance_id"], v["agent_state"]) for v in before] == [
        ("alpha", launched["instance_id"], "-")
    ]
    agent_reports(aws, launched["instance_id"], "done", "ai-platform firstboot: done (7 ok)")
    text = builder("status", "alpha").out
    assert "agent: done" in text and "ai-platform firstboot: done (7 ok)" in text
    assert "group: ai-platform-alpha: keeps 1, has 1" in text
    # The agent's backup line (firstboot/backup_record.py) carries the backup's time; status works out
    # its age, and warns on an old one even when the agent's last word was ok (a stopped instance).
    assert json.loads(builder("--json", "status").out)[0]["backup"] is None  # no word yet
    ec2 = aws.client("ec2")
    recent = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 5 * 3600))
    line = f"ai-platform backup: last good {recent} (1.2 GiB); ok"
    ec2.create_tags(Resources=[launched["instance_id"]], Tags=[{"Key": names.BACKUP_TAG, "Value": line}])
    text = builder("status", "alpha").out
    taken = f"{recent[:4]}-{recent[4:6]}-{recent[6:8]} {recent[9:11]}:{recent[11:13]}"
    assert f"on-volume backup: last good {taken} UTC (5 h ago, 1.2 GiB)\n" in text

    line = "ai-platform backup: last good 20250612T033000Z (1.2 GiB); ok"
    ec2.create_tags(Resources=[launched["instance_id"]], Tags=[{"Key": names.BACKUP_TAG, "Value": line}])
    text = builder("status", "alpha").out
    assert "on-volume backup: last good 2025-06-12 03:30 UTC (" in text and "; WARNING: older than 48 h" in text
    failed = "ai-platform backup: last good none; warning: last attempt 2025-06-15T03:30:00Z failed: no space"
    ec2.create_tags(Resources=[launched["instance_id"]], Tags=[{"Key": names.BACKUP_TAG, "Value": failed}])
    [view] = json.loads(builder("--json", "status").out)
    assert view["backup"] == {
        "line": failed,
        "last_good": None,
        "taken_at": None,
        "age_hours": None,
        "size": None,
        "warning": "last attempt 2025-06-15T03:30:00Z failed: no space",
    }


def test_status_names_a_group_left_at_zero(aws, launched, builder):
    from builder.aws import group

    group.scale(aws.client("autoscaling"), aws.client("ec2"), "ai-platform-alpha", 0, log=lambda _line: None)
    text = builder("status").out
    assert "alpha" in text and "keeps 0, has 0" in text and "`builder start NAME` starts it" in text
    assert "after an upgrade cut short, `builder launch NAME`" in text


def test_wait_follows_the_tags_until_a_final_state(aws, launched):
    ec2 = aws.client("ec2")
    changes = []
    script = iter([("running", "storage: ok"), ("done", "ai-platform firstboot: done (7 ok)")])

    def agent_progress(_seconds):
        agent_reports(aws, launched["instance_id"], *next(script))

    state, _detail = wait_for_agent(
        ec2, launched["instance_id"], timeout=60, on_change=lambda *c: changes.append(c), sleep=agent_progress
    )
    assert state == "done"
    assert [c[0] for c in changes] == ["booting", "running", "done"]


def test_wait_follows_the_instance_the_group_put_in_place_of_a_failed_one(aws, launched):
    """EC2 ends an instance that fails its status checks and the group starts another: `--wait`
    follows that one, where before it waited on the dead one until its deadline."""
    from builder.aws import group

    ec2, autoscaling = aws.client("ec2"), aws.client("autoscaling")
    first = launched["instance_id"]
    ec2.terminate_instances(InstanceIds=[first])
    replacement = group.wait_for_instance(autoscaling, "ai-platform-alpha", not_one_of=(first,), poll=0.2)
    changes = []

    def agent_progress(_seconds):
        agent_reports(aws, replacement, "done", "ai-platform firstboot: done (7 ok)")

    state, detail = wait_for_agent(
        ec2,
        first,
        timeout=60,
        on_change=lambda *change: changes.append(change),
        current=lambda: group.live_instance(group.find(autoscaling, "ai-platform-alpha")),
        sleep=agent_progress,
    )
    assert (state, detail) == ("done", "ai-platform firstboot: done (7 ok)")
    assert ("replaced", f"the group replaced {first} with {replacement}; following {replacement}") in changes


def test_wait_gives_up_at_the_deadline(aws, launched):
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    with pytest.raises(Exception, match="did not report within 30 s \\(last: booting\\)"):
        wait_for_agent(
            aws.client("ec2"),
            launched["instance_id"],
            timeout=30,
            on_change=lambda *_: None,
            clock=lambda: now[0],
            sleep=sleep,
        )


def test_destroy_keeps_the_data_volume_and_a_new_launch_finds_it(aws, launched, builder):
    result = builder("--json", "destroy", "alpha")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["terminated"] == [launched["instance_id"]] and report["data_volume_state"] == "kept"
    assert aws.client("ec2").describe_volumes(VolumeIds=[launched["volume_id"]])["Volumes"]
    again = json.loads(builder("--json", "launch", "alpha").out)
    assert again["volume_id"] == launched["volume_id"]


def test_delete_data_needs_the_typed_name(aws, launched, builder, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("alhpa\n"))
    refused = builder("destroy", "alpha", "--delete-data")
    assert refused.code == 1 and "confirmation did not match" in refused.err
    assert json.loads(builder("--json", "status").out)[0]["state"] == "running"  # nothing was terminated

    monkeypatch.setattr("sys.stdin", io.StringIO("alpha\n"))
    done = builder("destroy", "alpha", "--delete-data")
    assert done.code == 0, done.err
    remaining = aws.client("ec2").describe_volumes(Filters=[{"Name": "volume-id", "Values": [launched["volume_id"]]}])[
        "Volumes"
    ]
    assert remaining == []


def test_secrets_set_reads_stdin_never_prints_and_list_shows_names(aws, builder, tmp_path, monkeypatch):
    (tmp_path / "platform.yaml").write_text(PLATFORM_YAML)
    secret = "sk-ant-api03-set-from-stdin-0123456789"
    monkeypatch.setattr("sys.stdin", io.StringIO(secret + "\n"))
    stored = builder("secrets", "set", "anthropic-api-key")
    assert stored.code == 0, stored.err
    assert "stored in /ai-platform/providers/anthropic (version 1)" in stored.out
    value = aws.client("ssm").get_parameter(Name="/ai-platform/providers/anthropic", WithDecryption=True)
    assert value["Parameter"]["Value"] == secret and value["Parameter"]["Type"] == "SecureString"
    listed = builder("--json", "secrets", "list")
    rows = {row["secret"]: row for row in json.loads(listed.out)}
    assert rows["anthropic-api-key"]["stored"] is True and rows["tailscale-auth-key"]["stored"] is False
    assert rows["openai-api-key"]["parameter"] is None
    assert secret not in stored.out + stored.err + listed.out + listed.err

    monkeypatch.setattr("sys.stdin", io.StringIO("sk-openai-example\n"))
    unconfigured = builder("secrets", "set", "openai-api-key")
    assert unconfigured.code == 1 and "set providers.openai_api_key_parameter first" in unconfigured.err


def test_urls_after_a_successful_wait(aws, baked, builder, tmp_path, monkeypatch):
    """--wait prints where the platform answers once the agent reports done."""
    import builder.aws.instances as instances

    real_wait = instances.wait_for_agent

    def agent_done_at_once(ec2, instance_id, **kwargs):
        agent_reports(aws, instance_id, "done", "ai-platform firstboot: done (7 ok)")
        return real_wait(ec2, instance_id, **kwargs)

    monkeypatch.setattr(instances, "wait_for_agent", agent_done_at_once)
    (tmp_path / "platform.yaml").write_text(PLATFORM_YAML)
    aws.client("ssm").put_parameter(Name="/ai-platform/providers/anthropic", Value="sk-test", Type="SecureString")
    result = builder("launch", "alpha", "--wait")
    assert result.code == 0, result.err
    assert "https://ai-platform-alpha:8443/" in result.out
    assert "https://ai-platform-alpha:8444/" in result.out  # anythingllm on its own port
    assert "https://ai-platform-alpha:8443/litellm" in result.out
