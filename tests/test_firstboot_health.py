"""`firstboot health`: every stack's health now, from its containers (a stack unit stays active after
its start), recorded every run and reported on a change."""

from __future__ import annotations

import json
from pathlib import Path

from firstboot_machine import Machine
from stack_fixtures import ROOTFS

from builder.config.schema import PlatformConfig
from builder.local.instances import LocalInstance
from firstboot import backup_record, health
from firstboot.cli import main

UP = "Up 3 minutes (healthy)"


def test_a_stack_is_healthy_only_when_every_container_runs_and_passes():
    assert health.stack_health([("a", UP), ("worker", "Up 3 minutes")]) == "healthy"
    assert health.stack_health([("a", UP), ("b", "Up 5 seconds (health: starting)")]) == "starting"
    assert health.stack_health([("a", "Up 1 hour (unhealthy)")]) == "unhealthy: a fails its healthcheck"
    assert health.stack_health([("a", UP), ("b", "Exited (137) 2 minutes ago")]) == "unhealthy: b exited"
    assert health.stack_health([]) == "unhealthy: no containers"


def test_the_command_records_every_run_and_reports_only_changes(tmp_path, capsys):
    machine = Machine(tmp_path / "m")
    machine.disk("vol-0123456789abcdef0")
    machine.instance_config()
    machine.cloud_init("local-a")
    containers = {"ai-platform-data": [("postgres", UP)], "ai-platform-ollama": [("ollama", UP)]}
    settings = machine.settings(containers=lambda project: containers.get(project, []))
    assert main(["run"], settings) == 0
    capsys.readouterr()

    assert main(["health"], settings) == 0
    first = capsys.readouterr().out
    assert first.startswith("ai-platform health: 2/4 healthy")  # litellm and the edge have no containers here
    recorded = json.loads((machine.paths.state_dir / "health.json").read_text())
    assert recorded["stacks"]["data"] == "healthy" and recorded["stacks"]["edge"] == "unhealthy: no containers"

    assert main(["health"], settings) == 0
    assert capsys.readouterr().out == ""  # nothing changed: nothing said
    containers["ai-platform-data"] = [("postgres", "Up 9 minutes (unhealthy)")]
    assert main(["health"], settings) == 0
    assert "data unhealthy: postgres fails its healthcheck" in capsys.readouterr().out


def test_builder_status_shows_the_last_health_line_of_a_local_instance(tmp_path):
    config = PlatformConfig.model_validate({"version": 1, "local": {"state_dir": str(tmp_path)}})
    instance = LocalInstance(config, "alpha")
    instance.directory.mkdir(parents=True)
    assert instance.health() == "-"
    instance.console.write_text(
        "ai-platform firstboot: done (8 ok)\r\nai-platform health: 9/9 healthy\r\n"
        "ai-platform health: 8/9 healthy; n8n unhealthy: n8n exited\r\n"
    )
    assert instance.health() == "ai-platform health: 8/9 healthy; n8n unhealthy: n8n exited"


def test_a_stack_that_is_off_is_named_apart_and_not_counted():
    line = health.summary({"data": "healthy", "gdrive": "off", "n8n": "unhealthy: n8n exited"})
    assert line == "ai-platform health: 1/2 healthy; n8n unhealthy: n8n exited; off: gdrive"
    assert health.summary({"data": "healthy", "gdrive": "off"}) == "ai-platform health: 1/1 healthy; off: gdrive"


# --- the on-volume backups (ai-platform-backup's record, backups/last.json) ------------------------

NOW = 1_750_000_000.0  # 2025-06-15T15:06:40Z
RECENT = "20250615T033000Z"  # 11.6 h before NOW
OLD = "20250612T033000Z"  # 3 days and 11.6 h before NOW


