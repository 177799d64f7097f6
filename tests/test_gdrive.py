"""Google Drive with no hand step: the owner's rclone config stored once, checked by rclone, mounted by
the unit's own command line, and seen read-only in AnythingLLM's container.

Google Drive is out of reach here; a WebDAV server of rclone's own (`rclone serve webdav` on
loopback) stands in for it, and Debian's rclone (1.60) for the pinned release the bake installs.
Everything else is real: the unit's ExecStart with the agent's gdrive.env, FUSE, Docker's rslave
bind into the app's container.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from stack_fixtures import ROOTFS, make_tree

from builder.config.schema import PlatformConfig
from firstboot import gdrive
from firstboot.instance_config import StackSettings
from firstboot.services import start_stacks

RCLONE = shutil.which("rclone")
UNIT = ROOTFS / "etc/systemd/system/ai-platform-gdrive.service"
needs_rclone = pytest.mark.skipif(
    RCLONE is None or not Path("/dev/fuse").exists(), reason="needs rclone and /dev/fuse (scripts/system-packages.txt)"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rclone_config(port: int, remote: str = "gdrive") -> str:
    return f"[{remote}]\ntype = webdav\nurl = http://127.0.0.1:{port}\nvendor = other\n"


class Remote:
    """`rclone serve webdav` over a folder: the stand-in for Google Drive."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.start()

    def start(self):
        self.process = subprocess.Popen(
            [RCLONE, "serve", "webdav", str(self.folder), "--addr", f"127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        raise AssertionError("rclone serve webdav did not listen")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=20)


def unit_command(tree, rclone: str) -> list[str]:
    """The unit's ExecStart, expanded as systemd expands it (${VAR} one word, $VAR split on spaces),
    with the image's paths moved under the test's tree."""
    line = next(line for line in UNIT.read_text().splitlines() if line.startswith("ExecStart="))
    variables = dict(
        line.split("=", 1) for line in (tree.etc / gdrive.UNIT_ENV).read_text().splitlines() if "=" in line
    )
    words = []
    for word in shlex.split(line.removeprefix("ExecStart=")):
        for name, value in variables.items():
            word = word.replace("${" + name + "}", value)
        if word.startswith("$") and word[1:] in variables:
            words += variables[word[1:]].split()
            continue
        words.append(word.replace("/mnt/data", str(tree.data)))
    words[0] = rclone
    return words


class Mount:
    """The unit's rclone, run in the foreground as systemd runs it (Type=notify)."""

    def __init__(self, tree):
        self.tree, self.point = tree, tree.data / "gdrive"
        self.process = None

    def start(self):
        self.point.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            unit_command(self.tree, RCLONE), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while not os.path.ismount(self.point):
            assert self.process.poll() is None, "rclone mount exited"
            assert time.monotonic() < deadline, "rclone mount did not mount"
            time.sleep(0.2)

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
        subprocess.run(["fusermount3", "-u", "-z", str(self.point)], capture_output=True)


@needs_rclone
def test_a_config_rclone_rejects_is_refused_with_its_reason_and_nothing_is_written(tmp_path):
    data, etc = tmp_path / "data", tmp_path / "etc"
    etc.mkdir()
    with pytest.raises(gdrive.GdriveConfigRejected, match=r"no remote named 'gdrive'.*it has: drive2"):
        gdrive.install(data, etc, rclone_config(1, "drive2"), "gdrive", True, RCLONE)
    with pytest.raises(gdrive.GdriveConfigRejected, match="rclone rejects it"):
        gdrive.install(data, etc, "[gdrive]\ntype = webdav\n[broken\n", "gdrive", True, RCLONE)
    assert not (data / gdrive.CONFIG).exists() and not (etc / gdrive.UNIT_ENV).exists()
    # A good one is written 0600 once; rclone's token refreshes in it are not undone at the next boot.
    assert "written" in gdrive.install(data, etc, rclone_config(1), "gdrive", True, RCLONE)
    config = data / gdrive.CONFIG
    assert config.stat().st_mode & 0o777 == 0o600
    config.write_text(config.read_text() + "token = refreshed-by-rclone\n")
    assert "unchanged" in gdrive.install(data, etc, rclone_config(1), "gdrive", True, RCLONE)
    assert "refreshed-by-rclone" in config.read_text()
    assert "written" in gdrive.install(data, etc, rclone_config(2), "gdrive", False, RCLONE)  # a new one replaces it
    assert "GDRIVE_FLAGS=\n" in (etc / gdrive.UNIT_ENV).read_text()


class FakeSystemd:
    def __init__(self, states):
        self.states = states

    def daemon_reload(self):
        pass

    def start(self, unit, wait=True):
        pass

    def active_state(self, unit):
        return self.states.get(unit, "active")

    def condition_failed(self, unit):
        return False


def test_a_drive_mount_that_fails_is_reported_and_the_platform_still_comes_up(tmp_path):
    warnings = []
    systemd = FakeSystemd({"ai-platform-gdrive.service": "failed"})
    summary = start_stacks(systemd, tmp_path, ["litellm", "gdrive"], timeout=5, poll_interval=0, warn=warnings.append)
    assert "3 healthy" in summary and "not running: ai-platform-gdrive.service" in summary
    assert warnings == [
        "ai-platform-gdrive.service is failed, the rest runs without it; see `journalctl -u ai-platform-gdrive.service`"
    ]
    # Control: any other stack that fails still fails the boot.
    with pytest.raises(Exception, match=r"ai-platform-stack@litellm\.service failed"):
        start_stacks(
            FakeSystemd({"ai-platform-stack@litellm.service": "failed"}),
            tmp_path,
            ["litellm"],
            timeout=5,
            poll_interval=0,
        )


def test_secrets_set_rclone_config_keeps_it_private_and_refuses_one_without_the_remote(builder, tmp_path):
    config = tmp_path / "platform.yaml"
    config.write_text(f"version: 1\nlocal:\n  state_dir: {tmp_path / 'state'}\n")
    good, bad = tmp_path / "rclone.conf", tmp_path / "other.conf"
    good.write_text(rclone_config(8080))
    bad.write_text(rclone_config(8080, "mydrive"))
    result = builder(
        "--config", str(config), "secrets", "set", "rclone-config", "--file", str(bad), "--target", "local"
    )
    assert (
        result.code == 1 and "no remote [gdrive] (it has: mydrive)" in result.err and "Nothing was stored" in result.err
    )
    from builder.local.secrets import rclone_config_path

    stored = rclone_config_path(
        PlatformConfig.model_validate({"version": 1, "local": {"state_dir": str(tmp_path / "state")}})
    )
    assert not stored.exists()
    result = builder(
        "--config", str(config), "secrets", "set", "rclone-config", "--file", str(good), "--target", "local"
    )
    assert result.code == 0, result.err
    assert stored.read_text() == good.read_text() and stored.stat().st_mode & 0o777 == 0o600
    assert str(good.read_text()) not in result.out + result.err  # never printed


def test_secrets_set_rclone_config_stores_the_whole_file_in_ssm(builder, aws, tmp_path):
    config = tmp_path / "platform.yaml"
    config.write_text("version: 1\n")
    file = tmp_path / "rclone.conf"
    file.write_text(rclone_config(8080) + "token = " + "x" * 5000 + "\n")  # over SSM's standard 4 KB
    result = builder("--config", str(config), "secrets", "set", "rclone-config", "--file", str(file))
    assert result.code == 0, result.err
    parameter = aws.client("ssm").get_parameter(Name="/ai-platform/gdrive/rclone-config", WithDecryption=True)
    assert parameter["Parameter"]["Value"] == file.read_text() and parameter["Parameter"]["Type"] == "SecureString"


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """AnythingLLM's stack (its stand-in: the compose file is real) on a data folder shared as
    /mnt/data is, and the stand-in Drive."""
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("needs a running dockerd (scripts/setup starts one)")
    if RCLONE is None or not Path("/dev/fuse").exists():
        pytest.skip("needs rclone and /dev/fuse")
    from standins.images import build_standins

    from builder import images

    build_standins([pin for pin in images.load_lock() if pin.variable == "ANYTHINGLLM_IMAGE"])
    base = tmp_path_factory.mktemp("gdrive")
    tree = make_tree(base, services=["anythingllm"], settings=StackSettings(edge_bind=("127.0.0.1",)))
    remote = Remote(base / "drive")
    (remote.folder / "handbook.md").write_text("# the team's handbook\n")
    gdrive.install(tree.data, tree.etc, rclone_config(remote.port), "gdrive", True, RCLONE)
    mount = Mount(tree)
    try:
        tree.share_data()
        # The app first, the mount after: rslave shows a mount made later (a Drive that comes up late).
        result = tree.stack("up", "anythingllm", timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        mount.start()
        yield tree, remote, mount
    finally:
        tree.stack("down", "anythingllm")
        subprocess.run(["docker", "network", "rm", "ai-platform", "ai-platform-signal"], capture_output=True)
        mount.stop()
        remote.stop()
        tree.unshare_data()


def in_app(*command: str) -> subprocess.CompletedProcess:
    container = subprocess.run(
        ["docker", "ps", "-q", "--filter", "label=com.docker.compose.project=ai-platform-anythingllm"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return subprocess.run(["docker", "exec", container, *command], capture_output=True, text=True, timeout=60)


def wait_for(predicate, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def test_the_drives_files_appear_read_only_in_anythingllms_container(platform):
    tree, remote, _ = platform
    assert in_app("cat", "/gdrive/handbook.md").stdout == "# the team's handbook\n"
    # (A file added on the Drive later shows when rclone next lists the folder: Drive tells rclone of
    # changes every minute; the WebDAV stand-in cannot, so that is not checked here.)
    written = in_app("sh", "-c", "echo x > /gdrive/from-the-app.txt")
    assert written.returncode != 0 and "Read-only file system" in written.stderr
    assert not (remote.folder / "from-the-app.txt").exists()
    # rclone runs with the delivered config, private on the volume.
    assert (tree.data / gdrive.CONFIG).stat().st_mode & 0o777 == 0o600


def test_a_restarted_mount_shows_again_without_restarting_the_app(platform):
    _, _, mount = platform
    mount.stop()
    assert in_app("cat", "/gdrive/handbook.md").returncode != 0  # the folder underneath is empty
    mount.start()
    assert wait_for(lambda: in_app("cat", "/gdrive/handbook.md").stdout == "# the team's handbook\n")


def test_a_dead_drive_leaves_the_app_healthy(platform):
    tree, remote, _ = platform
    remote.stop()
    try:
        # rclone answers from its cache or with an error, within the call's 60 s: it never hangs the app.
        in_app("ls", "/gdrive/")
        # `up --wait` returns 0 only when the app's healthcheck passes: still healthy.
        assert tree.stack("up", "anythingllm", timeout=300).returncode == 0
    finally:
        remote.start()


@needs_rclone
def test_the_agent_delivers_the_stored_config_and_reports_one_rclone_refuses(tmp_path):
    """The agent's step, with the config handed over by fw_cfg (as to a local VM)."""
    from firstboot import agent
    from firstboot.framework import Context
    from firstboot.instance_config import Gdrive, InstanceConfig

    paths = agent.Paths(data_mount=tmp_path / "data", etc_dir=tmp_path / "etc", fw_cfg_dir=tmp_path / "fw_cfg")
    paths.etc_dir.mkdir()
    settings = agent.Settings(paths=paths, rclone=RCLONE)
    place = Gdrive(parameter=None, fw_cfg="opt/ai-platform/rclone-config", remote="gdrive", read_only=True)
    config = InstanceConfig(
        "ai-platform", "alpha", "local", "us-east-1", None, None, services=("gdrive",), gdrive=place
    )

    def step() -> tuple[str, list[str]]:
        context = Context(state_dir=tmp_path, platform=None, values={"settings": settings, "config": config})
        return agent.deliver_gdrive_config(context), context.warnings

    assert step() == (
        "no rclone config stored (fw_cfg opt/ai-platform/rclone-config): the Drive mount stays off "
        "(`builder secrets set rclone-config`)",
        [],
    )
    raw = paths.fw_cfg_dir / "opt/ai-platform/rclone-config/raw"
    raw.parent.mkdir(parents=True)
    raw.write_text(rclone_config(8080))
    summary, warnings = step()
    assert summary == "rclone config written; remote gdrive: mounted read-only" and warnings == []
    assert (paths.data_mount / gdrive.CONFIG).read_text() == rclone_config(8080)
    raw.write_text(rclone_config(8080, "other"))
    summary, warnings = step()
    assert summary == "rclone config refused" and len(warnings) == 1
    assert "no remote named 'gdrive'" in warnings[0] and "The one delivered before stays in use." in warnings[0]
    assert (paths.data_mount / gdrive.CONFIG).read_text() == rclone_config(8080)


def test_the_instance_is_told_where_its_rclone_config_is():
    from builder.userdata import instance_document
    from firstboot.instance_config import parse_instance_config

    config = PlatformConfig.model_validate({"version": 1, "services": {"gdrive": {"read_only": False}}})
    aws = parse_instance_config(instance_document(config, "alpha", "aws"), "instance.json")
    assert aws.gdrive.parameter == "/ai-platform/gdrive/rclone-config" and aws.gdrive.read_only is False
    local = instance_document(config, "alpha", "local", volume_id="vol-0123456789abcdef0", gdrive_fw_cfg=False)
    assert "gdrive" not in local  # nothing stored: the mount stays off, nothing to look for
    off = PlatformConfig.model_validate({"version": 1, "services": {"gdrive": {"enabled": False}}})
    assert "gdrive" not in instance_document(off, "alpha", "aws")
