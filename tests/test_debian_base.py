"""The local target's Debian base image: cached by what shapes it. (The VM test builds it for real.)"""

from __future__ import annotations

from builder.local import debian_base


def test_a_cached_image_is_returned_without_building(tmp_path):
    target = tmp_path / f"debian-12-{debian_base.cache_key()}"
    target.mkdir()
    for name in ("root.qcow2", "vmlinuz", "initrd.img"):
        (target / name).write_bytes(b"cached")
    messages = []
    image = debian_base.build_debian_base(tmp_path, log=messages.append)
    assert image.disk == target / "root.qcow2"
    assert messages == [f"debian base image: cached at {target}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # nothing built beside it


def test_the_cache_key_follows_the_inputs():
    default = debian_base.cache_key()
    assert debian_base.cache_key() == default
    assert debian_base.cache_key(extra_packages=("docker.io",)) != default
    assert debian_base.cache_key(mirror="http://127.0.0.1:3142/debian") != default
    assert debian_base.cache_key(extra_packages=("python3",)) == default  # already in the list


def test_a_second_build_of_the_same_base_waits_for_the_first_and_uses_it(tmp_path, monkeypatch):
    """Two bakes (or tests) on one host at once: the second waits on the first's lock and takes the
    base it built, instead of building again and failing to move its own into the taken place."""
    import fcntl
    import threading

    builds = []
    monkeypatch.setattr(debian_base, "_build", lambda *args: builds.append(args))
    key = debian_base.cache_key()
    target = tmp_path / f"debian-12-{key}"
    messages: list[str] = []
    with open(tmp_path / f".debian-12-{key}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # the first build, under way
        log = {"log": messages.append}
        second = threading.Thread(target=debian_base.build_debian_base, args=(tmp_path,), kwargs=log)
        second.start()
        for _ in range(200):  # at most 10 s for the thread to reach the lock
            if messages:
                break
            second.join(0.05)
        assert messages == ["debian base image: another build of it runs on this host; waiting for it"]
        target.mkdir()
        for name in ("root.qcow2", "vmlinuz", "initrd.img"):
            (target / name).write_bytes(b"built by the first")
    second.join(10)
    assert not second.is_alive()
    assert builds == [] and messages[-1] == f"debian base image: built meanwhile at {target}"