def backup_record_on(data: Path, last_good: str | None, ok: bool = True, reason: str = "", complete: bool = True):
    """The record ai-platform-backup writes (and the backup it names, with its marker)."""
    document = {"version": 1, "last_attempt": {"started_at": "2025-06-15T03:30:00Z", "ok": ok, "reason": reason}}
    if last_good:
        document["last_good"] = {"name": last_good, "taken_at": "?", "bytes": 1288490189, "databases": 5}
        (data / "backups" / last_good).mkdir(parents=True)
        if complete:
            (data / "backups" / last_good / backup_record.MARKER).write_text("5 databases\n")
    (data / "backups").mkdir(parents=True, exist_ok=True)
    (data / backup_record.RECORD).write_text(json.dumps(document))


def test_the_backup_report_names_the_last_good_backup_and_warns_when_old_failed_or_gone(tmp_path):
    assert backup_record.report(tmp_path, NOW).line() == "ai-platform backup: last good none; none yet"

    fresh = tmp_path / "fresh"
    backup_record_on(fresh, RECENT)
    report = backup_record.report(fresh, NOW)
    assert report.line() == f"ai-platform backup: last good {RECENT} (1.2 GiB); ok"
    assert round(report.age_hours, 1) == 11.6 and report.to_json()["warnings"] == []

    stale = tmp_path / "stale"
    backup_record_on(stale, OLD)
    assert backup_record.report(stale, NOW).line().endswith("; warning: older than 48 h")

    failed = tmp_path / "failed"
    reason = "dumping database n8n (pg_dump) failed (exit 1): " + "pg_dump: error: " * 30
    backup_record_on(failed, RECENT, ok=False, reason=reason)
    line = backup_record.report(failed, NOW).line()
    assert line.startswith(
        f"ai-platform backup: last good {RECENT} (1.2 GiB); warning: last attempt 2025-06-15T03:30:00Z failed: "
        "dumping database n8n (pg_dump) failed (exit 1)"
    )
    assert len(line) == 256  # an EC2 tag value's most: only the reason is cut

    gone = tmp_path / "gone"
    backup_record_on(gone, RECENT, complete=False)
    assert backup_record.report(gone, NOW).line().endswith(f"; warning: the last good backup {RECENT} is gone")

    unreadable = tmp_path / "unreadable"
    (unreadable / "backups").mkdir(parents=True)
    (unreadable / backup_record.RECORD).write_text("{half")
    assert "warning: backups/last.json is unreadable" in backup_record.report(unreadable, NOW).line()


def test_the_backups_stale_after_two_periods_of_their_daily_timer():
    timer = (ROOTFS / "etc/systemd/system/ai-platform-backup.timer").read_text()
    assert "OnCalendar=*-*-* 03:30:00" in timer  # daily: a period of 24 h
    assert backup_record.PERIOD_HOURS == 24 and backup_record.STALE_AFTER_HOURS == 48


def test_the_health_command_records_the_backups_and_says_their_line_when_it_changes(tmp_path, capsys):
    machine = Machine(tmp_path / "m")
    machine.disk("vol-0123456789abcdef0")
    machine.instance_config()
    machine.cloud_init("local-a")
    settings = machine.settings(containers=lambda project: [("c", UP)])
    assert main(["run"], settings) == 0
    capsys.readouterr()

    assert main(["health"], settings) == 0
    assert "ai-platform backup: last good none; none yet\n" in capsys.readouterr().out
    backup_record_on(machine.paths.data_mount, OLD)
    assert main(["health"], settings) == 0
    said = capsys.readouterr().out
    assert f"ai-platform backup: last good {OLD} (1.2 GiB); warning: older than 48 h" in said
    assert "ai-platform health:" not in said  # the stacks did not change
    recorded = json.loads((machine.paths.state_dir / "health.json").read_text())["backup"]
    assert recorded["last_good"] == OLD and recorded["age_hours"] > 48 and recorded["warnings"] == ["older than 48 h"]
    assert main(["health"], settings) == 0
    assert capsys.readouterr().out == ""  # nothing changed: nothing said
